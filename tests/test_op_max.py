"""Max, Min and Mean of activations, ReduceMax and ReduceMin (rules/op_max.py).

Every case is a small network (conftest.Net): x -> branches with constant weights -> the op (tensor
"p") -> Reshape to (batch, -1) -> MatMul. Max, Min, ReduceMax and ReduceMin are checked against a
brute-force enumeration of candidates and winners; Mean against edges enumerated with plain loops
and onnxruntime's output rebuilt from the signed edge values.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import onnxtopo

from conftest import NET_BATCH, Net, analyzed, assert_same_edges, flat_index, graph_dict, positions, vertex_ids

BATCH = NET_BATCH  # conftest.Net's batch
TOL = {"rtol": 1e-4, "atol": 1e-6}  # the analysis runs the optimized model: fused kernels round apart


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
# Max, Min, ReduceMax, ReduceMin: brute force
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
    case.options = {"maxpool_rule": rule}
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
    attrs = {} if keepdims is None else {"keepdims": keepdims}
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
    case.options = {"maxpool_rule": rule}
    plan, target, got = analyzed(case)
    for n in range(BATCH):
        expected = brute_reduce(case, plan, target, n, rule, case.axes)
        assert_same_edges(got[n], expected, **TOL, what=f"sample {n}")
    if "ties" in name:  # groups with several elements at the bound, their extremum
        assert ((case.acts["k"] == case.inits["bound"]).sum(axis=tuple(case.axes)) > 1).any()


def test_reduce_over_length_1_axes_makes_no_layer():
    for opset, attrs, inputs in [(13, {"axes": [2]}, []), (18, {"noop_with_empty_axes": 1}, [])]:
        net = Net(16, (2, 1, 4))
        net.dense("x", "a", 4, 4)
        case = net.finish(helper.make_node("ReduceMax", ["a", *inputs], ["p"], **attrs), (2, 1, 4), opset=opset)
        plan = onnxtopo.inspect(case.model, maxpool_rule="argmax")
        assert [layer.tensor for layer in plan.layers] == ["x", "a", "y"]
