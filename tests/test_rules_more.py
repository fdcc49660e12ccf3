"""More edge rules against brute force: pooling averages, global pools, BatchNormalization's refusal,
residual sums, Concat, Pad, run-time shapes, and the chunked (streaming) path.

As in test_rules.py, every expected edge set is enumerated here with plain loops from the
definitions of docs/induced-graph.md and the rules' documented extensions (op_pool, op_norm,
op_sum, op_layout), never with onnxtopo's own window code; onnxruntime (graph optimizations off)
is the reference for every layer's output, and summing (or maxing) the rule's w·h over each
output's incoming edges must give that output back.
"""

from __future__ import annotations

import functools
import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
from onnx import TensorProto, helper

import onnxtopo
from onnxtopo.graph import _step_edges, build_graph

from conftest import assert_same_edges, edges_as_dict, make_model, ort_outputs
from test_rules import flat_index, size_of  # the brute force's index arithmetic

BATCH = 3
TOL = dict(rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------------------------
# Brute force, plain Python
# --------------------------------------------------------------------------------------------

def positions(shape):
    return itertools.product(*(range(int(n)) for n in shape))


def conv_reads(in_shape, W, out_spatial, *, begin, strides):
    """(flat input element, flat output, kernel element) of every in-bounds product of a Conv
    (group 1, no dilation)."""
    channels, spatial = in_shape[0], tuple(in_shape[1:])
    assert W.shape[1] == channels
    kernel = W.shape[2:]
    in_size, out_size = size_of(spatial), size_of(out_spatial)
    reads = []
    for m in range(W.shape[0]):
        for opos in positions(out_spatial):
            v = m * out_size + flat_index(opos, out_spatial)
            for kpos in positions(kernel):
                ipos = tuple(o * s - b + k for o, s, b, k in zip(opos, strides, begin, kpos))
                if all(0 <= p < n for p, n in zip(ipos, spatial)):
                    for c in range(channels):
                        reads.append((c * in_size + flat_index(ipos, spatial), v, float(W[(m, c) + kpos])))
    return reads


def merge_reads(reads, vertex, h, dst_offset):
    """Per (source vertex, global target): the sum of w·h over the elements standing for that
    vertex; per target: the sum of w·value over elements that are constants (vertex -1); and per
    (vertex, target) how many elements contributed."""
    signed, count, const = {}, {}, {}
    for e, v, w in reads:
        u = int(vertex[e])
        if u < 0:
            const[v] = const.get(v, 0.0) + w * float(h[e])
            continue
        key = (u, dst_offset + v)
        signed[key] = signed.get(key, 0.0) + w * float(h[e])
        count[key] = count.get(key, 0) + 1
    return signed, count, const


def phi_of(signed: dict) -> dict:
    """φ = |w·h| of each edge, dropping φ = 0."""
    return {k: abs(s) for k, s in signed.items() if s != 0}


def graph_dict(g, lo=None, hi=None):
    """The graph's edges {(src, dst): φ}, optionally only those into [lo, hi)."""
    d = edges_as_dict(g.src, g.dst, g.phi)
    if lo is None:
        return d
    return {k: v for k, v in d.items() if lo <= k[1] < hi}


def layer_of(plan, tensor):
    matches = [layer for layer in plan.layers if layer.tensor == tensor]
    assert len(matches) == 1, f"no single layer for tensor {tensor!r}: {[l.tensor for l in plan.layers]}"
    return matches[0]


def assert_consecutive_layers(plan, expected: dict):
    """The plan's layers are exactly ``expected`` ({tensor: shape}), laid out one after another."""
    assert {layer.tensor: layer.shape for layer in plan.layers} == expected
    offset = 0
    for layer in plan.layers:
        assert layer.offset == offset
        offset += size_of(layer.shape)
    assert plan.n_vertices == offset


def merged_signed(plan, step, h):
    """The package's merged edges of one step: (src, dst, signed w·h), chunk by chunk concatenated."""
    parts = list(_step_edges(plan, step, np.asarray(h, dtype=np.float64).reshape(-1), {}, None, plan.n_vertices,
                                 keep_zeros=True))
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))


def ids_of(offset, shape):
    return offset + np.arange(size_of(shape), dtype=np.int64).reshape(shape)


# --------------------------------------------------------------------------------------------
# 1. AveragePool
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
    return dict(name=f"seed{seed:02d}-{nd}d-{auto_pad}-ceil{ceil_mode}-cip{cip}", C=C, spatial=spatial,
                kernel=kernel, strides=strides, dilations=dilations, pads=pads, auto_pad=auto_pad,
                ceil_mode=ceil_mode, cip=cip)


HAND_AVG_CONFIGS = [
    # ceil_mode: the last window reaches past the end padding; onnxruntime counts the padding
    # only (count_include_pad=1), not the positions beyond it
    dict(name="1d-ceil-cip1-window-past-padding", C=2, spatial=[6], kernel=[3], strides=[2], pads=[1, 1],
         ceil_mode=1, cip=1),
    dict(name="1d-ceil-cip0-window-past-padding", C=2, spatial=[6], kernel=[3], strides=[2], pads=[1, 1],
         ceil_mode=1, cip=0),
    dict(name="1d-ceil-cip1-no-end-pad", C=1, spatial=[5], kernel=[3], strides=[2], pads=[1, 0],
         ceil_mode=1, cip=1),
    # ceil_mode: a window that would start in the end padding is dropped
    dict(name="1d-ceil-cip1-last-window-dropped", C=1, spatial=[6], kernel=[3], strides=[3], pads=[2, 2],
         ceil_mode=1, cip=1),
    dict(name="2d-ceil-cip1-asym-pads", C=2, spatial=[5, 6], kernel=[3, 2], strides=[2, 3], pads=[1, 0, 2, 1],
         ceil_mode=1, cip=1),
    dict(name="2d-ceil-cip0-asym-pads", C=2, spatial=[5, 6], kernel=[3, 2], strides=[2, 3], pads=[1, 0, 2, 1],
         ceil_mode=1, cip=0),
    dict(name="2d-cip1-pads", C=1, spatial=[4, 5], kernel=[3, 3], strides=[1, 2], pads=[1, 2, 2, 1],
         ceil_mode=0, cip=1),
    dict(name="2d-VALID-s2", C=3, spatial=[6, 7], kernel=[2, 3], strides=[2, 2], auto_pad="VALID",
         ceil_mode=0, cip=1),
    # SAME padding: with count_include_pad=1 onnxruntime counts the computed padding at both ends
    dict(name="1d-SAME_UPPER-cip1", C=1, spatial=[6], kernel=[3], strides=[2], auto_pad="SAME_UPPER",
         ceil_mode=0, cip=1),
    dict(name="2d-SAME_LOWER-cip1", C=2, spatial=[6, 5], kernel=[4, 3], strides=[1, 2], auto_pad="SAME_LOWER",
         ceil_mode=0, cip=1),
    dict(name="2d-SAME_UPPER-cip0", C=2, spatial=[6, 5], kernel=[3, 2], strides=[2, 2], auto_pad="SAME_UPPER",
         ceil_mode=0, cip=0),
    # opset 19: dilations
    dict(name="1d-dil2-ceil-cip1", C=2, spatial=[7], kernel=[3], strides=[2], dilations=[2], pads=[2, 2],
         ceil_mode=1, cip=1),
    dict(name="2d-dil-cip1", C=1, spatial=[7, 6], kernel=[2, 3], strides=[1, 2], dilations=[2, 1],
         pads=[1, 0, 1, 2], ceil_mode=0, cip=1),
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
    attrs = dict(kernel_shape=cfg["kernel"], strides=cfg["strides"], ceil_mode=cfg["ceil_mode"],
                 count_include_pad=cfg["cip"], auto_pad=cfg["auto_pad"])
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


# --------------------------------------------------------------------------------------------
# 2. GlobalAveragePool, GlobalMaxPool
# --------------------------------------------------------------------------------------------
# 3. BatchNormalization in training mode (inference-mode BN: tests/test_op_affine.py)
# --------------------------------------------------------------------------------------------

def bn_parameters(C, rng):
    return dict(scale=rng.normal(size=C).astype(np.float32), bias=rng.normal(size=C).astype(np.float32),
                mean=rng.normal(size=C).astype(np.float32), var=(rng.random(C) + 0.05).astype(np.float32))


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


# --------------------------------------------------------------------------------------------
# 4. Residual sums: Add, Sub, Sum of activations
# --------------------------------------------------------------------------------------------

RES_IN = (2, 5, 5)
RES_C = 3
RES_VARIANTS = ["add", "sub", "sub-swapped", "sum3", "broadcast-add", "broadcast-sub-first", "broadcast-sub-second",
                "broadcast-both"]


@functools.cache
def residual_case(variant):
    rng = np.random.default_rng(300 + RES_VARIANTS.index(variant))
    Wa = rng.normal(size=(RES_C, RES_IN[0], 3, 3)).astype(np.float32)
    ba = rng.normal(size=RES_C).astype(np.float32)
    Wb = rng.normal(size=(RES_C, RES_C, 3, 3)).astype(np.float32) * 0.5
    Wc = rng.normal(size=(RES_C, RES_C, 3, 3)).astype(np.float32) * 0.5
    G = rng.normal(size=(5, RES_C * 25)).astype(np.float32)
    inits = dict(Wa=Wa, ba=ba, Wb=Wb, G=G)
    nodes = [helper.make_node("Conv", ["x", "Wa", "ba"], ["ca"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["ca"], ["r1"]),
             helper.make_node("Conv", ["r1", "Wb"], ["cb"], pads=[1, 1, 1, 1])]
    layers = {"x": RES_IN, "ca": (RES_C, 5, 5), "cb": (RES_C, 5, 5)}
    # operands: (tensor holding h, tensor of the layer holding the vertex, sign)
    if variant == "add":
        op, operands = "Add", [("r1", "ca", 1.0), ("cb", "cb", 1.0)]
    elif variant == "sub":
        op, operands = "Sub", [("r1", "ca", 1.0), ("cb", "cb", -1.0)]
    elif variant == "sub-swapped":
        op, operands = "Sub", [("cb", "cb", 1.0), ("r1", "ca", -1.0)]
    elif variant == "sum3":
        inits["Wc"] = Wc
        nodes += [helper.make_node("Conv", ["cb", "Wc"], ["cc"], pads=[1, 1, 1, 1]),
                  helper.make_node("Tanh", ["cc"], ["r3"])]
        layers["cc"] = (RES_C, 5, 5)
        op, operands = "Sum", [("r1", "ca", 1.0), ("cb", "cb", 1.0), ("r3", "cc", 1.0)]
    elif variant == "broadcast-add":
        nodes.append(helper.make_node("GlobalAveragePool", ["r1"], ["g"]))
        layers["g"] = (RES_C, 1, 1)
        op, operands = "Add", [("cb", "cb", 1.0), ("g", "g", 1.0)]
    elif variant == "broadcast-sub-first":
        nodes.append(helper.make_node("GlobalAveragePool", ["r1"], ["g"]))
        layers["g"] = (RES_C, 1, 1)
        op, operands = "Sub", [("g", "g", 1.0), ("cb", "cb", -1.0)]
    elif variant == "broadcast-sub-second":
        nodes.append(helper.make_node("GlobalAveragePool", ["r1"], ["g"]))
        layers["g"] = (RES_C, 1, 1)
        op, operands = "Sub", [("cb", "cb", 1.0), ("g", "g", -1.0)]
    elif variant == "broadcast-both":  # (C, 1, W) + (C, H, 1): both operands fan out
        nodes += [helper.make_node("AveragePool", ["r1"], ["ph"], kernel_shape=[5, 1]),
                  helper.make_node("AveragePool", ["cb"], ["pw"], kernel_shape=[1, 5])]
        layers.update(ph=(RES_C, 1, 5), pw=(RES_C, 5, 1))
        op, operands = "Add", [("ph", "ph", 1.0), ("pw", "pw", 1.0)]
    else:
        raise AssertionError(variant)
    nodes += [helper.make_node(op, [t for t, _, _ in operands], ["s"], name="residual"),
              helper.make_node("Flatten", ["s"], ["f"]),
              helper.make_node("Gemm", ["f", "G"], ["y"], transB=1)]
    layers.update(s=(RES_C, 5, 5), y=(5,))
    model = make_model(nodes, RES_IN, inits)
    x = rng.normal(size=(BATCH, *RES_IN)).astype(np.float32)
    names = sorted({t for t, _, _ in operands} | {"r1", "cb", "s", "y"})
    acts = ort_outputs(model, x, names)
    acts["x"] = x
    return SimpleNamespace(variant=variant, model=model, x=x, acts=acts, layers=layers, operands=operands,
                           Wa=Wa, Wb=Wb, Wc=Wc, G=G)


def brute_residual_graph(case, plan, n):
    off = {layer.tensor: layer.offset for layer in plan.layers}
    a = {k: v[n].reshape(-1).astype(np.float64) for k, v in case.acts.items()}
    edges = {}
    convs = [("x", "x", "ca", case.Wa), ("r1", "ca", "cb", case.Wb)]
    if "cc" in case.layers:
        convs.append(("cb", "cb", "cc", case.Wc))
    for h_name, src, dst, W in convs:
        reads = conv_reads(case.layers[src], W, (5, 5), begin=[1, 1], strides=[1, 1])
        signed, _, _ = merge_reads(reads, ids_of(off[src], case.layers[src]).reshape(-1), a[h_name], off[dst])
        edges.update(phi_of(signed))
    if "g" in case.layers:  # GlobalAveragePool of r1
        edges.update(phi_of({(off["ca"] + c * 25 + s, off["g"] + c): a["r1"][c * 25 + s] / 25
                             for c in range(RES_C) for s in range(25)}))
    if "ph" in case.layers:  # AveragePools of r1 down the columns, of cb along the rows
        for c, i, j in positions((RES_C, 5, 5)):
            u = c * 25 + i * 5 + j
            edges.update(phi_of({(off["ca"] + u, off["ph"] + c * 5 + j): a["r1"][u] / 5,
                                 (off["cb"] + u, off["pw"] + c * 5 + i): a["cb"][u] / 5}))
    out_shape = case.layers["s"]
    for h_name, layer, sign in case.operands:
        shape = case.layers[layer]
        for opos in positions(out_shape):
            ipos = tuple(i if d > 1 else 0 for i, d in zip(opos, shape))
            u = flat_index(ipos, shape)
            edges.update(phi_of({(off[layer] + u, off["s"] + flat_index(opos, out_shape)): sign * a[h_name][u]}))
    edges.update(phi_of({(off["s"] + k, off["y"] + j): float(case.G[j, k]) * a["s"][k]
                         for k in range(RES_C * 25) for j in range(5)}))
    return edges


@pytest.mark.parametrize("variant", RES_VARIANTS)
def test_residual_sum_edges(variant):
    case = residual_case(variant)
    plan = onnxtopo.inspect(case.model)
    assert_consecutive_layers(plan, case.layers)
    target = layer_of(plan, "s")
    assert target.op_type == {"add": "Add", "sum3": "Sum", "broadcast-add": "Add",
                              "broadcast-both": "Add"}.get(variant, "Sub")
    # one edge step per operand, each reading its operand's values, from its layer's vertices
    steps = [s for s in plan.steps if s.target == target.index]
    assert [s.input_tensor for s in steps] == [t for t, _, _ in case.operands]
    for step, (_, layer, _) in zip(steps, case.operands):
        np.testing.assert_array_equal(step.input_vertices,
                                      ids_of(layer_of(plan, layer).offset, case.layers[layer]).reshape(-1))
    graphs = list(onnxtopo.Analyzer(case.model).graphs(case.x))
    for n in range(BATCH):
        # the sum's output from its edges' w·h
        out = np.zeros(target.size)
        for step in steps:
            h = case.acts[step.input_tensor][n].reshape(-1).astype(np.float64)
            p = step.rule.pattern
            np.add.at(out, p.dst, step.rule.edge_values(h, p))
        np.testing.assert_allclose(out, case.acts["s"][n].reshape(-1), rtol=1e-5, atol=1e-5, err_msg=f"sample {n}")
        expected = brute_residual_graph(case, plan, n)
        assert_same_edges(graph_dict(graphs[n]), expected, **TOL, what=f"{variant} graph, sample {n}")
        # the sum layer's edges alone: one per operand and output (φ ≠ 0), broadcast ones included
        into_sum = graph_dict(graphs[n], target.offset, target.offset + target.size)
        assert len(into_sum) <= len(case.operands) * target.size
        for t, layer_tensor, _ in case.operands:  # each operand's vertex reaches every output it is added to
            layer = layer_of(plan, layer_tensor)
            fan = target.size // layer.size
            for u in range(layer.size):
                if case.acts[t][n].reshape(-1)[u] != 0:
                    assert sum(1 for k in into_sum if k[0] == layer.offset + u) == fan


def _refusal_model(kind):
    rng = np.random.default_rng(77)
    Wa = rng.normal(size=(RES_C, RES_IN[0], 3, 3)).astype(np.float32)
    Wb = rng.normal(size=(RES_C, RES_C, 3, 3)).astype(np.float32)
    conv_a = [helper.make_node("Conv", ["x", "Wa"], ["ca"], pads=[1, 1, 1, 1])]
    if kind == "add-x-x":
        nodes, size = [helper.make_node("Add", ["x", "x"], ["s"], name="residual")], size_of(RES_IN)
    elif kind == "add-r-relu-r":
        nodes = conv_a + [helper.make_node("Relu", ["ca"], ["r1"]),
                          helper.make_node("Add", ["ca", "r1"], ["s"], name="residual")]
        size = RES_C * 25
    elif kind == "sum-operand-twice":
        nodes = conv_a + [helper.make_node("Relu", ["ca"], ["r1"]),
                          helper.make_node("Conv", ["r1", "Wb"], ["cb"], pads=[1, 1, 1, 1]),
                          helper.make_node("Sum", ["r1", "cb", "r1"], ["s"], name="residual")]
        size = RES_C * 25
    elif kind == "add-r-transposed-r":  # the diagonal (c, i, i) is the same vertex in both operands
        nodes = conv_a + [helper.make_node("Transpose", ["ca"], ["t"], perm=[0, 1, 3, 2]),
                          helper.make_node("Add", ["ca", "t"], ["s"], name="residual")]
        size = RES_C * 25
    else:
        raise AssertionError(kind)
    nodes += [helper.make_node("Flatten", ["s"], ["f"]), helper.make_node("MatMul", ["f", "M"], ["y"])]
    return make_model(nodes, RES_IN, dict(Wa=Wa, Wb=Wb, M=rng.normal(size=(size, 2)).astype(np.float32)))


@pytest.mark.parametrize("kind", ["sum-operand-twice", "add-r-transposed-r"])
def test_sum_of_a_neuron_with_itself_refused(kind):
    """Some operands share a neuron, others do not: parallel edges, refused."""
    model = _refusal_model(kind)
    with pytest.raises(onnxtopo.UnsupportedOpError) as info:
        onnxtopo.inspect(model)
    message = str(info.value)
    assert "'residual'" in message and "adds a neuron to itself" in message, message


@pytest.mark.parametrize("kind", ["add-x-x", "add-r-relu-r"])
def test_sum_of_one_neuron_with_itself_is_elementwise(kind):
    """x + x and c + relu(c) are functions of one neuron (design notes 2b): no layer."""
    plan = onnxtopo.inspect(_refusal_model(kind))
    assert "residual" not in [layer.node for layer in plan.layers]
    assert [s.op_type for s in plan.steps] == (["MatMul"] if kind == "add-x-x" else ["Conv", "MatMul"])


# --------------------------------------------------------------------------------------------
# 5. Concat of activations from different layers
# --------------------------------------------------------------------------------------------

CAT_IN = (2, 5, 5)
CONCAT_VARIANTS = {
    "channels-r1-x-r2": (["r1", "x", "r2"], 1),
    "channels-r2-r1": (["r2", "r1"], 1),
    "channels-r1-r1": (["r1", "r1"], 1),  # the same vertex in two channels of one window: merged
    "width-r1-r2": (["r1", "r2"], 3),
    "height-r2-x-r1": (["r2", "x", "r1"], 2),  # with x: r1 and r2 get x's 2 channels
    "channels-negative-axis-x-r1": (["x", "r1"], -3),
}


@functools.cache
def concat_case(variant):
    operands, axis = CONCAT_VARIANTS[variant]
    rng = np.random.default_rng(600 + list(CONCAT_VARIANTS).index(variant))
    sample_axis = axis - 1 if axis > 0 else axis  # the axis without the batch axis
    C = 2 if "x" in operands and sample_axis != 0 else 3
    layer_tensor = {"x": "x", "r1": "ca", "r2": "cb"}
    layers = {"x": CAT_IN}
    inits, nodes = {}, []
    if "r1" in operands:
        inits["Wa"] = rng.normal(size=(C, 2, 3, 3)).astype(np.float32)
        nodes += [helper.make_node("Conv", ["x", "Wa"], ["ca"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", ["ca"], ["r1"])]
        layers["ca"] = (C, 5, 5)
    if "r2" in operands:
        inits["Wb"] = rng.normal(size=(C, 2, 3, 3)).astype(np.float32)
        nodes += [helper.make_node("Conv", ["x", "Wb"], ["cb"], pads=[1, 1, 1, 1]),
                  helper.make_node("Sigmoid", ["cb"], ["r2"])]
        layers["cb"] = (C, 5, 5)
    shapes = {t: layers[layer_tensor[t]] for t in operands}
    cat_shape = list(shapes[operands[0]])
    cat_shape[sample_axis] = sum(shapes[t][sample_axis] for t in operands)
    cat_shape = tuple(cat_shape)
    Wc = rng.normal(size=(4, cat_shape[0], 3, 3)).astype(np.float32)
    bc = rng.normal(size=4).astype(np.float32)
    inits.update(Wc=Wc, bc=bc)
    nodes += [helper.make_node("Concat", operands, ["cat"], axis=axis),
              helper.make_node("Conv", ["cat", "Wc", "bc"], ["y"], pads=[0, 1, 1, 0])]
    model = make_model(nodes, CAT_IN, inits)
    x = rng.normal(size=(BATCH, *CAT_IN)).astype(np.float32)
    acts = ort_outputs(model, x, ("cat", "y") + tuple(t for t in ("r1", "r2") if t in operands))
    acts["x"] = x
    assert acts["cat"].shape[1:] == cat_shape
    layers["y"] = acts["y"].shape[1:]
    return SimpleNamespace(variant=variant, operands=operands, axis=sample_axis, layer_tensor=layer_tensor, model=model,
                           x=x, acts=acts, layers=layers, cat_shape=cat_shape, inits=inits, Wc=Wc, bc=bc)


@pytest.mark.parametrize("variant", list(CONCAT_VARIANTS))
def test_concat_then_conv_reads_the_right_vertices(variant):
    case = concat_case(variant)
    plan = onnxtopo.inspect(case.model)
    assert_consecutive_layers(plan, case.layers)
    off = {layer.tensor: layer.offset for layer in plan.layers}
    # vertex id of each element of the concatenation, from the layers' offsets
    cat_ids = np.concatenate([ids_of(off[case.layer_tensor[t]], case.layers[case.layer_tensor[t]])
                              for t in case.operands], axis=case.axis)
    assert cat_ids.shape == case.cat_shape
    step = plan.steps[-1]
    assert step.op_type == "Conv" and step.input_tensor == "cat"
    target = plan.layers[step.target]
    out_spatial = case.layers["y"][1:]
    reads_c = conv_reads(case.cat_shape, case.Wc, out_spatial, begin=[0, 1], strides=[1, 1])
    graphs = list(onnxtopo.Analyzer(case.model).graphs(case.x))
    repeated = False
    for n in range(BATCH):
        cat = case.acts["cat"][n].reshape(-1).astype(np.float64)
        # the test's own id array is right: the concatenation holds each vertex's value
        for t in case.operands:
            layer = case.layer_tensor[t]
            where = (cat_ids.reshape(-1) >= off[layer]) & (cat_ids.reshape(-1) < off[layer] + size_of(case.layers[layer]))
            np.testing.assert_array_equal(cat[where], case.acts[t][n].reshape(-1)[cat_ids.reshape(-1)[where] - off[layer]])
        expected = {}
        for h_name, W, layer in (("x", case.inits.get("Wa"), "ca"), ("x", case.inits.get("Wb"), "cb")):
            if W is not None:
                reads = conv_reads(CAT_IN, W, (5, 5), begin=[1, 1], strides=[1, 1])
                expected.update(phi_of(merge_reads(reads, np.arange(size_of(CAT_IN)), case.x[n].reshape(-1),
                                                   off[layer])[0]))
        signed, count, const = merge_reads(reads_c, cat_ids.reshape(-1), cat, target.offset)
        assert not const
        repeated |= max(count.values()) > 1
        expected.update(phi_of(signed))
        assert_same_edges(graph_dict(graphs[n]), expected, **TOL, what=f"{variant} graph, sample {n}")
        # the Conv's output from its merged edges
        src, dst, values = merged_signed(plan, step, cat)
        assert_same_edges(edges_as_dict(src, dst, np.abs(values)), {k: abs(v) for k, v in signed.items()}, **TOL,
                          what="merged edges")
        out = np.zeros(target.size)
        np.add.at(out, dst - target.offset, values)
        out += np.repeat(case.bc.astype(np.float64), size_of(out_spatial))
        np.testing.assert_allclose(out, case.acts["y"][n].reshape(-1), rtol=1e-4, atol=1e-4, err_msg=f"sample {n}")
    assert repeated == (variant == "channels-r1-r1")


# --------------------------------------------------------------------------------------------
# 6. Pad before a Conv (and before pooling)
# --------------------------------------------------------------------------------------------

PAD_2D = dict(sample=(2, 5, 6), before=[1, 2], after=[2, 1], kernel=[3, 3])
PAD_1D = dict(sample=(2, 7), before=[2], after=[3], kernel=[4])
PAD_CASES = [
    dict(name="constant-0-direct", mode="constant", value=0.0, **PAD_2D),  # onnxruntime folds it into the Conv
    dict(name="constant-default-tanh", mode="constant", value=None, tanh=True, **PAD_2D),
    dict(name="constant-1.5-direct", mode="constant", value=1.5, **PAD_2D),
    dict(name="constant-neg0.7-tanh-after-relu", mode="constant", value=-0.7, tanh=True, source="r1", **PAD_2D),
    dict(name="reflect-direct", mode="reflect", **PAD_2D),
    dict(name="edge-direct", mode="edge", **PAD_2D),
    dict(name="reflect-after-relu-strided-padded-conv", mode="reflect", source="r1", conv_pads=[1, 0, 0, 1],
         strides=[1, 2], **PAD_2D),
    dict(name="edge-1d", mode="edge", **PAD_1D),
    dict(name="reflect-1d-wide", mode="reflect", sample=(2, 5), before=[3], after=[4], kernel=[5]),
    dict(name="constant-2.0-1d-tanh", mode="constant", value=2.0, tanh=True, **PAD_1D),
]
for _c in PAD_CASES:
    _nd = len(_c["sample"]) - 1
    _c.setdefault("tanh", False)
    _c.setdefault("source", "x")
    _c.setdefault("conv_pads", [0] * (2 * _nd))
    _c.setdefault("strides", [1] * _nd)
    _c.setdefault("value", None)


def pad_source(p, before, n, mode):
    """Input index held at position p of an axis of size n padded by ``before`` (after any crop),
    None for the constant."""
    i = p - before
    if 0 <= i < n:
        return i
    if mode == "constant":
        return None
    if mode == "edge":
        return min(max(i, 0), n - 1)
    if mode == "wrap":
        return i % n
    while not 0 <= i < n:  # reflect, the border itself not repeated
        i = -i if i < 0 else 2 * (n - 1) - i
    return i


def padded_vertices(in_shape, before, after, mode, offset):
    """Vertex id of every element of the padded tensor (-1: the constant), with plain loops."""
    padded = (in_shape[0], *[n + b + a for n, b, a in zip(in_shape[1:], before, after)])
    ids = np.empty(padded, dtype=np.int64)
    for pos in positions(padded):
        src = [pad_source(p, b, n, mode) for p, b, n in zip(pos[1:], before, in_shape[1:])]
        ids[pos] = -1 if None in src else offset + flat_index((pos[0], *src), in_shape)
    return ids


@functools.cache
def pad_case(index):
    cfg = PAD_CASES[index]
    rng = np.random.default_rng(700 + index)
    nd = len(cfg["sample"]) - 1
    C = cfg["sample"][0]
    inits = dict(pads=np.array([0, 0, *cfg["before"], 0, 0, *cfg["after"]], dtype=np.int64))
    nodes, layers = [], {"x": cfg["sample"]}
    src = "x"
    if cfg["source"] == "r1":
        inits["Wa"] = rng.normal(size=(C, C, *[3] * nd)).astype(np.float32)
        nodes += [helper.make_node("Conv", ["x", "Wa"], ["ca"], pads=[1] * (2 * nd)),
                  helper.make_node("Relu", ["ca"], ["r1"])]
        layers["ca"] = cfg["sample"]
        src = "r1"
    pad_inputs = [src, "pads"]
    if cfg["value"] is not None:
        inits["cv"] = np.array(cfg["value"], dtype=np.float32)
        pad_inputs.append("cv")
    nodes.append(helper.make_node("Pad", pad_inputs, ["p"], mode=cfg["mode"]))
    conv_in = "p"
    if cfg["tanh"]:
        nodes.append(helper.make_node("Tanh", ["p"], ["q"]))
        conv_in = "q"
    W = rng.normal(size=(3, C, *cfg["kernel"])).astype(np.float32)
    W.reshape(-1)[0] = 0.0  # a zero kernel element
    b = rng.normal(size=3).astype(np.float32)
    inits.update(W=W, b=b)
    nodes.append(helper.make_node("Conv", [conv_in, "W", "b"], ["y"], pads=cfg["conv_pads"], strides=cfg["strides"]))
    model = make_model(nodes, cfg["sample"], inits)
    x = rng.normal(size=(BATCH, *cfg["sample"])).astype(np.float32)
    acts = ort_outputs(model, x, tuple(dict.fromkeys(t for t in (src, "p", conv_in, "y") if t != "x")))
    acts["x"] = x
    layers["y"] = acts["y"].shape[1:]
    return SimpleNamespace(cfg=cfg, model=model, x=x, acts=acts, layers=layers, src=src, conv_in=conv_in,
                           W=W, b=b, inits=inits)


@pytest.mark.parametrize("index", range(len(PAD_CASES)), ids=[c["name"] for c in PAD_CASES])
def test_pad_then_conv(index):
    case = pad_case(index)
    cfg = case.cfg
    nd = len(cfg["sample"]) - 1
    plan = onnxtopo.inspect(case.model)
    assert_consecutive_layers(plan, case.layers)
    off = {layer.tensor: layer.offset for layer in plan.layers}
    src_layer = "ca" if case.src == "r1" else "x"
    ids = padded_vertices(cfg["sample"], cfg["before"], cfg["after"], cfg["mode"], off[src_layer])
    pad_value = 0.0 if cfg["value"] is None else cfg["value"]
    fused = cfg["mode"] == "constant" and pad_value == 0.0 and not cfg["tanh"]
    # otherwise onnxtopo itself follows the Pad (the case tests its layout handler)
    assert ("Pad" in [n.op_type for n in plan.model.graph.node]) == (not fused)
    step = plan.steps[-1]
    assert step.op_type == "Conv"
    target = plan.layers[step.target]
    out_spatial = case.layers["y"][1:]
    reads = conv_reads(ids.shape, case.W, out_spatial, begin=cfg["conv_pads"][:nd], strides=cfg["strides"])
    graphs = list(onnxtopo.Analyzer(case.model).graphs(case.x))
    max_count, const_seen = 0, False
    for n in range(BATCH):
        source = case.acts[case.src][n]
        padded = case.acts["p"][n]
        h = case.acts[case.conv_in][n].reshape(-1).astype(np.float64)
        # the test's own mapping is right: onnxruntime's padded tensor holds those values
        for pos in positions(ids.shape):
            if ids[pos] < 0:
                assert padded[pos] == np.float32(pad_value)
            else:
                assert padded[pos] == source.reshape(-1)[ids[pos] - off[src_layer]]
        expected = {}
        if src_layer == "ca":
            pre = conv_reads(cfg["sample"], case.inits["Wa"], cfg["sample"][1:], begin=[1] * nd, strides=[1] * nd)
            expected.update(phi_of(merge_reads(pre, np.arange(size_of(cfg["sample"])), case.x[n].reshape(-1),
                                               off["ca"])[0]))
        signed, count, const = merge_reads(reads, ids.reshape(-1), h, target.offset)
        max_count = max(max_count, max(count.values()))
        const_seen |= any(v != 0 for v in const.values())
        expected.update(phi_of(signed))
        assert_same_edges(graph_dict(graphs[n]), expected, **TOL, what=f"{cfg['name']} graph, sample {n}")
        # the Conv's output: merged edges + what the constant contributes + bias
        # (when onnxruntime folded the Pad into the Conv, the step reads the unpadded tensor)
        assert step.input_tensor == ("x" if fused else case.conv_in)
        s, d, values = merged_signed(plan, step, case.acts[step.input_tensor][n])
        assert (s >= 0).all()
        assert_same_edges(edges_as_dict(s, d, np.abs(values)), {k: abs(v) for k, v in signed.items()}, **TOL,
                          what="merged edges")
        out = np.zeros(target.size)
        np.add.at(out, d - target.offset, values)
        for v, c in const.items():
            out[v] += c
        out += np.repeat(case.b.astype(np.float64), size_of(out_spatial))
        np.testing.assert_allclose(out, case.acts["y"][n].reshape(-1), rtol=1e-4, atol=1e-4, err_msg=f"sample {n}")
    # the cases do what they are meant to: repeated vertices merge, a nonzero constant would make φ > 0
    assert (max_count > 1) == (cfg["mode"] != "constant")
    tanh_of_pad = math.tanh(pad_value) if cfg["tanh"] else pad_value
    assert const_seen == (cfg["mode"] == "constant" and tanh_of_pad != 0)


def _pad_pool_model(mode, value, pool, attrs):
    inits = dict(pads=np.array([0, 0, 1, 0, 0, 2], dtype=np.int64))
    inputs = ["x", "pads"]
    if value is not None:
        inits["cv"] = np.array(value, dtype=np.float32)
        inputs.append("cv")
    nodes = [helper.make_node("Pad", inputs, ["p"], mode=mode), helper.make_node(pool, ["p"], ["y"], **attrs)]
    return make_model(nodes, (2, 5), inits)


PAD_POOL_CASES = {
    "reflect-maxpool-window": ("reflect", None, "MaxPool", "window"),
    "reflect-maxpool-argmax": ("reflect", None, "MaxPool", "argmax"),
    "edge-averagepool": ("edge", None, "AveragePool", None),
    "constant-0.5-averagepool": ("constant", 0.5, "AveragePool", None),
}


@pytest.mark.parametrize("name", list(PAD_POOL_CASES))
def test_pad_then_pool(name):
    """Pooling over a padded tensor (windows of 3, stride 1, no pads of the pool's own).

    MaxPool, rule window: w = 1 for every input in the window, so φ = |h_u| even when reflect
    padding puts u in the window twice (the maximum does not depend on how often u occurs).
    AveragePool: w·h adds up over u's copies (onnxruntime averages every element of the window).
    """
    mode, value, pool, rule = PAD_POOL_CASES[name]
    model = _pad_pool_model(mode, value, pool, dict(kernel_shape=[3]))
    rng = np.random.default_rng(list(PAD_POOL_CASES).index(name))
    x = rng.normal(size=(BATCH, 2, 5)).astype(np.float32)
    x[2, 0, 1] = x[2, 0, 0] = 9.0  # a tie at the maximum, reflected
    acts = ort_outputs(model, x, ("p", "y"))
    ids = padded_vertices((2, 5), [1], [2], mode, 0)
    assert ids.shape == acts["p"].shape[1:] == (2, 8)
    plan = onnxtopo.inspect(model, maxpool_rule=rule or "window")
    assert [s.op_type for s in plan.steps] == [pool]
    off = plan.layers[1].offset
    graphs = list(onnxtopo.Analyzer(plan).graphs(x))
    for n in range(BATCH):
        p = acts["p"][n]
        y = acts["y"][n]
        expected, const = {}, np.zeros(y.shape)
        for c in range(2):
            for o in range(6):
                window = [(ids[c, o + k], float(p[c, o + k])) for k in range(3)]
                v = off + c * 6 + o
                if pool == "MaxPool" and rule == "window":
                    for u, hu in window:
                        expected[(int(u), v)] = abs(hu)
                    assert max(hu for _, hu in window) == y[c, o]
                elif pool == "MaxPool":
                    u, hu = max(window, key=lambda e: e[1])  # the first maximum, in window order
                    assert hu == y[c, o]
                    expected[(int(u), v)] = abs(hu)
                else:
                    signed = {}
                    for u, hu in window:
                        if u < 0:
                            const[c, o] += hu / 3
                        else:
                            signed[(int(u), v)] = signed.get((int(u), v), 0.0) + hu / 3
                    expected.update(phi_of(signed))
                    assert sum(signed.values()) + const[c, o] == pytest.approx(float(y[c, o]), abs=1e-5)
        assert_same_edges(graph_dict(graphs[n]), expected, **TOL, what=f"{name} graph, sample {n}")


# --------------------------------------------------------------------------------------------
# 7. Reshape to a shape computed at run time (tf2onnx / jax2onnx)
# --------------------------------------------------------------------------------------------

RS_IN = (2, 6, 6)


def _runtime_shape_nodes(kind):
    """Nodes computing the Reshape target ``target`` from ``r``'s shape, their constants, and the
    number of columns the dense layer takes."""
    i64 = lambda *v: np.array(v, dtype=np.int64)  # noqa: E731
    if kind == "jax2onnx-gather-unsqueeze-concat":
        nodes = [helper.make_node("Shape", ["r"], ["sh"]),
                 helper.make_node("Gather", ["sh", "zero"], ["batch"], axis=0),
                 helper.make_node("Unsqueeze", ["batch", "ax0"], ["b1"]),
                 helper.make_node("Concat", ["b1", "minus1"], ["target"], axis=0)]
        return nodes, dict(zero=np.array(0, dtype=np.int64), ax0=i64(0), minus1=i64(-1)), 48
    if kind == "tf2onnx-slice-concat":
        nodes = [helper.make_node("Shape", ["r"], ["sh"]),
                 helper.make_node("Cast", ["sh"], ["sh32"], to=TensorProto.INT32),
                 helper.make_node("Slice", ["sh32", "s0", "s1"], ["b32"]),
                 helper.make_node("Cast", ["b32"], ["b1"], to=TensorProto.INT64),
                 helper.make_node("Concat", ["b1", "cols"], ["target"], axis=0)]
        return nodes, dict(s0=np.array([0], dtype=np.int32), s1=np.array([1], dtype=np.int32), cols=i64(48)), 48
    if kind == "shape-start-end-reduceprod":
        nodes = [helper.make_node("Shape", ["r"], ["rest"], start=1),
                 helper.make_node("ReduceProd", ["rest"], ["prod"], keepdims=1),
                 helper.make_node("Concat", ["minus1", "prod"], ["target"], axis=0)]
        return nodes, dict(minus1=i64(-1)), 48
    if kind == "keep-channels-3d":  # (N, C, H*W) from Gather of N and C
        nodes = [helper.make_node("Shape", ["r"], ["sh"]),
                 helper.make_node("Gather", ["sh", "nc"], ["first2"], axis=0),
                 helper.make_node("Concat", ["first2", "minus1"], ["target"], axis=0)]
        return nodes, dict(nc=i64(0, 1), minus1=i64(-1)), 16
    if kind == "shape-of-the-input":
        nodes = [helper.make_node("Shape", ["x"], ["sh"], end=1),
                 helper.make_node("Concat", ["sh", "minus1"], ["target"], axis=0)]
        return nodes, dict(minus1=i64(-1)), 48
    raise AssertionError(kind)


RUNTIME_SHAPES = ["jax2onnx-gather-unsqueeze-concat", "tf2onnx-slice-concat", "shape-start-end-reduceprod",
                  "keep-channels-3d", "shape-of-the-input"]


@pytest.mark.parametrize("kind", RUNTIME_SHAPES)
def test_reshape_to_a_runtime_shape_plans_like_a_constant_one(kind):
    rng = np.random.default_rng(8)
    W = rng.normal(size=(3, 2, 3, 3)).astype(np.float32)
    shape_nodes, shape_inits, cols = _runtime_shape_nodes(kind)
    M = rng.normal(size=(cols, 4)).astype(np.float32)
    head = [helper.make_node("Conv", ["x", "W"], ["c"]), helper.make_node("Relu", ["c"], ["r"])]
    dynamic = make_model(head + shape_nodes + [helper.make_node("Reshape", ["r", "target"], ["z"]),
                                               helper.make_node("MatMul", ["z", "M"], ["y"])],
                         RS_IN, dict(W=W, M=M, **shape_inits))
    if cols == 48:
        tail = [helper.make_node("Flatten", ["r"], ["z"])]
        inits = dict(W=W, M=M)
    else:
        tail = [helper.make_node("Reshape", ["r", "const_shape"], ["z"])]
        inits = dict(W=W, M=M, const_shape=np.array([0, 3, 16], dtype=np.int64))
    static = make_model(head + tail + [helper.make_node("MatMul", ["z", "M"], ["y"])], RS_IN, inits)
    x = rng.normal(size=(BATCH, *RS_IN)).astype(np.float32)
    y_dynamic, y_static = ort_outputs(dynamic, x)["y"], ort_outputs(static, x)["y"]
    np.testing.assert_array_equal(y_dynamic, y_static)  # the two networks are the same function

    plan_d, plan_s = onnxtopo.inspect(dynamic), onnxtopo.inspect(static)
    assert [(l.shape, l.offset) for l in plan_d.layers] == [(l.shape, l.offset) for l in plan_s.layers]
    assert plan_d.layers[-1].shape == y_static.shape[1:]
    for gd, gs in zip(onnxtopo.Analyzer(dynamic).graphs(x), onnxtopo.Analyzer(static).graphs(x)):
        assert len(gs.src) > 0
        assert_same_edges(graph_dict(gd), graph_dict(gs), rtol=0, what=kind)


# --------------------------------------------------------------------------------------------
# 8. The chunked (streaming) path against dionysus
# --------------------------------------------------------------------------------------------

def _avg_index(name):
    return AVG_IDS.index(name)


CHUNK_MODELS = {
    "residual-add": lambda: (residual_case("add").model, residual_case("add").x),
    "residual-broadcast-sub": lambda: (residual_case("broadcast-sub-first").model,
                                       residual_case("broadcast-sub-first").x),
    "residual-sum3": lambda: (residual_case("sum3").model, residual_case("sum3").x),
    "concat-r1-r1": lambda: (concat_case("channels-r1-r1").model, concat_case("channels-r1-r1").x),
    "concat-r1-x-r2": lambda: (concat_case("channels-r1-x-r2").model, concat_case("channels-r1-x-r2").x),
    "pad-reflect-after-relu": lambda: (pad_case(6).model, pad_case(6).x),
    "pad-constant-1.5": lambda: (pad_case(2).model, pad_case(2).x),
    "averagepool-ceil-cip1": lambda: (avgpool_case(_avg_index("2d-ceil-cip1-asym-pads")).model,
                                      avgpool_case(_avg_index("2d-ceil-cip1-asym-pads")).x),
}
assert PAD_CASES[6]["name"] == "reflect-after-relu-strided-padded-conv" and PAD_CASES[2]["name"] == "constant-1.5-direct"


@pytest.mark.parametrize("chunk_edges", [5, 40])
@pytest.mark.parametrize("name", list(CHUNK_MODELS))
def test_chunked_analysis_equals_dionysus(name, chunk_edges):
    model, x = CHUNK_MODELS[name]()
    analyzer = onnxtopo.Analyzer(model)
    assert max(s.candidate_edges for s in analyzer.plan.steps) > chunk_edges  # the chunking does cut
    chunked = list(analyzer.analyze(x, chunk_edges=chunk_edges, h1=True, batch_size=2))
    slow = list(analyzer.analyze(x, engine="dionysus", h1=True))
    assert len(chunked) == len(slow) == len(x)
    for a, b in zip(chunked, slow):
        assert a.n_edges == b.n_edges > 0
        np.testing.assert_array_equal(a.h0, b.h0)
        np.testing.assert_array_equal(a.h1, b.h1)
        assert len(a.h1) > 0
        for field in ("src", "dst", "phi", "birth", "edge"):
            np.testing.assert_array_equal(getattr(a.subgraph, field), getattr(b.subgraph, field), err_msg=field)
