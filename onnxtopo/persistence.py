"""Stage 6: persistence diagrams and the persistent subgraph, computed with dionysus.

Diagrams are numpy arrays of shape (n, 2) holding (birth, death) with birth ≥ death (superlevel
values, i.e. φ); essential classes die at +inf; points with birth == death are dropped, as
dionysus's ``init_diagrams`` drops them. Rows are sorted by decreasing birth, then death.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .filtration import Filtration


@dataclass(frozen=True)
class PersistentSubgraph:
    """The edges that kill an H0 class, in the order they enter (a maximum spanning forest).

    ``src``/``dst`` are global vertex ids, ``phi`` the edge's weight (= the death value),
    ``birth`` the birth of the class it kills, ``edge`` its index in the induced graph.
    """

    src: np.ndarray
    dst: np.ndarray
    phi: np.ndarray
    birth: np.ndarray
    edge: np.ndarray

    def __len__(self) -> int:
        return len(self.src)


@dataclass(frozen=True)
class Persistence:
    """Diagrams of one filtration: ``h0`` always, ``h1`` when asked for, and the subgraph."""

    h0: np.ndarray
    h1: np.ndarray | None
    subgraph: PersistentSubgraph
    n_simplices: int

    @property
    def total_persistence(self) -> float:
        """Sum of birth - death over the finite points of H0."""
        finite = np.isfinite(self.h0).all(axis=1)
        return float((self.h0[finite, 0] - self.h0[finite, 1]).sum())


def sort_diagram(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return points[np.lexsort((-points[:, 1], -points[:, 0]))]


def dionysus_persistence(filtration: Filtration, *, h1: bool = False) -> Persistence:
    """Persistence of the filtration by dionysus's homology_persistence and init_diagrams."""
    import dionysus

    graph = filtration.graph
    simplices = []
    for d, i, v in zip(filtration.dim.tolist(), filtration.index.tolist(), filtration.value.tolist()):
        vertices = [i] if d == 0 else [int(graph.src[i]), int(graph.dst[i])]
        simplices.append(dionysus.Simplex(vertices, v))
    f = dionysus.Filtration(simplices)  # kept in our entry order: no f.sort()
    m = dionysus.homology_persistence(f)
    diagrams = dionysus.init_diagrams(m, f)

    def as_array(k):
        if len(diagrams) <= k:
            return sort_diagram(np.empty((0, 2)))
        return sort_diagram([(p.birth, p.death) for p in diagrams[k]])

    # The class born at a vertex dies at the edge paired with it.
    born, killer = [], []
    for position in np.flatnonzero(filtration.dim == 0).tolist():
        partner = m.pair(position)
        if partner != m.unpaired:
            born.append(position)
            killer.append(partner)
    born, killer = np.array(born, dtype=np.int64), np.array(killer, dtype=np.int64)
    by_entry = np.argsort(killer, kind="stable")
    born, killer = born[by_entry], killer[by_entry]
    edges = filtration.index[killer]
    subgraph = PersistentSubgraph(
        src=graph.src[edges], dst=graph.dst[edges], phi=graph.phi[edges],
        birth=filtration.value[born], edge=edges,
    )
    return Persistence(as_array(0), as_array(1) if h1 else None, subgraph, len(filtration))
