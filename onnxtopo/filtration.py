"""Stage 5: the superlevel filtration of an induced graph.

Strongest edges enter first. A vertex enters with its strongest incident edge (value = the
maximum φ over its edges) unless all vertices are present from the start (value +inf, as in
Lacombe et al.'s "Topological Uncertainty"); vertices without edges are not in the complex.
The entry order is fixed here, ties included, so every engine sees the same filtration:
decreasing value, then vertices before edges, then by vertex id or edge index.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .errors import InvalidFiltrationError
from .graph import InducedGraph

VERTEX_MODES = ("max", "inf")


@dataclass(frozen=True)
class Filtration:
    """An induced graph with the entry value of each of its vertices."""

    graph: InducedGraph
    vertex_value: np.ndarray  # per vertex id; meaningful where ``present``
    present: np.ndarray  # vertices with at least one edge, the only ones in the complex

    @cached_property
    def vertex_order(self) -> np.ndarray:
        """Ids of the vertices in the complex, in entry order."""
        ids = np.flatnonzero(self.present)
        return ids[np.lexsort((ids, -self.vertex_value[ids]))]

    @cached_property
    def edge_order(self) -> np.ndarray:
        """Edge indices in entry order (a stable sort keeps ties in index order)."""
        return np.argsort(-self.graph.phi, kind="stable")

    def simplices(self):
        """(dim, index, value) of every simplex in entry order: vertices before edges at ties."""
        v, e = self.vertex_order, self.edge_order
        dim = np.concatenate([np.zeros(v.size, np.int8), np.ones(e.size, np.int8)])
        index = np.concatenate([v, e])
        value = np.concatenate([self.vertex_value[v], self.graph.phi[e]])
        # Both halves are already in order; a stable sort on value merges them, vertices first.
        merge = np.argsort(-value, kind="stable")
        return dim[merge], index[merge], value[merge]

    def __len__(self) -> int:
        return int(self.present.sum()) + self.graph.n_edges


def strongest_edges(n_vertices: int, src: np.ndarray, dst: np.ndarray, phi: np.ndarray,
                    out: np.ndarray | None = None) -> np.ndarray:
    """Per vertex, the largest φ of its edges (0 without edges), accumulated into ``out``."""
    out = np.zeros(n_vertices) if out is None else out
    np.maximum.at(out, src, phi)
    np.maximum.at(out, dst, phi)
    return out


def vertex_values(vertices, strongest: np.ndarray) -> np.ndarray:
    """Entry value of each vertex: the "max" or "inf" mode, or an array given by the user.

    ``strongest`` is each vertex's largest edge φ (0 where it has no edge). A user's array must
    also pass ``check_vertex_values`` against every edge.
    """
    if isinstance(vertices, str):
        if vertices not in VERTEX_MODES:
            raise ValueError(f"vertices must be one of {VERTEX_MODES} or an array, got {vertices!r}")
        return np.full(strongest.shape, np.inf) if vertices == "inf" else strongest
    values = np.asarray(vertices, dtype=np.float64)
    if values.shape != strongest.shape:
        raise ValueError(f"vertex values must have shape {strongest.shape}, got {values.shape}")
    return values


def check_vertex_values(values: np.ndarray, src: np.ndarray, dst: np.ndarray, phi: np.ndarray) -> None:
    """Refuse vertex values under which an edge would enter before one of its vertices (or that
    are NaN, which enter nowhere)."""
    late = ~((values[src] >= phi) & (values[dst] >= phi))
    if late.any():
        e = int(np.flatnonzero(late)[0])
        raise InvalidFiltrationError(
            f"{int(late.sum())} edge(s) would enter before one of their vertices, e.g. edge "
            f"{src[e]} -> {dst[e]} at φ = {phi[e]:g} with vertex values "
            f"{values[src[e]]:g} and {values[dst[e]]:g}; in a superlevel filtration a "
            "vertex's value must be at least the φ of each of its edges"
        )


def superlevel_filtration(graph: InducedGraph, vertices="max") -> Filtration:
    """The filtration of ``graph``; ``vertices`` is "max", "inf" or an array of vertex values.

    An array of values gives each vertex of the graph its own entry value; it is refused when an
    edge would enter before one of its vertices (value below the edge's φ).
    """
    strongest = strongest_edges(graph.n_vertices, graph.src, graph.dst, graph.phi)
    values = vertex_values(vertices, strongest)
    check_vertex_values(values, graph.src, graph.dst, graph.phi)
    return Filtration(graph, values, strongest > 0)
