"""Stage 6: persistence diagrams and the persistent subgraph.

Two engines give the same results, point for point and ties included: ``forest``, exact and fast,
streams the edges through a maximum spanning forest; ``dionysus`` runs dionysus's general
boundary-matrix reduction and serves as the oracle.

Diagrams are numpy arrays of shape (n, 2) holding (birth, death) with birth ≥ death (superlevel
values, i.e. φ); essential classes die at +inf; points with birth == death are dropped, as
dionysus's ``init_diagrams`` drops them. Rows are sorted by decreasing birth, then death.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .diagrams import sort_diagram, total_persistence
from .filtration import Filtration, check_vertex_values, vertex_values

#: Edges gathered before they are reduced to a spanning forest: bounds the forest engine's memory
#: (24 bytes per gathered edge; two chunks are held while one is reduced and the next gathered)
#: while keeping reductions few.
DEFAULT_CHUNK_EDGES = 1 << 24
#: A Filter-Kruskal round reduces the heaviest max(FILTER_BATCH_MIN, min(FILTER_EDGES_PER_VERTEX ×
#: vertices, edges of the reduction // FILTER_HEAVY_SHARE)) edges at once: enough to connect most
#: vertices, few enough to sort quickly. A chunk of a large CNN touches a small part of its
#: vertices: there, a twentieth of the chunk's edges connects them (ResNet-18: half the CPU time
#: of sorting and joining as many edges as the graph has vertices).
FILTER_BATCH_MIN = 1024
FILTER_EDGES_PER_VERTEX = 1
FILTER_HEAVY_SHARE = 20
#: Components left after a reduction's heavy edges are joined, up to which its lighter edges are
#: read once into a table of each pair of components' first crossing edge (CCFF leaves 2 to 20)
#: instead of being filtered and joined in Filter-Kruskal rounds (which, on the graphs where
#: tens of thousands of light edges cross, took several passes).
PAIR_TABLE_COMPONENTS = 64
#: A block read in place first makes room for 1/IN_PLACE_WRITTEN_SHARE of its edges (plus
#: FILTER_BATCH_MIN) in the passes that write edges out (see ``_InPlace``).
IN_PLACE_WRITTEN_SHARE = 16
#: φ values sampled to choose a Filter-Kruskal pivot.
PIVOT_SAMPLE = 1024
#: A step reduced on its own (``step_forest``) writes out about STEP_HEAVY_PER_VERTEX edges per
#: vertex it touches in its first pass, from a pivot drawn from STEP_PIVOT_SAMPLE candidate edges
#: (a large sample: the share kept is often below 1 %).
STEP_HEAVY_PER_VERTEX = 2
STEP_PIVOT_SAMPLE = 1 << 16
_SMALLEST = np.nextafter(0.0, 1.0)  # a pivot that keeps every edge (φ > 0)


class ForestBlock(NamedTuple):
    """The maximum spanning forest of ``n_edges`` consecutive edges of the stream, in place of
    those edges: its edges' src, dst, φ, and ``index``, each one's position among the n_edges."""

    src: np.ndarray
    dst: np.ndarray
    phi: np.ndarray
    index: np.ndarray
    n_edges: int


class _Stored(NamedTuple):
    """Edges held in arrays, as the compiled passes take them: (src, dst, phi, index, first),
    index empty for a block of the stream whose edges' indices run from ``first``."""

    src: np.ndarray
    dst: np.ndarray
    phi: np.ndarray
    index: np.ndarray
    first: int

    @property
    def size(self) -> int:
        return self.src.size

    def sample(self, stride: int) -> np.ndarray:
        return self.phi[::stride]

    def heavy(self, pivot, strongest, first_edge) -> tuple:
        from . import _compiled

        return _compiled.scan_block(*self, pivot, strongest, first_edge)

    def light(self, pivot, label) -> tuple:
        from . import _compiled

        return _compiled.filter_block(*self, pivot, label)

    def crossing(self, component, n_components, best_phi, best_edge) -> None:
        from . import _compiled

        _compiled.first_crossing_edges(*self, component, n_components, best_phi, best_edge)


def _read_in_place(block) -> bool:
    """Whether a block of the stream is read in place (has the passes ``_InPlace`` calls)."""
    return hasattr(block, "crossing")


class _InPlace(NamedTuple):
    """A block read in place (see ``forest_persistence``) whose edges' indices run from ``first``:
    the ``_Stored`` passes, computed by its own compiled loops from the step's weights and
    activations."""

    block: object
    first: int

    @property
    def size(self) -> int:
        return self.block.n_edges

    def sample(self, stride: int) -> np.ndarray:
        return self.block.sample_edges(-(-self.size // stride))

    def heavy(self, pivot, strongest, first_edge) -> tuple:
        capacity = self._capacity()
        edges, found, _ = self.block.heavy(pivot, capacity, strongest, first_edge, self.first)
        if found > capacity:  # again, with room for all: a repeated pass finds the same first edges
            edges, _, _ = self.block.heavy(pivot, found, strongest, first_edge, self.first)
        return edges

    def light(self, pivot, label) -> tuple:
        capacity = self._capacity()
        edges, found = self.block.light(_SMALLEST, pivot, label, capacity, self.first)
        if found > capacity:
            edges, _ = self.block.light(_SMALLEST, pivot, label, found, self.first)
        return edges

    def crossing(self, component, n_components, best_phi, best_edge) -> None:
        self.block.crossing(self.first, component, n_components, best_phi, best_edge)

    def _capacity(self) -> int:
        """Room for the edges a pass writes: a small share of the block's (the heavy ones are
        about FILTER_EDGES_PER_VERTEX per vertex in all), all of them in the rare second run."""
        return min(self.size, FILTER_BATCH_MIN + self.size // IN_PLACE_WRITTEN_SHARE)


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
        return total_persistence(self.h0)


def _assemble(value: np.ndarray, born: np.ndarray, killers: tuple, essential: np.ndarray,
              h1: np.ndarray | None, n_simplices: int, n_edges: int) -> Persistence:
    """A result from an engine's pairing.

    ``killers`` = (src, dst, phi, edge index) of the edges that kill an H0 class, in entry order,
    ``born`` the vertex whose class each kills, ``essential`` the vertices whose classes never
    die, ``h1`` the H1 diagram (from ``_h1_diagram``), or None when H1 was not asked for.
    Every edge outside the forest starts an H1 class that never dies (a graph has no
    2-simplices); every H1 point dying at +inf, births in decreasing order are sort_diagram's order.
    """
    src, dst, phi, edge = killers
    finite = np.stack([value[born], phi], axis=1)
    h0 = np.concatenate([finite[finite[:, 0] != finite[:, 1]],  # zero-persistence points dropped
                         np.stack([value[essential], np.full(essential.size, np.inf)], axis=1)])
    subgraph = PersistentSubgraph(src=src, dst=dst, phi=phi, birth=value[born], edge=edge)
    return Persistence(sort_diagram(h0), h1, subgraph, n_simplices, n_edges)


def _reduce(forest: tuple, pending: list, n_vertices: int, batch: int, ordered: bool = True) -> tuple:
    """The maximum spanning forest of ``forest``'s edges and the ``pending`` blocks, as
    (src, dst, phi, index), in entry order if ``ordered`` (a forest carried to the next
    reduction need not be), and the largest φ of each vertex's edges among them.

    Each block is read twice, in two compiled passes, and never copied: the first finds each
    vertex's first edge in entry order (Borůvka's step) and keeps the edges above a pivot
    chosen from a sample, about ``batch`` of them, which Kruskal then joins; the second keeps
    the lighter edges that still join two components, usually few, which Filter-Kruskal rounds
    finish. Forest edges are found out of order (Borůvka's first) and sorted at the end.
    """
    from . import _compiled

    parts = [_Stored(*forest, 0), *pending] if forest[0].size else pending
    n_edges = sum(part.size for part in parts)
    batch = max(FILTER_BATCH_MIN, min(batch, n_edges // FILTER_HEAVY_SHARE))
    pivot = -np.inf
    if n_edges > 2 * batch:
        stride = n_edges // PIVOT_SAMPLE + 1
        pivot = _pivot(np.concatenate([part.sample(stride) for part in parts]), n_edges, batch)
    strongest = np.zeros(n_vertices)
    first_edge = np.zeros((3, n_vertices), np.int64)
    heavy = [part.heavy(pivot, strongest, first_edge) for part in parts]
    parent = np.arange(n_vertices)
    found = [_compiled.join_first_edges(strongest, first_edge, parent),
             *_join_in_entry_order(_joined(heavy), parent, batch)]
    if pivot > -np.inf:
        found += _join_light(parts, pivot, parent, strongest, batch)
    forest = _joined(found)
    return (_compiled.take(forest, _entry_order(forest[2], forest[3])) if ordered else forest), strongest


def _join_light(parts: list, pivot: float, parent: np.ndarray, strongest: np.ndarray, batch: int) -> list:
    """The edges of ``parts`` lighter than ``pivot`` that join the forest in ``parent``, which
    already holds every heavier edge (so those join no two components).

    Few components left (up to PAIR_TABLE_COMPONENTS among the vertices with an edge, as on a
    small network): one pass finds each pair's first crossing edge in entry order, the only one
    of the pair that can join, and Kruskal joins those; none when one component is left. Many:
    the crossing edges are filtered out and joined in Filter-Kruskal rounds.
    """
    from . import _compiled

    label = _compiled.labels(parent)
    component, n_components = _compiled.component_ids(label, strongest, PAIR_TABLE_COMPONENTS)
    if n_components > PAIR_TABLE_COMPONENTS:
        return _join_in_entry_order(_joined([part.light(pivot, label) for part in parts]), parent, batch)
    if n_components < 2:
        return []
    best_phi, best_edge = np.zeros(n_components * n_components), np.zeros((3, n_components * n_components), np.int64)
    for part in parts:
        part.crossing(component, n_components, best_phi, best_edge)
    held = np.flatnonzero(best_phi)
    first = (best_edge[1, held], best_edge[2, held], best_phi[held], best_edge[0, held])
    return [_compiled.kruskal(first, _entry_order(first[2], first[3]), parent)]


def _join_in_entry_order(edges: tuple, parent: np.ndarray, batch: int) -> list:
    """Kruskal over ``edges``, continuing the forest in ``parent``: the edges that join it.

    Filter-Kruskal rounds: each sorts about ``batch`` of the heaviest edges left and joins
    them; a lighter edge whose endpoints are then connected closes a cycle of edges that enter
    before it and can never join, so only the lighter edges between components go on. Heavy
    means φ ≥ the pivot, light φ < it: ties never straddle a round. ``parent`` may hold only
    edges that enter before all of ``edges`` or are in the forest whatever comes (Borůvka's).
    """
    from . import _compiled

    found = []
    while edges[0].size:
        phi = edges[2]
        if phi.size <= 2 * batch:
            found.append(_compiled.kruskal(edges, _entry_order(phi, edges[3]), parent))
            break
        pivot = _pivot(phi[::phi.size // PIVOT_SAMPLE + 1], phi.size, batch)
        heavy = _compiled.take(edges, np.flatnonzero(phi >= pivot))
        found.append(_compiled.kruskal(heavy, _entry_order(heavy[2], heavy[3]), parent))
        edges = _compiled.filter_block(*edges, 0, pivot, _compiled.labels(parent))
    return found


def _pivot(sample: np.ndarray, n_edges: int, batch: int) -> float:
    """A φ with about ``batch`` of ``n_edges`` edges at or above it, from a sample of their φ."""
    sample = np.sort(sample)
    return sample[sample.size - 1 - (sample.size * batch) // n_edges]


def _entry_order(values: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """Positions of positive ``values`` in entry order: decreasing, ties by ``tiebreak`` (edge
    index, vertex id) increasing. Integer keys packed from the values' bit patterns go through
    numpy's sort (vectorized, far faster than any argsort); the rare ties left are settled."""
    from . import _compiled

    return _compiled.settle_ties(np.sort(_compiled.packed_keys(values)), values, tiebreak)


def _joined(edge_sets: list) -> tuple:
    return edge_sets[0] if len(edge_sets) == 1 else tuple(np.concatenate(column) for column in zip(*edge_sets))


def _stream_forest(blocks, n_vertices: int, chunk_edges: int):
    """The maximum spanning forest of a stream of edge blocks (see ``_reduce``), the largest φ
    of each vertex's edges, and the number of edges.

    Blocks are gathered into chunks of about ``chunk_edges`` edges. While a full chunk is
    reduced, in a second thread (the compiled loops release the GIL), the next one is gathered:
    producing edges and reducing them use both cores, and at most two chunks are held.
    """
    from . import _compiled

    batch = max(FILTER_BATCH_MIN, FILTER_EDGES_PER_VERTEX * n_vertices)
    reduced = ((np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64)),
               np.zeros(n_vertices))
    pending, pending_edges, n_edges, running = [], 0, 0, None
    with ThreadPoolExecutor(max_workers=1) as reducer:  # its thread starts with a second chunk
        for block in blocks:
            if isinstance(block, ForestBlock):
                part = _Stored(block.src, block.dst, block.phi, block.index + n_edges, 0)
            elif _read_in_place(block):
                part = _InPlace(block, n_edges)
            else:
                part = _Stored(*block, _compiled.NO_INDEX, n_edges)
            block_edges = block.n_edges if isinstance(block, ForestBlock) else part.size
            if pending and pending_edges + part.size > chunk_edges:
                reduced = running.result() if running else reduced
                running = reducer.submit(_reduce, reduced[0], pending, n_vertices, batch, False)
                pending, pending_edges = [], 0
            pending.append(part)
            n_edges += block_edges
            pending_edges += part.size
        reduced = running.result() if running else reduced
    if pending:
        # A vertex's strongest edge is in the forest (it is the heaviest edge across the cut
        # between the vertex and the rest), so the last reduction sees every vertex's.
        reduced = _reduce(reduced[0], pending, n_vertices, batch)
    return (*reduced, n_edges)


def step_forest(passes, n_local: int, candidates: int) -> ForestBlock | None:
    """The maximum spanning forest of one edge step's edges, in the step's local vertex ids,
    computed by the step's own compiled ``passes`` without writing out every edge; None when
    too many edges tie at the pivot (then the step's edges are to be streamed).

    ``passes`` reads the step's edges in stream order (``candidates`` of them before φ = 0 ones
    are dropped): ``sample(n)`` the φ of n candidates drawn at random (0 for a dropped one),
    ``heavy(pivot, capacity, strongest, first_edge)`` each local vertex's first edge in entry
    order and the edges with φ ≥ pivot (at most ``capacity``) as ``_compiled.conv_heavy_edges``
    returns them, ``light(low, high, label, capacity)`` the edges with low ≤ φ < high between
    components by root label, likewise. Borůvka's first edges and Kruskal over the heavy edges
    connect most vertices, so the light pass usually writes few edges; where it would write
    more than ``capacity``, lighter bands come in later passes (``_light_forest``). The forest
    is exact, ties broken by position as everywhere.
    """
    from . import _compiled

    wanted = max(1, int(STEP_HEAVY_PER_VERTEX * n_local))
    sample = passes.sample(STEP_PIVOT_SAMPLE)
    sample = sample[sample > 0]
    estimate = candidates * sample.size // STEP_PIVOT_SAMPLE  # edges with φ > 0
    every = not (estimate > 2 * wanted and sample.size)  # few edges: all of them are heavy
    pivot = _SMALLEST if every else _pivot(sample, estimate, wanted)
    capacity = 3 * wanted + FILTER_BATCH_MIN
    strongest, first_edge = np.zeros(n_local), np.zeros((3, n_local), np.int64)
    heavy, n_heavy, n_edges = passes.heavy(pivot, capacity, strongest, first_edge)
    if n_heavy > capacity:
        return None
    parent = np.arange(n_local)
    batch = max(FILTER_BATCH_MIN, n_local)
    found = [_compiled.join_first_edges(strongest, first_edge, parent),
             *_join_in_entry_order(heavy, parent, batch)]
    if not every:
        found += _light_forest(passes, pivot, parent, batch, batch)  # bands of about a forest's size
    return ForestBlock(*_joined(found), n_edges)


def _light_forest(passes, pivot, parent, capacity, batch: int) -> list:
    """The forest edges among a step's edges lighter than ``pivot``, continuing ``parent`` (which
    holds every heavier edge's joins), from ``passes.light`` in bands of φ: a band [low, high)
    is written once it holds at most ``capacity`` edges between components, its low end raised
    from the φ of the edges written when it would hold more (a few small components touching
    most edges: the first conv of a CNN on an image). Kruskal over each band in entry order
    continues the forest exactly, the lighter bands coming after."""
    from . import _compiled

    found, high = [], pivot
    while high > _SMALLEST:
        label, low = _compiled.labels(parent), _SMALLEST
        edges, n_light = passes.light(low, high, label, capacity)
        while n_light > capacity:
            raised = _pivot(edges[2], n_light, capacity // 2)
            if raised <= low:  # ties all the way down: write them all
                edges, n_light = passes.light(low, high, label, n_light)
                break
            low = raised
            edges, n_light = passes.light(low, high, label, capacity)
        found += _join_in_entry_order(edges, parent, batch)
        high = low
    return found


def forest_persistence(blocks, n_vertices: int, *, vertices="max", h1: bool = False,
                       chunk_edges: int = DEFAULT_CHUNK_EDGES) -> Persistence:
    """Exact persistence of a graph filtration, streaming its edges through a spanning forest.

    ``blocks`` yields (src, dst, phi) arrays of edges (φ > 0) in graph order; an edge's index is
    its position in that stream. A ``ForestBlock`` may stand for a run of consecutive edges (its
    forest, each edge with its position in the run; not with ``h1`` or given vertex values), and
    a block read in place (as ``rules.op_gemm.DenseEdges``; not with given vertex values) for
    edges computed by its own compiled passes whenever they are read: ``n_edges``,
    ``sample_edges(n)``, ``heavy``/``light`` as ``step_forest``'s passes (with the index of its
    first edge), ``crossing`` as ``_compiled.first_crossing_edges`` and ``kept_phi()``, the array
    its next heavy pass fills with every φ (for H1). For a 1-dimensional complex, the edges that
    kill H0 classes are the maximum spanning forest Kruskal builds in entry order, and the forest
    of a union of edge sets is the forest of the union of their forests: edges are gathered into
    chunks of about ``chunk_edges``, each reduced with the forest so far, so memory stays
    bounded. Only the forest's edges (fewer than the vertices) then go through a union-find,
    which applies the elder rule by entry position exactly as the boundary-matrix reduction
    does. With ``h1``, the φ of every edge is kept (8 bytes per edge, then 16 in the diagram).
    """
    from . import _compiled  # numba: imported (its compiled code loaded from disk) on first use

    given = None if isinstance(vertices, str) else vertex_values(vertices, np.zeros(n_vertices))
    all_phi = []

    def checked(blocks):
        for block in blocks:
            if isinstance(block, ForestBlock):
                if given is not None or h1:
                    raise ValueError("a ForestBlock holds a forest, not every edge: given vertex values cannot be "
                                     "checked against it, nor H1 computed; pass the edges themselves")
                yield block
                continue
            if _read_in_place(block):
                if given is not None:
                    raise ValueError("a block read in place cannot be checked against given vertex values; pass "
                                     "the edges themselves")
                if h1:
                    all_phi.append(block.kept_phi())
                yield block
                continue
            src, dst, phi = block
            # One array type per argument, so that the compiled code has one version to load.
            src, dst = np.ascontiguousarray(src, np.int64), np.ascontiguousarray(dst, np.int64)
            phi = np.ascontiguousarray(phi, np.float64)
            if given is not None:
                check_vertex_values(given, src, dst, phi)
            if h1:
                all_phi.append(phi)
            yield src, dst, phi

    forest, strongest, n_edges = _stream_forest(checked(blocks), n_vertices, chunk_edges)
    value = vertex_values(vertices, strongest) if given is None else given
    in_complex = np.flatnonzero(strongest > 0)
    in_complex = in_complex[_entry_order(value[in_complex], in_complex)]
    entry = np.empty(n_vertices, dtype=np.int64)
    entry[in_complex] = np.arange(in_complex.size)
    born, eldest = _compiled.elder_pairing(forest[0], forest[1], entry, n_vertices)
    h1_diagram = _h1_diagram(all_phi, forest[3], n_edges) if h1 else None
    essential = in_complex[eldest[in_complex] == in_complex]  # each component's eldest vertex
    return _assemble(value, born, forest, essential, h1_diagram, in_complex.size + n_edges, n_edges)


def _h1_diagram(phi_blocks: list, forest_edges: np.ndarray, n_edges: int) -> np.ndarray:
    """The H1 diagram: (φ, +inf) for each edge outside the forest (at positions ``forest_edges``
    of the stream whose φ ``phi_blocks`` hold), by decreasing φ. The points are the transposed,
    reversed view of a (2, n) array whose first row is sorted in place and second filled with
    +inf: no pass writes rows of two values, and the forest's edges, set below every φ, are
    sorted to the front and cut off."""
    points = np.empty((2, n_edges))
    births = points[0]
    if phi_blocks:
        np.concatenate(phi_blocks, out=births)
    births[forest_edges] = -1.0
    births.sort()
    points[1] = np.inf
    return points[:, forest_edges.size:][:, ::-1].T


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
    h1_diagram = None
    if h1:  # plain numpy, not the forest engine's compiled pass: the oracle stays independent
        outside = np.ones(graph.n_edges, dtype=bool)
        outside[killer] = False
        births = np.sort(graph.phi[outside])[::-1]
        h1_diagram = np.stack([births, np.full(births.size, np.inf)], axis=1)
    killers = (graph.src[killer], graph.dst[killer], graph.phi[killer], killer)
    return _assemble(filtration.vertex_value, born, killers, indices[vertex_positions[~paired]], h1_diagram,
                     len(filtration), graph.n_edges)


ENGINES = ("forest", "dionysus")
