"""Gemm and MatMul with a constant operand (rules/op_gemm.py): a dense block of edges, k -> n with
weight alpha·B'[k, n]; the configurations that cannot keep the batch axis first are refused.

Every expected edge set is enumerated here with plain loops from the definitions of
docs/induced-graph.md (never with onnxtopo's own window code); onnxruntime (graph optimizations off)
is the independent reference for output shapes and values: summing the rule's own w·h over each
output's incoming edges must give back the op's output.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import onnxtopo
from onnxtopo.errors import UnsupportedOpError

from conftest import assert_same_edges, edges_as_dict, make_model, ort_outputs, size_of

BATCH = 3


def brute_dense_edges(matrix, lead):
    """{(l*K + k, l*N + n): matrix[k, n]} for every leading index l."""
    K, N = matrix.shape
    return {(l * K + k, l * N + n): float(matrix[k, n]) for l in range(lead) for k in range(K) for n in range(N)}


# --------------------------------------------------------------------------------------------
# Gemm and MatMul with a constant right operand
# --------------------------------------------------------------------------------------------

GEMM_CONFIGS = [
    {"alpha": None, "beta": None, "transB": None, "C": None},
    {"alpha": 1.0, "beta": 1.0, "transB": 0, "C": "vec"},
    {"alpha": 0.5, "beta": None, "transB": 1, "C": "vec"},
    {"alpha": -1.5, "beta": 2.0, "transB": 0, "C": "row"},
    {"alpha": 2.0, "beta": 0.5, "transB": 1, "C": "scalar"},
    {"alpha": 0.25, "beta": None, "transB": 1, "C": None},
    {"alpha": 3.0, "beta": -1.0, "transB": 0, "C": None},
]


GEMM_IDS = [f"alpha{c['alpha']}-beta{c['beta']}-transB{c['transB']}-C{c['C']}" for c in GEMM_CONFIGS]


K_IN, N_OUT = 6, 4


@pytest.mark.parametrize("cfg", GEMM_CONFIGS, ids=GEMM_IDS)
def test_gemm_rule(cfg):
    rng = np.random.default_rng(7)
    transB = cfg["transB"] or 0
    B = rng.normal(size=(N_OUT, K_IN) if transB else (K_IN, N_OUT)).astype(np.float32)
    inits, inputs = {"B": B}, ["x", "B"]
    if cfg["C"] is not None:
        C = rng.normal(size={"vec": (N_OUT,), "row": (1, N_OUT), "scalar": ()}[cfg["C"]]).astype(np.float32)
        inits["C"] = C
        inputs.append("C")
    attrs = {k: cfg[k] for k in ("alpha", "beta", "transB") if cfg[k] is not None}
    model = make_model([helper.make_node("Gemm", inputs, ["y"], **attrs)], (K_IN,), inits)
    x = rng.normal(size=(BATCH, K_IN)).astype(np.float32)
    y = ort_outputs(model, x)["y"]

    plan = onnxtopo.inspect(model)
    assert [s.op_type for s in plan.steps] == ["Gemm"]
    rule = plan.steps[0].rule
    assert tuple(rule.out_shape) == y.shape[1:] == (N_OUT,)

    alpha = 1.0 if cfg["alpha"] is None else cfg["alpha"]
    expected = {}
    for k in range(K_IN):
        for n in range(N_OUT):
            b = B[n, k] if transB else B[k, n]
            expected[(k, n)] = alpha * float(b)
    p = rule.pattern
    assert_same_edges(edges_as_dict(p.src, p.dst, p.weight), expected, what="gemm")

    beta = 1.0 if cfg["beta"] is None else cfg["beta"]
    bias = np.zeros(N_OUT) if cfg["C"] is None else beta * np.broadcast_to(inits["C"], (1, N_OUT))[0]
    for n in range(BATCH):
        out = np.zeros(N_OUT)
        np.add.at(out, p.dst, rule.edge_values(x[n].astype(np.float64)))
        np.testing.assert_allclose(out + bias, y[n], rtol=1e-4, atol=1e-4)


MATMUL_CONFIGS = [
    {"name": "2d", "sample": (6,), "N": 4, "add": False},
    {"name": "2d-add-bias", "sample": (6,), "N": 4, "add": True},
    {"name": "3d", "sample": (3, 5), "N": 4, "add": False},
    {"name": "3d-add-bias", "sample": (4, 3), "N": 5, "add": True},
]


@pytest.mark.parametrize("cfg", MATMUL_CONFIGS, ids=[c["name"] for c in MATMUL_CONFIGS])
def test_matmul_constant_right_operand(cfg):
    rng = np.random.default_rng(11)
    K, N = cfg["sample"][-1], cfg["N"]
    B = rng.normal(size=(K, N)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "B"], ["t" if cfg["add"] else "y"])]
    inits = {"B": B}
    bias = np.zeros(N, dtype=np.float32)
    if cfg["add"]:
        bias = rng.normal(size=N).astype(np.float32)
        inits["b"] = bias
        nodes.append(helper.make_node("Add", ["t", "b"], ["y"]))
    model = make_model(nodes, cfg["sample"], inits)
    x = rng.normal(size=(BATCH, *cfg["sample"])).astype(np.float32)
    y = ort_outputs(model, x)["y"]

    plan = onnxtopo.inspect(model)
    assert len(plan.steps) == 1  # (MatMul + Add may be normalized into one Gemm)
    rule = plan.steps[0].rule
    assert tuple(rule.out_shape) == y.shape[1:] == (*cfg["sample"][:-1], N)

    lead = size_of(cfg["sample"][:-1])
    expected = brute_dense_edges(B.astype(np.float64), lead)
    p = rule.pattern
    assert_same_edges(edges_as_dict(p.src, p.dst, p.weight), expected, what="matmul")

    for n in range(BATCH):
        out = np.zeros(lead * N)
        np.add.at(out, p.dst, rule.edge_values(x[n].reshape(-1).astype(np.float64)))
        np.testing.assert_allclose(out + np.tile(bias, lead), y[n].reshape(-1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("lead, k, m, n", [((), 3, 4, 5), ((2,), 3, 4, 5), ((2, 3), 1, 2, 1)])
def test_matmul_with_constant_left_operand(lead, k, m, n):
    """MatMul(W, X): edges (…, k, n) -> (…, j, n) of weight W[j, k], enumerated by hand."""
    rng = np.random.default_rng(len(lead) * 10 + k)
    w = rng.normal(size=(m, k)).astype(np.float32)
    model = make_model([helper.make_node("MatMul", ["w", "x"], ["y"])], (*lead, k, n), {"w": w})
    plan = onnxtopo.inspect(model)
    rule = plan.steps[0].rule
    lead_size = int(np.prod(lead))
    expected = {}
    for lead_index in range(lead_size):
        for kk in range(k):
            for j in range(m):
                for nn in range(n):
                    expected[((lead_index * k + kk) * n + nn, (lead_index * m + j) * n + nn)] = float(w[j, kk])
    p = rule.pattern
    assert_same_edges(edges_as_dict(p.src, p.dst, p.weight), expected, what="left MatMul pattern")
    x = rng.normal(size=(3, *lead, k, n)).astype(np.float32)
    y = ort_outputs(model, x)["y"]
    for sample in range(3):
        out = np.zeros(int(np.prod(rule.out_shape)))
        np.add.at(out, p.dst, rule.edge_values(x[sample].reshape(-1).astype(np.float64)))
        np.testing.assert_allclose(out, y[sample].reshape(-1), rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------
# Gemm that would contract the batch axis
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("activation, attrs", [("B", {}), ("A", {"transA": 1})])
def test_gemm_that_would_contract_the_batch_refused(activation, attrs):
    """Gemm's operands are matrices: with x (batch, K) as B, Y = W·x sums over the batch; with
    transA, Y = xᵀ·W does too. (With x's samples on its columns both are dense layers:
    tests/test_plan_span.py.)"""
    W = np.ones((4, 4), dtype=np.float32)
    inputs = ["x", "W"] if activation == "A" else ["W", "x"]
    model = make_model([helper.make_node("Gemm", inputs, ["y"], **attrs)], (4,), {"W": W})
    with pytest.raises(UnsupportedOpError, match="contract the batch axis"):
        onnxtopo.inspect(model)
