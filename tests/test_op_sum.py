"""Add, Sub and Sum of activations (rules/op_sum.py): residual connections, a new layer; a sum of a
neuron with itself is refused, or elementwise when it is one neuron's own value.

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

from conftest import (
    assert_consecutive_layers,
    assert_same_edges,
    conv_reads,
    flat_index,
    graph_dict,
    ids_of,
    layer_of,
    make_model,
    merge_reads,
    ort_outputs,
    phi_of,
    positions,
    size_of,
)

BATCH = 3
TOL = {"rtol": 1e-4, "atol": 1e-6}


# --------------------------------------------------------------------------------------------
# Residual sums: Add, Sub, Sum of activations
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
    inits = {"Wa": Wa, "ba": ba, "Wb": Wb, "G": G}
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
    return make_model(nodes, RES_IN, {"Wa": Wa, "Wb": Wb, "M": rng.normal(size=(size, 2)).astype(np.float32)})


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
