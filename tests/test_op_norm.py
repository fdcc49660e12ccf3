"""BatchNormalization in inference mode (rules/op_norm.py): a constant per-channel affine map, no layer
of its own.

Design notes 2b: right after an edge-making op (through moves only, each the only consumer of the
one before) it scales that op's edges, |s · w · h_u|; anywhere else it only changes the neuron's
value h. The expected edges are written here from the definitions with plain loops; the invariance
tests check that a network gives the same graph whether its exporter (or onnxruntime) fused the map
into the weights or not. Training mode is refused.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from onnx import helper

import onnxtopo

from conftest import assert_same_analysis_to_rounding, assert_same_edges, graph_edges, make_model, ort_outputs

BATCH = 3


def test_batchnorm_training_mode_refused():
    rng = np.random.default_rng(5)
    params = bn_parameters(3, rng)
    nodes = [helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["t", "rm", "rv"],
                              training_mode=1, name="bn_train"),
             helper.make_node("Flatten", ["t"], ["f"]),
             helper.make_node("MatMul", ["f", "M"], ["y"])]
    model = make_model(nodes, (3, 4), dict(params, M=rng.normal(size=(12, 2)).astype(np.float32)))
    with pytest.raises(onnxtopo.UnsupportedOpError, match="bn_train.*training mode"):
        onnxtopo.inspect(model)


def bn_parameters(C, rng):
    return {"scale": rng.normal(size=C).astype(np.float32), "bias": rng.normal(size=C).astype(np.float32),
            "mean": rng.normal(size=C).astype(np.float32), "var": (rng.random(C) + 0.05).astype(np.float32)}


def bn_factor(params, eps):
    return [float(params["scale"][c]) / math.sqrt(float(params["var"][c]) + eps) for c in range(len(params["scale"]))]


@pytest.mark.parametrize("eps", [None, 1e-2])
@pytest.mark.parametrize("maxpool_rule", ["window", "argmax"])
def test_batchnorm_after_maxpool_scales_its_edges(eps, maxpool_rule):
    rng = np.random.default_rng(7)
    C, H, W = 3, 6, 6
    params = bn_parameters(C, rng)
    attrs = {} if eps is None else {"epsilon": eps}
    nodes = [helper.make_node("MaxPool", ["x"], ["pool"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("BatchNormalization", ["pool", "scale", "bias", "mean", "var"], ["y"], **attrs)]
    model = make_model(nodes, (C, H, W), params)
    x = rng.normal(size=(BATCH, C, H, W)).astype(np.float32)
    plan = onnxtopo.inspect(model, maxpool_rule=maxpool_rule)
    assert [s.op_type for s in plan.steps] == ["MaxPool"]
    assert [layer.shape for layer in plan.layers] == [(C, H, W), (C, 3, 3)]
    factor = bn_factor(params, 1e-5 if eps is None else eps)
    for n, got in enumerate(graph_edges(model, x, maxpool_rule=maxpool_rule)):
        expected = {}
        for c in range(C):
            for oy in range(3):
                for ox in range(3):
                    window = [(c * 36 + (2 * oy + dy) * 6 + 2 * ox + dx) for dy in range(2) for dx in range(2)]
                    if maxpool_rule == "argmax":
                        window = [max(window, key=lambda u: (x[n].reshape(-1)[u], -u))]
                    v = C * H * W + c * 9 + oy * 3 + ox
                    for u in window:
                        expected[(u, v)] = abs(factor[c] * float(x[n].reshape(-1)[u]))
        assert_same_edges(got, expected, rtol=1e-6, what=f"sample {n}")


def test_batchnorm_without_edge_op_before_only_changes_h():
    """BN on the input (or after a ReLU) makes no layer: the next op reads the normalized value."""
    rng = np.random.default_rng(8)
    C, L, K = 3, 4, 5
    params = bn_parameters(C, rng)
    M = rng.normal(size=(C * L, K)).astype(np.float32)
    for before_relu in (False, True):
        nodes = [helper.make_node("Relu", ["x"], ["r"])] if before_relu else []
        bn_in = "r" if before_relu else "x"
        nodes += [helper.make_node("BatchNormalization", [bn_in, "scale", "bias", "mean", "var"], ["bn"]),
                  helper.make_node("Flatten", ["bn"], ["f"]),
                  helper.make_node("MatMul", ["f", "M"], ["y"])]
        model = make_model(nodes, (C, L), dict(params, M=M))
        x = rng.normal(size=(BATCH, C, L)).astype(np.float32)
        plan = onnxtopo.inspect(model)
        assert [s.op_type for s in plan.steps] == ["MatMul"] and len(plan.layers) == 2 and not plan.scales
        h = ort_outputs(model, x, ("f",))["f"]
        for n, got in enumerate(graph_edges(model, x)):
            expected = {(k, C * L + j): abs(float(M[k, j]) * float(h[n, k])) for k in range(C * L) for j in range(K)
                        if M[k, j] * h[n, k] != 0}
            assert_same_edges(got, expected, rtol=1e-5, what=f"relu first: {before_relu}, sample {n}")


def test_batchnorm_before_a_nonlinearity_after_a_second_consumer_does_not_fold():
    """A map whose input has another consumer, or that follows a nonlinearity, does not fold."""
    rng = np.random.default_rng(9)
    K, N = 4, 3
    W = rng.normal(size=(K, N)).astype(np.float32)
    W2 = rng.normal(size=(N, 2)).astype(np.float32)
    c = rng.normal(size=N).astype(np.float32)
    # z = xW feeds both a Mul by c and a Relu: the Mul is not z's only consumer.
    nodes = [helper.make_node("MatMul", ["x", "W"], ["z"]),
             helper.make_node("Mul", ["z", "c"], ["s"]),
             helper.make_node("Relu", ["z"], ["r"]),
             helper.make_node("Add", ["s", "r"], ["t"]),
             helper.make_node("MatMul", ["t", "W2"], ["y"])]
    model = make_model(nodes, (K,), {"W": W, "W2": W2, "c": c})
    plan = onnxtopo.inspect(model)
    assert not plan.scales
    # After a nonlinearity: Relu then Mul.
    nodes = [helper.make_node("MatMul", ["x", "W"], ["z"]), helper.make_node("Relu", ["z"], ["r"]),
             helper.make_node("Mul", ["r", "c"], ["s"]), helper.make_node("MatMul", ["s", "W2"], ["y"])]
    assert not onnxtopo.inspect(make_model(nodes, (K,), {"W": W, "W2": W2, "c": c})).scales


def test_gemm_then_batchnorm_equals_gemm_with_folded_weights():
    rng = np.random.default_rng(10)
    K, N = 6, 5
    W, bias = rng.normal(size=(K, N)).astype(np.float32), rng.normal(size=N).astype(np.float32)
    W2 = rng.normal(size=(N, 3)).astype(np.float32)
    params = bn_parameters(N, rng)
    s = np.asarray(bn_factor(params, 1e-5), dtype=np.float32)
    shift = params["bias"] - params["mean"] * s
    unfused = make_model([helper.make_node("Gemm", ["x", "W", "b"], ["z"]),
                          helper.make_node("BatchNormalization", ["z", "scale", "bias", "mean", "var"], ["bn"]),
                          helper.make_node("Relu", ["bn"], ["r"]),
                          helper.make_node("MatMul", ["r", "W2"], ["y"])], (K,), dict(params, W=W, b=bias, W2=W2))
    fused = make_model([helper.make_node("Gemm", ["x", "W", "b"], ["z"]),
                        helper.make_node("Relu", ["z"], ["r"]),
                        helper.make_node("MatMul", ["r", "W2"], ["y"])], (K,),
                       {"W": W * s, "b": bias * s + shift, "W2": W2})
    assert onnxtopo.inspect(unfused).scales  # the fold happened in onnxtopo, not in onnxruntime
    assert_same_analysis_to_rounding(unfused, fused, rng.normal(size=(BATCH, K)).astype(np.float32))


def test_conv_batchnorm_fused_by_onnxruntime_equals_explicit_fold():
    rng = np.random.default_rng(12)
    Wc = rng.normal(size=(4, 2, 3, 3)).astype(np.float32)
    params = bn_parameters(4, rng)
    s = np.asarray(bn_factor(params, 1e-5), dtype=np.float32)
    M = rng.normal(size=(4 * 4 * 4, 3)).astype(np.float32)
    tail = [helper.make_node("Relu", ["bn"], ["r"]), helper.make_node("Flatten", ["r"], ["f"]),
            helper.make_node("MatMul", ["f", "M"], ["y"])]
    unfused = make_model([helper.make_node("Conv", ["x", "W"], ["c"]),
                          helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["bn"]), *tail],
                         (2, 6, 6), dict(params, W=Wc, M=M))
    fused = make_model([helper.make_node("Conv", ["x", "W", "b"], ["bn"]), *tail], (2, 6, 6),
                       {"W": Wc * s[:, None, None, None], "b": params["bias"] - params["mean"] * s, "M": M})
    assert_same_analysis_to_rounding(unfused, fused, rng.normal(size=(BATCH, 2, 6, 6)).astype(np.float32))
