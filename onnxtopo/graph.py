"""Stage 4: the graph one input induces, as a sparse matrix over all vertices.

Vertex ids are global: layer ``l`` holds ids ``offset_l .. offset_l + size_l - 1`` in row-major
order of its tensor. An edge u -> v weighs φ(u, v) = |w_{u->v} · h_u|; edges with φ = 0 are not
in the graph.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import scipy.sparse

from .plan import Plan
from .rules import PATTERN_CACHE_EDGES, EdgeRule


@dataclass(frozen=True)
class InducedGraph:
    """The weighted layered graph of one input.

    ``src``, ``dst`` and ``phi`` list the edges (global vertex ids, weights), block by block in
    plan order; ``step`` gives each edge's edge step. ``layers`` describes the vertex layers.
    """

    layers: tuple
    src: np.ndarray
    dst: np.ndarray
    phi: np.ndarray
    step: np.ndarray

    @classmethod
    def from_edges(cls, layer_shapes, src, dst, phi) -> InducedGraph:
        """A graph built by hand: layers of the given shapes, edges between global vertex ids.

        Edges with φ = 0 are dropped, as in induced graphs; ``phi`` must be finite and ≥ 0, and
        the graph simple: no loops, at most one edge between two vertices.
        """
        from .plan import Layer

        shapes = [tuple(np.atleast_1d(s).tolist()) for s in layer_shapes]
        sizes = [int(np.prod(s)) for s in shapes]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
        layers = tuple(Layer(i, f"layer{i}", s, int(o)) for i, (s, o) in enumerate(zip(shapes, offsets)))
        src, dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
        phi = np.asarray(phi, dtype=np.float64)
        if not (src.shape == dst.shape == phi.shape) or src.ndim != 1:
            raise ValueError("src, dst and phi must be 1-D arrays of the same length")
        n = sum(sizes)
        if src.size and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n):
            raise ValueError(f"vertex ids must lie in [0, {n})")
        if not np.isfinite(phi).all() or (phi < 0).any():
            raise ValueError("phi must be finite and non-negative")
        if (src == dst).any():
            raise ValueError("the graph has a loop (an edge from a vertex to itself)")
        pairs = np.unique(np.stack([np.minimum(src, dst), np.maximum(src, dst)], axis=1), axis=0)
        if len(pairs) != len(src):
            raise ValueError("the graph has parallel edges (two edges between the same vertices)")
        keep = phi > 0
        return cls(layers, src[keep], dst[keep], phi[keep], np.zeros(int(keep.sum()), dtype=np.int32))

    @property
    def n_vertices(self) -> int:
        last = self.layers[-1]
        return last.offset + last.size

    @property
    def n_edges(self) -> int:
        return len(self.src)

    @property
    def matrix(self) -> scipy.sparse.csr_matrix:
        """(n_vertices × n_vertices) matrix with φ(u, v) at [u, v]."""
        shape = (self.n_vertices, self.n_vertices)
        return scipy.sparse.csr_matrix((self.phi, (self.src, self.dst)), shape=shape)

    def locate(self, vertex_ids) -> list[tuple[int, str, tuple[int, ...]]]:
        """(layer index, tensor name, multi-index within the layer's tensor) of each vertex."""
        ids = np.asarray(vertex_ids, dtype=np.int64).ravel()
        if ids.size and (ids.min() < 0 or ids.max() >= self.n_vertices):
            raise IndexError(f"vertex ids must lie in [0, {self.n_vertices})")
        offsets = np.array([layer.offset for layer in self.layers])
        layer_ids = np.searchsorted(offsets, ids, side="right") - 1
        located = [None] * ids.size
        for li in np.unique(layer_ids):
            layer = self.layers[li]
            rows = np.flatnonzero(layer_ids == li)
            multi = np.stack(np.unravel_index(ids[rows] - layer.offset, layer.shape), axis=1)
            for row, index in zip(rows, multi.tolist()):
                located[row] = (int(li), layer.tensor, tuple(index))
        return located


def edge_blocks(plan: Plan, activations: dict[str, np.ndarray], sample: int, *,
                threshold: float | None = None, percentile: float | None = None,
                max_edges: int | None = None):
    """Yield the edges of one sample's induced graph as (step index, src, dst, phi) blocks.

    Blocks come in graph order (edge step by edge step, pattern order within a step), each from
    at most ``max_edges`` candidate edges, so a large graph never has to be held at once.
    ``threshold`` keeps edges with φ ≥ threshold. ``percentile`` follows the reference: in each
    edge step, edges with φ strictly above that percentile of |w·h| over the step's candidate
    edges (zero products included) are kept.
    """
    last = plan.layers[-1]
    n_vertices = last.offset + last.size  # as plan.n_vertices, without summing every layer per input
    for i, step in enumerate(plan.steps):
        h = _flat(activations, step.input_tensor, sample)
        context = {name: _flat(activations, name, sample) for name in step.rule.reads}
        cut = None
        if percentile is not None:
            products = [np.abs(v) for _, _, v in step_edges(plan, step, h, context, max_edges, n_vertices,
                                                            keep_zeros=True)]
            cut = np.percentile(np.concatenate(products), percentile)
        for src, dst, phi in _kept_edges(step_edges(plan, step, h, context, max_edges, n_vertices), threshold, cut):
            yield i, src, dst, phi


def _kept_edges(blocks, threshold: float | None = None, cut: float | None = None):
    """(src, dst, φ) of the edges of ``step_edges`` blocks that are in the graph (see ``edge_blocks``)."""
    for src, dst, values in blocks:
        phi = np.abs(values, out=values)  # step_edges makes fresh arrays: no copy needed
        if threshold is None and cut is None and (not phi.size or phi.min() > 0):
            yield src, dst, phi  # the rules drop zero products already: usually nothing to check
            continue
        keep = phi > 0  # False for NaN as for 0: both dropped
        if threshold is not None:
            keep &= phi >= threshold
        if cut is not None:
            keep &= phi > cut
        if keep.all():
            yield src, dst, phi
        else:
            yield src[keep], dst[keep], phi[keep]


def reduced_blocks(plan: Plan, activations: dict[str, np.ndarray], sample: int, *, max_edges: int | None = None,
                   forests: bool = True):
    """``edge_blocks`` (no threshold, no percentile) for the forest engine: (step index, block),
    where a large Conv's or dense layer's block is the ``homology.ForestBlock`` of all its edges,
    reduced without writing them out, two steps at a time in threads (the compiled passes release
    the GIL), if ``forests``; a smaller dense layer's blocks are read in place by the engine
    (``DenseEdges``: never written out either); every other step's blocks are (src, dst, φ) as
    from ``edge_blocks``. The engine's results are the same, byte for byte: the forest of a
    union is the forest of the union of the forests, and each block keeps its edges' positions
    in the stream. Without ``forests`` (for H1), the engine sees every edge.
    """
    from . import _compiled

    last = plan.layers[-1]
    n_vertices = last.offset + last.size
    reducible = [i for i, step in enumerate(plan.steps) if forests and reduces_in_place(step)]
    with ThreadPoolExecutor(max_workers=REDUCING_THREADS) if reducible else nullcontext() as pool:
        running = {}
        for i, step in enumerate(plan.steps):
            while reducible and len(running) < REDUCING_LOOKAHEAD:
                ahead = plan.steps[reducible[0]]
                running[reducible.pop(0)] = pool.submit(step_forest_block, plan, ahead,
                                                        _flat(activations, ahead.input_tensor, sample))
            block = running.pop(i).result() if i in running else None
            if block is not None:
                yield i, block
                continue
            h = _flat(activations, step.input_tensor, sample)
            if step.rule.in_place_blocks is not None and not step.repeats:
                scale = plan.scales.get(step.target, _compiled.NO_SCALE)
                for edges in step.rule.in_place_blocks(h, max_edges, step.input_vertices,
                                                       plan.layers[step.target].offset, scale):
                    yield i, edges
                continue
            context = {name: _flat(activations, name, sample) for name in step.rule.reads}
            for edges in _kept_edges(step_edges(plan, step, h, context, max_edges, n_vertices)):
                yield i, edges


#: Threads reducing large steps in place, each its own step.
REDUCING_THREADS = 2
#: Steps submitted ahead of the one the engine reads: a thread that finishes a step starts the
#: next even while a long one (a first conv on the image) holds up the stream. Each holds its
#: activations until it runs and its forest (fewer edges than its vertices) until it is read.
REDUCING_LOOKAHEAD = 8
#: Steps with fewer candidate edges are streamed: reducing them on their own would not pay.
STEP_FOREST_MIN_CANDIDATES = 1 << 22


def reduces_in_place(step) -> bool:
    """Whether a step's rule can reduce its edges in place (Conv, Gemm, MatMul: ``forest_passes``)
    and should: many edges, and each input neuron once (local ids are input positions)."""
    return getattr(step.rule, "forest_passes", None) is not None and \
        step.rule.candidate_count >= STEP_FOREST_MIN_CANDIDATES and not step.repeats


def step_forest_block(plan: Plan, step, h: np.ndarray):
    """A large step's ForestBlock in global vertex ids (None: stream its edges instead)."""
    from . import _compiled
    from .homology import ForestBlock, step_forest

    if step.reads_constants:
        h = np.where(step.input_vertices >= 0, h, 0.0)  # a constant's product makes no edge
    scale = plan.scales.get(step.target, _compiled.NO_SCALE)
    forest = step_forest(step.rule.forest_passes(h, scale), h.size + plan.layers[step.target].size,
                         step.rule.candidate_count)
    if forest is None:
        return None
    return ForestBlock(step.input_vertices[forest.src], forest.dst - h.size + plan.layers[step.target].offset,
                       forest.phi, forest.index, forest.n_edges)


def _flat(activations, name: str, sample: int) -> np.ndarray:
    return activations[name][sample].reshape(-1).astype(np.float64)


def step_edges(plan: Plan, step, h: np.ndarray, context: dict, max_edges: int | None, n_vertices: int,
                keep_zeros: bool = False):
    """(src, dst, signed ∂v/∂u·h_u) of a step's candidate edges, in global vertex ids, chunk by chunk.

    Products = 0 are dropped before anything else (unless ``keep_zeros``): with ReLU most
    are. Elements of the step's input that are constants (padding) make no edge. Where a neuron
    reaches the same output through several elements (reflect padding, say), the contributions
    make one edge (summed, or the largest for max-type rules: ``repeats_combine``); those steps
    are built whole so that no such pair straddles chunks. Constant affine maps folded into the
    op (``plan.scales``) scale each edge by its target's factor.
    """
    from . import _compiled

    offset = plan.layers[step.target].offset
    scale = plan.scales.get(step.target, _compiled.NO_SCALE)
    rule, limit = step.rule, None if step.repeats else max_edges
    # A rule's own nonzero_edges only skips zero products early (the base class's drops them
    # after computing them all); on a pattern small enough to be kept, the compiled pass below
    # drops them faster, along with the rest. A linear rule's values are computed there too.
    kept = rule.candidate_count <= min(limit or PATTERN_CACHE_EDGES, PATTERN_CACHE_EDGES)
    compiled = rule.global_nonzero_edges is not None and (not kept or rule.prefer_global_edges)
    if not (keep_zeros or step.repeats) and compiled:
        # Rules that can map ids themselves (Conv) do it in the loop that makes their edges:
        # one pass less over hundreds of millions of edges.
        yield from rule.global_nonzero_edges(h, limit, step.input_vertices, offset, scale)
        return
    if keep_zeros or kept or type(rule).nonzero_edges is EdgeRule.nonzero_edges:
        if type(rule).edge_values is EdgeRule.edge_values:
            parts = ((p.src, p.dst, p.weight, h) for p in rule.chunks(limit))
        else:
            parts = ((p.src, p.dst, rule.edge_values(h, p, context), _compiled.NO_H) for p in rule.chunks(limit))
    else:
        parts = ((*edges, _compiled.NO_H) for edges in rule.nonzero_edges(h, limit, context))
    for src, dst, values, weighted in parts:
        src, dst, values = _compiled.global_edges(src, dst, values, weighted, step.input_vertices, offset, scale,
                                                  not keep_zeros)
        if step.repeats:
            src, dst, values = merge_repeats(src, dst, values, n_vertices, step.rule.repeats_combine)
        yield src, dst, values


def merge_repeats(src, dst, values, n_vertices: int, combine: str):
    """One edge per (src, dst) pair of a block where a neuron reaches an output through several
    elements: their values summed, or with ``combine="max"`` the largest |value|."""
    pairs, where = np.unique(src * n_vertices + dst, return_inverse=True)
    if combine == "max":
        merged = np.zeros(pairs.size)
        np.maximum.at(merged, where, np.abs(values))
    else:
        merged = np.bincount(where, weights=values, minlength=pairs.size)
    return pairs // n_vertices, pairs % n_vertices, merged


def build_graph(plan: Plan, activations: dict[str, np.ndarray], sample: int, *,
                threshold: float | None = None, percentile: float | None = None) -> InducedGraph:
    """The whole InducedGraph of one sample of a batch of activations (see ``edge_blocks``)."""
    blocks = list(edge_blocks(plan, activations, sample, threshold=threshold, percentile=percentile))
    step, src, dst, phi = zip(*blocks)
    steps = np.concatenate([np.full(len(s), i, dtype=np.int32) for i, s in zip(step, src)])
    return InducedGraph(tuple(plan.layers), np.concatenate(src), np.concatenate(dst), np.concatenate(phi), steps)
