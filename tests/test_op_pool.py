"""Pooling (rules/op_pool.py): MaxPool's windows (rule ``window``) or first maxima (rule ``argmax``),
AveragePool's and the global pools' averages.

Every expected edge set is enumerated here with plain loops from the definitions of
docs/induced-graph.md (never with onnxtopo's own window code); onnxruntime (graph optimizations off)
is the independent reference for output shapes and values: summing the rule's own w·h over each
output's incoming edges must give back the op's output.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import pytest
from onnx import helper

import onnxtopo
from onnxtopo.activations import ActivationRunner
from onnxtopo.graph import build_graph

from conftest import (
    assert_same_edges,
    begin_pads,
    brute_pool_windows,
    edges_as_dict,
    first_argmax,
    flat_index,
    graph_dict,
    make_model,
    ort_outputs,
    positions,
    size_of,
)

BATCH = 3


# --------------------------------------------------------------------------------------------
# MaxPool
# --------------------------------------------------------------------------------------------

def random_pool_config(seed):
    rng = np.random.default_rng(500 + seed)
    nd = (1, 2)[seed % 2]
    C = int(rng.integers(1, 4))
    kernel = [int(k) for k in rng.integers(1, 4, nd)]
    if size_of(kernel) == 1:
        kernel[0] = 2
    auto_pad = str(rng.choice(["NOTSET", "NOTSET", "NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"]))
    if auto_pad.startswith("SAME"):
        # onnxruntime computes SAME padding for MaxPool without dilations and refuses stride > kernel
        strides = [int(rng.integers(1, k + 1)) for k in kernel]
        dilations, ceil_mode = [1] * nd, 0
    else:
        strides = [int(s) for s in rng.integers(1, 4, nd)]
        dilations = [int(d) for d in rng.choice([1, 1, 2], nd)]
        ceil_mode = int(rng.integers(0, 2))
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    # onnxruntime needs pads smaller than the kernel
    pads = [int(rng.integers(0, kernel[i % nd])) for i in range(2 * nd)] if auto_pad == "NOTSET" else None
    p = pads or [0] * (2 * nd)
    smax = 10 if nd == 1 else 7
    spatial = [max(int(rng.integers(2, smax + 1)), sp - p[i] - p[i + nd]) for i, sp in enumerate(span)]
    return {"name": f"seed{seed:02d}-{nd}d-{auto_pad}-ceil{ceil_mode}", "C": C, "spatial": spatial, "kernel": kernel,
            "strides": strides, "dilations": dilations, "pads": pads, "auto_pad": auto_pad, "ceil_mode": ceil_mode}


HAND_POOL_CONFIGS = [
    # ceil_mode: the last window would start in the end padding, so it is dropped
    {"name": "1d-ceil-last-window-in-padding", "C": 2, "spatial": [6], "kernel": [3], "strides": [3], "dilations": [1],
     "pads": [2, 2], "auto_pad": "NOTSET", "ceil_mode": 1},
    {"name": "2d-ceil-asym-pads-dil", "C": 2, "spatial": [5, 6], "kernel": [2, 3], "strides": [2, 3],
     "dilations": [2, 1], "pads": [1, 0, 0, 2], "auto_pad": "NOTSET", "ceil_mode": 1},
    {"name": "2d-SAME_LOWER-rect-s2", "C": 2, "spatial": [6, 7], "kernel": [3, 2], "strides": [2, 2],
     "dilations": [1, 1], "pads": None, "auto_pad": "SAME_LOWER", "ceil_mode": 0},
    {"name": "2d-SAME_UPPER-rect-s2", "C": 1, "spatial": [6, 7], "kernel": [3, 2], "strides": [2, 2],
     "dilations": [1, 1], "pads": None, "auto_pad": "SAME_UPPER", "ceil_mode": 0},
    {"name": "1d-pads2-k3-edge-windows", "C": 1, "spatial": [5], "kernel": [3], "strides": [1], "dilations": [1],
     "pads": [2, 2], "auto_pad": "NOTSET", "ceil_mode": 0},
    {"name": "2d-VALID-dil2-s1", "C": 3, "spatial": [6, 5], "kernel": [2, 2], "strides": [1, 1], "dilations": [2, 2],
     "pads": None, "auto_pad": "VALID", "ceil_mode": 0},
    # 3-D too, since the rule claims any number of spatial axes
    {"name": "3d-ceil-asym-pads-dil", "C": 2, "spatial": [4, 5, 3], "kernel": [2, 3, 2], "strides": [2, 2, 1],
     "dilations": [1, 1, 2], "pads": [1, 0, 1, 0, 2, 0], "auto_pad": "NOTSET", "ceil_mode": 1},
    {"name": "3d-SAME_LOWER", "C": 1, "spatial": [4, 3, 5], "kernel": [2, 2, 3], "strides": [2, 1, 2],
     "dilations": [1, 1, 1], "pads": None, "auto_pad": "SAME_LOWER", "ceil_mode": 0},
]


POOL_CONFIGS = HAND_POOL_CONFIGS + [random_pool_config(s) for s in range(26)]


POOL_IDS = [c["name"] for c in POOL_CONFIGS]


def pool_inputs(kind, shape, rng):
    """Inputs with no zeros (so φ > 0 on every chosen edge); the integer ones are full of ties."""
    if kind == "normal":
        x = rng.normal(size=shape)
        x[x == 0] = 1.0
    elif kind == "ints-pos":
        x = rng.integers(1, 4, size=shape)
    elif kind == "ints-neg":
        x = rng.integers(-3, 0, size=shape)
    elif kind == "plateau":  # a constant maximal region over part of each sample
        x = rng.normal(size=shape)
        x[x == 0] = 1.0
        x[:, :, : (shape[2] + 1) // 2] = 5.0
    else:
        raise AssertionError(kind)
    return x.astype(np.float32)


@functools.cache
def pool_case(index):
    cfg = POOL_CONFIGS[index]
    attrs = {"kernel_shape": cfg["kernel"], "strides": cfg["strides"], "dilations": cfg["dilations"],
             "ceil_mode": cfg["ceil_mode"], "auto_pad": cfg["auto_pad"]}
    if cfg["pads"] is not None:
        attrs["pads"] = cfg["pads"]
    model = make_model([helper.make_node("MaxPool", ["x"], ["y"], **attrs)], (cfg["C"], *cfg["spatial"]))
    plans = {r: onnxtopo.inspect(model, maxpool_rule=r) for r in ("window", "argmax")}
    for plan in plans.values():
        assert [s.op_type for s in plan.steps] == ["MaxPool"]
    begin = begin_pads(cfg["auto_pad"], cfg["pads"], cfg["spatial"], cfg["kernel"], cfg["strides"],
                       cfg["dilations"])
    return SimpleNamespace(index=index, cfg=cfg, model=model, plans=plans, begin=begin, windows={})


POOL_INPUT_KINDS = ["normal", "ints-pos", "ints-neg", "plateau"]


def pool_reference(case, kind):
    """Inputs of one kind, onnxruntime's output and the brute-force windows over that output."""
    cfg = case.cfg
    rng = np.random.default_rng([case.index, POOL_INPUT_KINDS.index(kind)])
    x = pool_inputs(kind, (BATCH, cfg["C"], *cfg["spatial"]), rng)
    y = ort_outputs(case.model, x)["y"]
    out_spatial = y.shape[2:]
    if out_spatial not in case.windows:
        case.windows[out_spatial] = brute_pool_windows((cfg["C"], *cfg["spatial"]), cfg["kernel"], cfg["strides"],
                                                       cfg["dilations"], case.begin, out_spatial)
    return x, y, case.windows[out_spatial]


def test_pool_configs_cover_the_features():
    cs = POOL_CONFIGS
    assert {len(c["spatial"]) for c in cs} == {1, 2, 3}
    assert sum(len(c["spatial"]) == 1 for c in cs) >= 10 and sum(len(c["spatial"]) == 2 for c in cs) >= 10
    assert {c["auto_pad"] for c in cs} == {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"}
    assert sum(c["ceil_mode"] for c in cs) >= 5 and sum(not c["ceil_mode"] for c in cs) >= 5
    assert any(max(c["dilations"]) > 1 for c in cs) and any(max(c["strides"]) > 1 for c in cs)
    assert any(c["pads"] and any(c["pads"]) for c in cs)


@pytest.mark.parametrize("index", range(len(POOL_CONFIGS)), ids=POOL_IDS)
def test_maxpool_out_shape_matches_onnxruntime(index):
    case = pool_case(index)
    _, y, _ = pool_reference(case, "normal")
    for plan in case.plans.values():
        assert tuple(plan.steps[0].rule.out_shape) == y.shape[1:]
        assert plan.layers[1].shape == y.shape[1:]


@pytest.mark.parametrize("index", range(len(POOL_CONFIGS)), ids=POOL_IDS)
def test_maxpool_window_pattern_matches_brute_force(index):
    case = pool_case(index)
    _, _, windows = pool_reference(case, "normal")
    expected = {(u, v): 1.0 for v, srcs in windows.items() for u in srcs}
    assert expected
    p = case.plans["window"].steps[0].rule.pattern
    assert_same_edges(edges_as_dict(p.src, p.dst, p.weight), expected, what="maxpool window")


@pytest.mark.parametrize("index", range(len(POOL_CONFIGS)), ids=POOL_IDS)
def test_maxpool_window_edges_reconstruct_onnxruntime_output(index):
    case = pool_case(index)
    x, y, windows = pool_reference(case, "normal")
    rule = case.plans["window"].steps[0].rule
    p = rule.pattern
    assert int(p.dst.max()) < size_of(y.shape[1:])
    for n in range(BATCH):
        values = rule.edge_values(x[n].reshape(-1).astype(np.float64))
        out = np.full(size_of(y.shape[1:]), -np.inf)
        np.maximum.at(out, p.dst, values)
        has_input = np.array([bool(windows[v]) for v in range(out.size)])
        assert has_input.any()
        np.testing.assert_array_equal(out[has_input], y[n].reshape(-1)[has_input], err_msg=f"sample {n}")


@pytest.mark.parametrize("kind", POOL_INPUT_KINDS)
@pytest.mark.parametrize("index", range(len(POOL_CONFIGS)), ids=POOL_IDS)
def test_maxpool_argmax_one_edge_from_the_first_maximum(index, kind):
    case = pool_case(index)
    x, y, windows = pool_reference(case, kind)
    plan = case.plans["argmax"]
    rule = plan.steps[0].rule
    in_size = size_of(plan.layers[0].shape)
    p = rule.pattern
    activations = ActivationRunner(plan).run(x)
    graphs = [build_graph(plan, activations, n) for n in range(len(x))]
    assert len(graphs) == BATCH
    for n in range(BATCH):
        h = x[n].reshape(-1).astype(np.float64)
        chosen = {v: first_argmax(h, srcs) for v, srcs in windows.items() if srcs}
        assert chosen
        # the chosen input is onnxruntime's maximum (checks the brute force, and the tie values)
        for v, u in chosen.items():
            assert h[u] == y[n].reshape(-1)[v]
        # edge values: w·h on the chosen edge of each output, zero on the others
        expected_values = np.array([h[u] if chosen.get(v) == u else 0.0 for u, v in zip(p.src.tolist(),
                                                                                      p.dst.tolist())])
        np.testing.assert_array_equal(rule.edge_values(h), expected_values, err_msg=f"sample {n}")
        # the induced graph: exactly one edge per output, from its first maximum
        g = graphs[n]
        expected = {(u, in_size + v): abs(h[u]) for v, u in chosen.items()}
        assert_same_edges(edges_as_dict(g.src, g.dst, g.phi), expected, what=f"argmax graph, sample {n}")


# --------------------------------------------------------------------------------------------
# AveragePool
# --------------------------------------------------------------------------------------------

def random_avgpool_config(seed):
    rng = np.random.default_rng(900 + seed)
    nd = 1 + seed % 2
    C = int(rng.integers(1, 4))
    kernel = [int(k) for k in rng.integers(1, 5 if nd == 1 else 4, nd)]
    if size_of(kernel) == 1:
        kernel[0] = 2
    auto_pad = str(rng.choice(["NOTSET"] * 5 + ["SAME_UPPER", "SAME_LOWER", "VALID"]))
    cip = int(rng.integers(0, 2))
    if auto_pad.startswith("SAME"):
        # onnxruntime: no stride above the kernel with SAME; onnxtopo refuses SAME with dilations
        strides = [int(rng.integers(1, k + 1)) for k in kernel]
        dilations, ceil_mode = [1] * nd, 0
    else:
        strides = [int(s) for s in rng.integers(1, 4, nd)]
        ceil_mode = int(rng.integers(0, 2))
        dilations = [int(d) for d in rng.choice([1, 2], nd)] if rng.random() < 0.3 else [1] * nd
    # onnxruntime needs pads smaller than the kernel
    pads = [int(rng.integers(0, kernel[i % nd])) for i in range(2 * nd)] if auto_pad == "NOTSET" else None
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    smax = 9 if nd == 1 else 6
    spatial = [max(int(rng.integers(2, smax + 1)), sp) for sp in span]
    return {"name": f"seed{seed:02d}-{nd}d-{auto_pad}-ceil{ceil_mode}-cip{cip}", "C": C, "spatial": spatial,
            "kernel": kernel, "strides": strides, "dilations": dilations, "pads": pads, "auto_pad": auto_pad,
            "ceil_mode": ceil_mode, "cip": cip}


HAND_AVG_CONFIGS = [
    # ceil_mode: the last window reaches past the end padding; onnxruntime counts the padding
    # only (count_include_pad=1), not the positions beyond it
    {"name": "1d-ceil-cip1-window-past-padding", "C": 2, "spatial": [6], "kernel": [3], "strides": [2], "pads": [1, 1],
     "ceil_mode": 1, "cip": 1},
    {"name": "1d-ceil-cip0-window-past-padding", "C": 2, "spatial": [6], "kernel": [3], "strides": [2], "pads": [1, 1],
     "ceil_mode": 1, "cip": 0},
    {"name": "1d-ceil-cip1-no-end-pad", "C": 1, "spatial": [5], "kernel": [3], "strides": [2], "pads": [1, 0],
     "ceil_mode": 1, "cip": 1},
    # ceil_mode: a window that would start in the end padding is dropped
    {"name": "1d-ceil-cip1-last-window-dropped", "C": 1, "spatial": [6], "kernel": [3], "strides": [3], "pads": [2, 2],
     "ceil_mode": 1, "cip": 1},
    {"name": "2d-ceil-cip1-asym-pads", "C": 2, "spatial": [5, 6], "kernel": [3, 2], "strides": [2, 3],
     "pads": [1, 0, 2, 1], "ceil_mode": 1, "cip": 1},
    {"name": "2d-ceil-cip0-asym-pads", "C": 2, "spatial": [5, 6], "kernel": [3, 2], "strides": [2, 3],
     "pads": [1, 0, 2, 1], "ceil_mode": 1, "cip": 0},
    {"name": "2d-cip1-pads", "C": 1, "spatial": [4, 5], "kernel": [3, 3], "strides": [1, 2], "pads": [1, 2, 2, 1],
     "ceil_mode": 0, "cip": 1},
    {"name": "2d-VALID-s2", "C": 3, "spatial": [6, 7], "kernel": [2, 3], "strides": [2, 2], "auto_pad": "VALID",
     "ceil_mode": 0, "cip": 1},
    # SAME padding: with count_include_pad=1 onnxruntime counts the computed padding at both ends
    {"name": "1d-SAME_UPPER-cip1", "C": 1, "spatial": [6], "kernel": [3], "strides": [2], "auto_pad": "SAME_UPPER",
     "ceil_mode": 0, "cip": 1},
    {"name": "2d-SAME_LOWER-cip1", "C": 2, "spatial": [6, 5], "kernel": [4, 3], "strides": [1, 2],
     "auto_pad": "SAME_LOWER", "ceil_mode": 0, "cip": 1},
    {"name": "2d-SAME_UPPER-cip0", "C": 2, "spatial": [6, 5], "kernel": [3, 2], "strides": [2, 2],
     "auto_pad": "SAME_UPPER", "ceil_mode": 0, "cip": 0},
    # opset 19: dilations
    {"name": "1d-dil2-ceil-cip1", "C": 2, "spatial": [7], "kernel": [3], "strides": [2], "dilations": [2],
     "pads": [2, 2], "ceil_mode": 1, "cip": 1},
    {"name": "2d-dil-cip1", "C": 1, "spatial": [7, 6], "kernel": [2, 3], "strides": [1, 2], "dilations": [2, 1],
     "pads": [1, 0, 1, 2], "ceil_mode": 0, "cip": 1},
]


for _c in HAND_AVG_CONFIGS:
    _nd = len(_c["spatial"])
    _c.setdefault("auto_pad", "NOTSET")
    _c.setdefault("pads", None)
    _c.setdefault("dilations", [1] * _nd)


AVG_CONFIGS = HAND_AVG_CONFIGS + [random_avgpool_config(s) for s in range(20)]


AVG_IDS = [c["name"] for c in AVG_CONFIGS]


def pool_pads(cfg):
    """(begin, end) padding per spatial axis, from the ONNX spec (SAME: computed, the odd one at
    the end for SAME_UPPER)."""
    nd = len(cfg["spatial"])
    if cfg["auto_pad"] == "NOTSET":
        pads = cfg["pads"] or [0] * (2 * nd)
        return list(pads[:nd]), list(pads[nd:])
    if cfg["auto_pad"] == "VALID":
        return [0] * nd, [0] * nd
    begin, end = [], []
    for n, k, s in zip(cfg["spatial"], cfg["kernel"], cfg["strides"]):
        out = -(-n // s)
        total = max(0, (out - 1) * s + k - n)
        b = total // 2 if cfg["auto_pad"] == "SAME_UPPER" else total - total // 2
        begin.append(b)
        end.append(total - b)
    return begin, end


def avg_windows(cfg, out_spatial):
    """{flat output: (sorted flat in-bounds inputs, divisor)}; the divisor counts in-bounds inputs
    (count_include_pad=0) or the window positions inside input + padding (count_include_pad=1)."""
    spatial, kernel, strides, dil = cfg["spatial"], cfg["kernel"], cfg["strides"], cfg["dilations"]
    begin, end = pool_pads(cfg)
    in_size, out_size = size_of(spatial), size_of(out_spatial)
    windows = {}
    for c in range(cfg["C"]):
        for opos in positions(out_spatial):
            srcs = []
            for kpos in positions(kernel):
                ipos = [o * s - b + k * d for o, s, b, k, d in zip(opos, strides, begin, kpos, dil)]
                if all(0 <= p < n for p, n in zip(ipos, spatial)):
                    srcs.append(c * in_size + flat_index(ipos, spatial))
            if cfg["cip"]:
                divisor = 1
                for o, s, b, e, k_len, d, n in zip(opos, strides, begin, end, kernel, dil, spatial):
                    divisor *= sum(1 for k in range(k_len) if -b <= o * s - b + k * d < n + e)
            else:
                divisor = len(srcs)
            windows[c * out_size + flat_index(opos, out_spatial)] = (sorted(srcs), divisor)
    return windows


@functools.cache
def avgpool_case(index):
    cfg = AVG_CONFIGS[index]
    attrs = {"kernel_shape": cfg["kernel"], "strides": cfg["strides"], "ceil_mode": cfg["ceil_mode"],
             "count_include_pad": cfg["cip"], "auto_pad": cfg["auto_pad"]}
    if cfg["pads"] is not None:
        attrs["pads"] = cfg["pads"]
    opset = 17
    if any(d != 1 for d in cfg["dilations"]):
        attrs["dilations"], opset = cfg["dilations"], 19
    sample = (cfg["C"], *cfg["spatial"])
    model = make_model([helper.make_node("AveragePool", ["x"], ["y"], **attrs)], sample, {}, opset=opset)
    rng = np.random.default_rng(4000 + index)
    x = rng.normal(size=(BATCH, *sample)).astype(np.float32)
    x[x == 0] = 1.0
    y = ort_outputs(model, x)["y"]
    y_ones = ort_outputs(model, np.ones((1, *sample), dtype=np.float32))["y"][0]
    plan = onnxtopo.inspect(model)
    assert [s.op_type for s in plan.steps] == ["AveragePool"]
    return SimpleNamespace(cfg=cfg, model=model, x=x, y=y, y_ones=y_ones, plan=plan, rule=plan.steps[0].rule,
                           windows=avg_windows(cfg, y.shape[2:]))


def test_avgpool_configs_cover_the_features():
    cs = AVG_CONFIGS
    assert len(cs) >= 30
    assert {len(c["spatial"]) for c in cs} == {1, 2}
    assert {c["auto_pad"] for c in cs} == {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"}
    for key in ("ceil_mode", "cip"):
        assert sum(c[key] for c in cs) >= 5 and sum(not c[key] for c in cs) >= 5
    assert sum(c["ceil_mode"] and c["cip"] and c["pads"] and any(c["pads"]) for c in cs) >= 3
    assert any(max(c["dilations"]) > 1 for c in cs) and any(max(c["strides"]) > 1 for c in cs)


@pytest.mark.parametrize("index", range(len(AVG_CONFIGS)), ids=AVG_IDS)
def test_avgpool_brute_force_divisor_is_onnxruntimes(index):
    """Guards the brute force itself: on an input of ones onnxruntime outputs (inputs)/(divisor)."""
    case = avgpool_case(index)
    ones = case.y_ones.reshape(-1)
    assert len(case.windows) == ones.size
    for v, (srcs, divisor) in case.windows.items():
        if srcs:
            assert ones[v] == pytest.approx(len(srcs) / divisor, rel=1e-6), f"output {v}: {srcs}, {divisor}"


@pytest.mark.parametrize("index", range(len(AVG_CONFIGS)), ids=AVG_IDS)
def test_avgpool_out_shape_matches_onnxruntime(index):
    case = avgpool_case(index)
    assert tuple(case.rule.out_shape) == case.y.shape[1:]
    assert case.plan.layers[1].shape == case.y.shape[1:]


@pytest.mark.parametrize("index", range(len(AVG_CONFIGS)), ids=AVG_IDS)
def test_avgpool_pattern_matches_brute_force(index):
    case = avgpool_case(index)
    expected = {(u, v): 1.0 / divisor for v, (srcs, divisor) in case.windows.items() for u in srcs}
    assert expected
    p = case.rule.pattern
    assert_same_edges(edges_as_dict(p.src, p.dst, p.weight), expected, rtol=1e-12,
                      what=f"averagepool {case.cfg['name']}")


@pytest.mark.parametrize("index", range(len(AVG_CONFIGS)), ids=AVG_IDS)
def test_avgpool_edges_reconstruct_onnxruntime_output(index):
    case = avgpool_case(index)
    p = case.rule.pattern
    in_size = size_of(case.plan.layers[0].shape)
    has_input = np.array([bool(case.windows[v][0]) for v in range(len(case.windows))])
    assert has_input.any()
    for n in range(BATCH):
        h = case.x[n].reshape(-1).astype(np.float64)
        out = np.zeros(has_input.size)
        np.add.at(out, p.dst, case.rule.edge_values(h))
        np.testing.assert_allclose(out[has_input], case.y[n].reshape(-1)[has_input], rtol=1e-4, atol=1e-5,
                                   err_msg=f"sample {n}")
        # the induced graph: φ = |h_u| / divisor
        g = build_graph(case.plan, {case.plan.input_name: case.x}, n)
        expected = {(u, in_size + v): abs(h[u]) / divisor for v, (srcs, divisor) in case.windows.items()
                    for u in srcs}
        assert_same_edges(graph_dict(g), expected, rtol=1e-9, what=f"graph, sample {n}")
