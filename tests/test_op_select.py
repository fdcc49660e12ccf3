"""Ops that select or move neurons (Slice, Split, Gather, GatherElements, GatherND, Concat with
constants, Tile, Expand, DepthToSpace, SpaceToDepth, Pad) make no layer (design notes 2b).

Each case sits one such op between two dense layers: x -> MatMul(A) -> Tanh -> op -> Flatten ->
MatMul(B) -> y. The test enumerates, with plain loops from the ONNX spec, which element of the
op's input each output element holds (or a constant), checks that onnxruntime's output of the op
holds exactly those values, and from that mapping alone builds the whole induced graph edge by
edge: a neuron reaching an output of the second MatMul through several copies gives ONE edge
whose w·h sums over the copies; constants give no edge. Summing the package's signed edge values
(plus what the constants contribute) must give back onnxruntime's y.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnx
import onnx.shape_inference
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxtopo
from onnxtopo.errors import ResourceLimitError, UnsupportedOpError

from conftest import (
    assert_same_edges,
    assert_same_persistence,
    edges_as_dict,
    flat_index,
    graph_dict,
    merged_signed,
    ort_outputs,
    pad_source,
    positions,
    size_of,
)

BATCH = 3
K, OUT = 3, 3  # x's last axis, y's last axis
TOL = {"rtol": 1e-4, "atol": 1e-6}
INT64_MAX, INT64_MIN = 2**63 - 1, -2**63


def i64(*values):
    return np.array(values, dtype=np.int64)


def build(nodes, sample_shape, inits, *, opset=17, batch="N"):
    """A float32 model with input x of shape (batch, *sample_shape) and output y, at ``opset``."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, *sample_shape])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "select", [x], [y],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    return model


# --------------------------------------------------------------------------------------------
# Brute force: for each output position (per sample), the input position it holds, or None for a
# constant. Written from the ONNX operator spec, one element at a time.
# --------------------------------------------------------------------------------------------

def from_picks(picks):
    """Output shape and map of an op keeping, along each axis, the input indices ``picks[axis]``."""
    shape = tuple(len(p) for p in picks)
    return shape, {pos: tuple(p[i] for p, i in zip(picks, pos)) for pos in positions(shape)}


def clamp(v, lo, hi):
    return min(max(v, lo), hi)


def slice_picks(shape, starts, ends, axes, steps):
    """ONNX Slice on a per-sample ``shape``; ``axes`` count the batch axis, which is kept whole."""
    picks = [list(range(n)) for n in shape]
    for start, end, axis, step in zip(starts, ends, axes, steps):
        axis %= len(shape) + 1
        if axis == 0:
            continue
        n = shape[axis - 1]
        start, end = start + n if start < 0 else start, end + n if end < 0 else end
        if step > 0:
            start, end = clamp(start, 0, n), clamp(end, 0, n)
        else:
            start, end = clamp(start, 0, n - 1), clamp(end, -1, n - 1)
        kept, i = [], start
        while (i < end) if step > 0 else (i > end):
            kept.append(i)
            i += step
        picks[axis - 1] = kept
    return picks


def brute_slice(starts, ends, axes=None, steps=None):
    def brute(shape):
        a = list(range(len(starts))) if axes is None else axes
        return from_picks(slice_picks(shape, starts, ends, a, steps or [1] * len(starts)))
    return brute


def brute_split_reversed(axis, sizes):
    """Split on ``axis`` (full-tensor numbering) into ``sizes``, then Concat of the parts in
    reverse order on the same axis."""
    def brute(shape):
        a = axis % (len(shape) + 1) - 1
        bounds, start = [], 0
        for s in sizes:
            bounds.append(list(range(start, start + s)))
            start += s
        assert start == shape[a]
        picks = [list(range(n)) for n in shape]
        picks[a] = [i for part in reversed(bounds) for i in part]
        return from_picks(picks)
    return brute


def brute_gather(axis, indices):
    def brute(shape):
        a = axis % (len(shape) + 1) - 1
        ind = np.asarray(indices)
        out_shape = shape[:a] + ind.shape + shape[a + 1:]
        mapping = {}
        for pos in positions(out_shape):
            i = int(ind[pos[a:a + ind.ndim]])
            mapping[pos] = pos[:a] + (i + shape[a] if i < 0 else i,) + pos[a + ind.ndim:]
        return tuple(out_shape), mapping
    return brute


def brute_gather_elements(axis, indices):
    """out[i][j][k] = in[i][indices[i][j][k]][k] (axis 1 of a per-sample rank-2 tensor, say)."""
    def brute(shape):
        a = axis % (len(shape) + 1) - 1
        ind = np.asarray(indices)[0]  # the one sample of a fixed batch of 1
        mapping = {}
        for pos in positions(ind.shape):
            i = int(ind[pos])
            mapping[pos] = pos[:a] + (i + shape[a] if i < 0 else i,) + pos[a + 1:]
        return ind.shape, mapping
    return brute


def brute_gather_nd_batch1(indices):
    """GatherND with batch_dims = 1: per sample, indices[..., :] address the leading sample axes."""
    def brute(shape):
        ind = np.asarray(indices)[0]
        depth = ind.shape[-1]
        rest = shape[depth:]
        out_shape = ind.shape[:-1] + rest
        mapping = {}
        for pos in positions(out_shape):
            m, r = pos[:ind.ndim - 1], pos[ind.ndim - 1:]
            coords = tuple(int(c) + n if c < 0 else int(c) for c, n in zip(ind[m], shape))
            mapping[pos] = coords + r
        return tuple(out_shape), mapping
    return brute


def brute_tile(repeats):
    def brute(shape):
        out_shape = tuple(n * r for n, r in zip(shape, repeats[1:]))
        return out_shape, {pos: tuple(p % n for p, n in zip(pos, shape)) for pos in positions(out_shape)}
    return brute


def brute_expand(target):
    """Bidirectional broadcasting: dims aligned on the right, a dim of 1 stretched."""
    def brute(shape):
        full = (1, *shape)  # the batch axis
        rank = max(len(full), len(target))
        a = (1,) * (rank - len(full)) + full
        b = (1,) * (rank - len(target)) + tuple(target)
        out = tuple(max(m, n) for m, n in zip(a, b))
        assert out[0] == 1 and all(m in (1, o) for m, o in zip(a, out))
        out_shape = out[1:]
        return out_shape, {pos: tuple(0 if n == 1 else p for p, n in zip(pos, shape)) for pos in positions(out_shape)}
    return brute


def brute_depth_to_space(bs, mode):
    def brute(shape):
        c, h, w = shape
        cc = c // (bs * bs)
        mapping = {}
        for co, y, xx in positions((cc, h * bs, w * bs)):
            i, j = y % bs, xx % bs
            channel = (i * bs + j) * cc + co if mode == "DCR" else co * bs * bs + i * bs + j
            mapping[(co, y, xx)] = (channel, y // bs, xx // bs)
        return (cc, h * bs, w * bs), mapping
    return brute


def brute_space_to_depth(bs):
    def brute(shape):
        c, h, w = shape
        mapping = {}
        for co, y, xx in positions((c * bs * bs, h // bs, w // bs)):
            block, ch = divmod(co, c)
            i, j = divmod(block, bs)
            mapping[(co, y, xx)] = (ch, y * bs + i, xx * bs + j)
        return (c * bs * bs, h // bs, w // bs), mapping
    return brute


def brute_pad(pads, mode, axes=None):
    """ONNX Pad on sample axes (``axes`` count the batch axis); negative pads crop first."""
    def brute(shape):
        rank = len(shape) + 1
        ax = list(range(rank)) if axes is None else [a % rank for a in axes]
        before, after = [0] * rank, [0] * rank
        for i, a in enumerate(ax):
            before[a], after[a] = pads[i], pads[i + len(ax)]
        assert before[0] == after[0] == 0
        crop = [max(-b, 0) for b in before[1:]]
        kept = [n - max(-b, 0) - max(-a, 0) for n, b, a in zip(shape, before[1:], after[1:])]
        grow_before = [max(b, 0) for b in before[1:]]
        out_shape = tuple(k + max(b, 0) + max(a, 0) for k, b, a in zip(kept, before[1:], after[1:]))
        mapping = {}
        for pos in positions(out_shape):
            src = [pad_source(p, g, k, mode) for p, g, k in zip(pos, grow_before, kept)]
            mapping[pos] = None if None in src else tuple(s + c for s, c in zip(src, crop))
        return out_shape, mapping
    return brute


def brute_concat_constants(axis, parts):
    """Concat on ``axis`` of operands named in ``parts``: "t" for the activation, (name, size) for
    a constant of that size along the axis."""
    def brute(shape):
        a = axis % (len(shape) + 1) - 1
        along = []
        for part in parts:
            along += [("t", i) for i in range(shape[a])] if part == "t" else [None] * part[1]
        out_shape = shape[:a] + (len(along),) + shape[a + 1:]
        mapping = {}
        for pos in positions(out_shape):
            held = along[pos[a]]
            mapping[pos] = None if held is None else pos[:a] + (held[1],) + pos[a + 1:]
        return out_shape, mapping
    return brute


# --------------------------------------------------------------------------------------------
# The cases: nodes from "t" (the Tanh of the first MatMul) to "s" (what the second one reads)
# --------------------------------------------------------------------------------------------

def node(op, inputs, outputs=("s",), **attrs):
    return helper.make_node(op, list(inputs), list(outputs), **attrs)


def split_then_reverse(axis, sizes, **split_attrs):
    parts = [f"p{i}" for i in range(len(sizes))]
    inputs = ["t"] + (["split"] if "split_input" in split_attrs else [])
    attrs = {k: v for k, v in split_attrs.items() if k != "split_input"}
    return [node("Split", inputs, parts, axis=axis, **attrs), node("Concat", parts[::-1], axis=axis)]


CLASS_TOKEN = np.array([[[0.5, -1.5, 2.0, 0.25]]], dtype=np.float32)

# name: (x's leading sample axes, D, nodes, initializers, brute force, opset, fixed batch 1, copies)
CASES = {
    "slice-1-attributes": ((3, 5), 4, [node("Slice", ["t"], starts=[1, -3], ends=[3, 100], axes=[1, 2])], {},
                           brute_slice([1, -3], [3, 100], [1, 2]), 9, False, False),
    "slice-1-no-axes-whole-batch": ((4, 2), 4, [node("Slice", ["t"], starts=[0, -3, 1], ends=[INT64_MAX, -1, 2])],
                                    {}, brute_slice([0, -3, 1], [INT64_MAX, -1, 2]), 9, False, False),
    "slice-10-negative-steps-clamped": (
        (5, 2), 7, [node("Slice", ["t", "st", "en", "ax", "sp"])],  # the last axis: 6, 4, 2, 0
        {"st": i64(INT64_MAX, -2), "en": i64(INT64_MIN, 0), "ax": i64(-1, 1), "sp": i64(-2, -1)},
        brute_slice([INT64_MAX, -2], [INT64_MIN, 0], [-1, 1], [-2, -1]), 10, False, False),
    "slice-13-no-axes-int32-step3": (
        (7,), 5, [node("Slice", ["t", "st", "en", "", "sp"])],
        {"st": np.array([0, -100], dtype=np.int32), "en": np.array([2**31 - 1, 6], dtype=np.int32),
         "sp": np.array([1, 3], dtype=np.int32)},
        brute_slice([0, -100], [2**31 - 1, 6], None, [1, 3]), 13, False, False),
    "split-2-attribute": ((2, 4), 3, split_then_reverse(2, [1, 3], split=[1, 3]), {},
                          brute_split_reversed(2, [1, 3]), 11, False, False),
    "split-13-input-negative-axis": ((2,), 5, split_then_reverse(-1, [2, 1, 2], split_input=True),
                                     {"split": i64(2, 1, 2)}, brute_split_reversed(-1, [2, 1, 2]), 13, False, False),
    "split-13-equal-parts": ((4, 2), 3, split_then_reverse(1, [2, 2]), {}, brute_split_reversed(1, [2, 2]), 13,
                             False, False),
    "split-18-num-outputs-uneven": ((7, 1), 2, split_then_reverse(1, [3, 3, 1], num_outputs=3), {},
                                    brute_split_reversed(1, [3, 3, 1]), 18, False, False),
    "gather-matrix-indices-repeated": ((4, 2), 3, [node("Gather", ["t", "ind"], axis=1)],
                                       {"ind": i64(2, -1, 0, 0).reshape(2, 2)},
                                       brute_gather(1, [[2, -1], [0, 0]]), 13, False, True),
    "gather-scalar-index-drops-axis": ((3, 2), 4, [node("Gather", ["t", "ind"], axis=-1)],
                                       {"ind": np.array(-2, dtype=np.int64)}, brute_gather(-1, -2), 13, False, False),
    "gather-int32-last-axis-of-three": ((2, 3), 5, [node("Gather", ["t", "ind"], axis=3)],
                                        {"ind": np.array([4, 0, 4], dtype=np.int32)}, brute_gather(3, [4, 0, 4]),
                                        11, False, True),
    "gather-elements-fixed-batch": (
        (4,), 3, [node("GatherElements", ["t", "ind"], axis=1)],
        {"ind": i64(0, 3, 0, 2, -2, 0).reshape(1, 3, 2)},
        brute_gather_elements(1, [[[0, 3], [0, 2], [-2, 0]]]), 13, True, True),
    "gather-nd-batch-dims-1": (
        (3, 4), 2, [node("GatherND", ["t", "ind"], batch_dims=1)],
        {"ind": i64(0, 1, 2, -1, 0, 1, 1, 3).reshape(1, 4, 2)},
        brute_gather_nd_batch1([[[0, 1], [2, -1], [0, 1], [1, 3]]]), 13, True, True),
    "tile": ((2,), 3, [node("Tile", ["t", "rep"])], {"rep": i64(1, 2, 3)}, brute_tile([1, 2, 3]), 13, False, True),
    "expand-stretch-a-1": ((1,), 3, [node("Expand", ["t", "shape"])], {"shape": i64(1, 4, 1)},
                           brute_expand((1, 4, 1)), 13, False, True),
    "expand-lower-rank-shape": ((2, 1), 2, [node("Expand", ["t", "shape"])], {"shape": i64(3, 2)},
                                brute_expand((3, 2)), 13, False, True),
    "depth-to-space-dcr-opset-9": ((8, 2), 3, [node("DepthToSpace", ["t"], blocksize=2)], {},
                                   brute_depth_to_space(2, "DCR"), 9, False, False),
    "depth-to-space-dcr": ((8, 2), 3, [node("DepthToSpace", ["t"], blocksize=2, mode="DCR")], {},
                           brute_depth_to_space(2, "DCR"), 13, False, False),
    "depth-to-space-crd": ((8, 2), 3, [node("DepthToSpace", ["t"], blocksize=2, mode="CRD")], {},
                           brute_depth_to_space(2, "CRD"), 13, False, False),
    "space-to-depth": ((2, 4), 6, [node("SpaceToDepth", ["t"], blocksize=2)], {}, brute_space_to_depth(2), 13,
                       False, False),
    "concat-constant-fixed-batch": (
        (3,), 4, [node("Concat", ["tok", "t", "tok2"], axis=1)],
        {"tok": CLASS_TOKEN, "tok2": np.full((1, 2, 4), 0.75, dtype=np.float32)},
        brute_concat_constants(1, [("tok", 1), "t", ("tok2", 2)]), 13, True, False),
    "pad-2-attribute-constant": ((3,), 4, [node("Pad", ["t"], pads=[0, 1, 0, 0, 2, 1], value=1.5)], {},
                                 brute_pad([0, 1, 0, 0, 2, 1], "constant"), 10, False, False),
    "pad-11-reflect": ((3,), 4, [node("Pad", ["t", "pads"], mode="reflect")], {"pads": i64(0, 2, 1, 0, 1, 2)},
                       brute_pad([0, 2, 1, 0, 1, 2], "reflect"), 11, False, True),
    "pad-18-axes-edge": ((3, 2), 3, [node("Pad", ["t", "pads", "", "axes"], mode="edge")],
                         {"pads": i64(2, 0, 1, 3), "axes": i64(-1, 1)}, brute_pad([2, 0, 1, 3], "edge", [-1, 1]), 18,
                         False, True),
    "pad-19-wrap-wider-than-the-axis": ((2, 2), 3, [node("Pad", ["t", "pads", "", "axes"], mode="wrap")],
                                        {"pads": i64(4, 0, 5, 1), "axes": i64(2, 1)},
                                        brute_pad([4, 0, 5, 1], "wrap", [2, 1]), 19, False, True),
    "pad-negative-crops-then-edge": ((4,), 5, [node("Pad", ["t", "pads"], mode="edge")],
                                     {"pads": i64(0, -1, 2, 0, 2, -3)}, brute_pad([0, -1, 2, 0, 2, -3], "edge"), 13,
                                     False, True),
    "pad-negative-crops-then-wrap": ((4,), 5, [node("Pad", ["t", "pads"], mode="wrap")],
                                     {"pads": i64(0, 1, -1, 0, -2, 2)}, brute_pad([0, 1, -1, 0, -2, 2], "wrap"), 19,
                                     False, True),
    "pad-negative-constant": ((4,), 5, [node("Pad", ["t", "pads", "cv"])],
                              {"pads": i64(0, -2, 1, 0, 1, -2), "cv": np.array(-0.5, dtype=np.float32)},
                              brute_pad([0, -2, 1, 0, 1, -2], "constant"), 13, False, False),
}


def select_case(name):
    lead, D, select_nodes, inits, brute, opset, fixed, copies = CASES[name]
    rng = np.random.default_rng(sorted(CASES).index(name))
    t_shape = (*lead, D)
    s_shape, mapping = brute(t_shape)
    A = rng.normal(size=(K, D)).astype(np.float32)
    A[0, 0] = 0.0  # a zero weight: no edge
    B = rng.normal(size=(size_of(s_shape), OUT)).astype(np.float32)
    nodes = [node("MatMul", ["x", "A"], ["a"]), node("Tanh", ["a"], ["t"]), *select_nodes,
             node("Flatten", ["s"], ["f"]), node("MatMul", ["f", "B"], ["y"])]
    model = build(nodes, (*lead, K), dict(A=A, B=B, **inits), opset=opset, batch=1 if fixed else "N")
    x = rng.normal(size=(1 if fixed else BATCH, *lead, K)).astype(np.float32)
    acts = ort_outputs(model, x, ("a", "t", "s", "y"))
    return SimpleNamespace(name=name, lead=lead, D=D, A=A, B=B, x=x, acts=acts, model=model, t_shape=t_shape,
                           s_shape=s_shape, mapping=mapping, copies=copies)


@pytest.mark.parametrize("name", list(CASES))
def test_select_op_makes_no_layer_and_moves_the_right_neurons(name):
    case = select_case(name)
    assert case.acts["s"].shape[1:] == case.s_shape
    plan = onnxtopo.inspect(case.model)
    # onnxtopo itself follows the op: onnxruntime's normalization kept it
    assert {n.op_type for n in CASES[name][2]} <= {n.op_type for n in plan.model.graph.node}
    assert [(layer.tensor, layer.shape) for layer in plan.layers] == [
        ("x", (*case.lead, K)), ("a", case.t_shape), ("y", (OUT,))]
    assert [step.op_type for step in plan.steps] == ["MatMul", "MatMul"]
    off_a, off_y = plan.layers[1].offset, plan.layers[2].offset
    graphs = list(onnxtopo.Analyzer(case.model).graphs(case.x))
    lead_size, max_copies = size_of(case.lead), 0
    for n, graph in enumerate(graphs):
        t, s = case.acts["t"][n], case.acts["s"][n]
        # The test's own mapping is right: the op's output holds the mapped input elements.
        for pos, src in case.mapping.items():
            if src is not None:
                assert s[pos] == t[src], (pos, src)
        expected = {}
        xs = case.x[n].reshape(lead_size, K).astype(np.float64)
        for p in range(lead_size):
            for k in range(K):
                for d in range(case.D):
                    phi = abs(float(case.A[k, d]) * xs[p, k])
                    if phi > 0:
                        expected[(p * K + k, off_a + p * case.D + d)] = phi
        signed, copies, const = {}, {}, np.zeros(OUT)
        for pos, src in case.mapping.items():
            e = flat_index(pos, case.s_shape)
            for j in range(OUT):
                wh = float(case.B[e, j]) * float(s[pos])
                if src is None:
                    const[j] += wh
                    continue
                key = (off_a + flat_index(src, case.t_shape), off_y + j)
                signed[key] = signed.get(key, 0.0) + wh
                copies[key] = copies.get(key, 0) + 1
        max_copies = max(max_copies, *copies.values())
        expected.update({k: abs(v) for k, v in signed.items() if v != 0})
        assert_same_edges(graph_dict(graph), expected, **TOL, what=f"{name}, sample {n}")
        # The package's signed edge values, summed per output with the constants' part, give y back.
        src, dst, values = merged_signed(plan, plan.steps[1], s)
        assert_same_edges(edges_as_dict(src, dst, values), signed, **TOL, what=f"{name} signed edges")
        out = const.copy()
        np.add.at(out, dst - off_y, values)
        np.testing.assert_allclose(out, case.acts["y"][n], rtol=1e-4, atol=1e-5, err_msg=name)
    assert (max_copies > 1) == case.copies


def test_cases_cover_the_spellings():
    ops = {n.op_type for name in CASES for n in CASES[name][2]}
    assert ops >= {"Slice", "Split", "Gather", "GatherElements", "GatherND", "Tile", "Expand", "DepthToSpace",
                   "SpaceToDepth", "Concat", "Pad"}
    modes = {n.attribute[0].s.decode() for name in CASES for n in CASES[name][2]
             if n.op_type == "Pad" and n.attribute and n.attribute[0].name == "mode"}
    assert modes == {"reflect", "edge", "wrap"}
    assert {CASES[name][5] for name in CASES} >= {9, 10, 11, 13, 18, 19}


@pytest.mark.parametrize("name", ["slice-10-negative-steps-clamped", "split-18-num-outputs-uneven",
                                  "gather-matrix-indices-repeated", "tile", "depth-to-space-crd",
                                  "concat-constant-fixed-batch", "pad-19-wrap-wider-than-the-axis",
                                  "gather-nd-batch-dims-1"])
def test_analyze_equals_dionysus(name):
    case = select_case(name)
    fast = onnxtopo.analyze(case.model, case.x, h1=True)
    slow = onnxtopo.analyze(case.model, case.x, h1=True, engine="dionysus")
    for a, b in zip(fast, slow, strict=True):
        assert a.n_edges == b.n_edges > 0
        assert_same_persistence(a, b)


# --------------------------------------------------------------------------------------------
# A vision transformer's class token: Expand-ed to the batch, prepended, then a MatMul
# --------------------------------------------------------------------------------------------

def test_class_token_prepended_before_a_matmul_makes_no_edges():
    rng = np.random.default_rng(5)
    P, D, E = 4, 4, 3
    A = rng.normal(size=(K, D)).astype(np.float32)
    W = rng.normal(size=(D, E)).astype(np.float32)
    pos = rng.normal(size=(1, P + 1, D)).astype(np.float32)
    # As torch exports cls_token.expand(batch, -1, -1): the batch size from Shape, then Expand.
    nodes = [node("MatMul", ["x", "A"], ["a"]), node("Relu", ["a"], ["t"]),
             node("Shape", ["t"], ["shape"]), node("Gather", ["shape", "zero"], ["n"], axis=0),
             node("Unsqueeze", ["n", "axis0"], ["n1"]), node("Concat", ["n1", "ones"], ["target"], axis=0),
             node("Expand", ["cls", "target"], ["tok"]),
             node("Concat", ["tok", "t"], ["c"], axis=1), node("Add", ["c", "pos"], ["e"]),
             node("MatMul", ["e", "W"], ["y"])]
    inits = {"A": A, "W": W, "pos": pos, "cls": CLASS_TOKEN, "zero": np.array(0, dtype=np.int64), "axis0": i64(0),
             "ones": i64(1, 1)}
    model = build(nodes, (P, K), inits)
    x = rng.normal(size=(BATCH, P, K)).astype(np.float32)
    acts = ort_outputs(model, x, ("a", "e", "y"))
    plan = onnxtopo.inspect(model)
    assert [(layer.tensor, layer.shape) for layer in plan.layers] == [("x", (P, K)), ("a", (P, D)), ("y", (P + 1, E))]
    off_a, off_y = plan.layers[1].offset, plan.layers[2].offset
    step = plan.steps[1]
    assert step.input_tensor == "e"
    assert (step.input_vertices[:D] == -1).all()  # the token: constants, not vertices
    assert (step.input_vertices[D:] == off_a + np.arange(P * D)).all()
    for n, graph in enumerate(onnxtopo.Analyzer(model).graphs(x)):
        e = acts["e"][n].astype(np.float64)
        expected = {}
        for p in range(P):
            for k in range(K):
                for d in range(D):
                    phi = abs(float(A[k, d]) * float(x[n, p, k]))
                    if phi > 0:
                        expected[(p * K + k, off_a + p * D + d)] = phi
        for p in range(P):
            for d in range(D):
                for j in range(E):
                    # row p of the patches is row p + 1 of the MatMul's input and output
                    expected[(off_a + p * D + d, off_y + (p + 1) * E + j)] = abs(float(W[d, j]) * e[p + 1, d])
        got = graph_dict(graph)
        assert not [k for k in got if off_y <= k[1] < off_y + E]  # nothing reaches the token's row
        assert_same_edges(got, expected, **TOL, what=f"class token, sample {n}")
        np.testing.assert_allclose(e[1:] - pos[0, 1:], np.maximum(acts["a"][n], 0), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(e @ W, acts["y"][n], rtol=1e-4, atol=1e-5)
    fast = onnxtopo.analyze(model, x)
    slow = onnxtopo.analyze(model, x, engine="dionysus")
    for a, b in zip(fast, slow, strict=True):
        assert_same_persistence(a, b)


# --------------------------------------------------------------------------------------------
# Refusals: clear messages, no allocation
# --------------------------------------------------------------------------------------------

# name: (nodes from "t" to "s", initializers, batch, opset, error, words of its message)
REFUSALS = {
    "huge-tile": ([node("Tile", ["t", "rep"])], {"rep": i64(1, 1 << 20, 1 << 20)}, "N", 13, ResourceLimitError,
                  "elements per sample"),
    "huge-expand": ([node("Unsqueeze", ["t", "ax"], ["u"]), node("Expand", ["u", "shape"])],
                    {"ax": i64(2, 4), "shape": i64(1, 1, 1 << 16, 1, 1 << 16)}, "N", 13, ResourceLimitError,
                    "elements per sample"),
    "slice-of-the-batch-axis": ([node("Slice", ["t", "st", "en", "ax"])], {"st": i64(0), "en": i64(1), "ax": i64(0)},
                                "N", 13, UnsupportedOpError, "slices the batch axis"),
    "slice-1-default-axes-reach-the-batch": ([node("Slice", ["t"], starts=[1], ends=[100])], {}, "N", 9,
                                             UnsupportedOpError, "slices the batch axis"),
    "split-default-axis-0": ([node("Split", ["t"], ["s", "s2"])], {}, "N", 13, UnsupportedOpError, "batch axis"),
    "gather-default-axis-0": ([node("Gather", ["t", "ind"])], {"ind": i64(0)}, "N", 13, UnsupportedOpError,
                              "batch axis"),
    "gather-index-out-of-range": ([node("Gather", ["t", "ind"], axis=2)], {"ind": i64(3)}, "N", 13,
                                  UnsupportedOpError, "outside an axis of size 3"),
    "gather-elements-dynamic-batch": ([node("GatherElements", ["t", "ind"], axis=1)],
                                      {"ind": np.zeros((1, 2, 3), dtype=np.int64)}, "N", 13, UnsupportedOpError,
                                      "one row per sample"),
    "gather-nd-batch-dims-0": ([node("GatherND", ["t", "ind"])], {"ind": np.zeros((1, 2), dtype=np.int64)}, 1, 13,
                               UnsupportedOpError, "pick samples"),
    "tile-the-batch": ([node("Tile", ["t", "rep"])], {"rep": i64(2, 1, 1)}, "N", 13, UnsupportedOpError,
                       "repeats the batch axis"),
    "expand-copies-a-fixed-sample": ([node("Expand", ["t", "shape"])], {"shape": i64(3, 1, 1)}, 1, 13,
                                     UnsupportedOpError, "copies samples"),
    "concat-on-the-batch-axis": ([node("Concat", ["t", "t"], axis=0)], {}, "N", 13, UnsupportedOpError,
                                 "batch axis"),
    "pad-the-batch-axis": ([node("Pad", ["t", "pads"])], {"pads": i64(1, 0, 0, 0, 0, 0)}, "N", 13,
                           UnsupportedOpError, "batch axis"),
}


@pytest.mark.parametrize("name", list(REFUSALS))
def test_refusals(name):
    """Planning refuses, naming the node's op, before allocating anything (a huge Tile or Expand
    would need terabytes)."""
    select_nodes, inits, batch, opset, error, words = REFUSALS[name]
    A = np.ones((K, 3), dtype=np.float32)
    nodes = [node("MatMul", ["x", "A"], ["a"]), node("Tanh", ["a"], ["t"]), *select_nodes,
             node("ReduceSum", ["s"], ["y"], keepdims=0)]
    model = build(nodes, (2, K), dict(A=A, **inits), opset=opset, batch=batch)
    with pytest.raises(error, match=words) as info:
        onnxtopo.inspect(model)
    assert f"({select_nodes[-1].op_type})" in str(info.value)
