"""Layout ops (rules/op_layout.py): Reshape, Transpose, Flatten, (Un)Squeeze between a Conv and a dense
layer, Reshape to a shape computed at run time, Concat, Pad: no layer, every vertex keeps its id and
the next edge-making op reads the right ones.

Every expected edge set is enumerated here with plain loops from the definitions of
docs/induced-graph.md (never with onnxtopo's own window code); onnxruntime (graph optimizations off)
is the independent reference for output shapes and values: summing the rule's own w·h over each
output's incoming edges must give back the op's output.
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace

import numpy as np
import pytest
from onnx import TensorProto, helper

import onnxtopo

from conftest import (
    add_phi_edges,
    assert_consecutive_layers,
    assert_same_edges,
    brute_conv_edges,
    conv_reads,
    edges_as_dict,
    flat_index,
    graph_dict,
    ids_of,
    make_model,
    merge_reads,
    merged_signed,
    ort_outputs,
    pad_source,
    phi_of,
    positions,
    size_of,
)

BATCH = 3
TOL = {"rtol": 1e-4, "atol": 1e-6}


# --------------------------------------------------------------------------------------------
# Layout ops between a Conv and a dense layer
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


# --------------------------------------------------------------------------------------------
# Concat of activations from different layers
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
# Pad before a Conv (and before pooling)
# --------------------------------------------------------------------------------------------

PAD_2D = {"sample": (2, 5, 6), "before": [1, 2], "after": [2, 1], "kernel": [3, 3]}


PAD_1D = {"sample": (2, 7), "before": [2], "after": [3], "kernel": [4]}


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
    {"name": "reflect-1d-wide", "mode": "reflect", "sample": (2, 5), "before": [3], "after": [4], "kernel": [5]},
    dict(name="constant-2.0-1d-tanh", mode="constant", value=2.0, tanh=True, **PAD_1D),
]


for _c in PAD_CASES:
    _nd = len(_c["sample"]) - 1
    _c.setdefault("tanh", False)
    _c.setdefault("source", "x")
    _c.setdefault("conv_pads", [0] * (2 * _nd))
    _c.setdefault("strides", [1] * _nd)
    _c.setdefault("value", None)


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
    inits = {"pads": np.array([0, 0, *cfg["before"], 0, 0, *cfg["after"]], dtype=np.int64)}
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
    inits = {"pads": np.array([0, 0, 1, 0, 0, 2], dtype=np.int64)}
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
    model = _pad_pool_model(mode, value, pool, {"kernel_shape": [3]})
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
# Reshape to a shape computed at run time (tf2onnx / jax2onnx)
# --------------------------------------------------------------------------------------------

RS_IN = (2, 6, 6)


def _runtime_shape_nodes(kind):
    """Nodes computing the Reshape target ``target`` from ``r``'s shape, their constants, and the
    number of columns the dense layer takes."""
    i64 = lambda *v: np.array(v, dtype=np.int64)
    if kind == "jax2onnx-gather-unsqueeze-concat":
        nodes = [helper.make_node("Shape", ["r"], ["sh"]),
                 helper.make_node("Gather", ["sh", "zero"], ["batch"], axis=0),
                 helper.make_node("Unsqueeze", ["batch", "ax0"], ["b1"]),
                 helper.make_node("Concat", ["b1", "minus1"], ["target"], axis=0)]
        return nodes, {"zero": np.array(0, dtype=np.int64), "ax0": i64(0), "minus1": i64(-1)}, 48
    if kind == "tf2onnx-slice-concat":
        nodes = [helper.make_node("Shape", ["r"], ["sh"]),
                 helper.make_node("Cast", ["sh"], ["sh32"], to=TensorProto.INT32),
                 helper.make_node("Slice", ["sh32", "s0", "s1"], ["b32"]),
                 helper.make_node("Cast", ["b32"], ["b1"], to=TensorProto.INT64),
                 helper.make_node("Concat", ["b1", "cols"], ["target"], axis=0)]
        return nodes, {"s0": np.array([0], dtype=np.int32), "s1": np.array([1], dtype=np.int32), "cols": i64(48)}, 48
    if kind == "shape-start-end-reduceprod":
        nodes = [helper.make_node("Shape", ["r"], ["rest"], start=1),
                 helper.make_node("ReduceProd", ["rest"], ["prod"], keepdims=1),
                 helper.make_node("Concat", ["minus1", "prod"], ["target"], axis=0)]
        return nodes, {"minus1": i64(-1)}, 48
    if kind == "keep-channels-3d":  # (N, C, H*W) from Gather of N and C
        nodes = [helper.make_node("Shape", ["r"], ["sh"]),
                 helper.make_node("Gather", ["sh", "nc"], ["first2"], axis=0),
                 helper.make_node("Concat", ["first2", "minus1"], ["target"], axis=0)]
        return nodes, {"nc": i64(0, 1), "minus1": i64(-1)}, 16
    if kind == "shape-of-the-input":
        nodes = [helper.make_node("Shape", ["x"], ["sh"], end=1),
                 helper.make_node("Concat", ["sh", "minus1"], ["target"], axis=0)]
        return nodes, {"minus1": i64(-1)}, 48
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
        inits = {"W": W, "M": M}
    else:
        tail = [helper.make_node("Reshape", ["r", "const_shape"], ["z"])]
        inits = {"W": W, "M": M, "const_shape": np.array([0, 3, 16], dtype=np.int64)}
    static = make_model(head + tail + [helper.make_node("MatMul", ["z", "M"], ["y"])], RS_IN, inits)
    x = rng.normal(size=(BATCH, *RS_IN)).astype(np.float32)
    y_dynamic, y_static = ort_outputs(dynamic, x)["y"], ort_outputs(static, x)["y"]
    np.testing.assert_array_equal(y_dynamic, y_static)  # the two networks are the same function

    plan_d, plan_s = onnxtopo.inspect(dynamic), onnxtopo.inspect(static)
    assert [(l.shape, l.offset) for l in plan_d.layers] == [(l.shape, l.offset) for l in plan_s.layers]
    assert plan_d.layers[-1].shape == y_static.shape[1:]
    for gd, gs in zip(onnxtopo.Analyzer(dynamic).graphs(x), onnxtopo.Analyzer(static).graphs(x), strict=True):
        assert len(gs.src) > 0
        assert_same_edges(graph_dict(gd), graph_dict(gs), rtol=0, what=kind)
