"""ReduceSum and ReduceMean over sample axes (rules/op_reduce.py).

The expected edges and weights are enumerated here with plain loops from the ONNX spec's formulas
(never with onnxtopo's code); summing the rule's signed edge values w·h over each output's incoming
edges gives back onnxruntime's output of the op, and a small model runs end to end, the forest and
dionysus engines giving the same diagrams and persistent subgraph.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from onnx import helper

import onnxtopo
from onnxtopo.errors import UnsupportedOpError

from conftest import (
    assert_engines_agree,
    assert_parts_make_the_pattern,
    assert_same_edges,
    edges_as_dict,
    flat_index,
    make_model,
    only_step,
    ort_outputs,
    rebuilt_outputs,
)

BATCH = 3


# --------------------------------------------------------------------------------------------
# ReduceSum, ReduceMean
# --------------------------------------------------------------------------------------------

REDUCE_CASES = [
    # op, opset, axes, given as ("attr" | "input"), keepdims, per-sample shape
    ("ReduceSum", 11, [2, 3], "attr", 1, (3, 4, 5)),
    ("ReduceSum", 11, [-1], "attr", 0, (3, 4, 5)),
    ("ReduceSum", 13, [1], "input", 0, (3, 4, 5)),
    ("ReduceSum", 13, [1, -1], "input", 1, (3, 4, 5)),
    ("ReduceMean", 17, [2, 3], "attr", 1, (3, 4, 5)),
    ("ReduceMean", 17, [1, 2, 3], "attr", 0, (3, 4, 5)),
    ("ReduceMean", 18, [2, 3], "input", 0, (3, 4, 5)),  # torch dynamo: x.mean(dim=(2, 3))
    ("ReduceMean", 18, [-2], "input", 1, (2, 3, 4, 2)),
    ("ReduceSum", 13, [-1], "input", 1, (6,)),  # one sample axis
    ("ReduceMean", 13, [3, 1], "attr", 0, (2, 5, 3)),
]


REDUCE_IDS = [f"{op}{opset}-axes{axes}-{how}-keep{k}-{shape}" for op, opset, axes, how, k, shape in
              ([c[0], c[1], c[2], c[3], c[4], "x".join(map(str, c[5]))] for c in REDUCE_CASES)]


def reduce_model(op, opset, axes, how, keepdims, shape, **attrs):
    inits, inputs = {}, ["x"]
    if how == "input":
        inits["axes"] = np.array(axes, dtype=np.int64)
        inputs.append("axes")
    elif axes is not None:
        attrs["axes"] = axes
    return make_model([helper.make_node(op, inputs, ["y"], keepdims=keepdims, **attrs)], shape, inits, opset=opset)


def brute_reduce_edges(op, axes, keepdims, shape):
    """{(input, output): w} from the spec: each input goes into the output at its position with
    the reduced axes dropped (or set to 0); ReduceMean divides by the number reduced."""
    rank = len(shape) + 1
    reduced = {a % rank - 1 for a in axes}
    n = 1
    for a in reduced:
        n *= shape[a]
    out_shape = [1 if a in reduced else d for a, d in enumerate(shape) if keepdims or a not in reduced]
    edges = {}
    for position in itertools.product(*map(range, shape)):
        kept = [0 if a in reduced else i for a, i in enumerate(position) if keepdims or a not in reduced]
        edges[(flat_index(position, shape), flat_index(kept, out_shape))] = 1.0 / n if op == "ReduceMean" else 1.0
    return edges, tuple(out_shape)


@pytest.mark.parametrize("case", REDUCE_CASES, ids=REDUCE_IDS)
def test_reduce_edges_match_the_spec_and_rebuild_onnxruntime(case):
    op, _, axes, _, keepdims, shape = case
    model = reduce_model(*case)
    plan, step = only_step(model, op)
    expected, out_shape = brute_reduce_edges(op, axes, keepdims, shape)
    assert step.rule.out_shape == out_shape == plan.layers[-1].shape
    p = step.rule.pattern
    assert_same_edges(edges_as_dict(p.src, p.dst, p.weight), expected, rtol=1e-12)
    x = np.random.default_rng(0).normal(size=(BATCH, *shape)).astype(np.float32)
    y = ort_outputs(model, x)["y"]
    assert y.shape[1:] == out_shape
    np.testing.assert_allclose(rebuilt_outputs(step.rule, x), y.reshape(BATCH, -1), rtol=1e-5, atol=1e-5)


def test_reduce_pattern_in_parts():
    _, step = only_step(reduce_model("ReduceMean", 18, [2, 3], "input", 0, (3, 4, 5)), "ReduceMean")
    assert_parts_make_the_pattern(step.rule, 7)


@pytest.mark.parametrize("kind", ["noop-empty-axes", "axes-of-length-1"])
def test_reduce_that_reduces_nothing_makes_no_layer(kind):
    """Only copies (a Jacobian that is a permutation): the next op reads the input's own vertices."""
    if kind == "noop-empty-axes":
        node = helper.make_node("ReduceSum", ["x", "axes"], ["r"], noop_with_empty_axes=1)
        inits, shape, out = {"axes": np.array([], dtype=np.int64)}, (2, 3), (2, 3)
    else:
        node = helper.make_node("ReduceMean", ["x"], ["r"], axes=[2, -1], keepdims=0)
        inits, shape, out = {}, (3, 1, 1), (3,)
    nodes = [node, helper.make_node("Flatten", ["r"], ["f"]), helper.make_node("MatMul", ["f", "W"], ["y"])]
    inits["W"] = np.ones((math.prod(out), 2), dtype=np.float32)
    plan = onnxtopo.inspect(make_model(nodes, shape, inits, opset=18 if kind == "noop-empty-axes" else 13))
    assert [s.op_type for s in plan.steps] == ["MatMul"] and len(plan.layers) == 2
    np.testing.assert_array_equal(plan.steps[0].input_vertices, np.arange(math.prod(shape)))


@pytest.mark.parametrize("axes, how, opset, why", [
    ([0, 2], "attr", 13, "batch axis"),
    ([-4], "input", 18, "batch axis"),
    (None, "attr", 13, "every axis"),
    ([], "input", 18, "every axis"),
])
def test_reduce_over_the_batch_refused(axes, how, opset, why):
    model = reduce_model("ReduceMean", opset, axes, how, 1, (3, 4, 5))
    with pytest.raises(UnsupportedOpError, match=why):
        onnxtopo.inspect(model)


def test_reduce_end_to_end():
    nodes = [helper.make_node("Conv", ["x", "K"], ["c"]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("ReduceMean", ["r", "axes"], ["m"], keepdims=0),
             helper.make_node("Gemm", ["m", "W"], ["y"])]
    rng = np.random.default_rng(1)
    inits = {"K": rng.normal(size=(4, 2, 3, 3)).astype(np.float32), "axes": np.array([2, 3], dtype=np.int64),
             "W": rng.normal(size=(4, 3)).astype(np.float32)}
    assert_engines_agree(make_model(nodes, (2, 6, 6), inits, opset=18),
                         rng.normal(size=(BATCH, 2, 6, 6)).astype(np.float32))
