"""Softmax and LogSoftmax inside the network (rules/op_softmax.py): a new layer, dense within the
softmax's axis (design notes 2b).

Every edge of the op's step is checked against the op's Jacobian computed by central finite
differences in float64 (conftest.node_jacobian runs the ONNX node itself) at the op's actual input,
as onnxruntime computes it: an edge u -> v exists exactly where |∂v/∂u| is nonzero and h_u ≠ 0, and
weighs |∂v/∂u · h_u|. Each op also runs end to end, forest and dionysus engines giving the same
diagrams and persistent subgraph.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

import onnxtopo
from onnxtopo.errors import UnsupportedOpError

from conftest import assert_engines_agree, check_against_jacobian, make_model, step_index, weights

BATCH = 2


# --------------------------------------------------------------------------------------------
# Softmax and LogSoftmax
# --------------------------------------------------------------------------------------------

SOFTMAX_CASES = [  # (opset, attributes, per-sample groups as (outer, n, inner) of a (3, 5) input)
    (13, {}, (3, 5, 1)),
    (13, {"axis": 2}, (3, 5, 1)),
    (17, {"axis": 1}, (1, 3, 5)),
    (17, {"axis": -2}, (1, 3, 5)),
    (11, {}, (1, 15, 1)),  # coerced to 2-D at axis 1: one group of every element
    (11, {"axis": 2}, (3, 5, 1)),
    (11, {"axis": -1}, (3, 5, 1)),
]


def softmax_model(op, attrs, opset, rng):
    """x (3, 4) -> MatMul -> (3, 5) -> op -> MatMul -> (3, 2)."""
    inits = {"W": weights(rng, 4, 5), "W2": weights(rng, 5, 2)}
    node = helper.make_node(op, ["z"], ["s"], **attrs)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["z"]), node, helper.make_node("MatMul", ["s", "W2"], ["y"])]
    return make_model(nodes, (3, 4), inits, opset=opset), node, inits


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("opset, attrs, groups", SOFTMAX_CASES)
def test_softmax_edges_are_its_jacobian(op, opset, attrs, groups):
    rng = np.random.default_rng(20 + opset + len(attrs))
    model, node, inits = softmax_model(op, attrs, opset, rng)
    x = rng.normal(size=(BATCH, 3, 4)).astype(np.float32)
    plan = onnxtopo.inspect(model)
    rule = plan.steps[step_index(plan, op)].rule
    outer, n, inner = groups
    assert (rule.outer_size, rule.edges_per_outer) == (outer * inner * n, n)
    check_against_jacobian(model, x, node, inits, opset=opset)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_end_to_end(op):
    rng = np.random.default_rng(30)
    model, _, _ = softmax_model(op, {}, 17, rng)
    assert_engines_agree(model, rng.normal(size=(BATCH, 3, 4)).astype(np.float32))


@pytest.mark.parametrize("opset, axis", [(13, 0), (13, -3), (11, 0), (11, -3)])
def test_softmax_over_the_batch_axis_is_refused(opset, axis):
    model, _, _ = softmax_model("Softmax", {"axis": axis}, opset, np.random.default_rng(31))
    with pytest.raises(UnsupportedOpError, match="Softmax.*batch axis"):
        onnxtopo.inspect(model)


def test_a_softmax_making_the_last_layer_is_not_analyzed():
    rng = np.random.default_rng(32)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["z"]), helper.make_node("Softmax", ["z"], ["y"], name="probs")]
    model = make_model(nodes, (4,), {"W": weights(rng, 4, 3)})
    plan = onnxtopo.inspect(model)
    assert [s.op_type for s in plan.steps] == ["MatMul"] and len(plan.layers) == 2
    assert plan.ignored == ["probs (Softmax)"]
    # Asked for explicitly, it is a layer.
    assert [s.op_type for s in onnxtopo.inspect(model, stop="y").steps] == ["MatMul", "Softmax"]


def test_a_large_softmax_is_counted_and_built_part_by_part():
    """1,000 classes make 10^6 candidate edges: counted before anything is built, then built in
    parts of whole source rows."""
    n = 1000
    nodes = [helper.make_node("Softmax", ["x"], ["s"]), helper.make_node("MatMul", ["s", "W"], ["y"])]
    model = make_model(nodes, (n,), {"W": np.ones((n, 2), np.float32)})
    rule = onnxtopo.inspect(model).steps[0].rule
    assert rule.candidate_count == n * n and "pattern" not in vars(rule)
    first = next(rule.chunks(max_edges=5 * n))
    assert len(first) == 5 * n and "pattern" not in vars(rule)
    assert set(first.src.tolist()) == set(range(5)) and set(first.dst.tolist()) == set(range(n))
