"""The induced graph over several layers (onnxtopo/graph.py): a Conv → MaxPool → Gemm chain edge by
edge against brute force (layers, vertex count, ``locate``), and the chunked (streaming) edge
production against whole steps and the dionysus engine.

Every expected edge set is enumerated here with plain loops from the definitions of
docs/induced-graph.md (never with onnxtopo's own window code); onnxruntime (graph optimizations off)
is the independent reference for output shapes and values: summing the rule's own w·h over each
output's incoming edges must give back the op's output.
"""

from __future__ import annotations

import functools
import itertools
from types import SimpleNamespace

import numpy as np
import pytest
from onnx import helper

import onnxtopo

from conftest import (
    add_phi_edges,
    assert_same_edges,
    assert_same_persistence,
    brute_conv_edges,
    brute_pool_windows,
    edges_as_dict,
    first_argmax,
    make_model,
    ort_outputs,
    size_of,
    weights,
)
from test_op_layout import PAD_CASES, concat_case, pad_case
from test_op_pool import AVG_IDS, avgpool_case
from test_op_sum import residual_case

BATCH = 3


# --------------------------------------------------------------------------------------------
# The induced graph of a chain Conv -> Relu -> MaxPool -> Flatten -> Gemm
# --------------------------------------------------------------------------------------------

CHAIN_IN = (2, 8, 8)


CHAIN_SHAPES = [(2, 8, 8), (3, 8, 8), (3, 4, 4), (5,)]


CHAIN_TENSORS = ["x", "conv_out", "pool_out", "y"]


CHAIN_ALPHA = 0.7


@functools.cache
def chain_case():
    rng = np.random.default_rng(2024)
    W = rng.normal(size=(3, 2, 3, 3)).astype(np.float32)
    W[0, 1, 1, 1] = 0.0  # a zero kernel element: its edges have φ = 0
    cb = rng.normal(size=3).astype(np.float32)
    G = rng.normal(size=(5, 48)).astype(np.float32)
    G[2, :7] = 0.0  # zero dense weights
    C = rng.normal(size=5).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "W", "cb"], ["conv_out"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["conv_out"], ["relu_out"]),
        helper.make_node("MaxPool", ["relu_out"], ["pool_out"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["pool_out"], ["flat"]),
        helper.make_node("Gemm", ["flat", "G", "C"], ["y"], transB=1, alpha=CHAIN_ALPHA),
    ]
    model = make_model(nodes, CHAIN_IN, {"W": W, "cb": cb, "G": G, "C": C})
    x = rng.normal(size=(BATCH, *CHAIN_IN)).astype(np.float32)
    x[0, 0, 2, :] = 0.0  # zero inputs: their edges have φ = 0
    acts = ort_outputs(model, x, ("relu_out", "pool_out", "flat", "y"))
    return SimpleNamespace(model=model, x=x, W=W, G=G, acts=acts)


def brute_chain_graph(case, n, maxpool_rule):
    offsets = np.cumsum([0] + [size_of(s) for s in CHAIN_SHAPES])
    x = case.x[n].reshape(-1)
    relu = case.acts["relu_out"][n].reshape(-1)
    pooled = case.acts["pool_out"][n].reshape(-1)
    assert np.array_equal(case.acts["flat"][n], pooled)  # Flatten keeps the row-major order
    edges = {}
    conv = brute_conv_edges(CHAIN_SHAPES[0], case.W, 1, [1, 1], [1, 1], [1, 1], (8, 8))
    add_phi_edges(edges, conv, x, offsets[0], offsets[1])
    windows = brute_pool_windows(CHAIN_SHAPES[1], [2, 2], [2, 2], [1, 1], [0, 0], (4, 4))
    if maxpool_rule == "window":
        pool = {(u, v): 1.0 for v, srcs in windows.items() for u in srcs}
    else:
        pool = {(first_argmax(relu, srcs), v): 1.0 for v, srcs in windows.items()}
    add_phi_edges(edges, pool, relu, offsets[1], offsets[2])
    dense = {(k, j): CHAIN_ALPHA * float(case.G[j, k]) for k in range(48) for j in range(5)}
    add_phi_edges(edges, dense, pooled, offsets[2], offsets[3])
    return edges, len(conv) + len(pool) + len(dense)


def test_chain_layers_and_vertex_count():
    case = chain_case()
    plan = onnxtopo.inspect(case.model)
    assert [layer.shape for layer in plan.layers] == CHAIN_SHAPES
    assert [layer.tensor for layer in plan.layers] == CHAIN_TENSORS
    offsets = np.cumsum([0] + [size_of(s) for s in CHAIN_SHAPES])
    assert [layer.offset for layer in plan.layers] == offsets[:-1].tolist()
    g = onnxtopo.induced_graph(case.model, case.x[0])
    assert g.n_vertices == plan.n_vertices == sum(size_of(s) for s in CHAIN_SHAPES) == 128 + 192 + 48 + 5
    assert g.matrix.shape == (g.n_vertices, g.n_vertices)


@pytest.mark.parametrize("maxpool_rule", ["window", "argmax"])
def test_chain_graph_edges_match_brute_force(maxpool_rule):
    case = chain_case()
    analyzer = onnxtopo.Analyzer(case.model, maxpool_rule=maxpool_rule)
    graphs = list(analyzer.graphs(case.x, batch_size=2))
    assert len(graphs) == BATCH
    for n, g in enumerate(graphs):
        expected, n_candidates = brute_chain_graph(case, n, maxpool_rule)
        # the test data (zero weights, zero inputs, Relu zeros) does make φ = 0 candidates
        assert len(expected) < n_candidates
        assert (g.phi > 0).all()
        assert_same_edges(edges_as_dict(g.src, g.dst, g.phi), expected, rtol=1e-4, atol=1e-6,
                          what=f"chain graph ({maxpool_rule}), sample {n}")
    # the one-input entry point gives the same graph as the batch one
    g0 = onnxtopo.induced_graph(case.model, case.x[0], maxpool_rule=maxpool_rule)
    assert_same_edges(edges_as_dict(g0.src, g0.dst, g0.phi), brute_chain_graph(case, 0, maxpool_rule)[0],
                      rtol=1e-4, atol=1e-6, what="induced_graph(x[0])")


def test_chain_locate():
    case = chain_case()
    g = onnxtopo.induced_graph(case.model, case.x[0])
    ids = list(range(g.n_vertices))
    located = g.locate(ids)
    assert len(located) == len(ids)
    expected = []
    for li, shape in enumerate(CHAIN_SHAPES):
        for index in itertools.product(*(range(s) for s in shape)):
            expected.append((li, CHAIN_TENSORS[li], tuple(index)))
    assert [(int(a), b, tuple(int(i) for i in c)) for a, b, c in located] == expected
    # any order, repeated ids
    some = [368, 0, 129, 319, 320, 372, 0]
    assert g.locate(some) == [expected[i] for i in some]
    with pytest.raises(IndexError):
        g.locate([g.n_vertices])


# --------------------------------------------------------------------------------------------
# The chunked (streaming) path against dionysus
# --------------------------------------------------------------------------------------------

def _avg_index(name):
    return AVG_IDS.index(name)


CHUNK_MODELS = {
    "residual-add": lambda: (residual_case("add").model, residual_case("add").x),
    "residual-broadcast-sub": lambda: (residual_case("broadcast-sub-first").model,
                                       residual_case("broadcast-sub-first").x),
    "residual-sum3": lambda: (residual_case("sum3").model, residual_case("sum3").x),
    "concat-r1-r1": lambda: (concat_case("channels-r1-r1").model, concat_case("channels-r1-r1").x),
    "concat-r1-x-r2": lambda: (concat_case("channels-r1-x-r2").model, concat_case("channels-r1-x-r2").x),
    "pad-reflect-after-relu": lambda: (pad_case(6).model, pad_case(6).x),
    "pad-constant-1.5": lambda: (pad_case(2).model, pad_case(2).x),
    "averagepool-ceil-cip1": lambda: (avgpool_case(_avg_index("2d-ceil-cip1-asym-pads")).model,
                                      avgpool_case(_avg_index("2d-ceil-cip1-asym-pads")).x),
}


assert PAD_CASES[6]["name"] == "reflect-after-relu-strided-padded-conv" and PAD_CASES[2]["name"] == "constant-1.5-direct"


@pytest.mark.parametrize("chunk_edges", [5, 40])
@pytest.mark.parametrize("name", list(CHUNK_MODELS))
def test_chunked_analysis_equals_dionysus(name, chunk_edges):
    model, x = CHUNK_MODELS[name]()
    analyzer = onnxtopo.Analyzer(model)
    assert max(s.candidate_edges for s in analyzer.plan.steps) > chunk_edges  # the chunking does cut
    chunked = list(analyzer.analyze(x, chunk_edges=chunk_edges, h1=True, batch_size=2))
    slow = list(analyzer.analyze(x, engine="dionysus", h1=True))
    assert len(chunked) == len(slow) == len(x)
    for a, b in zip(chunked, slow, strict=True):
        assert a.n_edges == b.n_edges > 0
        assert_same_persistence(a, b)
        assert len(a.h1) > 0


def test_chunked_edges_equal_whole_ones():
    """Edge values computed chunk by chunk (statistics of the chunk's groups only) equal the
    whole step's, for a strided softmax and a layer norm."""
    rng = np.random.default_rng(33)
    for op, attrs in (("Softmax", {"axis": 1}), ("LayerNormalization", {})):
        inits = {"W": weights(rng, 4, 5), "W2": weights(rng, 5, 2)}
        if op == "LayerNormalization":
            inits["scale"] = weights(rng, 5)
        node = helper.make_node(op, ["z", "scale"] if op == "LayerNormalization" else ["z"], ["s"], **attrs)
        nodes = [helper.make_node("MatMul", ["x", "W"], ["z"]), node, helper.make_node("MatMul", ["s", "W2"], ["y"])]
        analyzer = onnxtopo.Analyzer(make_model(nodes, (3, 4), inits))
        x = rng.normal(size=(1, 3, 4)).astype(np.float32)
        activations = analyzer.runner.run(x)
        whole = list(onnxtopo.graph.edge_blocks(analyzer.plan, activations, 0))
        for max_edges in (1, 4, 7):
            chunked = list(onnxtopo.graph.edge_blocks(analyzer.plan, activations, 0, max_edges=max_edges))
            for i in range(len(analyzer.plan.steps)):
                pick = [b for b in chunked if b[0] == i], [b for b in whole if b[0] == i]
                got, expected = ({k: v for _, s, d, p in blocks for k, v in edges_as_dict(s, d, p).items()}
                                 for blocks in pick)
                assert_same_edges(got, expected, rtol=1e-12, what=f"{op}, chunks of {max_edges}")
