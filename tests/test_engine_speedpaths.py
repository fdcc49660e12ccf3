"""The forest engine's fast paths against plain Python written here: entry order from packed
integer keys, Borůvka's step and Filter-Kruskal rounds, chunks reduced in a second thread, and
the compiled pass that turns a rule's edges into global ones.

Exactness is the point: edges enter by φ decreasing (in float64, not float32), then by index;
the forest and the diagrams must not depend on how the edges were cut into blocks, chunks or
rounds.
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx.helper import make_node as onnx_node

import onnxtopo
from onnxtopo import InducedGraph, InvalidFiltrationError, homology

from conftest import assert_same_persistence

REPO = Path(__file__).resolve().parents[1]


def kruskal_in_entry_order(src, dst, phi, n_vertices):
    """Indices of the maximum spanning forest's edges, in entry order: a plain Kruskal."""
    order = sorted(range(len(phi)), key=lambda e: (-phi[e], e))
    parent = list(range(n_vertices))

    def find(v):
        while parent[v] != v:
            v = parent[v]
        return v

    forest = []
    for e in order:
        a, b = find(src[e]), find(dst[e])
        if a != b:
            parent[a] = b
            forest.append(e)
    return forest


# ----------------------------------------------------------------------------------------------
# Entry order


def expected_order(values, tiebreak):
    return sorted(range(len(values)), key=lambda i: (-values[i], tiebreak[i]))


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 63, 64, 65, 1000, 1024, 1025])
def test_entry_order_with_ties_and_neighbouring_floats(n):
    """Exact ties, floats one ulp apart (equal in float32, not in float64), +inf, and tie-breaks
    out of position order."""
    rng = np.random.default_rng(n)
    levels = np.array([1.0, np.nextafter(1.0, 2), np.nextafter(1.0, 0), 0.5, 3e-7, 2.5e5, np.inf])
    values = rng.choice(levels, size=n)
    assert np.float32(levels[0]) == np.float32(levels[1]) == np.float32(levels[2])
    tiebreak = rng.permutation(n).astype(np.int64)
    order = homology._entry_order(values, tiebreak)
    assert order.tolist() == expected_order(values.tolist(), tiebreak.tolist())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=1e-300, max_value=1e300), min_size=1, max_size=300),
       st.integers(0, 2**32 - 1))
def test_entry_order_of_any_positive_floats(values, seed):
    values = np.array(values)
    tiebreak = np.random.default_rng(seed).permutation(values.size).astype(np.int64)
    assert homology._entry_order(values, tiebreak).tolist() == expected_order(values.tolist(), tiebreak.tolist())


def test_entry_order_long_runs_sharing_their_packed_bits():
    """Thousands of values within a few ulps of each other share the packed top bits: their
    runs are settled by merge sort, not insertion."""
    rng = np.random.default_rng(3)
    base = np.float64(0.7)
    values = base + rng.integers(0, 50, 5000) * np.spacing(base)
    tiebreak = rng.permutation(values.size).astype(np.int64) * 7
    assert homology._entry_order(values, tiebreak).tolist() == expected_order(values.tolist(), tiebreak.tolist())


# ----------------------------------------------------------------------------------------------
# Spanning forest: Borůvka's step, Filter-Kruskal rounds, chunks and blocks


def random_graph(rng, n_vertices, n_edges, levels):
    pairs = set()
    while len(pairs) < n_edges:
        u, v = sorted(rng.integers(0, n_vertices, 2).tolist())
        if u != v:
            pairs.add((u, v))
    pairs = np.array(sorted(pairs, key=lambda p: rng.random()))
    flip = rng.random(len(pairs)) < 0.5  # either endpoint may be the source
    src = np.where(flip, pairs[:, 1], pairs[:, 0])
    dst = np.where(flip, pairs[:, 0], pairs[:, 1])
    return src, dst, rng.choice(levels, size=len(pairs))


LEVELS = {"ties": np.array([1.0, 2.0, 3.0]),
          "ulps": 1.0 + np.arange(6) * np.spacing(1.0),  # one float32, six float64 values
          "spread": np.geomspace(1e-6, 1e3, 200)}


@pytest.mark.parametrize("levels", LEVELS, ids=str)
@pytest.mark.parametrize("chunk_edges, block_size, batch_min", [
    (1 << 24, 10_000, 1024),  # one reduction, few rounds
    (1 << 24, 10_000, 8),  # many Filter-Kruskal rounds
    (700, 300, 16),  # several chunks, reduced in the second thread
    (50, 7, 4),  # chunks of a few blocks, forests carried from chunk to chunk
])
def test_forest_equals_plain_kruskal(levels, chunk_edges, block_size, batch_min):
    rng = np.random.default_rng([len(levels), chunk_edges, block_size, batch_min])
    n_vertices = 300
    src, dst, phi = random_graph(rng, n_vertices, 3000, LEVELS[levels])
    blocks = [(src[i:i + block_size], dst[i:i + block_size], phi[i:i + block_size])
              for i in range(0, len(src), block_size)]
    with mock.patch.object(homology, "FILTER_BATCH_MIN", batch_min), \
            mock.patch.object(homology, "FILTER_EDGES_PER_VERTEX", 0):
        result = homology.forest_persistence(blocks, n_vertices, h1=True, chunk_edges=chunk_edges)
    expected = kruskal_in_entry_order(src.tolist(), dst.tolist(), phi.tolist(), n_vertices)
    assert result.subgraph.edge.tolist() == expected
    np.testing.assert_array_equal(result.subgraph.src, src[expected])
    np.testing.assert_array_equal(result.subgraph.dst, dst[expected])
    np.testing.assert_array_equal(result.subgraph.phi, phi[expected])
    outside = np.setdiff1d(np.arange(len(src)), expected)
    np.testing.assert_array_equal(result.h1[:, 0], np.sort(phi[outside])[::-1])
    # The same edges in one block, one chunk: the same results, byte for byte.
    whole = homology.forest_persistence([(src, dst, phi)], n_vertices, h1=True)
    assert_same_persistence(whole, result)


def test_first_edge_of_a_vertex_at_ties_is_the_earliest():
    """A star whose edges all weigh the same, listed in an order that is not by target: the
    forest is every edge (a tree), in index order; with a heavier chord the chord enters first
    and the later of the two edges it closes a cycle with is the one left out."""
    src = [0, 0, 0, 0, 2]
    dst = [3, 1, 4, 2, 1]
    phi = [1.0, 1.0, 1.0, 1.0, 5.0]
    graph = InducedGraph.from_edges([5], src, dst, phi)
    result = onnxtopo.persistence(graph, h1=True)
    assert result.subgraph.edge.tolist() == kruskal_in_entry_order(src, dst, phi, 5) == [4, 0, 1, 2]
    assert result.h1.tolist() == [[1.0, np.inf]]


def test_vertex_values_nan_are_refused():
    graph = InducedGraph.from_edges([2, 2], [0, 1], [2, 3], [1.0, 2.0])
    with pytest.raises(InvalidFiltrationError):
        onnxtopo.persistence(graph, vertices=np.array([1.0, np.nan, 3.0, 3.0]))


# ----------------------------------------------------------------------------------------------
# The compiled pass of edge production


@pytest.mark.parametrize("linear", [True, False])
@pytest.mark.parametrize("drop_zeros", [True, False])
@pytest.mark.parametrize("scaled", [True, False])
def test_global_edges_matches_numpy(linear, drop_zeros, scaled):
    """Values given, or a linear rule's weights times h; ids mapped, constants dropped, a folded
    scale applied, zero products dropped or kept."""
    from onnxtopo import _compiled

    rng = np.random.default_rng(5)
    n_in, n_out, n = 40, 30, 2000
    src = rng.integers(0, n_in, n)
    dst = rng.integers(0, n_out, n)
    h = rng.standard_normal(n_in) * (rng.random(n_in) < 0.5)  # ReLU-like zeros
    weight = rng.standard_normal(n) * (rng.random(n) < 0.9)
    values = weight * h[src]
    input_vertices = rng.integers(100, 200, n_in)
    input_vertices[rng.random(n_in) < 0.2] = -1  # constants (padding)
    scale = rng.standard_normal(n_out) * (rng.random(n_out) < 0.8) if scaled else _compiled.NO_SCALE
    given = (weight, h) if linear else (values, _compiled.NO_H)
    got = _compiled.global_edges(src, dst, *given, input_vertices, 500, scale, drop_zeros)
    signed = values * scale[dst] if scaled else values
    keep = (input_vertices[src] >= 0) & ((signed != 0) | (not drop_zeros))
    for a, b in zip(got, (input_vertices[src][keep], dst[keep] + 500, signed[keep]), strict=True):
        np.testing.assert_array_equal(a, b)


def test_dense_rule_edges_whatever_path():
    """A dense layer's edges do not depend on how the stream is chunked (one block per step or
    several). Both now come from the compiled dense pass; test_engine_small.py compares that
    pass with the pattern path it replaced."""
    from onnxtopo.graph import edge_blocks

    x = np.load(REPO / "models" / "mnist-sample.npy")[:2]
    analyzer = onnxtopo.Analyzer(REPO / "models" / "ccff-relu.onnx")
    activations = analyzer.runner.run(x)
    dense = max(step.candidate_edges for step in analyzer.plan.steps)
    for sample in range(2):
        kept = list(edge_blocks(analyzer.plan, activations, sample, max_edges=dense))
        rebuilt = list(edge_blocks(analyzer.plan, activations, sample, max_edges=dense - 1))
        for column in range(1, 4):
            np.testing.assert_array_equal(np.concatenate([b[column] for b in kept]),
                                          np.concatenate([b[column] for b in rebuilt]))


def random_conv_rule(rng):
    """A Conv rule of random geometry: 1 to 3 spatial axes, strides, pads (or auto_pad),
    dilations and groups (depthwise too)."""
    from onnxtopo.rules.op_conv import ConvRule

    nd = int(rng.integers(1, 4))
    group = int(rng.choice([1, 2, 3]))
    channels = group * int(rng.integers(1, 4))
    out_channels = group * int(rng.integers(1, 4))
    kernel = [int(rng.integers(1, 4)) for _ in range(nd)]
    dilations = [int(rng.integers(1, 3)) for _ in range(nd)]
    spatial = [(k - 1) * d + int(rng.integers(1, 6)) for k, d in zip(kernel, dilations)]
    attrs = {"group": group, "strides": [int(rng.integers(1, 4)) for _ in range(nd)]}
    if rng.random() < 0.2:
        attrs["auto_pad"] = str(rng.choice(["VALID", "SAME_UPPER", "SAME_LOWER"]))
        if attrs["auto_pad"] != "VALID":
            dilations = [1] * nd
    else:
        attrs["pads"] = [int(rng.integers(0, 3)) for _ in range(2 * nd)]
    attrs["dilations"] = dilations
    W = rng.standard_normal((out_channels, channels // group, *kernel)) * (rng.random((out_channels, 1, *kernel)) < 0.9)
    node = onnx_node("Conv", ["x", "W"], ["y"], **attrs)
    return ConvRule(node, (channels, *spatial), {"W": W}, None)


@pytest.mark.parametrize("seed", range(60))
def test_compiled_conv_edges_equal_the_pattern_path(seed):
    """Conv's compiled edges (no pattern built) are the pattern's edges with nonzero w·h,
    value for value and in pattern order, chunk for chunk, whatever the chunk size, in the
    rule's own ids and in global ones."""
    rng = np.random.default_rng(seed)
    rule = random_conv_rule(rng)
    h = rng.standard_normal(int(np.prod(rule.in_shape))) * (rng.random(int(np.prod(rule.in_shape))) < 0.5)
    for max_edges in (None, 1, rule.edges_per_outer + 1, 2 * rule.edges_per_outer, rule.candidate_count):
        step = rule.outer_size if max_edges is None else max(1, max_edges // max(1, rule.edges_per_outer))
        expected = []
        for start in range(0, rule.outer_size, step):
            pattern = rule.build_pattern(slice(start, min(start + step, rule.outer_size)))
            values = pattern.weight * h[pattern.src]
            nonzero = values != 0
            expected.append((pattern.src[nonzero], pattern.dst[nonzero], values[nonzero]))
        got = list(rule.nonzero_edges(h, max_edges))
        assert len(got) == len(expected)
        for block, want in zip(got, expected, strict=True):
            for a, b in zip(block, want, strict=True):
                assert a.dtype == b.dtype
                np.testing.assert_array_equal(a, b)
        # In global ids: constants (-1) make no edge, targets shift, a folded scale applies.
        input_vertices = rng.integers(100, 10**6, h.size)
        input_vertices[rng.random(h.size) < 0.2] = -1
        scale = rng.standard_normal(int(np.prod(rule.out_shape))) * (rng.random(int(np.prod(rule.out_shape))) < 0.8)
        got = list(rule.global_nonzero_edges(h, max_edges, input_vertices, 7, scale))
        assert len(got) == len(expected)
        for block, (src, dst, values) in zip(got, expected, strict=True):
            values = values * scale[dst]
            keep = (input_vertices[src] >= 0) & (values != 0)
            for a, b in zip(block, (input_vertices[src][keep], dst[keep] + 7, values[keep]), strict=True):
                assert a.dtype == b.dtype
                np.testing.assert_array_equal(a, b)


def test_conv_edges_whatever_path():
    """A conv layer's graph is the same whether its pattern is kept (the compiled pass computes
    w·h) or too large to keep (the loop over its windows does), with a folded scale too and
    constants of a Pad (value 0.5: their products are not 0, yet they make no edge)."""
    from onnxtopo.graph import edge_blocks

    from conftest import make_model

    rng = np.random.default_rng(3)
    W = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    scale = rng.standard_normal((4, 5, 7)).astype(np.float32)  # per element: onnxruntime cannot fuse it
    model = make_model([onnx_node("Relu", ["x"], ["r"]),
                        onnx_node("Pad", ["r", "pads", "value"], ["padded"]),
                        onnx_node("Conv", ["padded", "W"], ["c"], strides=[2, 1], pads=[1, 0, 1, 2]),
                        onnx_node("Mul", ["c", "s"], ["n"]),
                        onnx_node("Relu", ["n"], ["a"]),
                        onnx_node("Conv", ["a", "W2"], ["y"])],
                       (3, 7, 6), {"W": W, "s": scale, "W2": rng.standard_normal((2, 4, 1, 1)).astype(np.float32),
                                   "pads": np.array([0, 0, 1, 0, 0, 0, 1, 1]),
                                   "value": np.array(0.5, np.float32)})
    analyzer = onnxtopo.Analyzer(model)
    assert analyzer.plan.scales
    assert (analyzer.plan.steps[0].input_vertices < 0).any()
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    activations = analyzer.runner.run(x)
    step = max(step.candidate_edges for step in analyzer.plan.steps)
    for sample in range(2):
        kept = list(edge_blocks(analyzer.plan, activations, sample, max_edges=step))
        rebuilt = list(edge_blocks(analyzer.plan, activations, sample, max_edges=step // 3))
        assert len(rebuilt) > len(kept)
        for column in range(1, 4):
            np.testing.assert_array_equal(np.concatenate([b[column] for b in kept]),
                                          np.concatenate([b[column] for b in rebuilt]))
    chunked = analyzer.analyze(x, chunk_edges=step // 3)
    for a, b, c in zip(analyzer.analyze(x), chunked, analyzer.analyze(x, engine="dionysus"), strict=True):
        assert_same_persistence(a, b)
        assert_same_persistence(a, c)
