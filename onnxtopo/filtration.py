"""Stage 5: the superlevel filtration of an induced graph.

Strongest edges enter first. A vertex enters with its strongest incident edge (value = the
maximum φ over its edges) unless all vertices are present from the start (value +inf, as in
Lacombe et al.'s "Topological Uncertainty"); vertices without edges are not in the complex.
The entry order is fixed here, ties included, so every engine sees the same filtration:
decreasing value, then vertices before edges, then by vertex id or edge index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InvalidFiltrationError
from .graph import InducedGraph

VERTEX_MODES = ("max", "inf")


@dataclass(frozen=True)
class Filtration:
    """Simplices in entry order: ``dim`` 0 (``index`` is a vertex id) or 1 (an edge index)."""

    graph: InducedGraph
    dim: np.ndarray
    index: np.ndarray
    value: np.ndarray

    def __len__(self) -> int:
        return len(self.dim)


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
    vertex_ids = np.flatnonzero(present)
    dim = np.concatenate([np.zeros(vertex_ids.size, np.int8), np.ones(graph.n_edges, np.int8)])
    index = np.concatenate([vertex_ids, np.arange(graph.n_edges)])
    value = np.concatenate([values[vertex_ids], graph.phi])
    order = np.lexsort((index, dim, -value))
    return Filtration(graph, dim[order], index[order], value[order])
