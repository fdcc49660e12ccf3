"""Ops with several activation operands and max-type reductions (op_product, op_einsum, op_max).

Every case is a small network: x -> branches with constant weights -> the op (tensor "p") ->
Reshape to (batch, -1) -> MatMul. The op's edges are checked against computations written here:

* products and contractions of activations (Mul, Div, MatMul, Einsum): entry by entry against
  the node's Jacobian by central finite differences in float64 (conftest.node_jacobian) at the
  node's own inputs from onnxruntime: an edge exactly where |J[v, u]| > 0, φ = |J[v, u] · h_u|;
* linear ones (Einsum with constant operands, Mean): against edges enumerated with plain loops
  over every index assignment of the equation, and onnxruntime's output rebuilt from the signed
  edge values;
* Max, Min, ReduceMax, ReduceMin: against a brute-force enumeration of candidates and winners.
"""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pytest
from onnx import helper

import onnxtopo
from onnxtopo.rules.op_einsum import einsum_rules

from conftest import assert_same_edges, make_model, node_jacobian, ort_outputs
from test_rules import flat_index, size_of
from test_rules_more import graph_dict, layer_of, positions

BATCH = 2
TOL = dict(rtol=1e-4, atol=1e-6)  # the analysis runs the optimized model: fused kernels round apart


# --------------------------------------------------------------------------------------------
# Building the networks
# --------------------------------------------------------------------------------------------

class Net:
    """Nodes and constants of a network under construction; ``sources`` maps each operand of the
    op to (the layer tensor its neurons belong to, how the layer's ids are arranged in it)."""

    def __init__(self, seed, sample):
        self.rng = np.random.default_rng(seed)
        self.sample = sample
        self.nodes, self.inits, self.sources = [], {}, {}

    def const(self, name, shape, spread=None):
        """Normal values, or uniform in [-spread, spread]."""
        value = self.rng.normal(size=shape) if spread is None else self.rng.uniform(-spread, spread, size=shape)
        self.inits[name] = value.astype(np.float32)
        return name

    def node(self, op, inputs, output, **attrs):
        self.nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    def dense(self, src, out, k, n):
        """A layer: MatMul by a constant (k, n)."""
        return self.node("MatMul", [src, self.const(f"W_{out}", (k, n))], out)

    def flat_dense(self, out, n, shape):
        """A layer from the flattened input, reshaped to per-sample ``shape``."""
        flat = self.dense(self.node("Flatten", ["x"], f"{out}_in"), f"{out}_flat", size_of(self.sample), n)
        return self.node("Reshape", [flat, self.const_int(f"{out}_shape", [-1, *shape])], out)

    def const_int(self, name, values):
        self.inits[name] = np.asarray(values, dtype=np.int64)
        return name

    def scalar(self, name, value):
        self.inits[name] = np.float32(value)
        return name

    def source(self, operand, layer, arrange=lambda ids: ids):
        self.sources[operand] = (layer, arrange)

    def finish(self, op_node, out_shape, *, opset=17):
        """Append the op (output "p") and the head; the model, a batch and the activations."""
        self.nodes.append(op_node)
        head = [helper.make_node("Reshape", ["p", self.const_int("per_sample", [-1, size_of(out_shape)])], ["f"]),
                helper.make_node("MatMul", ["f", self.const("W_head", (size_of(out_shape), 2))], ["y"])]
        model = make_model(self.nodes + head, self.sample, self.inits, opset=opset)
        x = self.rng.normal(size=(BATCH, *self.sample)).astype(np.float32)
        names = sorted(({n for n in op_node.input if n and n not in self.inits} | {"p"}
                        | {layer for layer, _ in self.sources.values()}) - {"x"})
        # a tensor whose leading axis merges the batch with the heads, viewed batch first
        acts = {name: value.reshape(BATCH, -1, *value.shape[1:]) if value.shape[0] != BATCH else value
                for name, value in ort_outputs(model, x, names).items()}
        acts["x"] = x
        assert acts["p"].shape[1:] == tuple(out_shape)  # the expected shape, from the ONNX spec
        return SimpleNamespace(model=model, x=x, acts=acts, op=op_node, inits=self.inits, sources=self.sources,
                               out_shape=tuple(out_shape), options={})


def vertex_ids(plan, case, operand) -> list[int]:
    """The vertex of each element (flat) of one of the op's operands."""
    tensor, arrange = case.sources[operand]
    layer = layer_of(plan, tensor)
    return arrange(layer.offset + np.arange(layer.size).reshape(layer.shape)).ravel().tolist()


def analyzed(case):
    """The plan, the op's layer and, per sample, the edges into it {(src, dst): φ}."""
    analyzer = onnxtopo.Analyzer(case.model, **case.options)
    target = layer_of(analyzer.plan, "p")
    assert target.shape == case.out_shape and target.op_type == case.op.op_type
    for step in (s for s in analyzer.plan.steps if s.target == target.index):
        check_parts(step.rule)
    got = [graph_dict(g, target.offset, target.offset + target.size) for g in analyzer.graphs(case.x)]
    return analyzer.plan, target, got


def check_parts(rule):
    """The candidate count (the memory estimate's) is the pattern's size, and the pattern built
    part by part is the whole pattern."""
    whole = rule.pattern
    assert rule.candidate_count == len(whole)
    parts = list(rule.chunks(max_edges=7))
    for field in ("src", "dst", "weight", "partner"):
        if hasattr(whole, field):
            np.testing.assert_array_equal(np.concatenate([getattr(p, field) for p in parts]), getattr(whole, field))


def operand_values(case, n):
    """The op's inputs for sample n, batch axis of size 1 kept, in float64."""
    return {name: (case.acts[name][n:n + 1] if name in case.acts else case.inits[name]).astype(np.float64)
            for name in case.op.input}


# --------------------------------------------------------------------------------------------
# 1. Products and contractions of activations against the Jacobian
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
    pairs = zip(onnxtopo.Analyzer(scaled.model).graphs(scaled.x), onnxtopo.Analyzer(unscaled.model).graphs(unscaled.x))
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
# 2. Linear ops: Einsum with constant operands, Mean
# --------------------------------------------------------------------------------------------

def brute_derivatives(equation, operands, wrt):
    """{(u, v): ∂y_v/∂X_u} for the operand at position ``wrt`` of a letters-only einsum, by plain
    loops over every assignment of its indices; a size-1 axis broadcasts."""
    lhs, out = equation.split("->")
    terms = lhs.split(",")
    sizes = {}
    for term, value in zip(terms, operands):
        for letter, n in zip(term, np.shape(value)):
            sizes[letter] = max(sizes.get(letter, 1), n)
    letters = sorted(sizes)
    derivatives = {}
    for values in itertools.product(*(range(sizes[c]) for c in letters)):
        index = dict(zip(letters, values))
        at = [tuple(index[c] if n > 1 else 0 for c, n in zip(term, np.shape(v))) for term, v in zip(terms, operands)]
        if any(len(set(index[c] for c in term if c == d)) > 1 for term in terms for d in term):
            continue
        coefficient = 1.0
        for i, (position, value) in enumerate(zip(at, operands)):
            if i != wrt:
                coefficient *= float(np.asarray(value)[position])
        u = flat_index(at[wrt], np.shape(operands[wrt]))
        v = flat_index(tuple(index[c] for c in out), tuple(sizes[c] for c in out))
        derivatives[(u, v)] = derivatives.get((u, v), 0.0) + coefficient
    return derivatives


def einsum_linear(equation, per_sample, a_shape, constants, out_shape, *, single=False):
    """Einsum of one activation "a" (a layer from the flattened input) and constants;
    ``per_sample`` is the same equation without the batch index, letters only, for the loops."""
    net = Net(11, (3, 4))
    net.flat_dense("a", size_of(a_shape), a_shape)
    net.source("a", "a_flat")
    names = [net.const(f"C{i}", shape) if shape else "a" for i, shape in enumerate(constants)]
    case = net.finish(helper.make_node("Einsum", names, ["p"], name="op", equation=equation), out_shape)
    case.per_sample = per_sample
    return case


LINEAR_EINSUM_CASES = {
    "matmul-like": lambda: einsum_linear("nij,jk->nik", "ij,jk->ik", (3, 4), [None, (4, 5)], (3, 5)),
    "implicit": lambda: einsum_linear("bij,jk", "ij,jk->ik", (3, 4), [None, (4, 5)], (3, 5)),
    "permuted-output": lambda: einsum_linear("nij,kj->nki", "ij,kj->ki", (3, 4), [None, (5, 4)], (5, 3)),
    "ellipsis": lambda: einsum_linear("...ij,jk->...ik", "bij,jk->bik", (2, 3, 4), [None, (4, 5)], (2, 3, 5)),
    "diagonal": lambda: einsum_linear("nii,ik->nk", "ii,ik->k", (4, 4), [None, (4, 3)], (3,)),
    "trace": lambda: einsum_linear("nii->n", "ii->", (4, 4), [None], ()),
    "summed-in-constant": lambda: einsum_linear("nij,jkl->nik", "ij,jkl->ik", (3, 4), [None, (4, 5, 2)], (3, 5)),
    "constant-first-uppercase": lambda: einsum_linear("Jk,nIJ->nkI", "Jk,IJ->kI", (3, 4), [(4, 5), None], (5, 3)),
    "constant-batch-broadcast": lambda: einsum_linear("nij,nj->ni", "ij,j->i", (3, 4), [None, (1, 4)], (3,)),
    "two-constants": lambda: einsum_linear("nij,jk,kl->nil", "ij,jk,kl->il", (3, 4), [None, (4, 5), (5, 2)], (3, 2)),
    "single-operand-sum": lambda: einsum_linear("nij->nj", "ij->j", (3, 4), [None], (4,)),
}


@pytest.mark.parametrize("name", list(LINEAR_EINSUM_CASES))
def test_linear_einsum(name):
    case = LINEAR_EINSUM_CASES[name]()
    plan, target, got = analyzed(case)
    (step,) = [s for s in plan.steps if s.target == target.index]
    assert step.rule.rule_name == "einsum" and step.rule.reads == ()
    ids = vertex_ids(plan, case, "a")
    position = list(case.op.input).index("a")
    terms = case.per_sample.split("->")[0].split(",")
    for n in range(BATCH):
        h = case.acts["a"][n].astype(np.float64).ravel()
        # a constant's size-1 batch axis, absent from the per-sample equation, is dropped
        operands = [h.reshape(case.acts["a"].shape[1:]) if operand == "a" else
                    case.inits[operand].astype(np.float64).reshape(case.inits[operand].shape[-len(term):])
                    for operand, term in zip(case.op.input, terms)]
        expected = {(ids[u], target.offset + v): abs(w * h[u])
                    for (u, v), w in brute_derivatives(case.per_sample, operands, position).items() if w * h[u] != 0}
        assert_same_edges(got[n], expected, **TOL, what=f"{name}, sample {n}")
        # onnxruntime's output, rebuilt from the signed edge values
        out = np.zeros(target.size)
        np.add.at(out, step.rule.pattern.dst, step.rule.edge_values(h, step.rule.pattern))
        np.testing.assert_allclose(out, case.acts["p"][n].ravel(), rtol=1e-4, atol=1e-5)


def mean_case(with_constant):
    net = Net(12, (3, 4))
    net.dense("x", "a", 4, 5)
    net.node("Tanh", [net.dense("x", "b", 4, 5)], "t")
    net.source("a", "a")
    net.source("t", "b")
    inputs = ["a", "t"] + ([net.const("C", (5,))] if with_constant else [])
    return net.finish(helper.make_node("Mean", inputs, ["p"], name="op"), (3, 5))


@pytest.mark.parametrize("with_constant", [False, True])
def test_mean_of_activations(with_constant):
    case = mean_case(with_constant)
    plan, target, got = analyzed(case)
    count = 3 if with_constant else 2
    for n in range(BATCH):
        expected = {}
        for operand in ("a", "t"):
            h = case.acts[operand][n].ravel()
            ids = vertex_ids(plan, case, operand)
            for u in range(15):
                expected[(ids[u], target.offset + u)] = abs(float(h[u]) / count)
        assert_same_edges(got[n], expected, **TOL, what=f"sample {n}")
        out = np.zeros(target.size)
        for step in (s for s in plan.steps if s.target == target.index):
            h = case.acts[step.input_tensor][n].astype(np.float64).ravel()
            np.add.at(out, step.rule.pattern.dst, step.rule.edge_values(h, step.rule.pattern))
        if with_constant:  # the constant adds no edge, only its share of the mean
            out += np.tile(case.inits["C"], 3) / count
        np.testing.assert_allclose(out, case.acts["p"][n].ravel(), rtol=1e-5, atol=1e-6)


def test_one_activation_operand_makes_no_layer():
    """Max(x, 0) is Relu, Min(x, c) a clip: elementwise; Mean(x, c) = (x + c)/2 a constant affine
    map, which folds into the layer before it (design notes 2b)."""
    for op, inputs in [("Max", ["a", "zero"]), ("Min", ["c", "a"]), ("Mean", ["a", "c"])]:
        net = Net(13, (3, 4))
        net.dense("x", "a", 4, 5)
        net.inits["zero"] = np.zeros((1,), dtype=np.float32)
        net.const("c", (3, 5))
        case = net.finish(helper.make_node(op, inputs, ["p"]), (3, 5))
        plan = onnxtopo.inspect(case.model)
        assert [layer.tensor for layer in plan.layers] == ["x", "a", "y"], op
        if op == "Mean":
            np.testing.assert_allclose(plan.scales[1], np.full(15, 0.5))
        else:
            assert not plan.scales
        W = case.inits["W_head"]
        for n, g in enumerate(onnxtopo.Analyzer(case.model).graphs(case.x)):
            h = case.acts["p"][n].ravel()
            expected = {(12 + k, 27 + j): abs(float(W[k, j]) * float(h[k])) for k in range(15) for j in range(2)
                        if W[k, j] * h[k] != 0}
            assert_same_edges(graph_dict(g, 27, 29), expected, **TOL, what=op)


# --------------------------------------------------------------------------------------------
# 3. Max, Min, ReduceMax, ReduceMin: brute force
# --------------------------------------------------------------------------------------------

def extremum_case(op, variant):
    net = Net(14, (2, 3, 4))
    if variant == "same-shape":
        net.dense("x", "a", 4, 3)
        net.node("Tanh", [net.dense("x", "b", 4, 3)], "t")
        net.source("a", "a")
        net.source("t", "b")
        inputs, out_shape = ["a", "t"], (2, 3, 3)
    elif variant == "three-broadcast":
        net.dense("x", "a", 4, 1)
        net.node("Transpose", [net.dense("x", "b", 4, 1)], "bt", perm=[0, 1, 3, 2])
        net.dense("x", "c", 4, 3)
        net.source("a", "a")
        net.source("bt", "b", lambda ids: ids.transpose(0, 2, 1))
        net.source("c", "c")
        inputs, out_shape = ["a", "bt", "c"], (2, 3, 3)
    elif variant == "constant-competes":  # the constant wins some outputs: they get no argmax edge
        net.dense("x", "a", 4, 3)
        net.dense("x", "b", 4, 3)
        net.source("a", "a")
        net.source("b", "b")
        inputs, out_shape = ["a", net.const("C", (3, 3), spread=1.0), "b"], (2, 3, 3)
    elif variant == "ties":  # operands clipped below (Max) or above (Min) tie at the bound
        bounds = [net.scalar("lo", -0.3), ""] if op == "Max" else ["", net.scalar("hi", 0.3)]
        for name in ("a", "b"):
            net.node("Clip", [net.dense("x", name, 4, 3), *bounds], f"k{name}")
            net.source(f"k{name}", name)
        inputs, out_shape = ["ka", "kb"], (2, 3, 3)
    else:
        raise AssertionError(variant)
    return net.finish(helper.make_node(op, inputs, ["p"], name="op"), out_shape)


def brute_extremum(case, plan, target, n, rule):
    """{(u, v): φ}: every operand element each output is the extremum of (window), or the first
    input attaining it, constants included (argmax)."""
    values, ids = [], []
    for name in case.op.input:
        if name in case.inits:
            value = np.asarray(case.inits[name], dtype=np.float64)
            values.append(value.reshape((1,) * (len(case.out_shape) - value.ndim) + value.shape))
            ids.append(None)
        else:
            values.append(case.acts[name][n].astype(np.float64))
            ids.append(np.asarray(vertex_ids(plan, case, name)).reshape(values[-1].shape))
    better = (lambda a, b: a > b) if case.op.op_type in ("Max", "ReduceMax") else (lambda a, b: a < b)
    expected = {}
    for position in positions(case.out_shape):
        v = target.offset + flat_index(position, case.out_shape)
        at = [tuple(i if d > 1 else 0 for i, d in zip(position, value.shape)) for value in values]
        winner = 0
        for i in range(1, len(values)):
            if better(values[i][at[i]], values[winner][at[winner]]):
                winner = i
        for i, (value, vertex) in enumerate(zip(values, ids)):
            if vertex is not None and (rule == "window" or i == winner) and value[at[i]] != 0:
                expected[(int(vertex[at[i]]), v)] = abs(float(value[at[i]]))
    return expected


@pytest.mark.parametrize("rule", ["window", "argmax"])
@pytest.mark.parametrize("variant", ["same-shape", "three-broadcast", "constant-competes", "ties"])
@pytest.mark.parametrize("op", ["Max", "Min"])
def test_max_min_of_activations(op, variant, rule):
    case = extremum_case(op, variant)
    case.options = dict(maxpool_rule=rule)
    plan, target, got = analyzed(case)
    assert {s.rule.rule_name for s in plan.steps if s.target == target.index} == {rule}
    for n in range(BATCH):
        expected = brute_extremum(case, plan, target, n, rule)
        assert_same_edges(got[n], expected, **TOL, what=f"sample {n}")
    if variant == "ties":  # the brute force gives ties to the first operand: there are some
        assert (case.acts["ka"] == case.acts["kb"]).sum() > 0
    if variant == "constant-competes" and rule == "argmax":
        C = case.inits["C"]
        lost = [(C > np.maximum(case.acts["a"][n], case.acts["b"][n]) if op == "Max" else
                 C < np.minimum(case.acts["a"][n], case.acts["b"][n])).sum() for n in range(BATCH)]
        assert sum(lost) > 0 and sum(len(g) for g in got) == BATCH * target.size - sum(lost)


def reduce_case(op, axes, out_shape, *, opset=13, keepdims=None, ties=False, as_input=False):
    """ReduceMax/ReduceMin of a layer of per-sample shape (2, 3, 4); ``out_shape`` from the spec."""
    net = Net(15, (2, 3, 4))
    a = net.dense("x", "a", 4, 4)
    if ties:  # elements clipped to one value, the group's extremum: the lowest flat index takes it
        bounds = ["", net.scalar("bound", 0.2)] if op == "ReduceMax" else [net.scalar("bound", -0.2), ""]
        a = net.node("Clip", [a, *bounds], "k")
    net.source(a, "a")
    attrs = {} if keepdims is None else dict(keepdims=keepdims)
    if as_input:
        inputs = [a, net.const_int("axes", axes)]
    else:
        inputs, attrs["axes"] = [a], axes
    case = net.finish(helper.make_node(op, inputs, ["p"], name="op", **attrs), out_shape, opset=opset)
    case.axes = axes
    return case


REDUCE_CASES = {
    "max-opset13-axis": lambda: reduce_case("ReduceMax", [2], (2, 1, 4)),
    "max-negative-axis-no-keepdims": lambda: reduce_case("ReduceMax", [-1], (2, 3), keepdims=0),
    "min-two-axes": lambda: reduce_case("ReduceMin", [1, 3], (1, 3, 1), keepdims=1),
    "max-opset18-axes-input": lambda: reduce_case("ReduceMax", [2, 3], (2,), opset=18, keepdims=0, as_input=True),
    "min-opset18-axes-input": lambda: reduce_case("ReduceMin", [-2], (2, 1, 4), opset=18, as_input=True),
    "max-ties": lambda: reduce_case("ReduceMax", [3], (2, 3, 1), ties=True),
    "min-ties": lambda: reduce_case("ReduceMin", [2, 3], (2, 1, 1), opset=18, ties=True, as_input=True),
}


def brute_reduce(case, plan, target, n, rule, axes):
    h = case.acts[case.op.input[0]][n].astype(np.float64)
    ids = np.asarray(vertex_ids(plan, case, case.op.input[0])).reshape(h.shape)
    reduced = {a % 4 - 1 for a in axes}
    better = (lambda a, b: a > b) if case.op.op_type == "ReduceMax" else (lambda a, b: a < b)
    groups = {}
    for position in positions(h.shape):  # row-major: flat index order
        kept = tuple(0 if i in reduced else p for i, p in enumerate(position))
        groups.setdefault(kept, []).append(position)
    expected = {}
    for kept, members in groups.items():
        v = target.offset + flat_index(kept, tuple(1 if i in reduced else d for i, d in enumerate(h.shape)))
        winner = members[0]
        for position in members[1:]:
            if better(h[position], h[winner]):
                winner = position
        for position in members if rule == "window" else [winner]:
            if h[position] != 0:
                expected[(int(ids[position]), v)] = abs(float(h[position]))
    return expected


@pytest.mark.parametrize("rule", ["window", "argmax"])
@pytest.mark.parametrize("name", list(REDUCE_CASES))
def test_reduce_max_min(name, rule):
    case = REDUCE_CASES[name]()
    case.options = dict(maxpool_rule=rule)
    plan, target, got = analyzed(case)
    for n in range(BATCH):
        expected = brute_reduce(case, plan, target, n, rule, case.axes)
        assert_same_edges(got[n], expected, **TOL, what=f"sample {n}")
    if "ties" in name:  # groups with several elements at the bound, their extremum
        assert ((case.acts["k"] == case.inits["bound"]).sum(axis=tuple(case.axes)) > 1).any()


def test_reduce_over_length_1_axes_makes_no_layer():
    for opset, attrs, inputs in [(13, dict(axes=[2]), []), (18, dict(noop_with_empty_axes=1), [])]:
        net = Net(16, (2, 1, 4))
        net.dense("x", "a", 4, 4)
        case = net.finish(helper.make_node("ReduceMax", ["a", *inputs], ["p"], **attrs), (2, 1, 4), opset=opset)
        plan = onnxtopo.inspect(case.model, maxpool_rule="argmax")
        assert [layer.tensor for layer in plan.layers] == ["x", "a", "y"]


# --------------------------------------------------------------------------------------------
# 4. End to end: the forest engine and dionysus agree
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
        np.testing.assert_array_equal(a.h0, b.h0)


# --------------------------------------------------------------------------------------------
# 5. Refusals
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


@pytest.mark.parametrize("equation, shapes, reason", [
    ("nij,nj->ni", [(None, 3, 4), (2, 4)], "one value per sample"),
    ("nij,njj->ni", [(None, 3, 4), (None, 4, 5)], "a diagonal"),
    ("nij,njk->nik", [(None, 3, 4), (None, 5, 2)], "index 'j' has sizes 4 and 5"),
    ("n...i...,nj->nj", [(None, 3, 4), (None, 4)], "more than one ellipsis"),
    ("n1,nj->nj", [(None, 3), (None, 4)], "other than letters"),
    ("nij,nj->nji", [(None, 3, 4, 5), (None, 4)], "does not fit an operand of rank 4"),
    ("n...,n...->n", [(None, 3), (None, 3)], "its output has none"),
    ("nij,nj->nii", [(None, 3, 4), (None, 4)], "repeats an index"),
    ("nij,nj->nk", [(None, 3, 4), (None, 4)], "index 'k', which no operand has"),
    ("nij->nij", [(None, 3, 4), (None, 4)], "has 1 operands, the node 2"),
    ("nnj,nj->nj", [(None, 3, 4), (None, 4)], "does not keep the batch axis"),
])
def test_einsum_refusals(equation, shapes, reason):
    node = helper.make_node("Einsum", ["a", "b"], ["p"], name="op", equation=equation)
    constants = {f"{n}": np.zeros(s) for n, s in zip("ab", shapes) if s[0] is not None}
    names = [n for n in "ab" if n not in constants]
    with pytest.raises(onnxtopo.UnsupportedOpError) as info:
        einsum_rules(node, names, [s[1:] for s in shapes if s[0] is None], constants, None)
    message = str(info.value)
    assert "'op' (Einsum)" in message and reason in message, message
