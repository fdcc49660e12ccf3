"""The spanning-forest engine against dionysus, point for point, ties included."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import onnxtopo
from onnxtopo import InducedGraph

REPO = Path(__file__).resolve().parents[1]
FIELDS = ("src", "dst", "phi", "birth", "edge")


def assert_same(graph, h1=True, vertices="max"):
    fast = onnxtopo.persistence(graph, h1=h1, vertices=vertices, engine="forest")
    slow = onnxtopo.persistence(graph, h1=h1, vertices=vertices, engine="dionysus")
    np.testing.assert_array_equal(fast.h0, slow.h0)
    if h1:
        np.testing.assert_array_equal(fast.h1, slow.h1)
    for field in FIELDS:
        np.testing.assert_array_equal(getattr(fast.subgraph, field), getattr(slow.subgraph, field), err_msg=field)
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
