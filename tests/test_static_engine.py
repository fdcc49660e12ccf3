"""The static view through the in-place step forests: a large Conv, Gemm or MatMul step reduced
to its maximum spanning forest at h = 1 (``graph.step_forest_block``) gives the same layers, whole
network and files, byte for byte, as its edges streamed one by one, and dionysus's pairing.

The models are small; lowering ``graph.STEP_FOREST_MIN_CANDIDATES`` makes their steps take the
in-place path, raising it makes every step stream its edges (the path before the forests).
"""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from onnx import helper

import onnxtopo
from onnxtopo import graph, homology, static
from onnxtopo.static import static_persistence

from conftest import assert_same_persistence, make_model
from test_engine_large import conv_stack


def bn_stack(rng, levels):
    """Conv (strided, padded) → BatchNormalization (fused into the conv's kernel on loading) → ReLU → a
    grouped, dilated Conv → MaxPool → Gemm → ReLU → MatMul; weights from ``levels`` with signs,
    a third of them 0 (no edge)."""
    def weights(*shape):
        values = rng.choice(levels, size=shape) * rng.choice([-1, 1], size=shape) * (rng.random(shape) > 1 / 3)
        return values.astype(np.float32)

    channels = 4
    nodes = [helper.make_node("Conv", ["x", "W1"], ["c1"], strides=[2, 1], pads=[1, 0, 1, 2]),
             helper.make_node("BatchNormalization", ["c1", "g", "b", "m", "v"], ["n1"], epsilon=1e-5),
             helper.make_node("Relu", ["n1"], ["a1"]),
             helper.make_node("Conv", ["a1", "W2"], ["c2"], group=2, dilations=[1, 2], pads=[1, 1, 1, 1]),
             helper.make_node("MaxPool", ["c2"], ["p2"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["p2"], ["flat"]),
             helper.make_node("Gemm", ["flat", "W3"], ["d3"], transB=1),
             helper.make_node("Relu", ["d3"], ["a3"]),
             helper.make_node("MatMul", ["a3", "W4"], ["y"])]
    gamma = rng.choice(levels, size=channels) * rng.choice([-1, 1], size=channels)
    return make_model(nodes, (2, 8, 9), {
        "W1": weights(channels, 2, 3, 3), "g": gamma.astype(np.float32),
        "b": rng.normal(size=channels).astype(np.float32), "m": rng.normal(size=channels).astype(np.float32),
        "v": rng.choice([0.25, 1.0, 4.0], size=channels).astype(np.float32),
        "W2": weights(6, 2, 2, 3), "W3": weights(7, 6 * 2 * 3), "W4": weights(7, 5)})


def both_ways(model, **options):
    """(static view with every learned step reduced in place, the same with every step streamed,
    the number of steps that gave a forest)."""
    built = []

    def spied(plan, step, h):
        forest = graph.step_forest_block(plan, step, h)
        built.append(forest is not None)
        return forest

    with mock.patch.object(graph, "STEP_FOREST_MIN_CANDIDATES", 0), mock.patch.object(static, "step_forest_block", spied):
        reduced = static_persistence(model, **options)
    with mock.patch.object(graph, "STEP_FOREST_MIN_CANDIDATES", 1 << 62), \
            mock.patch.object(static, "step_forest_block", side_effect=AssertionError("streamed steps make no forest")):
        streamed = static_persistence(model, **options)
    return reduced, streamed, sum(built)


def assert_byte_identical(a, b):
    assert a.summary() == b.summary()
    arrays, expected = a.arrays(), b.arrays()
    assert arrays.keys() == expected.keys()
    for key, value in arrays.items():
        assert value.dtype == expected[key].dtype and value.shape == expected[key].shape, key
        assert value.tobytes() == expected[key].tobytes(), key


MODELS = {"conv_stack": conv_stack, "bn_stack": bn_stack}
LEVELS = {"integers (ties)": np.array([1.0, 2.0, 3.0]), "spread": np.geomspace(0.1, 10, 40), "one value": np.ones(1)}


@pytest.mark.parametrize("make", MODELS)
@pytest.mark.parametrize("levels", LEVELS)
@pytest.mark.parametrize("seed", range(3))
def test_steps_reduced_in_place_give_the_streamed_static_view_and_dionysus(make, levels, seed):
    rng = np.random.default_rng(seed)
    model = MODELS[make](rng, LEVELS[levels])
    plan = onnxtopo.inspect(model)
    # conv_stack's Mul is folded into its conv's targets (plan.scales); bn_stack's
    # BatchNormalization is fused into its conv's kernel when the model is loaded.
    assert bool(plan.scales) == (make == "conv_stack")
    # conv_stack's second conv reads a constant (Concat with one): its products make no edge.
    assert any(step.reads_constants for step in plan.steps) == (make == "conv_stack")
    in_place = [step for step in plan.steps if static._learned(step) and step.rule.rule_name in ("conv", "dense")]
    assert len(in_place) == 4
    with mock.patch.object(homology, "STEP_HEAVY_PER_VERTEX", 0.3 if seed % 2 else 2):  # light passes too
        reduced, streamed, forests = both_ways(model)
    # Every learned step went through its forest; with every weight tied, step_forest may give up
    # (too many edges at its pivot) and the step's edges are streamed: the same results.
    assert forests == len(in_place) or (levels == "one value" and forests <= len(in_place))
    assert_byte_identical(reduced, streamed)
    oracle = static_persistence(model, engine="dionysus")
    assert reduced.scale == oracle.scale
    for a, b in zip(reduced.layers, oracle.layers, strict=True):
        np.testing.assert_array_equal(a.h0, b.h0)
        assert (a.n_vertices, a.n_components, a.n_edges) == (b.n_vertices, b.n_components, b.n_edges)
    assert_same_persistence(reduced.whole.persistence, oracle.whole.persistence, "in place vs dionysus")
    assert reduced.whole.n_edges == oracle.whole.n_edges


def test_zero_weights_make_no_edge_in_place():
    # A Gemm whose first input feeds nothing (a zero row) and a zero output column: those
    # vertices are not in the complex either way; the edge count is the nonzero weights'.
    rng = np.random.default_rng(3)
    w = rng.integers(-2, 3, size=(6, 5)).astype(np.float32)
    w[0], w[:, 4] = 0, 0
    model = make_model([helper.make_node("Gemm", ["x", "W"], ["y"])], [6], {"W": w})
    reduced, streamed, forests = both_ways(model, whole=False)
    assert forests == 1
    assert_byte_identical(reduced, streamed)
    (layer,) = reduced.layers
    assert layer.n_edges == np.count_nonzero(w)
    assert layer.n_vertices == 5 + 4


def test_chunks_and_the_channel_graph_do_not_change_the_in_place_results():
    rng = np.random.default_rng(4)
    model = conv_stack(rng, np.array([1.0, 2.0]))
    for options in ({"chunk_edges": 37}, {"graph": "channel"}, {"p": 1.0, "whole": False}):
        reduced, streamed, forests = both_ways(model, **options)
        assert forests > 0, options
        assert_byte_identical(reduced, streamed)


def test_a_step_whose_forest_gives_up_is_streamed():
    # step_forest_block returns None where too many weights tie at the pivot: the edges stream instead.
    model = bn_stack(np.random.default_rng(5), np.ones(1))
    with mock.patch.object(graph, "STEP_FOREST_MIN_CANDIDATES", 0), \
            mock.patch.object(static, "step_forest_block", return_value=None) as gave_up:
        fallen_back = static_persistence(model)
    assert gave_up.call_count == 4
    with mock.patch.object(graph, "STEP_FOREST_MIN_CANDIDATES", 1 << 62):
        assert_byte_identical(fallen_back, static_persistence(model))
