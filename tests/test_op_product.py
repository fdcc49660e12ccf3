"""Products and contractions of activations (rules/op_product.py, and Einsum of two activations from
rules/op_einsum.py): Mul, Div, MatMul, Einsum.

Every case is a small network (conftest.Net): x -> branches with constant weights -> the op (tensor
"p") -> Reshape to (batch, -1) -> MatMul. The op's edges are checked entry by entry against the
node's Jacobian by central finite differences in float64 (conftest.node_jacobian) at the node's own
inputs from onnxruntime: an edge exactly where |J[v, u]| > 0, φ = |J[v, u] · h_u|. The end-to-end
engine comparison and the refusals cover the ops of test_op_einsum.py and test_op_max.py too.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import onnxtopo

from conftest import (
    NET_BATCH,
    Net,
    analyzed,
    assert_same_edges,
    assert_same_persistence,
    graph_dict,
    layer_of,
    make_model,
    node_jacobian,
    operand_values,
    size_of,
    vertex_ids,
)
from test_op_einsum import LINEAR_EINSUM_CASES
from test_op_max import REDUCE_CASES, extremum_case, mean_case

BATCH = NET_BATCH  # conftest.Net's batch
TOL = {"rtol": 1e-4, "atol": 1e-6}  # the analysis runs the optimized model: fused kernels round apart


# --------------------------------------------------------------------------------------------
# Products and contractions of activations against the Jacobian
# --------------------------------------------------------------------------------------------

def mul_same():
    net = Net(1, (3, 4))
    net.source("a", "a")
    net.source("t", "b")
    net.dense("x", "a", 4, 5)
    net.node("Tanh", [net.dense("x", "b", 4, 5)], "t")
    return net.finish(helper.make_node("Mul", ["a", "t"], ["p"], name="op"), (3, 5))


def se_gate(first):
    """Squeeze-excitation: a conv's ReLU times a per-channel sigmoid gate."""
    net = Net(2, (2, 4, 4))
    net.node("Relu", [net.node("Conv", ["x", net.const("Wc", (3, 2, 3, 3))], "c", pads=[1, 1, 1, 1])], "r")
    net.node("Sigmoid", [net.node("Conv", ["x", net.const("Wg", (3, 2, 4, 4))], "gc")], "g")
    net.source("r", "c")
    net.source("g", "gc")
    operands = ["g", "r"] if first else ["r", "g"]
    return net.finish(helper.make_node("Mul", operands, ["p"], name="op"), (3, 4, 4))


def mul_broadcast_both():
    """(2, 3, 1) ⊙ (2, 1, 3): both operands fan out."""
    net = Net(3, (2, 3, 4))
    net.dense("x", "a", 4, 1)
    net.node("Transpose", [net.dense("x", "b", 4, 1)], "bt", perm=[0, 1, 3, 2])
    net.source("a", "a")
    net.source("bt", "b", lambda ids: ids.transpose(0, 2, 1))
    return net.finish(helper.make_node("Mul", ["a", "bt"], ["p"], name="op"), (2, 3, 3))


def mul_after_relu():
    """Zero activations: the edges they would carry have φ = 0."""
    net = Net(4, (3, 4))
    net.node("Relu", [net.dense("x", "a", 4, 5)], "ra")
    net.node("Relu", [net.dense("x", "b", 4, 5)], "rb")
    net.source("ra", "a")
    net.source("rb", "b")
    return net.finish(helper.make_node("Mul", ["ra", "rb"], ["p"], name="op"), (3, 5))


def div(numerator_shape, divisor_shape, out_shape):
    net = Net(5, (2, 3, 4))
    net.dense("x", "a", 4, numerator_shape[-1])
    net.node("Sigmoid", [net.dense("x", "b", 4, divisor_shape[-1])], "s")
    net.source("a", "a")
    net.source("s", "b")
    return net.finish(helper.make_node("Div", ["a", "s"], ["p"], name="op"), out_shape)


def matmul_qk(heads):
    """Q·Kᵀ with the transpose as its own node, with or without a heads axis."""
    net = Net(6, (2, 3, 4) if heads else (3, 4))
    net.dense("x", "q", 4, 4)
    net.node("Transpose", [net.dense("x", "k", 4, 4)], "kt", perm=[0, 1, 3, 2] if heads else [0, 2, 1])
    net.source("q", "q")
    net.source("kt", "k", lambda ids: np.swapaxes(ids, -1, -2))
    return net.finish(helper.make_node("MatMul", ["q", "kt"], ["p"], name="op"), (2, 3, 3) if heads else (3, 3))


def matmul_broadcast(left):
    """(1, 3, 4) @ (2, 4, 3) or (2, 3, 4) @ (1, 4, 5): the size-1 leading axis broadcasts."""
    net = Net(7, (2, 3, 4))
    if left:
        net.flat_dense("a", 12, (1, 3, 4))
        net.node("Transpose", [net.dense("x", "b", 4, 4)], "bt", perm=[0, 1, 3, 2])
        net.source("a", "a_flat")
        net.source("bt", "b", lambda ids: ids.transpose(0, 2, 1))
        operands, out_shape = ["a", "bt"], (2, 3, 3)
    else:
        net.dense("x", "q", 4, 4)
        net.flat_dense("v", 20, (1, 4, 5))
        net.source("q", "q")
        net.source("v", "v_flat")
        operands, out_shape = ["q", "v"], (2, 3, 5)
    return net.finish(helper.make_node("MatMul", operands, ["p"], name="op"), out_shape)


def matmul_merged_heads():
    """Q·Kᵀ as attention exports write it: heads split out, then merged with the batch axis,
    (batch × heads, T, d) @ (batch × heads, d, T)."""
    T, H, d = 3, 2, 2
    net = Net(16, (T, 4))
    for name, perm, matrix in (("q", [0, 2, 1, 3], (T, d)), ("k", [0, 2, 3, 1], (d, T))):
        split = net.node("Reshape", [net.dense("x", name, 4, H * d), net.const_int(f"{name}_split", [-1, T, H, d])],
                         f"{name}_heads_last")
        heads = net.node("Transpose", [split], f"{name}_heads", perm=perm)
        net.node("Reshape", [heads, net.const_int(f"{name}_merge", [-1, *matrix])], f"{name}_merged")
    net.source("q_merged", "q", lambda ids: ids.reshape(T, H, d).transpose(1, 0, 2))
    net.source("k_merged", "k", lambda ids: ids.reshape(T, H, d).transpose(1, 2, 0))
    return net.finish(helper.make_node("MatMul", ["q_merged", "k_merged"], ["p"], name="op"), (H, T, T))


def attention_weights_times_values():
    """sigmoid(Q·Kᵀ)·V: the second product reads the first one's layer."""
    net = Net(8, (3, 4))
    net.node("Transpose", [net.dense("x", "k", 4, 4)], "kt", perm=[0, 2, 1])
    net.node("Sigmoid", [net.node("MatMul", [net.dense("x", "q", 4, 4), "kt"], "scores")], "w")
    net.dense("x", "v", 4, 2)
    net.source("w", "scores")
    net.source("v", "v")
    return net.finish(helper.make_node("MatMul", ["w", "v"], ["p"], name="op"), (3, 2))


def einsum_bilinear(equation, a_shape, b_shape, out_shape, constant=None):
    """Einsum of two activations (each a layer from the flattened input), maybe with a constant."""
    net = Net(9, (3, 4))
    net.flat_dense("a", size_of(a_shape), a_shape)
    net.flat_dense("b", size_of(b_shape), b_shape)
    net.source("a", "a_flat")
    net.source("b", "b_flat")
    inputs = ["a", "b"] + ([net.const("C", constant)] if constant else [])
    return net.finish(helper.make_node("Einsum", inputs, ["p"], name="op", equation=equation), out_shape)


PRODUCT_CASES = {
    "mul-same-shape": mul_same,
    "mul-se-gate-second": lambda: se_gate(first=False),
    "mul-se-gate-first": lambda: se_gate(first=True),
    "mul-broadcast-both": mul_broadcast_both,
    "mul-after-relu": mul_after_relu,
    "div-same-shape": lambda: div((2, 3, 4), (2, 3, 4), (2, 3, 4)),
    "div-broadcast-divisor": lambda: div((2, 3, 4), (2, 3, 1), (2, 3, 4)),
    "div-broadcast-numerator": lambda: div((2, 3, 1), (2, 3, 4), (2, 3, 4)),
    "matmul-qk": lambda: matmul_qk(heads=False),
    "matmul-qk-heads": lambda: matmul_qk(heads=True),
    "matmul-broadcast-left": lambda: matmul_broadcast(left=True),
    "matmul-broadcast-right": lambda: matmul_broadcast(left=False),
    "matmul-weights-values": attention_weights_times_values,
    "matmul-batch-merged-with-heads": matmul_merged_heads,
    "einsum-attention-heads": lambda: einsum_bilinear("nhid,nhjd->nhij", (2, 3, 2), (2, 4, 2), (2, 3, 4)),
    "einsum-qk-no-transpose": lambda: einsum_bilinear("nid,njd->nij", (3, 2), (4, 2), (3, 4)),
    "einsum-implicit-ellipsis": lambda: einsum_bilinear("...ij,...jk", (3, 2), (2, 4), (3, 4)),
    "einsum-spaces-uppercase": lambda: einsum_bilinear("n I J , n J K -> n K I", (3, 2), (2, 4), (4, 3)),
    "einsum-diagonal": lambda: einsum_bilinear("nii,ni->ni", (3, 3), (3,), (3,)),
    "einsum-summed-in-each": lambda: einsum_bilinear("nij,nkl->nik", (3, 2), (4, 2), (3, 4)),
    "einsum-broadcast-size-1": lambda: einsum_bilinear("nij,njk->nik", (3, 2), (1, 4), (3, 4)),
    "einsum-with-constant": lambda: einsum_bilinear("nij,njk,kl->nli", (3, 2), (2, 4), (2, 3), constant=(4, 2)),
}


@pytest.mark.parametrize("name", list(PRODUCT_CASES))
def test_product_edges_are_the_jacobian_times_h(name):
    case = PRODUCT_CASES[name]()
    plan, target, got = analyzed(case)
    steps = [s for s in plan.steps if s.target == target.index]
    activations = [n for n in case.op.input if n not in case.inits]
    assert [s.input_tensor for s in steps] == activations
    for n in range(BATCH):
        values = operand_values(case, n)
        expected = {}
        for operand in dict.fromkeys(activations):
            jacobian = node_jacobian(case.op, values, operand)
            h = values[operand].ravel()
            ids = vertex_ids(plan, case, operand)
            assert jacobian.shape == (target.size, len(ids))
            for v in range(target.size):
                for u in range(len(ids)):
                    if abs(jacobian[v, u]) > 1e-9:
                        key = (ids[u], target.offset + v)
                        expected[key] = expected.get(key, 0.0) + jacobian[v, u] * h[u]
        expected = {k: abs(s) for k, s in expected.items() if s != 0}
        assert expected
        assert_same_edges(got[n], expected, **TOL, what=f"{name}, sample {n}")


def test_product_rules_read_what_they_need():
    """Mul reads its output, a contraction of activations the other operand."""
    plan = onnxtopo.inspect(mul_same().model)
    assert [s.rule.reads for s in plan.steps if s.op_type == "Mul"] == [("p",), ("p",)]
    plan = onnxtopo.inspect(matmul_qk(heads=False).model)
    assert [s.rule.reads for s in plan.steps if s.node == "op"] == [("kt",), ("q",)]
    assert [s.rule.rule_name for s in plan.steps if s.node == "op"] == ["bilinear", "bilinear"]


def test_attention_scaling_folds_into_the_product():
    """Q·Kᵀ / √d: the constant scale that follows the product weighs its edges (design notes 2b)."""
    unscaled = matmul_qk(heads=False)
    net = Net(6, (3, 4))  # the same weights and input as matmul_qk
    net.dense("x", "q", 4, 4)
    net.node("Transpose", [net.dense("x", "k", 4, 4)], "kt", perm=[0, 2, 1])
    net.node("MatMul", ["q", "kt"], "s", name="op")
    scaled = net.finish(helper.make_node("Div", ["s", net.scalar("sqrt_d", 2.0)], ["p"]), (3, 3))
    np.testing.assert_array_equal(scaled.x, unscaled.x)
    plan = onnxtopo.inspect(scaled.model)
    target = layer_of(plan, "s")
    np.testing.assert_allclose(plan.scales[target.index], np.full(9, 0.5))
    pairs = zip(onnxtopo.Analyzer(scaled.model).graphs(scaled.x), onnxtopo.Analyzer(unscaled.model).graphs(unscaled.x),
                strict=True)
    for got, plain in pairs:
        plain_edges = graph_dict(plain, target.offset, target.offset + target.size)
        assert_same_edges(graph_dict(got, target.offset, target.offset + target.size),
                          {k: phi / 2 for k, phi in plain_edges.items()}, **TOL)


def test_swish_is_elementwise():
    """x · sigmoid(x) is a function of one neuron: no layer (design notes 2b)."""
    net = Net(10, (3, 4))
    net.node("Sigmoid", [net.dense("x", "a", 4, 5)], "s")
    case = net.finish(helper.make_node("Mul", ["a", "s"], ["p"]), (3, 5))
    plan = onnxtopo.inspect(case.model)
    assert [layer.tensor for layer in plan.layers] == ["x", "a", "y"]
    h = case.acts["p"].reshape(BATCH, -1)  # the head's edges read the swish values
    W = case.inits["W_head"]
    for n, g in enumerate(onnxtopo.Analyzer(case.model).graphs(case.x)):
        expected = {(3 * 4 + k, 3 * 4 + 15 + j): abs(float(W[k, j]) * float(h[n, k])) for k in range(15)
                    for j in range(2)}
        assert_same_edges(graph_dict(g, 3 * 4 + 15, 3 * 4 + 17), expected, **TOL)


# --------------------------------------------------------------------------------------------
# End to end: the forest engine and dionysus agree
# --------------------------------------------------------------------------------------------

END_TO_END = {
    "mul": (lambda: se_gate(first=False), "window"),
    "div": (lambda: div((2, 3, 4), (2, 3, 1), (2, 3, 4)), "window"),
    "matmul": (attention_weights_times_values, "window"),
    "einsum-bilinear": (PRODUCT_CASES["einsum-attention-heads"], "window"),
    "einsum-linear": (LINEAR_EINSUM_CASES["two-constants"], "window"),
    "mean": (lambda: mean_case(True), "window"),
    "max-argmax": (lambda: extremum_case("Max", "three-broadcast"), "argmax"),
    "min-window": (lambda: extremum_case("Min", "constant-competes"), "window"),
    "reducemax-argmax": (REDUCE_CASES["max-ties"], "argmax"),
    "reducemin-window": (REDUCE_CASES["min-two-axes"], "window"),
}


@pytest.mark.parametrize("name", list(END_TO_END))
def test_forest_and_dionysus_agree(name):
    make, rule = END_TO_END[name]
    case = make()
    forest = onnxtopo.analyze(case.model, case.x, maxpool_rule=rule, chunk_edges=16)
    slow = onnxtopo.analyze(case.model, case.x, maxpool_rule=rule, engine="dionysus")
    for a, b in zip(forest, slow, strict=True):
        assert a.n_edges == b.n_edges > 0
        assert_same_persistence(a, b)


# --------------------------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------------------------

def refusal_model(kind):
    net = Net(17, (3, 4))
    if kind == "mul-ranks-differ":
        net.dense("x", "a", 4, 5)
        net.flat_dense("b", 5, (5,))
        op = helper.make_node("Mul", ["a", "b"], ["p"], name="op")
    elif kind == "matmul-vector":
        net.flat_dense("a", 4, (4,))
        net.flat_dense("b", 12, (4, 3))
        op = helper.make_node("MatMul", ["a", "b"], ["p"], name="op")
    elif kind == "matmul-ranks-differ":
        net.flat_dense("a", 12, (1, 3, 4))
        net.flat_dense("b", 8, (4, 2))
        op = helper.make_node("MatMul", ["a", "b"], ["p"], name="op")
    elif kind == "matmul-with-own-transpose":
        net.node("Transpose", [net.dense("x", "a", 4, 4)], "at", perm=[0, 2, 1])
        op = helper.make_node("MatMul", ["a", "at"], ["p"], name="op")
    elif kind == "einsum-sums-the-batch":
        net.dense("x", "a", 4, 4)
        net.dense("x", "b", 4, 4)
        op = helper.make_node("Einsum", ["a", "b"], ["p"], name="op", equation="nij,njk")
    elif kind == "einsum-batch-not-first":
        net.dense("x", "a", 4, 4)
        net.flat_dense("b", 16, (4, 4))
        op = helper.make_node("Einsum", ["a", "b"], ["p"], name="op", equation="nij,njk->ink")
    elif kind == "reducemax-batch-axis":
        net.dense("x", "a", 4, 4)
        op = helper.make_node("ReduceMax", ["a"], ["p"], name="op", axes=[0, 2])
    elif kind == "reducemin-every-axis":
        net.dense("x", "a", 4, 4)
        op = helper.make_node("ReduceMin", ["a"], ["p"], name="op")
    elif kind == "max-constant-enlarges":
        net.dense("x", "a", 4, 1)
        net.node("Tanh", [net.dense("x", "b", 4, 1)], "t")
        op = helper.make_node("Max", ["a", "t", net.const("C", (3, 5))], ["p"], name="op")
    else:
        raise AssertionError(kind)
    net.nodes.append(op)
    return make_model(net.nodes + [helper.make_node("Identity", ["p"], ["y"])], (3, 4), net.inits)


REFUSALS = {
    "mul-ranks-differ": "different ranks",
    "matmul-vector": "rows are samples",
    "matmul-ranks-differ": "different ranks",
    "matmul-with-own-transpose": "two of its operands carry the same neuron",
    "einsum-sums-the-batch": "does not keep the batch axis",
    "einsum-batch-not-first": "does not keep the batch axis",
    "reducemax-batch-axis": "batch axis",
    "reducemin-every-axis": "every axis",
    "max-constant-enlarges": "changes the activation's shape",
}


@pytest.mark.parametrize("kind", list(REFUSALS))
def test_refusals_name_the_node_and_the_reason(kind):
    with pytest.raises(onnxtopo.UnsupportedOpError) as info:
        onnxtopo.inspect(refusal_model(kind))
    message = str(info.value)
    assert "'op'" in message and REFUSALS[kind] in message, message
