"""Decomposed layer normalizations (ReduceMean → Sub → Pow → ReduceMean → Add → Sqrt → Div, as
PyTorch writes LayerNorm before opset 17) give the graph of LayerNormalization itself."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxtopo

from conftest import assert_same_edges, assert_same_persistence, edges_as_dict

BATCH = 3
D, K, OUT = 5, 4, 3


def model_at(nodes, opset, inits):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, K])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "ln", [x], [y], [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))
    onnx.checker.check_model(model)
    return model


def decomposed(form, opset, rng, *, leak=False):
    """x → MatMul → [decomposed LN over the last axis] · γ + β → Tanh → MatMul. The variance is
    the mean of the centred squares, or E[x²] − E[x]² (jax2onnx; "clamped": then Max(v, 0))."""
    W, M = rng.normal(size=(K, D)).astype(np.float32), rng.normal(size=(2 * D, OUT)).astype(np.float32)
    gamma, beta = rng.normal(size=D).astype(np.float32), rng.normal(size=D).astype(np.float32)
    inits = {"W": W, "M": M, "gamma": gamma, "beta": beta, "two": np.float32(2.0), "eps": np.float32(1e-3),
             "flat": np.array([0, -1])}

    def mean(src, dst):
        if opset >= 18:
            inits["axes"] = np.array([-1])
            return helper.make_node("ReduceMean", [src, "axes"], [dst])
        return helper.make_node("ReduceMean", [src], [dst], axes=[-1])

    nodes = [helper.make_node("MatMul", ["x", "W"], ["z"]), mean("z", "m"), helper.make_node("Sub", ["z", "m"], ["d"])]
    if form in ("moments", "clamped"):
        inits["zero"] = np.float32(0.0)
        nodes += [helper.make_node("Mul", ["m", "m"], ["m2"]), helper.make_node("Pow", ["z", "two"], ["z2"]),
                  mean("z2", "q"), helper.make_node("Sub", ["q", "m2"], ["v0"])]
        nodes.append(helper.make_node("Max", ["v0", "zero"], ["v"]) if form == "clamped" else
                     helper.make_node("Identity", ["v0"], ["v"]))
    else:
        nodes.append(helper.make_node("Pow", ["d", "two"], ["p"]) if form != "mul" else
                     helper.make_node("Mul", ["d", "d"], ["p"]))
        nodes.append(mean("p", "v"))
    nodes += [helper.make_node("Add", ["v", "eps"], ["e"]), helper.make_node("Sqrt", ["e"], ["s"])]
    if form == "reciprocal":
        nodes += [helper.make_node("Reciprocal", ["s"], ["r"]), helper.make_node("Mul", ["r", "d"], ["n"])]
    else:
        nodes.append(helper.make_node("Div", ["d", "s"], ["n"]))
    nodes += [helper.make_node("Mul", ["n", "gamma"], ["g"]), helper.make_node("Add", ["g", "beta"], ["b"])]
    if leak:  # the centred value also feeds the output: not a private chain
        nodes += [helper.make_node("Add", ["b", "d"], ["b2"]), helper.make_node("Tanh", ["b2"], ["t"])]
    else:
        nodes.append(helper.make_node("Tanh", ["b"], ["t"]))
    nodes += [helper.make_node("Reshape", ["t", "flat"], ["f"]), helper.make_node("MatMul", ["f", "M"], ["y"])]
    fused = [nodes[0], helper.make_node("LayerNormalization", ["z", "gamma", "beta"], ["b"], axis=-1, epsilon=1e-3),
             helper.make_node("Tanh", ["b"], ["t"]), *nodes[-2:]]
    return model_at(nodes, opset, inits), model_at(fused, max(opset, 17), inits)


@pytest.mark.parametrize("form, opset", [("pow", 14), ("mul", 13), ("reciprocal", 18), ("pow", 18), ("moments", 13),
                                         ("clamped", 18)])
def test_decomposed_layernorm_gives_the_layernorm_graph(form, opset):
    rng = np.random.default_rng(len(form) + opset)
    model, reference = decomposed(form, opset, rng)
    plan = onnxtopo.inspect(model)
    assert [layer.op_type for layer in plan.layers] == ["", "MatMul", "LayerNormalization", "MatMul"]
    x = rng.normal(size=(BATCH, 2, K)).astype(np.float32)
    for got, want in zip(onnxtopo.Analyzer(model).graphs(x), onnxtopo.Analyzer(reference).graphs(x), strict=True):
        assert_same_edges(edges_as_dict(got.src, got.dst, got.phi), edges_as_dict(want.src, want.dst, want.phi),
                          rtol=1e-4, atol=1e-7, what=f"{form}, opset {opset}")
    for a, b in zip(onnxtopo.analyze(model, x), onnxtopo.analyze(model, x, engine="dionysus"), strict=True):
        assert_same_persistence(a, b)


def test_a_chain_whose_values_leak_is_walked_op_by_op():
    model, _ = decomposed("pow", 14, np.random.default_rng(0), leak=True)
    ops = [layer.op_type for layer in onnxtopo.inspect(model).layers]
    assert "LayerNormalization" not in ops and ops.count("ReduceMean") == 2


def test_group_normalization_inlined_by_onnxruntime_gives_the_rule_s_graph():
    """onnxruntime has no GroupNormalization kernel and inlines its function body (a Reshape to
    (N, G, -1), the moments form, a Reshape back, Mul γ, Add β) when the model is loaded: the
    recognized chain gives exactly the edges of onnxtopo's GroupNormalization rule."""
    from onnxtopo.plan import build_plan

    rng = np.random.default_rng(21)
    W = rng.normal(size=(4, 2, 3, 3)).astype(np.float32)
    inits = {"W": W, "gamma": rng.normal(size=4).astype(np.float32), "beta": rng.normal(size=4).astype(np.float32),
             "M": rng.normal(size=(64, 2)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"]),
             helper.make_node("GroupNormalization", ["c", "gamma", "beta"], ["g"], num_groups=2, epsilon=1e-3),
             helper.make_node("Flatten", ["g"], ["f"]), helper.make_node("MatMul", ["f", "M"], ["y"])]
    graph = helper.make_graph(nodes, "gn", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    model = onnx.shape_inference.infer_shapes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]))
    inlined = onnxtopo.inspect(model)
    assert [layer.op_type for layer in inlined.layers] == ["", "Conv", "LayerNormalization", "MatMul"]
    as_written = build_plan(model)  # not normalized by onnxruntime: the GroupNormalization node itself
    assert [layer.op_type for layer in as_written.layers] == ["", "Conv", "GroupNormalization", "MatMul"]
    x = rng.normal(size=(BATCH, 2, 6, 6)).astype(np.float32)
    for got, want in zip(onnxtopo.Analyzer(inlined).graphs(x), onnxtopo.Analyzer(as_written).graphs(x), strict=True):
        assert_same_edges(edges_as_dict(got.src, got.dst, got.phi), edges_as_dict(want.src, want.dst, want.phi),
                          rtol=1e-4, atol=1e-7, what="inlined vs GroupNormalization rule")
