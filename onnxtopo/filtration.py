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


def superlevel_filtration(graph: InducedGraph, vertices="max") -> Filtration:
    """The filtration of ``graph``; ``vertices`` is "max", "inf" or an array of vertex values.

    An array of values gives each vertex of the graph its own entry value; it is refused when an
    edge would enter before one of its vertices (value below the edge's φ).
    """
    present = np.zeros(graph.n_vertices, dtype=bool)
    present[graph.src] = True
    present[graph.dst] = True
    if isinstance(vertices, str):
        if vertices not in VERTEX_MODES:
            raise ValueError(f"vertices must be one of {VERTEX_MODES} or an array, got {vertices!r}")
        if vertices == "inf":
            values = np.full(graph.n_vertices, np.inf)
        else:
            values = np.zeros(graph.n_vertices)
            np.maximum.at(values, graph.src, graph.phi)
            np.maximum.at(values, graph.dst, graph.phi)
    else:
        values = np.asarray(vertices, dtype=np.float64)
        if values.shape != (graph.n_vertices,):
            raise ValueError(f"vertex values must have shape ({graph.n_vertices},), got {values.shape}")
        late = (values[graph.src] < graph.phi) | (values[graph.dst] < graph.phi)
        if late.any():
            e = int(np.flatnonzero(late)[0])
            raise InvalidFiltrationError(
                f"{int(late.sum())} edge(s) would enter before one of their vertices, e.g. edge "
                f"{graph.src[e]} -> {graph.dst[e]} at φ = {graph.phi[e]:g} with vertex values "
                f"{values[graph.src[e]]:g} and {values[graph.dst[e]]:g}; in a superlevel filtration a "
                "vertex's value must be at least the φ of each of its edges"
            )
    return Filtration(graph, values, present)
