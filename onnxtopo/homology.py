"""Stage 6: persistence diagrams and the persistent subgraph.

Two engines give the same results, point for point and ties included: ``forest``, exact and fast,
streams the edges through a maximum spanning forest; ``dionysus`` runs dionysus's general
boundary-matrix reduction and serves as the oracle.

Diagrams are numpy arrays of shape (n, 2) holding (birth, death) with birth ≥ death (superlevel
values, i.e. φ); essential classes die at +inf; points with birth == death are dropped, as
dionysus's ``init_diagrams`` drops them. Rows are sorted by decreasing birth, then death.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .filtration import Filtration, check_vertex_values, strongest_edges, vertex_values

#: Edges gathered before they are reduced to a spanning forest: bounds the forest engine's memory
#: (about 140 bytes per gathered edge at the peak of a reduction) while keeping reductions few.
DEFAULT_CHUNK_EDGES = 1 << 24
#: A Filter-Kruskal round reduces the heaviest max(FILTER_BATCH_MIN, FILTER_EDGES_PER_VERTEX ×
#: vertices) edges at once: enough to connect most vertices, few enough to sort quickly.
FILTER_BATCH_MIN = 1024
FILTER_EDGES_PER_VERTEX = 1


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
    n_simplices: int  # vertices and edges in the complex
    n_edges: int

    @property
    def total_persistence(self) -> float:
        """Sum of birth - death over the finite points of H0."""
        finite = np.isfinite(self.h0).all(axis=1)
        return float((self.h0[finite, 0] - self.h0[finite, 1]).sum())


def sort_diagram(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return points[np.lexsort((-points[:, 1], -points[:, 0]))]


def _assemble(value: np.ndarray, born: np.ndarray, killers: tuple, essential: np.ndarray,
              h1_phi: np.ndarray | None, n_simplices: int, n_edges: int) -> Persistence:
    """A result from an engine's pairing.

    ``killers`` = (src, dst, phi, edge index) of the edges that kill an H0 class, in entry order,
    ``born`` the vertex whose class each kills, ``essential`` the vertices whose classes never
    die, ``h1_phi`` the φ of every other edge (each starts a never-dying H1 class, a graph having
    no 2-simplices), or None when H1 was not asked for.
    """
    src, dst, phi, edge = killers
    finite = np.stack([value[born], phi], axis=1)
    h0 = np.concatenate([finite[finite[:, 0] != finite[:, 1]],  # zero-persistence points dropped
                         np.stack([value[essential], np.full(essential.size, np.inf)], axis=1)])
    h1 = None if h1_phi is None else sort_diagram(np.stack([h1_phi, np.full(h1_phi.size, np.inf)], axis=1))
    subgraph = PersistentSubgraph(src=src, dst=dst, phi=phi, birth=value[born], edge=edge)
    return Persistence(sort_diagram(h0), h1, subgraph, n_simplices, n_edges)


def _ranked_forest(src, dst, phi, edge, n_vertices, subset):
    """Maximum spanning forest of the edges ``subset`` (indices), in entry order.

    Ranking the edges by entry order (φ decreasing, then edge index) makes the forest unique,
    so scipy's compiled Kruskal finds exactly the one a reduction in entry order finds, ties
    included.
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import minimum_spanning_tree

    order = subset[np.lexsort((edge[subset], -phi[subset]))]
    rank = np.arange(1, order.size + 1, dtype=np.float64)  # exact in float64; 0 would mean "no edge"
    u, v = src[order], dst[order]
    shape = (n_vertices, n_vertices)
    tree = minimum_spanning_tree(csr_matrix((rank, (np.minimum(u, v), np.maximum(u, v))), shape=shape))
    return order[np.sort(tree.data).astype(np.int64) - 1]


def _spanning_forest(src, dst, phi, edge, n_vertices):
    """Maximum spanning forest of many edges, as indices in entry order (Filter-Kruskal).

    Sorting every edge would dominate the cost, while few edges make it into the forest. So the
    heaviest edges (a few per vertex) are reduced first; a lighter edge whose endpoints that
    forest already connects closes a cycle of heavier edges and can never join, so only the
    lighter edges between its components go on to the next round. Ties never straddle a round
    (heavy means φ ≥ the pivot, light φ < it), which keeps the result exact.
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    forest = np.empty(0, dtype=np.int64)
    rest = np.arange(src.size)
    batch = max(FILTER_BATCH_MIN, FILTER_EDGES_PER_VERTEX * n_vertices)
    while rest.size:
        if rest.size <= 2 * batch:
            return _ranked_forest(src, dst, phi, edge, n_vertices, np.concatenate([forest, rest]))
        weights = phi[rest]
        heavy = weights >= np.partition(weights, weights.size - batch)[weights.size - batch]
        forest = _ranked_forest(src, dst, phi, edge, n_vertices, np.concatenate([forest, rest[heavy]]))
        light = rest[~heavy]
        links = csr_matrix((np.ones(forest.size), (src[forest], dst[forest])), shape=(n_vertices, n_vertices))
        _, label = connected_components(links, directed=False)
        rest = light[label[src[light]] != label[dst[light]]]
    return forest


def forest_persistence(blocks, n_vertices: int, *, vertices="max", h1: bool = False,
                       chunk_edges: int = DEFAULT_CHUNK_EDGES) -> Persistence:
    """Exact persistence of a graph filtration, streaming its edges through a spanning forest.

    ``blocks`` yields (src, dst, phi) arrays of edges (φ > 0) in graph order; an edge's index is
    its position in that stream. For a 1-dimensional complex, the edges that kill H0 classes are
    the maximum spanning forest Kruskal builds in entry order, and the forest of a union of edge
    sets is the forest of the union of their forests: edges are gathered into chunks of about
    ``chunk_edges``, each reduced with the forest so far, so memory stays bounded. Only the
    forest's edges (fewer than the vertices) then go through a union-find, which applies the
    elder rule by entry position exactly as the boundary-matrix reduction does. With ``h1``,
    the φ of every edge is kept (8 bytes per edge).
    """
    given = None if isinstance(vertices, str) else vertex_values(vertices, np.zeros(n_vertices))
    empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64))
    forest, pending, pending_edges, n_edges, all_phi = empty, [], 0, 0, []

    def reduce(forest, pending):
        merged = tuple(np.concatenate(parts) for parts in zip(forest, *pending))
        keep = _spanning_forest(*merged, n_vertices)
        return tuple(part[keep] for part in merged)

    for src, dst, phi in blocks:
        if given is not None:
            check_vertex_values(given, src, dst, phi)
        if pending and pending_edges + src.size > chunk_edges:
            forest, pending, pending_edges = reduce(forest, pending), [], 0
        pending.append((src, dst, phi, np.arange(n_edges, n_edges + src.size)))
        n_edges += src.size
        pending_edges += src.size
        if h1:
            all_phi.append(phi)
    forest = reduce(forest, pending)
    del pending

    # A vertex's strongest edge is always in the forest (it is the heaviest edge across the cut
    # between the vertex and the rest), so the forest alone gives every vertex value.
    strongest = strongest_edges(n_vertices, forest[0], forest[1], forest[2])
    present = strongest > 0
    value = vertex_values(vertices, strongest) if given is None else given
    in_complex = np.flatnonzero(present)
    in_complex = in_complex[np.lexsort((in_complex, -value[in_complex]))]  # vertex entry order
    entry = np.empty(n_vertices, dtype=np.int64)
    entry[in_complex] = np.arange(in_complex.size)
    # Plain lists: the loop touches single elements, where lists beat numpy arrays. It runs once
    # per forest edge, i.e. fewer times than there are vertices.
    parent = list(range(n_vertices))
    oldest = list(range(n_vertices))  # per root: the component's earliest vertex, carrying its class
    entry_l = entry.tolist()
    born = np.empty(forest[0].size, dtype=np.int64)

    def find(v):
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for k, (u, w) in enumerate(zip(forest[0].tolist(), forest[1].tolist())):
        ru, rw = find(u), find(w)
        elder, younger = (ru, rw) if entry_l[oldest[ru]] < entry_l[oldest[rw]] else (rw, ru)
        born[k] = oldest[younger]
        parent[younger] = elder

    roots = in_complex[np.array(parent, dtype=np.int64)[in_complex] == in_complex]
    h1_phi = None
    if h1:
        outside = np.ones(n_edges, dtype=bool)
        outside[forest[3]] = False
        h1_phi = np.concatenate(all_phi)[outside] if all_phi else np.empty(0)
    return _assemble(value, born, forest, np.array(oldest, dtype=np.int64)[roots], h1_phi,
                     in_complex.size + n_edges, n_edges)


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
    h1_phi = None
    if h1:
        outside = np.ones(graph.n_edges, dtype=bool)
        outside[killer] = False
        h1_phi = graph.phi[outside]
    killers = (graph.src[killer], graph.dst[killer], graph.phi[killer], killer)
    return _assemble(filtration.vertex_value, born, killers, indices[vertex_positions[~paired]], h1_phi,
                     len(filtration), graph.n_edges)


ENGINES = ("forest", "dionysus")
