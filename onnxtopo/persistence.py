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


def _persistence(filtration: Filtration, born: np.ndarray, killer: np.ndarray, essential: np.ndarray,
                 h1: bool) -> Persistence:
    """Diagrams and subgraph from an engine's pairing.

    ``killer`` lists the edges that kill an H0 class, in entry order, ``born`` the vertex whose
    class each kills, ``essential`` the vertices whose classes never die. Every other edge
    starts an H1 class that never dies (a graph has no 2-simplices).
    """
    graph, value = filtration.graph, filtration.vertex_value
    finite = np.stack([value[born], graph.phi[killer]], axis=1)
    h0 = np.concatenate([finite[finite[:, 0] != finite[:, 1]],  # zero-persistence points dropped
                         np.stack([value[essential], np.full(essential.size, np.inf)], axis=1)])
    h1_points = None
    if h1:
        outside = np.ones(graph.n_edges, dtype=bool)
        outside[killer] = False
        h1_points = np.stack([graph.phi[outside], np.full(int(outside.sum()), np.inf)], axis=1)
        h1_points = sort_diagram(h1_points)
    subgraph = PersistentSubgraph(src=graph.src[killer], dst=graph.dst[killer], phi=graph.phi[killer],
                                  birth=value[born], edge=killer)
    return Persistence(sort_diagram(h0), h1_points, subgraph, len(filtration))


def forest_persistence(filtration: Filtration, *, h1: bool = False) -> Persistence:
    """Exact persistence of a graph filtration from its maximum spanning forest.

    For a 1-dimensional complex, the edges that kill H0 classes are exactly the spanning forest
    Kruskal's algorithm builds in entry order; every other edge creates a never-dying H1 class.
    Ranking the edges by entry order makes that forest unique, so scipy's compiled Kruskal
    finds it; only the forest's edges (fewer than the vertices) then go through a union-find,
    which applies the elder rule by entry position exactly as the boundary-matrix reduction does,
    ties included.
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import minimum_spanning_tree

    graph = filtration.graph
    order = filtration.edge_order
    rank = np.empty(graph.n_edges, dtype=np.float64)
    rank[order] = np.arange(1, graph.n_edges + 1)  # exact in float64; 0 would mean "no edge"
    n = graph.n_vertices
    tree = minimum_spanning_tree(csr_matrix((rank, (graph.src, graph.dst)), shape=(n, n)))
    forest = order[np.sort(tree.data).astype(np.int64) - 1]

    entry = np.empty(n, dtype=np.int64)
    entry[filtration.vertex_order] = np.arange(filtration.vertex_order.size)
    # Plain lists: the loop below touches single elements, where lists beat numpy arrays.
    parent = list(range(n))
    oldest = list(range(n))  # per root: the component's earliest vertex, which carries its class
    entry_l = entry.tolist()
    born = np.empty(forest.size, dtype=np.int64)

    def find(v):
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for k, (u, w) in enumerate(zip(graph.src[forest].tolist(), graph.dst[forest].tolist())):
        ru, rw = find(u), find(w)
        elder, younger = (ru, rw) if entry_l[oldest[ru]] < entry_l[oldest[rw]] else (rw, ru)
        born[k] = oldest[younger]
        parent[younger] = elder

    in_complex = filtration.vertex_order
    roots = in_complex[np.array(parent)[in_complex] == in_complex]
    return _persistence(filtration, born, forest, np.array(oldest)[roots], h1)


def dionysus_persistence(filtration: Filtration, *, h1: bool = False) -> Persistence:
    """Persistence by dionysus's homology_persistence (a boundary-matrix reduction).

    dionysus stores filtration values as float32, so only its pairing is read back; the values
    of the points are the filtration's own (float64). On the same filtration, the points are
    those of dionysus's ``init_diagrams`` up to that rounding.
    """
    import dionysus

    graph = filtration.graph
    dims, indices, values = filtration.simplices()
    simplices = []
    for d, i, v in zip(dims.tolist(), indices.tolist(), values.tolist()):
        vertices = [i] if d == 0 else [int(graph.src[i]), int(graph.dst[i])]
        simplices.append(dionysus.Simplex(vertices, v))
    m = dionysus.homology_persistence(dionysus.Filtration(simplices))  # our entry order: no sort()

    vertex_positions = np.flatnonzero(dims == 0)
    partner = np.array([m.pair(i) for i in vertex_positions.tolist()], dtype=np.int64)
    paired = partner != m.unpaired
    by_entry = np.argsort(partner[paired], kind="stable")
    killer = indices[partner[paired][by_entry]]
    born = indices[vertex_positions[paired][by_entry]]
    return _persistence(filtration, born, killer, indices[vertex_positions[~paired]], h1)


ENGINES = {"forest": forest_persistence, "dionysus": dionysus_persistence}
