"""Resize and Upsample (rules/op_resize.py): separable interpolation, a linear op.

The expected edges and weights are enumerated here with plain loops from the ONNX spec's formulas
(never with onnxtopo's code); summing the rule's signed edge values w·h over each output's incoming
edges gives back onnxruntime's output of the op, and a small model runs end to end, the forest and
dionysus engines giving the same diagrams and persistent subgraph. A resize whose every output
copies one input is a selection (no layer): the vertices the next op reads are checked instead.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from onnx import helper

import onnxtopo
from onnxtopo.errors import ResourceLimitError, UnsupportedOpError

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
# Resize and Upsample
# --------------------------------------------------------------------------------------------

def resize_node(op, opset, attrs, scales=None, sizes=None, roi=None):
    """A Resize/Upsample node in the spelling of its opset, and its constant inputs."""
    inits = {}
    if op == "Upsample" or opset == 10:
        inputs = ["x"]
        if scales is not None and "scales" not in attrs:
            inits["scales"] = np.array(scales, dtype=np.float32)
            inputs.append("scales")
    else:
        inputs = ["x", "", "", ""]
        if roi is not None or opset == 11:  # opset 11 needs roi and scales, even empty
            inputs[1], inits["roi"] = "roi", np.array(roi if roi is not None else [], dtype=np.float32)
        if scales is not None or opset == 11:
            inputs[2], inits["scales"] = "scales", np.array(scales if scales is not None else [], dtype=np.float32)
        if sizes is not None:
            inputs[3], inits["sizes"] = "sizes", np.array(sizes, dtype=np.int64)
        while not inputs[-1]:
            inputs.pop()
    return helper.make_node(op, inputs, ["r"], **attrs), inits


def resize_model(op, opset, attrs, shape, *, literal_batch=False, **params):
    """x -> Resize -> r -> ReduceSum over the sample axes -> y: whether the resize makes a layer or
    only copies, the plan's last step shows which vertices r holds.

    Sizes over every axis are given per sample: their batch entry is the input's (Shape, Slice,
    Concat, as exporters write it), unless ``literal_batch``."""
    nodes = []
    if "sizes" in params and "axes" not in attrs and not literal_batch:
        nodes = [helper.make_node("Shape", ["x"], ["shape"]),
                 helper.make_node("Slice", ["shape", "zero", "one"], ["batch"]),
                 helper.make_node("Concat", ["batch", "per_sample"], ["full_sizes"], axis=0)]
    node, inits = resize_node(op, opset, attrs, **params)
    if nodes:
        inits.update(zero=np.array([0], dtype=np.int64), one=np.array([1], dtype=np.int64),
                     per_sample=inits.pop("sizes"))
        node.input[3] = "full_sizes"
    if opset < 13:
        sink = helper.make_node("ReduceSum", ["r"], ["y"], axes=list(range(1, len(shape) + 1)))
    else:
        sink = helper.make_node("ReduceSum", ["r", "all"], ["y"])
        inits["all"] = np.arange(1, len(shape) + 1, dtype=np.int64)
    return make_model([*nodes, node, sink], shape, inits, opset=opset)


def resized(model, x, extrapolation=0.0):
    """onnxruntime's r, and onnxtopo's: rebuilt from the edges, or read through the copies."""
    r = ort_outputs(model, x, ("r",))["r"]
    plan = onnxtopo.inspect(model)
    resizes = [s for s in plan.steps if s.op_type in ("Resize", "Upsample")]
    if resizes:
        rule = resizes[0].rule
        assert rule.out_shape == r.shape[1:]
        got = rebuilt_outputs(rule, x)
        reached = np.zeros(got.shape[1], dtype=bool)
        reached[rule.pattern.dst] = True
        got[:, ~reached] = extrapolation  # outputs no input reaches hold the extrapolation value
        return r, got, rule
    ids = plan.steps[-1].input_vertices  # layer 0 is the input: a vertex id is a flat input index
    assert ids.size == r[0].size
    return r, np.where(ids >= 0, x.reshape(len(x), -1)[:, np.maximum(ids, 0)], extrapolation), None


# Hand-written one-dimensional coefficients from the ONNX spec: output o of an axis of length
# `length`, resized to `out`, reads these (input, weight) pairs (clamped to the axis).

def source(o, mode, scale, length, out):
    if mode == "asymmetric":
        return o / scale
    if mode == "align_corners":
        return 0.0 if out == 1 else o * (length - 1) / (out - 1)
    return (o + 0.5) / scale - 0.5  # half_pixel


def linear_taps(o, mode, scale, length, out):
    x = source(o, mode, scale, length, out)
    low = math.floor(x)
    t = x - low
    return [(min(max(low, 0), length - 1), 1 - t), (min(max(low + 1, 0), length - 1), t)]


def cubic_taps(o, mode, scale, length, out, a=-0.75):
    x = source(o, mode, scale, length, out)
    low = math.floor(x)
    t = x - low
    taps = []
    for i, d in zip(range(low - 1, low + 3), (1 + t, t, 1 - t, 2 - t)):
        w = ((a + 2) * d - (a + 3)) * d * d + 1 if d <= 1 else ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
        taps.append((min(max(i, 0), length - 1), w))
    return taps


def brute_resize_edges(shape, out_shape, scales, taps_of, mode):
    """{(input, output): w}, w the product over axes of the 1-D coefficients, merged and nonzero."""
    edges = {}
    for o in itertools.product(*map(range, out_shape)):
        per_axis = [[(o_a, 1.0)] if s == 1 else taps_of(o_a, mode, s, n, m)
                    for o_a, s, n, m in zip(o, scales, shape, out_shape)]
        for combination in itertools.product(*per_axis):
            key = (flat_index([i for i, _ in combination], shape), flat_index(o, out_shape))
            edges[key] = edges.get(key, 0.0) + math.prod(w for _, w in combination)
    return {k: w for k, w in edges.items() if abs(w) > 1e-12}


HAND_RESIZE = [
    # mode, coordinate transformation, per-sample scales (None: from sizes), sizes, shape
    ("linear", "half_pixel", (1, 2.0, 1.5), None, (2, 4, 5)),
    ("linear", "half_pixel", (1, 0.5, 0.75), None, (2, 6, 8)),
    ("linear", "align_corners", None, (2, 7, 3), (2, 4, 5)),
    ("linear", "align_corners", None, (2, 1, 9), (2, 4, 5)),
    ("linear", "asymmetric", (1, 1.5, 2.5), None, (2, 3, 4)),
    ("cubic", "half_pixel", (1, 2.0, 1.5), None, (2, 4, 5)),
    ("cubic", "asymmetric", (1, 0.5, 1.5), None, (1, 6, 4)),
]


@pytest.mark.parametrize("case", HAND_RESIZE, ids=[f"{c[0]}-{c[1]}-{c[2] or c[3]}" for c in HAND_RESIZE])
def test_resize_edges_match_hand_written_coefficients(case):
    mode, ctm, scales, sizes, shape = case
    if scales is None:
        out_shape = sizes
        scales = [m / n for m, n in zip(sizes, shape)]
        params = {"sizes": sizes}
    else:
        out_shape = tuple(math.floor(s * n) for s, n in zip(scales, shape))
        params = {"scales": [1, *scales]}
    model = resize_model("Resize", 13, {"mode": mode, "coordinate_transformation_mode": ctm}, shape, **params)
    _, step = only_step(model, "Resize")
    assert step.rule.out_shape == out_shape
    taps_of = linear_taps if mode == "linear" else cubic_taps
    expected = brute_resize_edges(shape, out_shape, scales, taps_of, ctm)
    p = step.rule.pattern
    assert_same_edges(edges_as_dict(p.src, p.dst, p.weight), expected, rtol=1e-5, atol=1e-6)
    x = np.random.default_rng(2).normal(size=(BATCH, *shape)).astype(np.float32)
    r, got, _ = resized(model, x)
    np.testing.assert_allclose(got, r.reshape(BATCH, -1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("nearest_mode, ctm, scales", [
    ("floor", "asymmetric", (1, 2.0, 3.0)),  # torch.nn.Upsample(scale_factor, mode="nearest")
    ("floor", "asymmetric", (1, 0.5, 1.5)),
    ("round_prefer_floor", "asymmetric", (1, 2.5, 0.75)),
    ("ceil", "asymmetric", (1, 1.5, 0.5)),
])
def test_nearest_resize_copies_the_hand_computed_inputs(nearest_mode, ctm, scales):
    """Nearest neighbour copies neurons (no layer): output o along an axis copies input
    rounding(o / scale), clamped, as the spec's asymmetric transformation gives."""
    shape = (2, 4, 5)
    rounding = {"floor": math.floor, "ceil": math.ceil,
                "round_prefer_floor": lambda v: math.ceil(v - 0.5)}[nearest_mode]
    out_shape = tuple(math.floor(s * n) for s, n in zip(scales, shape))
    expected = [flat_index([min(max(rounding(o_a / s), 0), n - 1) for o_a, s, n in zip(o, scales, shape)], shape)
                for o in itertools.product(*map(range, out_shape))]
    model = resize_model("Resize", 13, {"mode": "nearest", "nearest_mode": nearest_mode,
                                        "coordinate_transformation_mode": ctm}, shape, scales=[1, *scales])
    plan = onnxtopo.inspect(model)
    assert [s.op_type for s in plan.steps] == ["ReduceSum"] and len(plan.layers) == 2
    np.testing.assert_array_equal(plan.steps[0].input_vertices, expected)
    x = np.random.default_rng(3).normal(size=(BATCH, *shape)).astype(np.float32)
    r, got, _ = resized(model, x)
    np.testing.assert_array_equal(got, r.reshape(BATCH, -1))


CTMS = ["half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
        "tf_crop_and_resize"]


ROI = [0, 0, 0.1, -0.2, 1, 1, 0.8, 1.1]  # crops one axis, reaches past the other: extrapolation


def resize_configs():
    """(id, op, opset, attrs, per-sample shape, params) covering every mode, transformation,
    nearest mode, cubic option, antialias, scales/sizes/axes/policy and opset spelling."""
    configs = []
    for mode, ctm, scales in itertools.product(["nearest", "linear", "cubic"], CTMS,
                                               [(2.0, 1.5), (0.6, 0.75), (1.7, 0.5)]):
        attrs = {"mode": mode, "coordinate_transformation_mode": ctm}
        params = {"scales": [1, 1, *scales]}
        if ctm == "tf_crop_and_resize":
            attrs["extrapolation_value"] = 2.5
            params["roi"] = ROI
        configs.append((f"{mode}-{ctm}-{scales}", "Resize", 19, attrs, (2, 5, 7), params))
    for nearest_mode, ctm in itertools.product(["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"],
                                               ["half_pixel", "asymmetric", "align_corners"]):
        for scales in [(2.5, 1.5), (0.6, 0.4)]:
            configs.append((f"nearest-{nearest_mode}-{ctm}-{scales}", "Resize", 13,
                            {"mode": "nearest", "nearest_mode": nearest_mode, "coordinate_transformation_mode": ctm},
                            (2, 5, 8), {"scales": [1, 1, *scales]}))
    for a, exclude, scales in itertools.product([-0.5, -0.75], [0, 1], [(2.0, 1.5), (0.6, 0.75)]):
        configs.append((f"cubic-a{a}-exclude{exclude}-{scales}", "Resize", 13,
                        {"mode": "cubic", "cubic_coeff_a": a, "exclude_outside": exclude}, (2, 5, 8),
                        {"scales": [1, 1, *scales]}))
    for mode, exclude, ctm, scales in itertools.product(["linear", "cubic"], [0, 1],
                                                        ["half_pixel", "align_corners", "tf_crop_and_resize"],
                                                        [(0.6, 0.35), (2.0, 0.25), (1.1, 0.5)]):
        attrs = {"mode": mode, "antialias": 1, "exclude_outside": exclude, "coordinate_transformation_mode": ctm}
        params = {"scales": [1, 1, *scales]}
        if ctm == "tf_crop_and_resize":
            attrs["extrapolation_value"] = -1.0
            params["roi"] = ROI
        configs.append((f"antialias-{mode}-exclude{exclude}-{ctm}-{scales}", "Resize", 18, attrs, (2, 9, 8), params))
    for policy, mode in itertools.product(["stretch", "not_larger", "not_smaller"], ["nearest", "linear"]):
        configs.append((f"sizes-axes-{policy}-{mode}", "Resize", 18,
                        {"mode": mode, "keep_aspect_ratio_policy": policy, "axes": [2, 3]}, (3, 5, 8),
                        {"sizes": [7, 5]}))
    configs += [
        ("scales-axes-reversed", "Resize", 18, {"mode": "linear", "axes": [3, 2]}, (3, 5, 8), {"scales": [0.5, 1.5]}),
        ("scales-negative-axes", "Resize", 18, {"mode": "cubic", "axes": [-1, -2]}, (3, 5, 8), {"scales": [0.5, 1.5]}),
        ("roi-axes", "Resize", 18,
         {"mode": "linear", "axes": [3], "coordinate_transformation_mode": "tf_crop_and_resize",
          "extrapolation_value": 7.0}, (2, 5, 7), {"scales": [2.5], "roi": [-0.3, 0.9]}),
        ("sizes-every-axis", "Resize", 13, {"mode": "linear"}, (2, 5, 7), {"sizes": [2, 3, 9]}),
        ("tf-crop-sizes-opset11", "Resize", 11,
         {"mode": "linear", "coordinate_transformation_mode": "tf_crop_and_resize",
          "extrapolation_value": -1.0}, (2, 5, 7),
         {"sizes": [2, 3, 9], "roi": [0, 0, 0.3, -0.5, 1, 1, 0.6, 1.5]}),
        ("tf-half-pixel-for-nn-opset11", "Resize", 11,
         {"mode": "nearest", "coordinate_transformation_mode": "tf_half_pixel_for_nn"}, (2, 5, 7),
         {"scales": [1, 1, 2, 0.5]}),
        ("torch-bilinear-opset11", "Resize", 11,
         {"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, (2, 5, 7),
         {"scales": [1, 1, 2, 2]}),
        ("nhwc-linear", "Resize", 13, {"mode": "linear"}, (5, 6, 3), {"scales": [1, 2, 1.5, 1]}),
        ("nhwc-cubic", "Resize", 13, {"mode": "cubic"}, (5, 6, 3), {"scales": [1, 2, 1.5, 1]}),
        ("nhwc-antialias", "Resize", 18, {"mode": "linear", "antialias": 1}, (5, 6, 3), {"scales": [1, 0.5, 0.7, 1]}),
        ("trilinear", "Resize", 13, {"mode": "linear"}, (2, 3, 4, 5), {"scales": [1, 1, 2, 1.5, 0.6]}),
        ("trilinear-antialias", "Resize", 18, {"mode": "linear", "antialias": 1}, (2, 3, 4, 5),
         {"scales": [1, 1, 2, 0.5, 0.6]}),
        ("nearest-5d", "Resize", 13, {"mode": "nearest"}, (2, 3, 4, 5, 2), {"scales": [1, 1, 2, 0.5, 1.5, 3]}),
        ("rank2-linear", "Resize", 13, {"mode": "linear"}, (5,), {"scales": [1, 2.5]}),
        ("rank2-cubic", "Resize", 13, {"mode": "cubic"}, (5,), {"scales": [1, 0.6]}),
        ("same-length-axis-scale-1.1", "Resize", 13, {"mode": "linear"}, (2, 5, 8), {"scales": [1, 1, 1.1, 0.5]}),
        ("identity-shape", "Resize", 13, {"mode": "linear"}, (2, 5, 5), {"scales": [1, 1, 1.1, 1.1]}),
        ("identity-tf-crop", "Resize", 13, {"mode": "cubic", "coordinate_transformation_mode": "tf_crop_and_resize"},
         (2, 5, 5), {"sizes": [2, 5, 5], "roi": ROI}),
        ("align-corners-strided", "Resize", 13, {"mode": "linear", "coordinate_transformation_mode": "align_corners"},
         (2, 5, 9), {"sizes": [2, 3, 5]}),
    ]
    for mode, scales in itertools.product(["nearest", "linear"], [(2.0, 3.0), (0.5, 0.7), (1.5, 2.5)]):
        configs.append((f"resize10-{mode}-{scales}", "Resize", 10, {"mode": mode}, (2, 5, 7),
                        {"scales": [1, 1, *scales]}))
    for mode, scales in itertools.product(["nearest", "linear"], [(2.0, 3.0), (1.5, 2.5)]):
        configs.append((f"upsample9-{mode}-{scales}", "Upsample", 9, {"mode": mode}, (2, 5, 7),
                        {"scales": [1, 1, *scales]}))
        configs.append((f"upsample7-{mode}-{scales}", "Upsample", 7, {"mode": mode, "scales": [1.0, 1.0, *scales]},
                        (2, 5, 7), {}))
    return configs


RESIZE_CONFIGS = resize_configs()


def test_resize_configs_cover_the_features():
    attrs = [c[3] for c in RESIZE_CONFIGS]
    assert {a.get("coordinate_transformation_mode") for a in attrs} >= {*CTMS, "tf_half_pixel_for_nn"}
    assert {a.get("nearest_mode") for a in attrs} >= {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"}
    assert {(c[1], c[2]) for c in RESIZE_CONFIGS} == {("Resize", 10), ("Resize", 11), ("Resize", 13),
                                                      ("Resize", 18), ("Resize", 19), ("Upsample", 7),
                                                      ("Upsample", 9)}
    assert {a.get("keep_aspect_ratio_policy") for a in attrs} >= {"stretch", "not_larger", "not_smaller"}
    assert any(a.get("antialias") and a.get("exclude_outside") for a in attrs)
    assert any("sizes" in c[5] for c in RESIZE_CONFIGS) and any("axes" in a for a in attrs)


@pytest.mark.parametrize("config", RESIZE_CONFIGS, ids=[c[0] for c in RESIZE_CONFIGS])
def test_resize_rebuilds_onnxruntime(config):
    _, op, opset, attrs, shape, params = config
    model = resize_model(op, opset, attrs, shape, **params)
    x = np.random.default_rng(4).normal(size=(BATCH, *shape)).astype(np.float32)
    r, got, rule = resized(model, x, attrs.get("extrapolation_value", 0.0))
    np.testing.assert_allclose(got, r.reshape(BATCH, -1), rtol=1e-5, atol=1e-5)
    if attrs.get("mode", "nearest") == "nearest" or config[0].startswith(("identity", "align-corners-strided")):
        assert rule is None  # a selection: no layer


def test_resize_pattern_in_parts():
    model = resize_model("Resize", 18, {"mode": "cubic", "antialias": 1}, (3, 9, 8), scales=[1, 1, 0.6, 1.5])
    _, step = only_step(model, "Resize")
    assert_parts_make_the_pattern(step.rule, 50)


@pytest.mark.parametrize("params, attrs, why", [
    ({"scales": [2, 1, 2, 2]}, {}, "batch axis"),
    ({"sizes": [5, 2, 8, 8], "literal_batch": True}, {}, "batch axis"),
    ({"sizes": [2, 2, 3]}, {"keep_aspect_ratio_policy": "not_larger"}, "batch axis"),
    ({"sizes": [7, 5]}, {"keep_aspect_ratio_policy": "not_smaller", "axes": [-2, -1]}, "negative axes"),
])
def test_resize_refusals(params, attrs, why):
    model = resize_model("Resize", 18, dict(mode="nearest", **attrs), (2, 4, 4), **params)
    with pytest.raises(UnsupportedOpError, match=why):
        onnxtopo.inspect(model)


@pytest.mark.parametrize("op", ["Resize", "ConvTranspose"])
def test_huge_outputs_refused_before_allocation(op):
    """A tiny model can ask for an output of 10^11 elements: refused from its shape alone."""
    if op == "Resize":
        model = resize_model("Resize", 13, {"mode": "linear"}, (1, 4, 4), scales=[1, 1, 1e5, 1e5])
    else:
        node = helper.make_node("ConvTranspose", ["x", "W"], ["y"], strides=[100_000, 100_000])
        model = make_model([node], (1, 4, 4), {"W": np.ones((1, 1, 2, 2), dtype=np.float32)})
    with pytest.raises(ResourceLimitError, match="elements per sample"):
        onnxtopo.inspect(model)


def test_resize_end_to_end():
    rng = np.random.default_rng(6)
    for mode in ("linear", "nearest"):
        nodes = [helper.make_node("Conv", ["x", "K"], ["c"]), helper.make_node("Tanh", ["c"], ["t"]),
                 helper.make_node("Resize", ["t", "", "scales"], ["r"], mode=mode),
                 helper.make_node("Conv", ["r", "K2"], ["y"])]
        inits = {"K": rng.normal(size=(2, 1, 3, 3)).astype(np.float32),
                 "scales": np.array([1, 1, 2, 1.5], dtype=np.float32),
                 "K2": rng.normal(size=(2, 2, 3, 3)).astype(np.float32)}
        model = make_model(nodes, (1, 5, 5), inits, opset=13)
        assert len(onnxtopo.inspect(model).layers) == (4 if mode == "linear" else 3)
        assert_engines_agree(model, rng.normal(size=(BATCH, 1, 5, 5)).astype(np.float32))
