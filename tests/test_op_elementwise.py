"""Elementwise ops and constant affine maps (rules/op_elementwise.py): Mul/Div/Add/Sub by a constant
make no layer; right after an edge-making op they scale its edges (design notes 2b), so a network
gives the same graph whether its exporter folded the constant into the weights or not.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import onnxtopo

from conftest import assert_same_analysis_to_rounding, make_model, ort_outputs

BATCH = 3


@pytest.mark.parametrize("form", ["mul", "div", "mul-after-reshape", "add-then-mul", "sub-first"])
def test_matmul_then_constant_scale_equals_scaled_weights(form):
    rng = np.random.default_rng(11 + len(form))
    K, N = 4, 6
    W, W2 = rng.normal(size=(K, N)).astype(np.float32), rng.normal(size=(N, 2)).astype(np.float32)
    c = (rng.random(N) + 0.5).astype(np.float32) * rng.choice([-1, 1], size=N).astype(np.float32)
    b = rng.normal(size=N).astype(np.float32)
    inits = {"W": W, "W2": W2, "c": c, "b": b, "one": np.float32(1.0), "shape": np.array([0, 2, 3]),
             "back": np.array([0, 6])}
    scale, nodes = c, [helper.make_node("MatMul", ["x", "W"], ["z"])]
    if form == "mul":
        nodes.append(helper.make_node("Mul", ["c", "z"], ["s"]))
    elif form == "div":
        nodes.append(helper.make_node("Div", ["z", "c"], ["s"]))
        scale = 1 / c
    elif form == "mul-after-reshape":
        inits["c"] = c.reshape(2, 3)
        nodes += [helper.make_node("Reshape", ["z", "shape"], ["z3"]),
                  helper.make_node("Mul", ["z3", "c"], ["s3"]),
                  helper.make_node("Reshape", ["s3", "back"], ["s"])]
    elif form == "add-then-mul":
        nodes += [helper.make_node("Add", ["z", "b"], ["zb"]), helper.make_node("Mul", ["zb", "c"], ["s"])]
    else:  # 1 - z: a scale of -1
        nodes.append(helper.make_node("Sub", ["one", "z"], ["s"]))
        scale = -np.ones(N, dtype=np.float32)
    nodes += [helper.make_node("Tanh", ["s"], ["t"]), helper.make_node("MatMul", ["t", "W2"], ["y"])]
    unfused = make_model(nodes, (K,), inits)
    assert onnxtopo.inspect(unfused).scales or form == "sub-first"
    # The same values through the scaled weights: biases do not change edges, only h.
    shift = {"add-then-mul": b * c, "sub-first": np.ones(N, dtype=np.float32)}.get(form, np.zeros(N, np.float32))
    fused = make_model([helper.make_node("MatMul", ["x", "Ws"], ["z"]), helper.make_node("Add", ["z", "shift"], ["s"]),
                        helper.make_node("Tanh", ["s"], ["t"]), helper.make_node("MatMul", ["t", "W2"], ["y"])],
                       (K,), {"Ws": (W * scale).astype(np.float32), "shift": shift, "W2": W2})
    x = rng.normal(size=(BATCH, K)).astype(np.float32)
    np.testing.assert_allclose(ort_outputs(unfused, x)["y"], ort_outputs(fused, x)["y"], rtol=1e-4, atol=1e-5)
    assert_same_analysis_to_rounding(unfused, fused, x)
