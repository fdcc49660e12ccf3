"""Normalizations by the input's own statistics (rules/op_normalization.py): LayerNormalization,
InstanceNormalization, GroupNormalization and LRN, each a new layer (design notes 2b).

Every edge of the op's step is checked against the op's Jacobian computed by central finite
differences in float64 (conftest.node_jacobian runs the ONNX node itself) at the op's actual input,
as onnxruntime computes it: an edge u -> v exists exactly where |∂v/∂u| is nonzero and h_u ≠ 0, and
weighs |∂v/∂u · h_u|. Each op also runs end to end, forest and dionysus engines giving the same
diagrams and persistent subgraph.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnx.shape_inference
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxtopo
from onnxtopo.errors import BadInputError, BadModelError, UnsupportedOpError
from onnxtopo.plan import build_plan

from conftest import (
    assert_engines_agree,
    assert_same_edges,
    check_against_jacobian,
    edges_as_dict,
    jacobian_edges,
    make_model,
    ort_outputs,
    step_edges,
    step_index,
    weights,
)

BATCH = 2
TOL = {"rtol": 1e-4, "atol": 1e-7}


# --------------------------------------------------------------------------------------------
# LayerNormalization
# --------------------------------------------------------------------------------------------

LAYER_NORM_CASES = [  # (attributes, scale shape, bias, ReLU before)
    ({}, (5,), True, False),
    ({"axis": -1, "epsilon": 0.1}, (5,), False, False),
    ({"axis": 1}, (3, 5), True, False),
    ({"axis": 1, "stash_type": 11}, (1, 5), True, False),  # scale broadcast to the normalized shape
    ({"axis": -2, "stash_type": 1}, (3, 5), False, True),  # zeros in h: no edge from them
    ({"axis": 2, "epsilon": 1e-3}, (5,), True, True),
]


def layer_norm_model(attrs, scale_shape, bias, relu, rng, *, outputs=("s",)):
    """x (3, 4) -> MatMul -> (3, 5) [-> Relu] -> LayerNormalization -> MatMul -> (3, 2)."""
    scale = weights(rng, *scale_shape)
    scale.reshape(-1)[1] = 0.0  # a zero scale: no edge into those outputs
    inits = {"W": weights(rng, 4, 5), "W2": weights(rng, 5, 2), "scale": scale}
    if bias:
        inits["bias"] = weights(rng, 5)
    data = "r" if relu else "z"
    # Without bias the input is left out: an empty name there crashes onnxruntime 1.32's
    # extended graph optimizations (a segmentation fault, not an error).
    node = helper.make_node("LayerNormalization", [data, "scale", *(["bias"] if bias else [])], list(outputs),
                            **attrs)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["z"])]
    nodes += [helper.make_node("Relu", ["z"], ["r"])] if relu else []
    nodes += [node, helper.make_node("MatMul", ["s", "W2"], ["y"])]
    return make_model(nodes, (3, 4), inits), node, inits


@pytest.mark.parametrize("attrs, scale_shape, bias, relu", LAYER_NORM_CASES)
def test_layer_norm_edges_are_its_jacobian(attrs, scale_shape, bias, relu):
    rng = np.random.default_rng(40 + len(attrs) + len(scale_shape))
    model, node, inits = layer_norm_model(attrs, scale_shape, bias, relu, rng)
    x = rng.normal(size=(BATCH, 3, 4)).astype(np.float32)
    check_against_jacobian(model, x, node, inits)


def test_layer_norm_end_to_end():
    rng = np.random.default_rng(41)
    model, _, _ = layer_norm_model({"axis": 1}, (3, 5), True, False, rng)
    assert_engines_agree(model, rng.normal(size=(BATCH, 3, 4)).astype(np.float32))


def test_layer_norm_scale_as_a_following_mul_gives_the_same_graph():
    """Design notes 2b: a constant Mul and Add after the op fold into its edges, so the scale and
    bias written as separate ops (as some exporters do) give the same graph."""
    rng = np.random.default_rng(45)
    inits = {"W": weights(rng, 4, 5), "W2": weights(rng, 5, 2), "gamma": weights(rng, 5), "beta": weights(rng, 5),
             "ones": np.ones(5, np.float32)}
    first, last = helper.make_node("MatMul", ["x", "W"], ["z"]), helper.make_node("MatMul", ["s", "W2"], ["y"])
    inside = make_model([first, helper.make_node("LayerNormalization", ["z", "gamma", "beta"], ["s"]), last],
                        (3, 4), inits)
    outside = make_model([first, helper.make_node("LayerNormalization", ["z", "ones"], ["n"]),
                          helper.make_node("Mul", ["n", "gamma"], ["m"]), helper.make_node("Add", ["m", "beta"], ["s"]),
                          last], (3, 4), inits)
    x = rng.normal(size=(BATCH, 3, 4)).astype(np.float32)
    for a, b in zip(onnxtopo.Analyzer(inside).graphs(x), onnxtopo.Analyzer(outside).graphs(x), strict=True):
        assert_same_edges(edges_as_dict(a.src, a.dst, a.phi), edges_as_dict(b.src, b.dst, b.phi), rtol=1e-5)


def test_layer_norm_statistics_outputs():
    """Its Mean and InvStdDev outputs are statistics, not neurons: unused or only a model
    output they change nothing, an op reading them on the way to a layer is refused."""
    rng = np.random.default_rng(42)
    model, _, _ = layer_norm_model({}, (5,), True, False, rng, outputs=("s", "mean", "inv_std"))
    assert [s.op_type for s in onnxtopo.inspect(model).steps] == ["MatMul", "LayerNormalization", "MatMul"]
    model, _, _ = layer_norm_model({}, (5,), True, False, rng, outputs=("s", "mean"))
    nodes = list(model.graph.node)[:-1] + [helper.make_node("Mul", ["s", "mean"], ["m"], name="uses_mean"),
                                          helper.make_node("MatMul", ["m", "W2"], ["y"])]
    inits = {t.name: onnxtopo.plan.numpy_helper.to_array(t) for t in model.graph.initializer}
    with pytest.raises(UnsupportedOpError, match="'uses_mean'.*'mean'"):
        onnxtopo.inspect(make_model(nodes, (3, 4), inits))


def test_layer_norm_refusals():
    rng = np.random.default_rng(43)
    model, _, _ = layer_norm_model({"axis": 0}, (3, 3, 5), True, False, rng)
    with pytest.raises(UnsupportedOpError, match="LayerNormalization.*batch axis"):
        build_plan(model)
    # A scale computed at run time is not a weight.
    inits = {"W": weights(rng, 4, 5), "W2": weights(rng, 5, 2)}
    nodes = [helper.make_node("MatMul", ["x", "W"], ["z"]), helper.make_node("Relu", ["z"], ["r"]),
             helper.make_node("LayerNormalization", ["z", "r"], ["s"], name="ln"),
             helper.make_node("MatMul", ["s", "W2"], ["y"])]
    with pytest.raises(UnsupportedOpError, match="'ln'.*constant scale"):
        onnxtopo.inspect(make_model(nodes, (3, 4), inits))


@pytest.mark.parametrize("op", ["LayerNormalization", "LRN"])
def test_an_input_making_a_derivative_infinite_is_refused(op):
    """A group without variance and epsilon 0, an LRN denominator below zero: the op's output is
    not finite either. The op makes the only layer, so no later step reads that output."""
    rng = np.random.default_rng(44)
    if op == "LayerNormalization":
        node = helper.make_node(op, ["x", "scale"], ["y"], epsilon=0.0, name="the_op")
        model = make_model([node], (3, 4), {"scale": np.ones(4, np.float32)})
        x = rng.normal(size=(2, 3, 4)).astype(np.float32)
        x[1, 0] = 0.5  # a constant row
    else:
        model = make_model([helper.make_node(op, ["x"], ["y"], size=3, bias=-1.0, name="the_op")], (5, 2, 2))
        x = rng.normal(scale=0.1, size=(2, 5, 2, 2)).astype(np.float32)
    with pytest.raises(BadInputError, match="'the_op'.*infinite or undefined derivative"):
        onnxtopo.analyze(model, x)
    results = list(onnxtopo.Analyzer(model).analyze(x, errors="skip"))
    if op == "LayerNormalization":
        assert results[0].n_edges > 0 and "'the_op'" in results[1].error
    else:
        assert all("'the_op'" in r.error for r in results)


# --------------------------------------------------------------------------------------------
# InstanceNormalization, GroupNormalization
# --------------------------------------------------------------------------------------------

def conv_model(op_node, channels, rng, inits, *, spatial=(4, 4), opset=17):
    """x (2, *spatial) -> Conv 3x3 -> (channels, spatial - 2) -> op -> Flatten -> MatMul -> (2,).

    The output's shape is declared: onnx's shape inference does not see through
    GroupNormalization, and the checker wants it."""
    out = math.prod(s - 2 for s in spatial)
    inits = dict(inits, K=weights(rng, channels, 2, *[3] * len(spatial)), W2=weights(rng, channels * out, 2))
    nodes = [helper.make_node("Conv", ["x", "K"], ["c"]), op_node, helper.make_node("Flatten", ["n"], ["f"]),
             helper.make_node("MatMul", ["f", "W2"], ["y"])]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, *spatial])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])
    constants = [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()]
    graph = helper.make_graph(nodes, "test", [x], [y], constants)
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))
    onnx.checker.check_model(model)
    return model, inits


@pytest.mark.parametrize("epsilon, spatial", [(None, (4, 4)), (0.01, (4, 5)), (None, (6,))])
def test_instance_norm_edges_are_its_jacobian(epsilon, spatial):
    rng = np.random.default_rng(50 + len(spatial))
    C = 3
    attrs = {} if epsilon is None else {"epsilon": epsilon}
    node = helper.make_node("InstanceNormalization", ["c", "scale", "bias"], ["n"], **attrs)
    scale = weights(rng, C)
    scale[2] = 0.0
    model, inits = conv_model(node, C, rng, {"scale": scale, "bias": weights(rng, C)}, spatial=spatial)
    x = rng.normal(size=(BATCH, 2, *spatial)).astype(np.float32)
    check_against_jacobian(model, x, node, inits)
    rule = onnxtopo.inspect(model).steps[1].rule
    n = math.prod(s - 2 for s in spatial)
    assert rule.candidate_count == C * n * n


@pytest.mark.parametrize("groups, epsilon", [(2, None), (4, 1e-2), (1, None)])
def test_group_norm_edges_are_its_jacobian(groups, epsilon):
    """Opset 21: one scale per channel. onnxruntime has no GroupNormalization kernel: loading the
    model (onnxtopo.inspect) inlines its function body, so the model is planned as written."""
    rng = np.random.default_rng(60 + groups)
    C = 4
    attrs = {"num_groups": groups} if epsilon is None else {"num_groups": groups, "epsilon": epsilon}
    node = helper.make_node("GroupNormalization", ["c", "scale", "bias"], ["n"], **attrs)
    scale = weights(rng, C)
    scale[1] = 0.0
    model, inits = conv_model(node, C, rng, {"scale": scale, "bias": weights(rng, C)}, opset=21)
    x = rng.normal(size=(BATCH, 2, 4, 4)).astype(np.float32)
    # The op's function body normalizes in float32 unless stash_type asks for float64.
    exact = helper.make_node(node.op_type, node.input, node.output, stash_type=11, **attrs)
    plan = build_plan(model)
    check_against_jacobian(plan, x, node, inits, opset=21, jacobian_node=exact)
    assert plan.steps[1].rule.candidate_count == groups * (C // groups * 4) ** 2


def test_group_norm_before_opset_21_is_refused_at_load():
    """Opsets 18 to 20 (one scale per group) are deprecated: onnx's checker refuses them."""
    rng = np.random.default_rng(70)
    node = helper.make_node("GroupNormalization", ["c", "scale", "bias"], ["n"], num_groups=2)
    model, _ = conv_model(node, 4, rng, {"scale": weights(rng, 4), "bias": weights(rng, 4)}, opset=21)
    model.opset_import[0].version = 18
    with pytest.raises(BadModelError, match="GroupNormalization is deprecated"):
        onnxtopo.inspect(model)


@pytest.mark.parametrize("op", ["InstanceNormalization", "GroupNormalization"])
def test_channel_norms_end_to_end(op):
    rng = np.random.default_rng(80)
    attrs = {"num_groups": 2} if op == "GroupNormalization" else {}
    node = helper.make_node(op, ["c", "scale", "bias"], ["n"], **attrs)
    model, _ = conv_model(node, 4, rng, {"scale": weights(rng, 4), "bias": weights(rng, 4)}, opset=21)
    assert_engines_agree(build_plan(model), rng.normal(size=(BATCH, 2, 4, 4)).astype(np.float32))


def test_channel_norm_refusals():
    rng = np.random.default_rng(81)
    node = helper.make_node("GroupNormalization", ["c", "scale", "bias"], ["n"], num_groups=3, name="gn")
    model, _ = conv_model(node, 4, rng, {"scale": weights(rng, 4), "bias": weights(rng, 4)}, opset=21)
    with pytest.raises(UnsupportedOpError, match="'gn'.*num_groups 3 does not divide its 4 channels"):
        build_plan(model)
    node = helper.make_node("InstanceNormalization", ["c", "scale", "bias"], ["n"], name="in")
    model, _ = conv_model(node, 4, rng, {"scale": weights(rng, 3), "bias": weights(rng, 3)})
    with pytest.raises(UnsupportedOpError, match="'in'.*one value per channel"):
        build_plan(model)


# --------------------------------------------------------------------------------------------
# LRN
# --------------------------------------------------------------------------------------------

def lrn_from_spec(x, size, alpha, beta, bias):
    """LRN of one sample (C, ...) in float64, with a plain loop over channels (ONNX spec)."""
    y = np.empty_like(x)
    C = x.shape[0]
    for c in range(C):
        window = range(max(0, c - (size - 1) // 2), min(C, c + math.ceil((size - 1) / 2) + 1))
        y[c] = x[c] / (bias + alpha / size * sum(x[k] ** 2 for k in window)) ** beta
    return y


def finite_difference_jacobian(f, x, step=1e-6):
    """∂f/∂x by central differences (conftest.node_jacobian's method, for a Python function:
    onnxruntime has no float64 LRN and onnx's reference LRN loops over the batch axis)."""
    flat = x.ravel()
    columns = []
    for j in range(flat.size):
        plus, minus = flat.copy(), flat.copy()
        plus[j] += step
        minus[j] -= step
        columns.append((f(plus.reshape(x.shape)) - f(minus.reshape(x.shape))).ravel() / (2 * step))
    return np.stack(columns, axis=1)


def lrn_parameters(attrs):
    return {"size": attrs["size"], "alpha": attrs.get("alpha", 1e-4), "beta": attrs.get("beta", 0.75),
            "bias": attrs.get("bias", 1.0)}


@pytest.mark.parametrize("attrs", [{"size": 3}, {"size": 5, "alpha": 0.5, "beta": 0.6, "bias": 2.0},
                                   {"size": 7, "alpha": 2.0, "beta": 1.5, "bias": 0.5}, {"size": 1, "alpha": 1.0}])
def test_lrn_edges_are_its_jacobian(attrs):
    rng = np.random.default_rng(90 + attrs["size"])
    C = 5
    model, _ = conv_model(helper.make_node("LRN", ["c"], ["n"], **attrs), C, rng, {})
    x = rng.normal(size=(BATCH, 2, 4, 4)).astype(np.float32)
    analyzer = onnxtopo.Analyzer(model)
    index = step_index(analyzer.plan, "LRN")
    outputs = ort_outputs(model, x, ("c", "n"))
    h = outputs["c"].astype(np.float64)
    spec = lrn_parameters(attrs)
    for n, graph in enumerate(analyzer.graphs(x)):
        np.testing.assert_allclose(lrn_from_spec(h[n], **spec), outputs["n"][n], rtol=1e-5, atol=1e-6)
        jacobian = finite_difference_jacobian(lambda v: lrn_from_spec(v, **spec), h[n])
        assert_same_edges(step_edges(graph, analyzer.plan, index), jacobian_edges(jacobian, h[n].ravel()), **TOL,
                          what=f"sample {n}")
    window = sum(min(C, c + math.ceil((spec["size"] - 1) / 2) + 1) - max(0, c - (spec["size"] - 1) // 2)
                 for c in range(C))
    assert analyzer.plan.steps[index].candidate_edges == window * 2 * 2


@pytest.mark.parametrize("size", [2, 4])
def test_lrn_of_even_size(size):
    """The spec's window is one channel longer after the centre than before it. onnxruntime only
    runs odd sizes (the model is refused when loaded), so the rule is checked on its own, at a
    Conv output onnxruntime gives."""
    rng = np.random.default_rng(96 + size)
    node = helper.make_node("LRN", ["c"], ["n"], size=size, alpha=1.0)
    model, inits = conv_model(node, 5, rng, {})
    with pytest.raises(BadModelError):
        onnxtopo.inspect(model)
    rule = build_plan(model).steps[1].rule
    conv_only = make_model([helper.make_node("Conv", ["x", "K"], ["y"])], (2, 4, 4), {"K": inits["K"]})
    h = ort_outputs(conv_only, rng.normal(size=(1, 2, 4, 4)).astype(np.float32))["y"][0].astype(np.float64)
    got = {k: abs(v) for src, dst, values in rule.nonzero_edges(h.ravel())
           for k, v in edges_as_dict(src, dst, values).items()}
    spec = lrn_parameters({"size": size, "alpha": 1.0})
    jacobian = finite_difference_jacobian(lambda v: lrn_from_spec(v, **spec), h)
    assert_same_edges(got, jacobian_edges(jacobian, h.ravel()), **TOL)


def test_lrn_window_larger_than_the_channels():
    """A size beyond the channel count (even a hostile one) windows every channel."""
    rng = np.random.default_rng(98)
    model, _ = conv_model(helper.make_node("LRN", ["c"], ["n"], size=2 ** 40 + 1), 3, rng, {})
    rule = build_plan(model).steps[1].rule
    assert rule.edges_per_outer == 3 * 3 and rule.windows.size <= 3 * 5


def test_lrn_end_to_end():
    rng = np.random.default_rng(95)
    model, _ = conv_model(helper.make_node("LRN", ["c"], ["n"], size=3, alpha=0.5), 4, rng, {})
    assert_engines_agree(model, rng.normal(size=(BATCH, 2, 4, 4)).astype(np.float32))
