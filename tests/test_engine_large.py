"""The forest engine's large-graph path: Filter-Kruskal batches sized by the reduction's edges
(``FILTER_HEAVY_SHARE``) and forests carried unordered from chunk to chunk give exactly the
maximum spanning forest a plain Kruskal builds in entry order, and the same bytes as one chunk."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest

from onnxtopo import homology

from conftest import assert_same_persistence
from test_engine_speedpaths import kruskal_in_entry_order


def layered_graph(rng, layers, width, fan_in, levels):
    """A layered graph as a CNN induces one: each vertex of a layer gets ``fan_in`` edges from
    the layer before, φ drawn from ``levels`` (few values: many ties)."""
    src, dst = [], []
    for layer in range(1, layers):
        targets = np.arange(width) + layer * width
        sources = np.stack([rng.choice(width, fan_in, replace=False) for _ in range(width)]) + (layer - 1) * width
        src.append(sources.ravel())
        dst.append(np.repeat(targets, fan_in))
    src, dst = np.concatenate(src), np.concatenate(dst)
    return src, dst, rng.choice(levels, size=src.size), layers * width


@pytest.mark.parametrize("levels", [np.array([1.0, 2.0, 3.0]), np.geomspace(1e-3, 1e3, 500)], ids=["ties", "spread"])
@pytest.mark.parametrize("heavy_share, chunk_edges, block_size", [
    (20, 1 << 24, 5_000),  # one reduction, batch a twentieth of its edges
    (3, 1 << 24, 5_000),  # a third: few Filter-Kruskal rounds
    (400, 1 << 24, 5_000),  # tiny batches: many rounds
    (20, 3_000, 1_000),  # several chunks, forests carried unordered to the next reduction
    (50, 700, 250),
])
def test_heavy_share_batches_give_plain_kruskal(levels, heavy_share, chunk_edges, block_size):
    rng = np.random.default_rng([heavy_share, chunk_edges, block_size, levels.size])
    src, dst, phi, n_vertices = layered_graph(rng, layers=6, width=400, fan_in=12, levels=levels)
    blocks = [(src[i:i + block_size], dst[i:i + block_size], phi[i:i + block_size])
              for i in range(0, len(src), block_size)]
    with mock.patch.object(homology, "FILTER_BATCH_MIN", 8), mock.patch.object(homology, "FILTER_HEAVY_SHARE",
                                                                               heavy_share):
        result = homology.forest_persistence(blocks, n_vertices, h1=True, chunk_edges=chunk_edges)
    expected = kruskal_in_entry_order(src.tolist(), dst.tolist(), phi.tolist(), n_vertices)
    assert result.subgraph.edge.tolist() == expected
    np.testing.assert_array_equal(result.subgraph.phi, phi[expected])
    # The defaults, everything in one block and one chunk: the same results, byte for byte.
    whole = homology.forest_persistence([(src, dst, phi)], n_vertices, h1=True)
    assert_same_persistence(whole, result, "one chunk vs streamed")


def test_batch_follows_the_reduction_not_the_whole_graph():
    """Many vertices, few edges per reduction: the batch is a share of the edges, so a pivot is
    drawn (the share applies) instead of sorting every edge."""
    rng = np.random.default_rng(7)
    src, dst, phi, n_vertices = layered_graph(rng, layers=4, width=3000, fan_in=8, levels=np.geomspace(1, 9, 50))
    pivots = []
    original = homology._pivot

    def spy(sample, n_edges, batch):
        pivots.append(batch)
        return original(sample, n_edges, batch)

    with mock.patch.object(homology, "_pivot", spy):
        result = homology.forest_persistence([(src, dst, phi)], n_vertices)
    assert pivots and pivots[0] == src.size // homology.FILTER_HEAVY_SHARE < n_vertices
    assert result.subgraph.edge.tolist() == kruskal_in_entry_order(src.tolist(), dst.tolist(), phi.tolist(),
                                                                    n_vertices)


# ----------------------------------------------------------------------------------------------
# Large convolutions reduced on their own (homology.step_forest, graph.reduced_blocks): two read-only
# passes over the kernel and the activations, no edge written but the heavy ones and the light ones
# between components.


def tied_conv_rule(rng, levels):
    """A random Conv rule (any geometry) whose kernel takes few values: many tied φ."""
    from test_engine_speedpaths import random_conv_rule

    rule = random_conv_rule(rng)
    rule.kernel = rng.choice(levels, size=rule.kernel.shape) * rng.choice([-1.0, 0.0, 1.0], size=rule.kernel.shape,
                                                                          p=[0.45, 0.1, 0.45])
    return rule


def tied_dense_rule(rng, levels):
    """A random Gemm or MatMul rule (any layout) whose weights take few values: many tied φ."""
    from test_engine_small import random_dense_rule

    rule = random_dense_rule(rng)
    rule.matrix = rng.choice(levels, size=rule.matrix.shape) * rng.choice([-1.0, 0.0, 1.0], size=rule.matrix.shape,
                                                                          p=[0.45, 0.1, 0.45])
    return rule


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("heavy_per_vertex, batch_min", [(2, 1024), (0.3, 1), (0.02, 1)],
                         ids=["default", "light-pass", "overflows"])
@pytest.mark.parametrize("make_rule", [tied_conv_rule, tied_dense_rule], ids=["conv", "dense"])
def test_step_forest_is_plain_kruskal_of_the_streamed_edges(make_rule, seed, heavy_per_vertex, batch_min):
    """A conv or dense step's forest from the compiled passes is the plain Kruskal forest of the
    edges the step streams (same positions, φ, endpoints), ties included, with constants (h = 0),
    zero weights and a folded scale with zeros; a pivot drawn too low (many ties) gives None."""
    from onnxtopo import _compiled

    rng = np.random.default_rng(seed)
    levels = np.array([0.5, 1.0, 2.0]) if seed % 2 else np.geomspace(1e-2, 1e2, 300)
    rule = make_rule(rng, levels)
    n_in, n_out = int(np.prod(rule.in_shape)), int(np.prod(rule.out_shape))
    h = rng.choice(levels, n_in) * (rng.random(n_in) < 0.6)
    scale = rng.choice([0.0, 0.5, 1.5], n_out, p=[0.1, 0.45, 0.45]) if seed % 3 else _compiled.NO_SCALE
    edges = list(rule.global_nonzero_edges(h, None, np.arange(n_in), n_in, scale))
    src, dst, values = (np.concatenate(column) for column in zip(*edges))
    phi = np.abs(values)
    with mock.patch.object(homology, "STEP_HEAVY_PER_VERTEX", heavy_per_vertex), \
            mock.patch.object(homology, "FILTER_BATCH_MIN", batch_min):
        forest = homology.step_forest(rule.forest_passes(h, scale), n_in + n_out, rule.candidate_count)
    expected = kruskal_in_entry_order(src.tolist(), dst.tolist(), phi.tolist(), n_in + n_out)
    if forest is None:  # more edges tied at or above the pivot than the first pass may write
        assert batch_min == 1 and phi.size > 3 * max(1, int(heavy_per_vertex * (n_in + n_out))) + 1
        return
    assert forest.n_edges == phi.size
    order = np.argsort(forest.index)
    assert forest.index[order].tolist() == sorted(expected)
    for got, want in ((forest.src, src), (forest.dst, dst), (forest.phi, phi)):
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got[order], want[sorted(expected)])


def conv_stack(rng, levels):
    """A small CNN with what a large one has: strided, padded and grouped convs, one reading
    constants (a Concat with a constant), a folded per-element scale, a conv reading vertices of
    two layers out of id order (a Concat), ReLU zeros, a dense layer; weights from ``levels``
    (ties)."""
    from conftest import make_model

    def weights(*shape):
        return (rng.choice(levels, size=shape) * rng.choice([-1, 1], size=shape)).astype(np.float32)

    nodes = [onnx_node("Conv", ["x", "W1"], ["c1"], strides=[1, 2]),
             onnx_node("Relu", ["c1"], ["a1"]),
             onnx_node("Concat", ["a1", "k"], ["with_constants"], axis=1),
             onnx_node("Conv", ["with_constants", "W2"], ["c2"], group=2, pads=[1, 1, 1, 1]),
             onnx_node("Mul", ["c2", "s"], ["n2"]),
             onnx_node("Relu", ["n2"], ["a2"]),
             onnx_node("Concat", ["a2", "a1"], ["cat"], axis=1),
             onnx_node("Conv", ["cat", "W3"], ["c3"], dilations=[2, 1]),
             onnx_node("Relu", ["c3"], ["a3"]),
             onnx_node("Flatten", ["a3"], ["flat"]),
             onnx_node("Gemm", ["flat", "W4"], ["y"], transB=1, alpha=0.5)]
    return make_model(nodes, (2, 9, 12), {
        "W1": weights(4, 2, 3, 3), "k": weights(1, 2, 7, 5), "W2": weights(4, 3, 3, 3), "s": weights(4, 7, 5),
        "W3": weights(3, 8, 2, 3), "W4": weights(6, 45)})


def onnx_node(*args, **kwargs):
    from onnx.helper import make_node

    return make_node(*args, **kwargs)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("vertices", ["max", "inf"])
def test_reduced_blocks_give_the_streamed_results_and_dionysus(seed, vertices):
    """Analyzer.analyze with every conv step reduced on its own equals the engine fed every edge
    (one chunk, and chunks that mix forests with edge blocks) and dionysus, byte for byte."""
    import onnxtopo
    from onnxtopo import graph

    rng = np.random.default_rng(seed)
    levels = np.array([0.5, 1.0]) if seed % 2 else np.geomspace(0.1, 10, 40)
    analyzer = onnxtopo.Analyzer(conv_stack(rng, levels))
    x = (rng.choice(levels, size=(2, 2, 9, 12)) * rng.choice([-1, 0, 1], size=(2, 2, 9, 12))).astype(np.float32)
    assert any(step.reads_constants for step in analyzer.plan.steps)
    options = {"vertices": vertices, "batch_size": 1}  # the constant's batch axis is 1
    with mock.patch.object(graph, "STEP_FOREST_MIN_CANDIDATES", 0), \
            mock.patch.object(homology, "STEP_HEAVY_PER_VERTEX", 0.3):
        kinds = [type(block) for _, block in graph.reduced_blocks(analyzer.plan, analyzer.runner.run(x[:1]), 0)]
        assert kinds.count(homology.ForestBlock) == 4  # every conv and the dense layer
        reduced = list(analyzer.analyze(x, **options))
        chunked = list(analyzer.analyze(x, chunk_edges=200, **options))
    oracle = list(analyzer.analyze(x, engine="dionysus", **options))
    for sample in range(2):
        streamed = homology.forest_persistence(
            (edges for _, *edges in graph.edge_blocks(analyzer.plan, analyzer.runner.run(x[sample:sample + 1]), 0)),
            analyzer.plan.n_vertices, vertices=vertices)
        assert_same_persistence(streamed, reduced[sample].persistence, "reduced vs streamed")
        assert_same_persistence(streamed, chunked[sample].persistence, "reduced in small chunks vs streamed")
        assert_same_persistence(streamed, oracle[sample].persistence, "reduced vs dionysus")


def test_forest_blocks_refuse_what_needs_every_edge():
    block = homology.ForestBlock(np.array([0]), np.array([1]), np.array([1.0]), np.array([0]), 3)
    for options in ({"h1": True}, {"vertices": np.ones(2)}):
        with pytest.raises(ValueError, match="ForestBlock"):
            homology.forest_persistence([block], 2, **options)


@pytest.mark.parametrize("ids, repeats", [
    ([5, 6, 7, 9], False),  # increasing: decided without sorting
    ([-1, 3, -1, 4], False),  # constants are no neurons
    ([7, 5, 6], False),  # out of order, each once (a Concat)
    ([4, 5, 4], True),  # a neuron standing for two elements (reflect padding)
    ([-1, -1], False), ([], False),
])
def test_step_repeats(ids, repeats):
    """Steps whose input repeats a neuron are never reduced in place (their local ids would
    split one vertex); the check must see repeats out of order too."""
    from onnxtopo.plan import EdgeStep

    step = EdgeStep("n", "Conv", None, 1, "x", np.array(ids, np.int64))
    assert step.repeats is repeats
