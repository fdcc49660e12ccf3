"""The edge rules, edge by edge, against brute-force enumerations written here with plain loops.

Every expected edge set below is enumerated independently of onnxtopo (its window code is not
used), from the definitions of docs/induced-graph.md: Conv connects the input each kernel element
multiplies to the window's output, Gemm/MatMul connect k -> n with weight alpha·B'[k, n], MaxPool
connects the in-bounds inputs of each window (rule ``window``) or only its first maximum (rule
``argmax``). onnxruntime (graph optimizations off) is the independent reference for output
shapes and values: summing the rule's own w·h over each output's incoming edges must give back
the op's output.
"""

from __future__ import annotations

import functools
import itertools
from types import SimpleNamespace

import numpy as np
import pytest
from onnx import helper

import onnxtopo
from onnxtopo.activations import ActivationRunner
from onnxtopo.graph import build_graph

from conftest import assert_same_edges, edges_as_dict, make_model, ort_outputs

BATCH = 3


# --------------------------------------------------------------------------------------------
# Brute force, plain Python
# --------------------------------------------------------------------------------------------

def flat_index(index, shape) -> int:
    """Row-major flat index of a multi-index."""
    r = 0
    for i, n in zip(index, shape):
        assert 0 <= i < n
        r = r * n + i
    return r


def size_of(shape) -> int:
    r = 1
    for n in shape:
        r *= n
    return r


def begin_pads(auto_pad, pads, spatial, kernel, strides, dilations):
    """Padding before each spatial axis, from the ONNX operator spec."""
    nd = len(spatial)
    if auto_pad == "VALID":
        return [0] * nd
    if auto_pad == "NOTSET":
        return list(pads[:nd]) if pads is not None else [0] * nd
    begin = []
    for i, k, s, d in zip(spatial, kernel, strides, dilations):
        out = (i + s - 1) // s  # ceil(i / s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - i)
        begin.append(total // 2 if auto_pad == "SAME_UPPER" else total - total // 2)
    return begin


def window_reads(out_pos, spatial, kernel, strides, dilations, begin):
    """(kernel multi-index, input multi-index) of every in-bounds input the window at out_pos reads."""
    for kpos in itertools.product(*(range(k) for k in kernel)):
        ipos = tuple(o * s - b + kk * d for o, kk, s, d, b in zip(out_pos, kpos, strides, dilations, begin))
        if all(0 <= p < n for p, n in zip(ipos, spatial)):
            yield kpos, ipos


def brute_conv_edges(in_shape, W, group, strides, dilations, begin, out_spatial):
    """{(src, dst): kernel element} for a Conv, src/dst flat per sample."""
    channels, spatial = in_shape[0], tuple(in_shape[1:])
    out_channels, group_channels = W.shape[:2]
    kernel = W.shape[2:]
    assert channels == group_channels * group
    in_size, out_size = size_of(spatial), size_of(out_spatial)
    per_group = out_channels // group
    edges = {}
    for m in range(out_channels):
        g = m // per_group
        for opos in itertools.product(*(range(o) for o in out_spatial)):
            v = m * out_size + flat_index(opos, out_spatial)
            for kpos, ipos in window_reads(opos, spatial, kernel, strides, dilations, begin):
                for j in range(group_channels):
                    c = g * group_channels + j
                    u = c * in_size + flat_index(ipos, spatial)
                    assert (u, v) not in edges
                    edges[(u, v)] = float(W[(m, j) + tuple(kpos)])
    return edges


def brute_pool_windows(in_shape, kernel, strides, dilations, begin, out_spatial):
    """For each flat output of a MaxPool, the flat in-bounds inputs of its window (ascending)."""
    channels, spatial = in_shape[0], tuple(in_shape[1:])
    in_size, out_size = size_of(spatial), size_of(out_spatial)
    windows = {}
    for c in range(channels):
        for opos in itertools.product(*(range(o) for o in out_spatial)):
            v = c * out_size + flat_index(opos, out_spatial)
            windows[v] = sorted(c * in_size + flat_index(ipos, spatial)
                                for _, ipos in window_reads(opos, spatial, kernel, strides, dilations, begin))
    return windows


def first_argmax(h, sources):
    """The source with the largest h, the lowest index among ties (sources ascending)."""
    best = sources[0]
    for u in sources[1:]:
        if h[u] > h[best]:
            best = u
    return best


def brute_dense_edges(matrix, lead):
    """{(l*K + k, l*N + n): matrix[k, n]} for every leading index l."""
    K, N = matrix.shape
    return {(l * K + k, l * N + n): float(matrix[k, n]) for l in range(lead) for k in range(K) for n in range(N)}


def add_phi_edges(out: dict, edges: dict, h, src_offset, dst_offset, src_vertex=None):
    """Add |w·h_u| for each edge with a nonzero product, in global vertex ids."""
    for (u, v), w in edges.items():
        phi = abs(w * float(h[u]))
        if phi > 0:
            su = src_vertex[u] if src_vertex is not None else u + src_offset
            out[(int(su), v + dst_offset)] = phi


# --------------------------------------------------------------------------------------------
# 1. Conv
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
    return dict(name=f"seed{seed:02d}-{nd}d-{kind}-{auto_pad}", C=C, M=M, group=group, spatial=spatial,
                kernel=kernel, strides=strides, dilations=dilations, pads=pads, auto_pad=auto_pad,
                bias=bool(rng.random() < 0.5), write_defaults=bool(rng.random() < 0.5), seed=seed)


HAND_CONV_CONFIGS = [
    # depthwise, SAME_LOWER, stride 2, rectangular kernel, even sizes (odd total padding)
    dict(name="2d-depthwise-SAME_LOWER-s2-rect", C=3, M=3, group=3, spatial=[6, 8], kernel=[3, 2],
         strides=[2, 2], dilations=[1, 1], pads=None, auto_pad="SAME_LOWER", bias=True),
    dict(name="2d-depthwise-x2-SAME_UPPER-s2", C=2, M=4, group=2, spatial=[6, 7], kernel=[2, 3],
         strides=[2, 1], dilations=[1, 1], pads=None, auto_pad="SAME_UPPER", bias=False),
    # SAME with stride larger than the kernel (padding would be negative)
    dict(name="2d-SAME_UPPER-stride-gt-kernel", C=2, M=2, group=1, spatial=[7, 8], kernel=[1, 2],
         strides=[3, 4], dilations=[1, 1], pads=None, auto_pad="SAME_UPPER", bias=True),
    # asymmetric pads wider than the dilated kernel: some windows read only padding
    dict(name="1d-pads-wider-than-kernel", C=2, M=3, group=1, spatial=[5], kernel=[2], strides=[1],
         dilations=[2], pads=[4, 5], auto_pad="NOTSET", bias=True),
    dict(name="2d-group2-asym-pads-dil", C=4, M=6, group=2, spatial=[7, 6], kernel=[3, 2], strides=[2, 1],
         dilations=[2, 3], pads=[0, 2, 3, 1], auto_pad="NOTSET", bias=True),
    dict(name="2d-VALID-s3-d2", C=3, M=2, group=1, spatial=[9, 8], kernel=[2, 3], strides=[3, 2],
         dilations=[2, 1], pads=None, auto_pad="VALID", bias=False),
    # 3-D
    dict(name="3d-group2-asym-pads-dil", C=4, M=4, group=2, spatial=[4, 5, 4], kernel=[2, 3, 2],
         strides=[1, 2, 1], dilations=[2, 1, 1], pads=[1, 0, 2, 0, 2, 1], auto_pad="NOTSET", bias=True),
    dict(name="3d-depthwise-SAME_LOWER", C=3, M=3, group=3, spatial=[4, 3, 5], kernel=[3, 2, 2],
         strides=[2, 1, 2], dilations=[1, 1, 1], pads=None, auto_pad="SAME_LOWER", bias=False),
    dict(name="3d-VALID-rect", C=2, M=3, group=1, spatial=[5, 4, 3], kernel=[3, 2, 1],
         strides=[1, 1, 2], dilations=[1, 2, 1], pads=None, auto_pad="VALID", bias=True),
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
# 2. Gemm and MatMul with a constant right operand
# --------------------------------------------------------------------------------------------

GEMM_CONFIGS = [
    dict(alpha=None, beta=None, transB=None, C=None),
    dict(alpha=1.0, beta=1.0, transB=0, C="vec"),
    dict(alpha=0.5, beta=None, transB=1, C="vec"),
    dict(alpha=-1.5, beta=2.0, transB=0, C="row"),
    dict(alpha=2.0, beta=0.5, transB=1, C="scalar"),
    dict(alpha=0.25, beta=None, transB=1, C=None),
    dict(alpha=3.0, beta=-1.0, transB=0, C=None),
]
GEMM_IDS = [f"alpha{c['alpha']}-beta{c['beta']}-transB{c['transB']}-C{c['C']}" for c in GEMM_CONFIGS]
K_IN, N_OUT = 6, 4


@pytest.mark.parametrize("cfg", GEMM_CONFIGS, ids=GEMM_IDS)
def test_gemm_rule(cfg):
    rng = np.random.default_rng(7)
    transB = cfg["transB"] or 0
    B = rng.normal(size=(N_OUT, K_IN) if transB else (K_IN, N_OUT)).astype(np.float32)
    inits, inputs = {"B": B}, ["x", "B"]
    if cfg["C"] is not None:
        C = rng.normal(size={"vec": (N_OUT,), "row": (1, N_OUT), "scalar": ()}[cfg["C"]]).astype(np.float32)
        inits["C"] = C
        inputs.append("C")
    attrs = {k: cfg[k] for k in ("alpha", "beta", "transB") if cfg[k] is not None}
    model = make_model([helper.make_node("Gemm", inputs, ["y"], **attrs)], (K_IN,), inits)
    x = rng.normal(size=(BATCH, K_IN)).astype(np.float32)
    y = ort_outputs(model, x)["y"]

    plan = onnxtopo.inspect(model)
    assert [s.op_type for s in plan.steps] == ["Gemm"]
    rule = plan.steps[0].rule
    assert tuple(rule.out_shape) == y.shape[1:] == (N_OUT,)

    alpha = 1.0 if cfg["alpha"] is None else cfg["alpha"]
    expected = {}
    for k in range(K_IN):
        for n in range(N_OUT):
            b = B[n, k] if transB else B[k, n]
            expected[(k, n)] = alpha * float(b)
    p = rule.pattern
    assert_same_edges(edges_as_dict(p.src, p.dst, p.weight), expected, what="gemm")

    beta = 1.0 if cfg["beta"] is None else cfg["beta"]
    bias = np.zeros(N_OUT) if cfg["C"] is None else beta * np.broadcast_to(inits["C"], (1, N_OUT))[0]
    for n in range(BATCH):
        out = np.zeros(N_OUT)
        np.add.at(out, p.dst, rule.edge_values(x[n].astype(np.float64)))
        np.testing.assert_allclose(out + bias, y[n], rtol=1e-4, atol=1e-4)


MATMUL_CONFIGS = [
    dict(name="2d", sample=(6,), N=4, add=False),
    dict(name="2d-add-bias", sample=(6,), N=4, add=True),
    dict(name="3d", sample=(3, 5), N=4, add=False),
    dict(name="3d-add-bias", sample=(4, 3), N=5, add=True),
]


@pytest.mark.parametrize("cfg", MATMUL_CONFIGS, ids=[c["name"] for c in MATMUL_CONFIGS])
def test_matmul_constant_right_operand(cfg):
    rng = np.random.default_rng(11)
    K, N = cfg["sample"][-1], cfg["N"]
    B = rng.normal(size=(K, N)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "B"], ["t" if cfg["add"] else "y"])]
    inits = {"B": B}
    bias = np.zeros(N, dtype=np.float32)
    if cfg["add"]:
        bias = rng.normal(size=N).astype(np.float32)
        inits["b"] = bias
        nodes.append(helper.make_node("Add", ["t", "b"], ["y"]))
    model = make_model(nodes, cfg["sample"], inits)
    x = rng.normal(size=(BATCH, *cfg["sample"])).astype(np.float32)
    y = ort_outputs(model, x)["y"]

    plan = onnxtopo.inspect(model)
    assert len(plan.steps) == 1  # (MatMul + Add may be normalized into one Gemm)
    rule = plan.steps[0].rule
    assert tuple(rule.out_shape) == y.shape[1:] == (*cfg["sample"][:-1], N)

    lead = size_of(cfg["sample"][:-1])
    expected = brute_dense_edges(B.astype(np.float64), lead)
    p = rule.pattern
    assert_same_edges(edges_as_dict(p.src, p.dst, p.weight), expected, what="matmul")

    for n in range(BATCH):
        out = np.zeros(lead * N)
        np.add.at(out, p.dst, rule.edge_values(x[n].reshape(-1).astype(np.float64)))
        np.testing.assert_allclose(out + np.tile(bias, lead), y[n].reshape(-1), rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------------
# 3. MaxPool
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
    return dict(name=f"seed{seed:02d}-{nd}d-{auto_pad}-ceil{ceil_mode}", C=C, spatial=spatial, kernel=kernel,
                strides=strides, dilations=dilations, pads=pads, auto_pad=auto_pad, ceil_mode=ceil_mode)


HAND_POOL_CONFIGS = [
    # ceil_mode: the last window would start in the end padding, so it is dropped
    dict(name="1d-ceil-last-window-in-padding", C=2, spatial=[6], kernel=[3], strides=[3], dilations=[1],
         pads=[2, 2], auto_pad="NOTSET", ceil_mode=1),
    dict(name="2d-ceil-asym-pads-dil", C=2, spatial=[5, 6], kernel=[2, 3], strides=[2, 3], dilations=[2, 1],
         pads=[1, 0, 0, 2], auto_pad="NOTSET", ceil_mode=1),
    dict(name="2d-SAME_LOWER-rect-s2", C=2, spatial=[6, 7], kernel=[3, 2], strides=[2, 2], dilations=[1, 1],
         pads=None, auto_pad="SAME_LOWER", ceil_mode=0),
    dict(name="2d-SAME_UPPER-rect-s2", C=1, spatial=[6, 7], kernel=[3, 2], strides=[2, 2], dilations=[1, 1],
         pads=None, auto_pad="SAME_UPPER", ceil_mode=0),
    dict(name="1d-pads2-k3-edge-windows", C=1, spatial=[5], kernel=[3], strides=[1], dilations=[1],
         pads=[2, 2], auto_pad="NOTSET", ceil_mode=0),
    dict(name="2d-VALID-dil2-s1", C=3, spatial=[6, 5], kernel=[2, 2], strides=[1, 1], dilations=[2, 2],
         pads=None, auto_pad="VALID", ceil_mode=0),
    # 3-D too, since the rule claims any number of spatial axes
    dict(name="3d-ceil-asym-pads-dil", C=2, spatial=[4, 5, 3], kernel=[2, 3, 2], strides=[2, 2, 1],
         dilations=[1, 1, 2], pads=[1, 0, 1, 0, 2, 0], auto_pad="NOTSET", ceil_mode=1),
    dict(name="3d-SAME_LOWER", C=1, spatial=[4, 3, 5], kernel=[2, 2, 3], strides=[2, 1, 2], dilations=[1, 1, 1],
         pads=None, auto_pad="SAME_LOWER", ceil_mode=0),
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
    attrs = dict(kernel_shape=cfg["kernel"], strides=cfg["strides"], dilations=cfg["dilations"],
                 ceil_mode=cfg["ceil_mode"], auto_pad=cfg["auto_pad"])
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
# 4. The induced graph of a chain Conv -> Relu -> MaxPool -> Flatten -> Gemm
# --------------------------------------------------------------------------------------------

CHAIN_IN = (2, 8, 8)
CHAIN_SHAPES = [(2, 8, 8), (3, 8, 8), (3, 4, 4), (5,)]
CHAIN_TENSORS = ["x", "conv_out", "pool_out", "y"]
CHAIN_ALPHA = 0.7


@functools.cache
def chain_case():
    rng = np.random.default_rng(2024)
    W = rng.normal(size=(3, 2, 3, 3)).astype(np.float32)
    W[0, 1, 1, 1] = 0.0  # a zero kernel element: its edges have φ = 0
    cb = rng.normal(size=3).astype(np.float32)
    G = rng.normal(size=(5, 48)).astype(np.float32)
    G[2, :7] = 0.0  # zero dense weights
    C = rng.normal(size=5).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "W", "cb"], ["conv_out"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
        helper.make_node("Relu", ["conv_out"], ["relu_out"]),
        helper.make_node("MaxPool", ["relu_out"], ["pool_out"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["pool_out"], ["flat"]),
        helper.make_node("Gemm", ["flat", "G", "C"], ["y"], transB=1, alpha=CHAIN_ALPHA),
    ]
    model = make_model(nodes, CHAIN_IN, dict(W=W, cb=cb, G=G, C=C))
    x = rng.normal(size=(BATCH, *CHAIN_IN)).astype(np.float32)
    x[0, 0, 2, :] = 0.0  # zero inputs: their edges have φ = 0
    acts = ort_outputs(model, x, ("relu_out", "pool_out", "flat", "y"))
    return SimpleNamespace(model=model, x=x, W=W, G=G, acts=acts)


def brute_chain_graph(case, n, maxpool_rule):
    offsets = np.cumsum([0] + [size_of(s) for s in CHAIN_SHAPES])
    x = case.x[n].reshape(-1)
    relu = case.acts["relu_out"][n].reshape(-1)
    pooled = case.acts["pool_out"][n].reshape(-1)
    assert np.array_equal(case.acts["flat"][n], pooled)  # Flatten keeps the row-major order
    edges = {}
    conv = brute_conv_edges(CHAIN_SHAPES[0], case.W, 1, [1, 1], [1, 1], [1, 1], (8, 8))
    add_phi_edges(edges, conv, x, offsets[0], offsets[1])
    windows = brute_pool_windows(CHAIN_SHAPES[1], [2, 2], [2, 2], [1, 1], [0, 0], (4, 4))
    if maxpool_rule == "window":
        pool = {(u, v): 1.0 for v, srcs in windows.items() for u in srcs}
    else:
        pool = {(first_argmax(relu, srcs), v): 1.0 for v, srcs in windows.items()}
    add_phi_edges(edges, pool, relu, offsets[1], offsets[2])
    dense = {(k, j): CHAIN_ALPHA * float(case.G[j, k]) for k in range(48) for j in range(5)}
    add_phi_edges(edges, dense, pooled, offsets[2], offsets[3])
    return edges, len(conv) + len(pool) + len(dense)


def test_chain_layers_and_vertex_count():
    case = chain_case()
    plan = onnxtopo.inspect(case.model)
    assert [layer.shape for layer in plan.layers] == CHAIN_SHAPES
    assert [layer.tensor for layer in plan.layers] == CHAIN_TENSORS
    offsets = np.cumsum([0] + [size_of(s) for s in CHAIN_SHAPES])
    assert [layer.offset for layer in plan.layers] == offsets[:-1].tolist()
    g = onnxtopo.induced_graph(case.model, case.x[0])
    assert g.n_vertices == plan.n_vertices == sum(size_of(s) for s in CHAIN_SHAPES) == 128 + 192 + 48 + 5
    assert g.matrix.shape == (g.n_vertices, g.n_vertices)


@pytest.mark.parametrize("maxpool_rule", ["window", "argmax"])
def test_chain_graph_edges_match_brute_force(maxpool_rule):
    case = chain_case()
    analyzer = onnxtopo.Analyzer(case.model, maxpool_rule=maxpool_rule)
    graphs = list(analyzer.graphs(case.x, batch_size=2))
    assert len(graphs) == BATCH
    for n, g in enumerate(graphs):
        expected, n_candidates = brute_chain_graph(case, n, maxpool_rule)
        # the test data (zero weights, zero inputs, Relu zeros) does make φ = 0 candidates
        assert len(expected) < n_candidates
        assert (g.phi > 0).all()
        assert_same_edges(edges_as_dict(g.src, g.dst, g.phi), expected, rtol=1e-4, atol=1e-6,
                          what=f"chain graph ({maxpool_rule}), sample {n}")
    # the one-input entry point gives the same graph as the batch one
    g0 = onnxtopo.induced_graph(case.model, case.x[0], maxpool_rule=maxpool_rule)
    assert_same_edges(edges_as_dict(g0.src, g0.dst, g0.phi), brute_chain_graph(case, 0, maxpool_rule)[0],
                      rtol=1e-4, atol=1e-6, what="induced_graph(x[0])")


def test_chain_locate():
    case = chain_case()
    g = onnxtopo.induced_graph(case.model, case.x[0])
    ids = list(range(g.n_vertices))
    located = g.locate(ids)
    assert len(located) == len(ids)
    expected = []
    for li, shape in enumerate(CHAIN_SHAPES):
        for index in itertools.product(*(range(s) for s in shape)):
            expected.append((li, CHAIN_TENSORS[li], tuple(index)))
    assert [(int(a), b, tuple(int(i) for i in c)) for a, b, c in located] == expected
    # any order, repeated ids
    some = [368, 0, 129, 319, 320, 372, 0]
    assert g.locate(some) == [expected[i] for i in some]
    with pytest.raises(IndexError):
        g.locate([g.n_vertices])


# --------------------------------------------------------------------------------------------
# 5. Layout ops between a Conv and a dense layer
# --------------------------------------------------------------------------------------------

def _layout_nhwc_reshape():
    nodes = [helper.make_node("Relu", ["conv_out"], ["a"]),
             helper.make_node("Transpose", ["a"], ["t"], perm=[0, 2, 3, 1]),
             helper.make_node("Reshape", ["t", "shape"], ["z"]),
             helper.make_node("MatMul", ["z", "M"], ["y"])]
    return nodes, {"shape": np.array([0, -1], dtype=np.int64)}, (27, 4), lambda ids: ids.transpose(0, 2, 3, 1).reshape(1, -1)


def _layout_reshape_transpose_3d():
    nodes = [helper.make_node("Reshape", ["conv_out", "shape"], ["r"]),
             helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1]),
             helper.make_node("Tanh", ["t"], ["z"]),
             helper.make_node("MatMul", ["z", "M"], ["y"])]
    return nodes, {"shape": np.array([-1, 3, 9], dtype=np.int64)}, (3, 4), lambda ids: ids.reshape(1, 3, 9).transpose(0, 2, 1)


def _layout_transpose_flatten_gemm():
    nodes = [helper.make_node("Sigmoid", ["conv_out"], ["a"]),
             helper.make_node("Transpose", ["a"], ["t"], perm=[0, 3, 2, 1]),
             helper.make_node("Flatten", ["t"], ["z"]),
             helper.make_node("Gemm", ["z", "M"], ["y"])]
    return nodes, {}, (27, 4), lambda ids: ids.transpose(0, 3, 2, 1).reshape(1, -1)


def _layout_unsqueeze_squeeze():
    nodes = [helper.make_node("Unsqueeze", ["conv_out", "ax"], ["u"]),
             helper.make_node("Transpose", ["u"], ["t"], perm=[0, 4, 2, 3, 1]),
             helper.make_node("Squeeze", ["t", "ax1"], ["s"]),
             helper.make_node("Reshape", ["s", "shape"], ["z"]),
             helper.make_node("MatMul", ["z", "M"], ["y"])]
    axes = {"ax": np.array([4], dtype=np.int64), "ax1": np.array([1], dtype=np.int64),
            "shape": np.array([0, 9, 3], dtype=np.int64)}
    return nodes, axes, (3, 4), lambda ids: ids[..., None].transpose(0, 4, 2, 3, 1)[:, 0].reshape(1, 9, 3)


LAYOUTS = {
    "relu-transpose-nhwc-reshape-matmul": _layout_nhwc_reshape,
    "reshape-transpose-tanh-matmul3d": _layout_reshape_transpose_3d,
    "sigmoid-transpose-flatten-gemm": _layout_transpose_flatten_gemm,
    "unsqueeze-transpose-squeeze-reshape-matmul3d": _layout_unsqueeze_squeeze,
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layout_ops_connect_the_right_neurons(layout):
    rng = np.random.default_rng(99)
    W = rng.normal(size=(3, 2, 3, 3)).astype(np.float32)
    tail, inits, m_shape, move = LAYOUTS[layout]()
    M = rng.normal(size=m_shape).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "W"], ["conv_out"])] + tail
    model = make_model(nodes, (2, 5, 5), dict(W=W, M=M, **inits))
    x = rng.normal(size=(BATCH, 2, 5, 5)).astype(np.float32)
    acts = ort_outputs(model, x, ("conv_out", "z", "y"))

    plan = onnxtopo.inspect(model)
    assert [layer.shape for layer in plan.layers] == [(2, 5, 5), (3, 3, 3), acts["y"].shape[1:]]
    conv_offset, dense_offset = 50, 77
    assert [layer.offset for layer in plan.layers] == [0, conv_offset, dense_offset]

    # vertex id of each element of the dense op's input, by numpy's own transpose/reshape
    moved = move(conv_offset + np.arange(27).reshape(1, 3, 3, 3))[0]
    K, N = m_shape
    assert moved.shape[-1] == K
    assert acts["y"].shape[1:] == (*moved.shape[:-1], N)
    ids = moved.reshape(-1, K)  # (leading positions, K)
    lead = ids.shape[0]

    graphs = list(onnxtopo.Analyzer(model).graphs(x))
    for n, g in enumerate(graphs):
        z = acts["z"][n].reshape(lead, K).astype(np.float64)
        conv_out = acts["conv_out"][n].reshape(-1).astype(np.float64)
        # the test's own mapping is right: the dense input really holds f(conv output) of that vertex
        f = {"relu-transpose-nhwc-reshape-matmul": lambda v: np.maximum(v, 0),
             "reshape-transpose-tanh-matmul3d": np.tanh,
             "sigmoid-transpose-flatten-gemm": lambda v: 1 / (1 + np.exp(-v)),
             "unsqueeze-transpose-squeeze-reshape-matmul3d": lambda v: v}[layout]
        np.testing.assert_allclose(z, f(conv_out[ids - conv_offset]), rtol=1e-5, atol=1e-6)

        expected = {}
        conv = brute_conv_edges((2, 5, 5), W, 1, [1, 1], [1, 1], [0, 0], (3, 3))
        add_phi_edges(expected, conv, x[n].reshape(-1), 0, conv_offset)
        for l in range(lead):
            for k in range(K):
                for j in range(N):
                    phi = abs(float(M[k, j]) * z[l, k])
                    if phi > 0:
                        expected[(int(ids[l, k]), dense_offset + l * N + j)] = phi
        assert_same_edges(edges_as_dict(g.src, g.dst, g.phi), expected, rtol=1e-4, atol=1e-6,
                          what=f"{layout}, sample {n}")


@pytest.mark.parametrize("lead, k, m, n", [((), 3, 4, 5), ((2,), 3, 4, 5), ((2, 3), 1, 2, 1)])
def test_matmul_with_constant_left_operand(lead, k, m, n):
    """MatMul(W, X): edges (…, k, n) -> (…, j, n) of weight W[j, k], enumerated by hand."""
    rng = np.random.default_rng(len(lead) * 10 + k)
    w = rng.normal(size=(m, k)).astype(np.float32)
    model = make_model([helper.make_node("MatMul", ["w", "x"], ["y"])], (*lead, k, n), {"w": w})
    plan = onnxtopo.inspect(model)
    rule = plan.steps[0].rule
    lead_size = int(np.prod(lead))
    expected = {}
    for lead_index in range(lead_size):
        for kk in range(k):
            for j in range(m):
                for nn in range(n):
                    expected[((lead_index * k + kk) * n + nn, (lead_index * m + j) * n + nn)] = float(w[j, kk])
    p = rule.pattern
    assert_same_edges(edges_as_dict(p.src, p.dst, p.weight), expected, what="left MatMul pattern")
    x = rng.normal(size=(3, *lead, k, n)).astype(np.float32)
    y = ort_outputs(model, x)["y"]
    for sample in range(3):
        out = np.zeros(int(np.prod(rule.out_shape)))
        np.add.at(out, p.dst, rule.edge_values(x[sample].reshape(-1).astype(np.float64)))
        np.testing.assert_allclose(out, y[sample].reshape(-1), rtol=1e-4, atol=1e-5)
