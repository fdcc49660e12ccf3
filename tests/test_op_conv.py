"""Conv and ConvTranspose (rules/op_conv.py): an edge from every input a kernel element multiplies to
the output it contributes to.

Conv: Every expected edge set is enumerated here with plain loops from the definitions of
docs/induced-graph.md (never with onnxtopo's own window code); onnxruntime (graph optimizations off)
is the independent reference for output shapes and values: summing the rule's own w·h over each
output's incoming edges must give back the op's output.

ConvTranspose: The expected edges and weights are enumerated here with plain loops from the ONNX
spec's formulas (never with onnxtopo's code); summing the rule's signed edge values w·h over each
output's incoming edges gives back onnxruntime's output of the op, and a small model runs end to
end, the forest and dionysus engines giving the same diagrams and persistent subgraph.
"""

from __future__ import annotations

import functools
import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
from onnx import helper

import onnxtopo
from onnxtopo.errors import UnsupportedOpError

from conftest import (
    assert_engines_agree,
    assert_parts_make_the_pattern,
    assert_same_edges,
    begin_pads,
    brute_conv_edges,
    edges_as_dict,
    flat_index,
    make_model,
    only_step,
    ort_outputs,
    rebuilt_outputs,
    size_of,
)

BATCH = 3


# --------------------------------------------------------------------------------------------
# Conv
# --------------------------------------------------------------------------------------------

def random_conv_config(seed):
    rng = np.random.default_rng(seed)
    nd = (1, 2, 2, 3)[seed % 4]
    kind = ("plain", "grouped", "depthwise")[int(rng.integers(3))]
    if kind == "plain":
        group, C, M = 1, int(rng.integers(1, 4)), int(rng.integers(1, 4))
    elif kind == "grouped":
        group = int(rng.integers(2, 4))
        C, M = group * int(rng.integers(1, 3)), group * int(rng.integers(1, 3))
    else:
        C = int(rng.integers(2, 5))
        group, M = C, C * int(rng.integers(1, 3))
    kmax, smax = {1: (5, 10), 2: (4, 7), 3: (3, 5)}[nd]
    kernel = [int(k) for k in rng.integers(1, kmax, nd)]
    auto_pad = str(rng.choice(["NOTSET", "NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    strides = [int(s) for s in rng.integers(1, 4, nd)]
    # onnxruntime refuses dilations with auto_pad SAME_* for Conv
    dilations = [1] * nd if auto_pad.startswith("SAME") else [int(d) for d in rng.choice([1, 1, 2, 3], nd)]
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    while True:  # draw pads and sizes until some window reads the input on every axis
        pads = [int(rng.integers(0, span[i % nd] + 1)) for i in range(2 * nd)] if auto_pad == "NOTSET" else None
        spatial = [int(n) for n in rng.integers(1, smax + 1, nd)]
        p = pads or [0] * (2 * nd)
        spatial = [max(n, sp - p[i] - p[i + nd], 1) for i, (n, sp) in enumerate(zip(spatial, span))]
        begin = begin_pads(auto_pad, pads, spatial, kernel, strides, dilations)
        if auto_pad.startswith("SAME"):
            outs = [-(-n // s) for n, s in zip(spatial, strides)]
        else:
            outs = [(n + p[i] + p[i + nd] - sp) // s + 1 for i, (n, sp, s) in enumerate(zip(spatial, span, strides))]
        if all(any(0 <= o * s - b + k * d < n for o in range(no) for k in range(kk))
               for n, no, b, kk, s, d in zip(spatial, outs, begin, kernel, strides, dilations)):
            break
    return {"name": f"seed{seed:02d}-{nd}d-{kind}-{auto_pad}", "C": C, "M": M, "group": group, "spatial": spatial,
            "kernel": kernel, "strides": strides, "dilations": dilations, "pads": pads, "auto_pad": auto_pad,
            "bias": bool(rng.random() < 0.5), "write_defaults": bool(rng.random() < 0.5), "seed": seed}


HAND_CONV_CONFIGS = [
    # depthwise, SAME_LOWER, stride 2, rectangular kernel, even sizes (odd total padding)
    {"name": "2d-depthwise-SAME_LOWER-s2-rect", "C": 3, "M": 3, "group": 3, "spatial": [6, 8], "kernel": [3, 2],
     "strides": [2, 2], "dilations": [1, 1], "pads": None, "auto_pad": "SAME_LOWER", "bias": True},
    {"name": "2d-depthwise-x2-SAME_UPPER-s2", "C": 2, "M": 4, "group": 2, "spatial": [6, 7], "kernel": [2, 3],
     "strides": [2, 1], "dilations": [1, 1], "pads": None, "auto_pad": "SAME_UPPER", "bias": False},
    # SAME with stride larger than the kernel (padding would be negative)
    {"name": "2d-SAME_UPPER-stride-gt-kernel", "C": 2, "M": 2, "group": 1, "spatial": [7, 8], "kernel": [1, 2],
     "strides": [3, 4], "dilations": [1, 1], "pads": None, "auto_pad": "SAME_UPPER", "bias": True},
    # asymmetric pads wider than the dilated kernel: some windows read only padding
    {"name": "1d-pads-wider-than-kernel", "C": 2, "M": 3, "group": 1, "spatial": [5], "kernel": [2], "strides": [1],
     "dilations": [2], "pads": [4, 5], "auto_pad": "NOTSET", "bias": True},
    {"name": "2d-group2-asym-pads-dil", "C": 4, "M": 6, "group": 2, "spatial": [7, 6], "kernel": [3, 2],
     "strides": [2, 1], "dilations": [2, 3], "pads": [0, 2, 3, 1], "auto_pad": "NOTSET", "bias": True},
    {"name": "2d-VALID-s3-d2", "C": 3, "M": 2, "group": 1, "spatial": [9, 8], "kernel": [2, 3], "strides": [3, 2],
     "dilations": [2, 1], "pads": None, "auto_pad": "VALID", "bias": False},
    # 3-D
    {"name": "3d-group2-asym-pads-dil", "C": 4, "M": 4, "group": 2, "spatial": [4, 5, 4], "kernel": [2, 3, 2],
     "strides": [1, 2, 1], "dilations": [2, 1, 1], "pads": [1, 0, 2, 0, 2, 1], "auto_pad": "NOTSET", "bias": True},
    {"name": "3d-depthwise-SAME_LOWER", "C": 3, "M": 3, "group": 3, "spatial": [4, 3, 5], "kernel": [3, 2, 2],
     "strides": [2, 1, 2], "dilations": [1, 1, 1], "pads": None, "auto_pad": "SAME_LOWER", "bias": False},
    {"name": "3d-VALID-rect", "C": 2, "M": 3, "group": 1, "spatial": [5, 4, 3], "kernel": [3, 2, 1],
     "strides": [1, 1, 2], "dilations": [1, 2, 1], "pads": None, "auto_pad": "VALID", "bias": True},
]


for _c in HAND_CONV_CONFIGS:
    _c.setdefault("write_defaults", True)
    _c.setdefault("seed", 0)


CONV_CONFIGS = HAND_CONV_CONFIGS + [random_conv_config(s) for s in range(32)]


CONV_IDS = [c["name"] for c in CONV_CONFIGS]


@functools.cache
def conv_case(index):
    cfg = CONV_CONFIGS[index]
    rng = np.random.default_rng(10_000 + index)
    C, M, group = cfg["C"], cfg["M"], cfg["group"]
    W = rng.normal(size=(M, C // group, *cfg["kernel"])).astype(np.float32)
    inits = {"W": W}
    inputs = ["x", "W"]
    bias = None
    if cfg["bias"]:
        bias = rng.normal(size=M).astype(np.float32)
        inits["B"] = bias
        inputs.append("B")
    attrs = {}
    wd = cfg["write_defaults"]
    if cfg["auto_pad"] != "NOTSET" or wd:
        attrs["auto_pad"] = cfg["auto_pad"]
    if cfg["pads"] is not None and (wd or any(cfg["pads"])):
        attrs["pads"] = cfg["pads"]
    if wd or any(s != 1 for s in cfg["strides"]):
        attrs["strides"] = cfg["strides"]
    if wd or any(d != 1 for d in cfg["dilations"]):
        attrs["dilations"] = cfg["dilations"]
    if group != 1 or wd:
        attrs["group"] = group
    if wd:
        attrs["kernel_shape"] = cfg["kernel"]
    model = make_model([helper.make_node("Conv", inputs, ["y"], **attrs)], (C, *cfg["spatial"]), inits)
    x = rng.normal(size=(BATCH, C, *cfg["spatial"])).astype(np.float32)
    y = ort_outputs(model, x)["y"]
    plan = onnxtopo.inspect(model)
    assert len(plan.steps) == 1 and plan.steps[0].op_type == "Conv"
    begin = begin_pads(cfg["auto_pad"], cfg["pads"], cfg["spatial"], cfg["kernel"], cfg["strides"],
                       cfg["dilations"])
    return SimpleNamespace(cfg=cfg, model=model, x=x, W=W, bias=bias, y=y, plan=plan, rule=plan.steps[0].rule,
                           begin=begin)


def test_conv_configs_cover_the_features():
    """The configurations exercise what the rule claims to handle (guards the generator itself)."""
    cs = CONV_CONFIGS
    assert {len(c["spatial"]) for c in cs} == {1, 2, 3}
    assert sum(len(c["spatial"]) == 3 for c in cs) >= 5
    assert {c["auto_pad"] for c in cs} == {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"}
    assert any(c["group"] > 1 and c["group"] < c["C"] for c in cs)
    assert sum(c["group"] == c["C"] > 1 for c in cs) >= 3
    assert any(max(c["strides"]) > 1 for c in cs) and any(max(c["dilations"]) > 1 for c in cs)
    assert any(c["pads"] and c["pads"][:len(c["spatial"])] != c["pads"][len(c["spatial"]):] for c in cs)
    assert any(len(set(c["kernel"])) > 1 for c in cs)
    assert any(c["bias"] for c in cs) and any(not c["bias"] for c in cs)


@pytest.mark.parametrize("index", range(len(CONV_CONFIGS)), ids=CONV_IDS)
def test_conv_out_shape_matches_onnxruntime(index):
    case = conv_case(index)
    cfg = case.cfg
    assert tuple(case.rule.out_shape) == case.y.shape[1:]
    assert case.plan.layers[0].shape == (cfg["C"], *cfg["spatial"])
    assert case.plan.layers[1].shape == case.y.shape[1:]
    assert case.plan.layers[1].offset == size_of(case.plan.layers[0].shape)


@pytest.mark.parametrize("index", range(len(CONV_CONFIGS)), ids=CONV_IDS)
def test_conv_pattern_matches_brute_force(index):
    case = conv_case(index)
    cfg = case.cfg
    expected = brute_conv_edges((cfg["C"], *cfg["spatial"]), case.W, cfg["group"], cfg["strides"],
                                cfg["dilations"], case.begin, case.y.shape[2:])
    assert expected
    p = case.rule.pattern
    assert_same_edges(edges_as_dict(p.src, p.dst, p.weight), expected, what=f"conv {cfg['name']}")


@pytest.mark.parametrize("index", range(len(CONV_CONFIGS)), ids=CONV_IDS)
def test_conv_streamed_edges_match_brute_force(index):
    """The edges Conv streams (the compiled loop over its windows' nonzero inputs, no pattern
    built) are the brute-force edges with w·h·scale ≠ 0, in pattern order (output channel,
    output position, input channel, kernel offset: for a conv that is ascending (dst, src), as a
    window's inputs ascend with the kernel offset), value for value, one block per chunk of
    ``max_edges // edges per output channel`` output channels; in global ids constants (-1) make
    no edge, even where their value is not 0, and targets shift by the layer's offset."""
    case = conv_case(index)
    cfg, rule = case.cfg, case.rule
    rng = np.random.default_rng(20_000 + index)
    weights = brute_conv_edges((cfg["C"], *cfg["spatial"]), case.W, cfg["group"], cfg["strides"],
                               cfg["dilations"], case.begin, case.y.shape[2:])
    ordered = sorted((v, u, w) for (u, v), w in weights.items())
    n_in, n_out = size_of((cfg["C"], *cfg["spatial"])), size_of(case.y.shape[1:])
    per_channel = n_out // cfg["M"]
    h = case.x[0].reshape(-1).astype(np.float64) * (rng.random(n_in) < 0.6)  # ReLU-like zeros
    input_vertices = rng.integers(100, 10**6, n_in)
    input_vertices[rng.random(n_in) < 0.2] = -1  # constants (padding), h ≠ 0 at most of them
    scale = rng.normal(size=n_out) * (rng.random(n_out) < 0.9)
    local = [(u, v, w * h[u]) for v, u, w in ordered if w * h[u] != 0]
    mapped = [(int(input_vertices[u]), v + 7, w * h[u] * scale[v]) for v, u, w in ordered
              if input_vertices[u] >= 0 and w * h[u] * scale[v] != 0]
    per_outer = rule.edges_per_outer
    # 2 or 3 channels a chunk: chunks that straddle groups (2 or 3 output channels per group) too.
    for max_edges in (None, 1, per_outer + 1, 2 * per_outer + 1, 3 * per_outer, rule.candidate_count):
        channels = cfg["M"] if max_edges is None else max(1, max_edges // per_outer)
        for blocks, edges, shift in ((rule.nonzero_edges(h, max_edges), local, 0),
                                     (rule.global_nonzero_edges(h, max_edges, input_vertices, 7, scale), mapped, 7)):
            blocks = list(blocks)
            assert len(blocks) == -(-cfg["M"] // channels)
            for i, (src, dst, values) in enumerate(blocks):
                assert src.dtype == dst.dtype == np.int64 and values.dtype == np.float64
                want = [e for e in edges if (e[1] - shift) // (channels * per_channel) == i]
                assert list(zip(src.tolist(), dst.tolist(), values.tolist())) == want


@pytest.mark.parametrize("index", range(len(CONV_CONFIGS)), ids=CONV_IDS)
def test_conv_edge_values_reconstruct_onnxruntime_output(index):
    case = conv_case(index)
    p = case.rule.pattern
    out_size = size_of(case.y.shape[1:])
    per_channel = out_size // case.y.shape[1]
    for n in range(BATCH):
        h = case.x[n].reshape(-1).astype(np.float64)
        values = case.rule.edge_values(h)
        assert values.shape == (len(p),)
        out = np.zeros(out_size)
        np.add.at(out, p.dst, values)
        if case.bias is not None:
            out += np.repeat(case.bias.astype(np.float64), per_channel)
        np.testing.assert_allclose(out, case.y[n].reshape(-1), rtol=1e-4, atol=1e-4,
                                   err_msg=f"sample {n}")


# --------------------------------------------------------------------------------------------
# ConvTranspose
# --------------------------------------------------------------------------------------------

def spec_geometry(spatial, kernel, strides, dilations, pads, output_padding, output_shape, auto_pad):
    """Padding before each axis and output size, from the ONNX spec's formulas."""
    nd = len(spatial)
    full = [s * (i - 1) + op + (k - 1) * d + 1
            for i, s, op, k, d in zip(spatial, strides, output_padding, kernel, dilations)]
    if output_shape is None and auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        begin = [0] * nd if auto_pad == "VALID" else pads[:nd]
        end = [0] * nd if auto_pad == "VALID" else pads[nd:]
        return begin, [f - b - e for f, b, e in zip(full, begin, end)]
    out = output_shape or [i * s for i, s in zip(spatial, strides)]
    begin = []
    for f, o in zip(full, out):
        total = f - o
        begin.append(total // 2 if auto_pad == "SAME_UPPER" else total - total // 2)
    return begin, out


def brute_conv_transpose_edges(shape, W, group, strides, dilations, begin, out_spatial):
    """{(input, output): W[c, m mod M/group, k]} for every in-bounds (input, kernel offset)."""
    channels, spatial = shape[0], shape[1:]
    per_group, kernel = W.shape[1], W.shape[2:]
    out_shape = (per_group * group, *out_spatial)
    edges = {}
    for c in range(channels):
        g = c // (channels // group)
        for j in range(per_group):
            for i in itertools.product(*map(range, spatial)):
                for k in itertools.product(*map(range, kernel)):
                    o = [i_a * s - b + k_a * d for i_a, s, b, k_a, d in zip(i, strides, begin, k, dilations)]
                    if all(0 <= o_a < n for o_a, n in zip(o, out_spatial)):
                        key = (flat_index((c, *i), shape), flat_index((g * per_group + j, *o), out_shape))
                        assert key not in edges  # one kernel element per (input, output) pair
                        edges[key] = float(W[(c, j, *k)])
    return edges


CONV_T_CASES = [
    {"shape": (2, 5), "kernel": (4,), "strides": [2], "auto_pad": "SAME_UPPER"},
    {"shape": (2, 5), "kernel": (4,), "strides": [3], "auto_pad": "SAME_LOWER", "bias": True},
    {"shape": (2, 5), "kernel": (3,), "strides": [2], "output_shape": [10]},
    {"shape": (2, 5), "kernel": (4,), "strides": [2], "output_shape": [9], "auto_pad": "SAME_LOWER"},
    {"shape": (2, 5), "kernel": (4,), "strides": [2], "output_shape": [9], "auto_pad": "SAME_UPPER"},
    {"shape": (2, 5), "kernel": (4,), "strides": [2], "dilations": [2], "auto_pad": "SAME_UPPER"},
    {"shape": (2, 5), "kernel": (4,), "strides": [2], "pads": [1, 2], "output_padding": [1], "bias": True},
    {"shape": (2, 5), "kernel": (4,), "strides": [2], "auto_pad": "VALID", "output_padding": [1]},
    {"shape": (2, 5), "kernel": (2,), "strides": [3]},  # gaps: outputs no input reaches
    {"shape": (4, 4, 5), "kernel": (3, 2), "strides": [2, 3], "pads": [1, 0, 2, 1], "dilations": [2, 1], "group": 2},
    {"shape": (3, 4, 4), "kernel": (3, 3), "strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1],
     "bias": True},
    {"shape": (3, 4, 5), "kernel": (2, 3), "strides": [1, 2], "auto_pad": "SAME_UPPER", "group": 3},  # depthwise
    {"shape": (1, 3, 3), "kernel": (3, 3), "strides": [2, 2], "output_padding": [1, 0], "kernel_shape": [3, 3]},
    {"shape": (2, 3, 4, 3), "kernel": (2, 2, 3), "strides": [2, 1, 2], "pads": [0, 1, 1, 1, 0, 0],
     "dilations": [1, 2, 1]},
    {"shape": (4, 3, 3, 4), "kernel": (2, 3, 2), "strides": [2, 2, 1], "output_shape": [6, 7, 5], "group": 2,
     "bias": True},
]


CONV_T_IDS = [f"{len(c['shape']) - 1}d-" + "-".join(f"{k}{v}" for k, v in c.items() if k not in ("shape", "kernel"))
              for c in CONV_T_CASES]


def conv_transpose_case(cfg, seed=7):
    rng = np.random.default_rng(seed)
    shape, kernel, group = cfg["shape"], cfg["kernel"], cfg.get("group", 1)
    W = rng.normal(size=(shape[0], 2 if group == 1 else 1, *kernel)).astype(np.float32)
    inits, inputs = {"W": W}, ["x", "W"]
    if cfg.get("bias"):
        inits["B"] = rng.normal(size=W.shape[1] * group).astype(np.float32)
        inputs.append("B")
    attrs = {k: v for k, v in cfg.items() if k not in ("shape", "kernel", "bias")}
    model = make_model([helper.make_node("ConvTranspose", inputs, ["y"], **attrs)], shape, inits)
    return model, W, inits.get("B")


@pytest.mark.parametrize("cfg", CONV_T_CASES, ids=CONV_T_IDS)
def test_conv_transpose_edges_match_the_spec(cfg):
    model, W, _ = conv_transpose_case(cfg)
    nd = len(cfg["kernel"])
    begin, out = spec_geometry(cfg["shape"][1:], cfg["kernel"], cfg["strides"], cfg.get("dilations", [1] * nd),
                               cfg.get("pads", [0] * 2 * nd), cfg.get("output_padding", [0] * nd),
                               cfg.get("output_shape"), cfg.get("auto_pad", "NOTSET"))
    _, step = only_step(model, "ConvTranspose")
    assert step.rule.out_shape == (W.shape[1] * cfg.get("group", 1), *out)
    expected = brute_conv_transpose_edges(cfg["shape"], W, cfg.get("group", 1), cfg["strides"],
                                          cfg.get("dilations", [1] * nd), begin, out)
    p = step.rule.pattern
    assert_same_edges(edges_as_dict(p.src, p.dst, p.weight), expected, rtol=1e-7)


@pytest.mark.parametrize("cfg", CONV_T_CASES, ids=CONV_T_IDS)
def test_conv_transpose_rebuilds_onnxruntime(cfg):
    model, _, bias = conv_transpose_case(cfg)
    _, step = only_step(model, "ConvTranspose")
    x = np.random.default_rng(8).normal(size=(BATCH, *cfg["shape"])).astype(np.float32)
    y = ort_outputs(model, x)["y"]
    assert step.rule.out_shape == y.shape[1:]
    got = rebuilt_outputs(step.rule, x)
    if bias is not None:
        got += np.repeat(bias.astype(np.float64), math.prod(y.shape[2:]))
    np.testing.assert_allclose(got, y.reshape(BATCH, -1), rtol=1e-5, atol=1e-5)


def test_conv_transpose_pattern_in_parts():
    model, _, _ = conv_transpose_case(CONV_T_CASES[9])
    _, step = only_step(model, "ConvTranspose")
    assert_parts_make_the_pattern(step.rule, 30)


def test_conv_transpose_end_to_end():
    """A decoder: Conv down, ConvTranspose back up."""
    rng = np.random.default_rng(9)
    nodes = [helper.make_node("Conv", ["x", "K"], ["c"], strides=[2, 2]), helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("ConvTranspose", ["r", "W", "B"], ["y"], strides=[2, 2], output_padding=[1, 1])]
    inits = {"K": rng.normal(size=(3, 1, 3, 3)).astype(np.float32),
             "W": rng.normal(size=(3, 1, 3, 3)).astype(np.float32),
             "B": rng.normal(size=1).astype(np.float32)}
    assert_engines_agree(make_model(nodes, (1, 7, 7), inits), rng.normal(size=(BATCH, 1, 7, 7)).astype(np.float32))


def test_conv_transpose_with_a_runtime_bias_refused():
    nodes = [helper.make_node("ReduceSum", ["x", "axes"], ["b"], keepdims=0),
             helper.make_node("Reshape", ["b", "one"], ["b1"]),
             helper.make_node("ConvTranspose", ["x", "W", "b1"], ["y"])]
    inits = {"axes": np.array([1, 2], dtype=np.int64), "one": np.array([-1], dtype=np.int64),
             "W": np.ones((1, 1, 2), dtype=np.float32)}
    model = make_model(nodes, (1, 3), inits)
    with pytest.raises(UnsupportedOpError, match="bias is computed at run time"):
        onnxtopo.inspect(model)
