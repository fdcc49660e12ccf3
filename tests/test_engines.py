"""The spanning-forest engine against dionysus, point for point, ties included."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import onnxtopo
from onnxtopo import InducedGraph

from conftest import assert_same_persistence

REPO = Path(__file__).resolve().parents[1]


def assert_same(graph, h1=True, vertices="max"):
    fast = onnxtopo.persistence(graph, h1=h1, vertices=vertices, engine="forest")
    slow = onnxtopo.persistence(graph, h1=h1, vertices=vertices, engine="dionysus")
    assert_same_persistence(fast, slow)
    assert fast.n_simplices == slow.n_simplices
    return fast


@st.composite
def layered_graphs(draw):
    """Random layered graphs; φ drawn from few values so that ties are frequent."""
    sizes = draw(st.lists(st.integers(1, 5), min_size=2, max_size=4))
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    src, dst = [], []
    for layer in range(len(sizes) - 1):
        for u in range(offsets[layer], offsets[layer + 1]):
            for v in range(offsets[layer + 1], offsets[layer + 2]):
                if draw(st.booleans()):
                    src.append(u)
                    dst.append(v)
    levels = draw(st.sampled_from([[1.0, 2.0], [0.5, 1.0, 1.5, 3.0], list(np.linspace(0.1, 2, 17))]))
    phi = [draw(st.sampled_from(levels)) for _ in src]
    return InducedGraph.from_edges(sizes, src, dst, phi)


@settings(max_examples=300, deadline=None)
@given(layered_graphs(), st.sampled_from(["max", "inf"]))
def test_random_layered_graphs(graph, vertices):
    assert_same(graph, vertices=vertices)


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_random_general_graphs_with_custom_vertex_values(seed):
    """Edges between any vertices (not only consecutive layers) and vertex values above φ."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 12))
    pairs = np.array([(u, v) for u in range(n) for v in range(u + 1, n)])
    pairs = pairs[rng.random(len(pairs)) < 0.4]
    phi = rng.choice([0.5, 1.0, 2.0, 4.0], size=len(pairs))
    graph = InducedGraph.from_edges([n], pairs[:, 0] if len(pairs) else [], pairs[:, 1] if len(pairs) else [], phi)
    values = np.zeros(n)
    np.maximum.at(values, graph.src, graph.phi)
    np.maximum.at(values, graph.dst, graph.phi)
    values += rng.choice([0.0, 0.5, 1.0], size=n)  # some vertices enter before their strongest edge
    assert_same(graph, vertices=values)


@pytest.mark.parametrize("model", ["ccff-relu.onnx", "ccff-sigmoid.onnx"])
def test_shipped_models(model):
    x = np.load(REPO / "models" / "mnist-sample.npy")[:2]
    analyzer = onnxtopo.Analyzer(REPO / "models" / model)
    for graph in analyzer.graphs(x):
        result = assert_same(graph)
        assert len(result.h0) > 10 and len(result.subgraph) > 1000


def test_empty_graph():
    graph = InducedGraph.from_edges([2, 2], [], [], [])
    result = assert_same(graph)
    assert result.h0.shape == (0, 2) and result.h1.shape == (0, 2) and len(result.subgraph) == 0


@settings(max_examples=150, deadline=None)
@given(layered_graphs(), st.integers(1, 6), st.integers(1, 8), st.sampled_from(["max", "inf"]))
def test_streaming_in_small_chunks(graph, block_size, chunk_edges, vertices):
    """Edges fed in blocks and reduced every few edges give the same results as dionysus."""
    from onnxtopo.homology import forest_persistence

    blocks = [(graph.src[i:i + block_size], graph.dst[i:i + block_size], graph.phi[i:i + block_size])
              for i in range(0, graph.n_edges, block_size)]
    streamed = forest_persistence(blocks, graph.n_vertices, vertices=vertices, h1=True, chunk_edges=chunk_edges)
    whole = assert_same(graph, vertices=vertices)
    assert_same_persistence(streamed, whole)


@pytest.mark.parametrize("chunk_edges", [5_000, 60_000])
def test_analyzer_streaming_matches_whole_graph(chunk_edges):
    """The shipped model analyzed in small chunks (rules built part by part) matches dionysus."""
    x = np.load(REPO / "models" / "mnist-sample.npy")[:2]
    analyzer = onnxtopo.Analyzer(REPO / "models" / "ccff-relu.onnx")
    assert max(step.candidate_edges for step in analyzer.plan.steps) > chunk_edges
    streamed = list(analyzer.analyze(x, h1=True, chunk_edges=chunk_edges))
    oracle = list(analyzer.analyze(x, h1=True, engine="dionysus"))
    for a, b in zip(streamed, oracle, strict=True):
        assert a.n_edges == b.n_edges
        assert_same_persistence(a, b)


def test_rule_chunks_cover_the_pattern():
    """Building a rule's pattern part by part gives the whole pattern, in order."""
    plan = onnxtopo.inspect(REPO / "models" / "ccff-relu.onnx")
    for step in plan.steps:
        rule = step.rule
        assert len(rule.pattern) == rule.candidate_count == step.candidate_edges
        for max_edges in (1, 1000, rule.candidate_count // 3 + 1):
            parts = list(rule.chunks(max_edges))
            assert all(len(p) <= max(max_edges, rule.edges_per_outer) for p in parts)
            for field in ("src", "dst", "weight"):
                np.testing.assert_array_equal(np.concatenate([getattr(p, field) for p in parts]),
                                              getattr(rule.pattern, field))


@pytest.mark.parametrize("maxpool_rule", ["window", "argmax"])
def test_streaming_with_maxpool(maxpool_rule):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(7)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 2, 3, 3)).astype(np.float32), "k"),
             numpy_helper.from_array(rng.normal(size=(5, 4 * 4 * 4)).astype(np.float32), "w")]
    nodes = [helper.make_node("Conv", ["x", "k"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "w"], ["y"], transB=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = np.round(rng.normal(size=(3, 2, 8, 8)), 1).astype(np.float32)  # rounding makes ties
    analyzer = onnxtopo.Analyzer(model, maxpool_rule=maxpool_rule)
    for a, b in zip(analyzer.analyze(x, h1=True, chunk_edges=40), analyzer.analyze(x, h1=True, engine="dionysus"),
                    strict=True):
        assert a.n_edges == b.n_edges > 0
        assert_same_persistence(a, b)


@settings(max_examples=150, deadline=None)
@given(layered_graphs(), st.integers(1, 4), st.sampled_from(["max", "inf"]))
def test_filter_rounds_on_tiny_batches(graph, batch_min, vertices):
    """Filter-Kruskal rounds of a handful of edges (ties straddling pivots) stay exact."""
    from unittest import mock

    from onnxtopo import homology as engine

    with mock.patch.object(engine, "FILTER_BATCH_MIN", batch_min), \
            mock.patch.object(engine, "FILTER_EDGES_PER_VERTEX", 0):
        small = engine.forest_persistence([(graph.src, graph.dst, graph.phi)], graph.n_vertices,
                                          vertices=vertices, h1=True)
    whole = assert_same(graph, vertices=vertices)
    assert_same_persistence(small, whole)


def test_parallel_workers_give_the_same_results():
    x = np.load(REPO / "models" / "mnist-heldout.npz")["x"][:12]
    analyzer = onnxtopo.Analyzer(REPO / "models" / "ccff-sigmoid.onnx")
    serial = list(analyzer.analyze(x, batch_size=5))
    parallel = list(analyzer.analyze(x, batch_size=5, workers=2))
    assert [r.index for r in parallel] == list(range(12))
    for a, b in zip(serial, parallel, strict=True):
        assert a.n_edges == b.n_edges
        assert_same_persistence(a, b)
