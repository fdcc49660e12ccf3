"""onnxtopo's diagrams against independent constructions of the induced graph.

1. Where the reference implementation (Gebhart & Schrater's ``pt_activation``) is right — a
   convolution with ONE input channel, stride 1, no padding, followed by dense layers, inputs
   >= 0 — its construction is re-implemented here in its own style (dense matrices, loops over
   the inputs with h > 0, positive values, ``f.sort(reverse=True)``) and onnxtopo's diagrams must
   equal it.
2. On multi-channel convolutions (where the reference is wrong, docs/induced-graph.md §7), the
   graph is built here by explicit loops, one vertex per neuron, and its diagrams computed with
   dionysus directly.

Activations come from onnxruntime, on a copy of the model whose intermediate tensors are
exposed as outputs, so both sides see the same h values.
"""

from __future__ import annotations

import importlib

import dionysus
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxtopo

OPSET = 17
RTOL = 1e-6

# onnxtopo's persistence engines, when it offers several (persistence.ENGINES); analyze() runs
# the default one, the others are run on the same induced graph.
_persistence_module = importlib.import_module("onnxtopo.homology")
ENGINE_NAMES = sorted(getattr(_persistence_module, "ENGINES", {}))


def other_engine_results(model, x, default_result):
    """(engine, Persistence) for every named engine, on the graph of input ``x``."""
    if not ENGINE_NAMES:
        return []
    graph = onnxtopo.induced_graph(model, x)
    assert graph.n_edges == default_result.n_edges
    return [(e, onnxtopo.persistence(graph, h1=True, engine=e)) for e in ENGINE_NAMES]


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------

def make_model(nodes, initializers, input_shape, output_name, output_shape):
    graph = helper.make_graph(
        nodes, "test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *input_shape])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", *output_shape])],
        initializer=[numpy_helper.from_array(np.asarray(a, dtype=np.float32), name) for name, a in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def run_with_intermediates(model, x, names):
    """The model's tensors ``names`` for inputs ``x``, by onnxruntime (outputs added to a copy)."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    for name in names:
        exposed.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip(names, session.run(list(names), {"x": x.astype(np.float32)})))


def diagram_from_dionysus(diagrams, k, sign=1.0):
    """Dimension-k points as an (n, 2) array of (birth, death) in φ units, sorted."""
    if len(diagrams) <= k:
        return np.empty((0, 2))
    pts = []
    for p in diagrams[k]:
        birth = sign * p.birth
        death = np.inf if np.isinf(p.death) else sign * p.death  # essential: inf either way
        pts.append((birth, death))
    return sort_points(pts)


def sort_points(pts):
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    return pts[np.lexsort((pts[:, 1], pts[:, 0]))]


def assert_same_diagram(actual, expected, what):
    actual, expected = sort_points(actual), sort_points(expected)
    assert actual.shape == expected.shape, f"{what}: {len(actual)} points, expected {len(expected)}"
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=0, err_msg=what)


def assert_edges_to_vertices_order(f):
    """Every edge of a sorted dionysus filtration comes after both of its vertices."""
    seen = set()
    for s in f:
        if s.dimension() == 0:
            seen.add(s[0])
        else:
            assert s[0] in seen and s[1] in seen, f"edge {list(s)} at {s.data} precedes a vertex"


# ----------------------------------------------------------------------------------------------
# dionysus's own tie behaviour, which the reference comparison relies on
# ----------------------------------------------------------------------------------------------

def test_dionysus_reverse_sort_keeps_vertices_before_their_edges_on_ties():
    # The reference gives each vertex the value of its strongest edge, so every vertex ties with
    # an edge, and it relies on f.sort(reverse=True). If that sort put an edge before a vertex of
    # equal value, dionysus would compute on an invalid filtration without complaint. With
    # dionysus 2.2.3 the reverse sort orders by decreasing value, then by increasing dimension:
    # vertices first. (Checked here because the comparison below depends on it.)
    simplices = [dionysus.Simplex([0, 1], 2.0), dionysus.Simplex([1, 2], 1.0), dionysus.Simplex([2], 1.0),
                 dionysus.Simplex([1], 2.0), dionysus.Simplex([0], 2.0)]
    f = dionysus.Filtration(simplices)
    f.sort(reverse=True)
    assert [s.dimension() for s in f] == [0, 0, 1, 0, 1]
    assert_edges_to_vertices_order(f)
    m = dionysus.homology_persistence(f)
    assert [(p.birth, p.death) for p in dionysus.init_diagrams(m, f)[0]] == [(2.0, np.inf)]


def test_dionysus_stores_values_in_float32():
    # Another thing to know when comparing: a Simplex's value is a float32.
    assert dionysus.Simplex([0], 0.1).data == float(np.float32(0.1))


# ----------------------------------------------------------------------------------------------
# 1. The reference's construction (one-channel conv, stride 1, no padding, then dense layers)
# ----------------------------------------------------------------------------------------------

SIDE, KERNEL, FILTERS, HIDDEN, CLASSES = 10, 5, 3, 12, 4
CONV_SIDE = SIDE - KERNEL + 1  # 6


@pytest.fixture(scope="module")
def reference_case():
    rng = np.random.default_rng(20190101)
    w_conv = rng.normal(0, 0.3, (FILTERS, 1, KERNEL, KERNEL)).astype(np.float32)
    fc1 = rng.normal(0, 0.3, (HIDDEN, FILTERS * CONV_SIDE ** 2)).astype(np.float32)  # torch (out, in)
    fc2 = rng.normal(0, 0.3, (HIDDEN, CLASSES)).astype(np.float32)  # MatMul's (in, out)
    nodes = [
        helper.make_node("Conv", ["x", "w_conv"], ["c1"], kernel_shape=[KERNEL, KERNEL], name="conv1"),
        helper.make_node("Relu", ["c1"], ["h1"], name="relu1"),
        helper.make_node("Flatten", ["h1"], ["f1"], axis=1, name="flatten"),
        helper.make_node("Gemm", ["f1", "fc1"], ["g2"], transB=1, name="fc1"),
        helper.make_node("Relu", ["g2"], ["h2"], name="relu2"),
        helper.make_node("MatMul", ["h2", "fc2"], ["y"], name="fc2"),
    ]
    model = make_model(nodes, {"w_conv": w_conv, "fc1": fc1, "fc2": fc2}, [1, SIDE, SIDE], "y", [CLASSES])
    # Continuous inputs in [0, 1] (no exact ties between products), about 30 % exact zeros:
    # a zero pixel gives φ = 0, i.e. no edge, in onnxtopo as in the reference's h > 0 filter.
    x = rng.uniform(0, 1, (3, 1, SIDE, SIDE)).astype(np.float32)
    x[rng.uniform(size=x.shape) < 0.3] = 0.0
    x[2, 0, :4, :] = 0.0  # a blank band: input vertices absent from the complex
    acts = run_with_intermediates(model, x, ["h1", "h2"])
    assert (acts["h1"] == 0).any() and (acts["h1"] > 0).any()  # Relu zeros exist on the way
    return model, x, acts, w_conv, fc1, fc2


def reference_conv_matrix(filters, side):
    """(output neurons × input pixels) matrix of kernel weights, the reference's unrolled conv.

    One input channel, stride 1, no padding: output neuron (k, i, j) reads pixel (i+a, j+b)
    with weight filters[k, a, b].
    """
    n_filters, m = filters.shape[0], filters.shape[-1]
    out = side - m + 1
    mat = np.zeros((n_filters * out * out, side * side))
    for k in range(n_filters):
        for i in range(out):
            for j in range(out):
                for a in range(m):
                    for b in range(m):
                        mat[k * out * out + i * out + j, (i + a) * side + (j + b)] = filters[k, a, b]
    return mat


def reference_filtration(x, h1, h2, w_conv, fc1, fc2):
    """The reference's filtration of one input: positive values, sorted with reverse=True.

    Input pixels have ids 0..99, then the conv neurons (channel-major, as Flatten orders them),
    then the hidden and the output neurons. Edges from inputs with h > 0 and |w·h| > 0; every
    vertex enters at the maximum |w·h| over its edges, vertices with no edge are left out.
    """
    f = dionysus.Filtration()
    x = x.reshape(-1).astype(np.float64)
    layers = [
        (x, np.absolute(reference_conv_matrix(w_conv[:, 0].astype(np.float64), SIDE))),  # (out, in)
        (h1.reshape(-1).astype(np.float64), np.absolute(fc1.astype(np.float64))),  # (out, in)
        (h2.reshape(-1).astype(np.float64), np.absolute(fc2.astype(np.float64).T)),  # (out, in)
    ]
    sizes = [len(x)] + [mat.shape[0] for _, mat in layers]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    births = [np.zeros(s) for s in sizes]
    for layer, (h, mat) in enumerate(layers):
        start_in, start_out = starts[layer], starts[layer + 1]
        for xi in np.argwhere(h > 0)[:, 0]:
            all_xis = mat[:, xi] * h[xi]  # |w| * h = |w * h| since h > 0
            births[layer][xi] = max(births[layer][xi], all_xis.max())
            for mj in np.argwhere(all_xis > 0)[:, 0]:
                births[layer + 1][mj] = max(births[layer + 1][mj], all_xis[mj])
                f.append(dionysus.Simplex([int(xi + start_in), int(mj + start_out)], float(all_xis[mj])))
    for layer, b in enumerate(births):
        for i in np.argwhere(b > 0)[:, 0]:
            f.append(dionysus.Simplex([int(i + starts[layer])], float(b[i])))
    f.sort(reverse=True)
    return f


def test_reference_filtration_is_valid(reference_case):
    # The comparison below means something only if the reference's sorted filtration is a valid
    # one (see the dionysus tie test above); vertices tie with their strongest edge everywhere.
    _, x, acts, w_conv, fc1, fc2 = reference_case
    f = reference_filtration(x[0], acts["h1"][0], acts["h2"][0], w_conv, fc1, fc2)
    assert_edges_to_vertices_order(f)


def test_diagrams_equal_the_reference(reference_case):
    model, x, acts, w_conv, fc1, fc2 = reference_case
    results = onnxtopo.analyze(model, x, h1=True)
    assert len(results) == len(x)
    for s, result in enumerate(results):
        f = reference_filtration(x[s], acts["h1"][s], acts["h2"][s], w_conv, fc1, fc2)
        m = dionysus.homology_persistence(f)
        dgms = dionysus.init_diagrams(m, f)
        h0, h1 = diagram_from_dionysus(dgms, 0), diagram_from_dionysus(dgms, 1)
        assert len(h0) > 1 and len(h1) > 0  # non-trivial diagrams
        assert_same_diagram(result.h0, h0, f"H0 of input {s}")
        assert_same_diagram(result.h1, h1, f"H1 of input {s}")
        # Same complex: as many simplices (vertices with an edge, plus edges).
        assert result.persistence.n_simplices == len(f)
        for engine, p in other_engine_results(model, x[s], result):
            assert_same_diagram(p.h0, h0, f"H0 of input {s}, engine {engine}")
            assert_same_diagram(p.h1, h1, f"H1 of input {s}, engine {engine}")


def test_graph_equals_the_reference_graph(reference_case):
    # A finer check than the diagrams: same vertex ids here (one-channel conv), same edges, same φ.
    model, x, acts, w_conv, fc1, fc2 = reference_case
    for s in range(len(x)):
        f = reference_filtration(x[s], acts["h1"][s], acts["h2"][s], w_conv, fc1, fc2)
        expected = {tuple(sorted(sp)): sp.data for sp in f if sp.dimension() == 1}
        graph = onnxtopo.induced_graph(model, x[s])
        got = {(int(u), int(v)): float(np.float32(w)) for u, v, w in zip(graph.src, graph.dst, graph.phi)}
        assert graph.n_edges == len(got)  # no duplicate edge
        assert got.keys() == expected.keys()
        for edge, value in expected.items():
            assert got[edge] == pytest.approx(value, rel=RTOL), edge


# ----------------------------------------------------------------------------------------------
# 2. Multi-channel convolutions: an independent construction by explicit loops
# ----------------------------------------------------------------------------------------------

MC_SIDE = 8


@pytest.fixture(scope="module")
def multichannel_case():
    rng = np.random.default_rng(1901_09496)
    w1 = rng.normal(0, 0.5, (2, 1, 3, 3)).astype(np.float32)
    w2 = rng.normal(0, 0.5, (3, 2, 3, 3)).astype(np.float32)
    w3 = rng.normal(0, 0.5, (27, 5)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], kernel_shape=[3, 3], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Flatten", ["r2"], ["f2"], axis=1, name="flatten"),
        helper.make_node("MatMul", ["f2", "w3"], ["y"], name="fc"),
    ]
    model = make_model(nodes, {"w1": w1, "w2": w2, "w3": w3}, [1, MC_SIDE, MC_SIDE], "y", [5])
    # Signed inputs with exact zeros: onnxtopo uses |w·h| for every nonzero h (not only h > 0).
    x = rng.uniform(-1, 1, (3, 1, MC_SIDE, MC_SIDE)).astype(np.float32)
    x[rng.uniform(size=x.shape) < 0.2] = 0.0
    acts = run_with_intermediates(model, x, ["r1", "r2"])
    assert acts["r1"].shape == (3, 2, 6, 6) and acts["r2"].shape == (3, 3, 3, 3)
    return model, x, acts, w1, w2, w3


def conv_edges(h, w, stride, pad, src_offset, dst_offset, edges):
    """Edges of a Conv (group 1) by explicit loops: one vertex per neuron, row-major ids."""
    in_c, in_h, in_w = h.shape
    out_c, _, k_h, k_w = w.shape
    out_h = (in_h + 2 * pad - k_h) // stride + 1
    out_w = (in_w + 2 * pad - k_w) // stride + 1
    for oc in range(out_c):
        for oy in range(out_h):
            for ox in range(out_w):
                dst = dst_offset + (oc * out_h + oy) * out_w + ox
                for ic in range(in_c):
                    for ky in range(k_h):
                        for kx in range(k_w):
                            iy, ix = oy * stride - pad + ky, ox * stride - pad + kx
                            if not (0 <= iy < in_h and 0 <= ix < in_w):
                                continue  # padding: no vertex, no edge
                            phi = abs(float(w[oc, ic, ky, kx]) * float(h[ic, iy, ix]))
                            if phi > 0:
                                src = src_offset + (ic * in_h + iy) * in_w + ix
                                edges[(src, dst)] = phi
    return out_c * out_h * out_w


def multichannel_edges(x, r1, r2, w1, w2, w3):
    edges = {}
    n0 = x.size
    n1 = conv_edges(x, w1, 1, 0, 0, n0, edges)
    n2 = conv_edges(r1, w2, 2, 1, n0, n0 + n1, edges)
    h = r2.reshape(-1)
    for k in range(w3.shape[0]):
        for n in range(w3.shape[1]):
            phi = abs(float(w3[k, n]) * float(h[k]))
            if phi > 0:
                edges[(n0 + n1 + k, n0 + n1 + n2 + n)] = phi
    return edges


def dionysus_diagrams(edges):
    """Diagrams of the superlevel filtration by dionysus, on negated values (sublevel)."""
    value = {}
    for (u, v), phi in edges.items():
        value[u] = max(value.get(u, 0.0), phi)
        value[v] = max(value.get(v, 0.0), phi)
    simplices = [dionysus.Simplex([v], -val) for v, val in value.items()]
    simplices += [dionysus.Simplex([u, v], -phi) for (u, v), phi in edges.items()]
    f = dionysus.Filtration(simplices)
    f.sort()  # increasing -φ; on ties the lower dimension first
    assert_edges_to_vertices_order(f)
    m = dionysus.homology_persistence(f)
    dgms = dionysus.init_diagrams(m, f)
    return diagram_from_dionysus(dgms, 0, sign=-1.0), diagram_from_dionysus(dgms, 1, sign=-1.0)


def test_multichannel_graph_matches_loops(multichannel_case):
    model, x, acts, w1, w2, w3 = multichannel_case
    plan = onnxtopo.inspect(model)
    assert [layer.shape for layer in plan.layers] == [(1, 8, 8), (2, 6, 6), (3, 3, 3), (5,)]
    for s in range(len(x)):
        expected = multichannel_edges(x[s], acts["r1"][s], acts["r2"][s], w1, w2, w3)
        graph = onnxtopo.induced_graph(model, x[s])
        assert graph.n_vertices == 64 + 72 + 27 + 5
        got = {(int(u), int(v)): float(w) for u, v, w in zip(graph.src, graph.dst, graph.phi)}
        assert graph.n_edges == len(got)  # no duplicate edge
        assert got.keys() == expected.keys()
        for edge, value in expected.items():
            assert got[edge] == pytest.approx(value, rel=1e-12), edge


def test_multichannel_diagrams_match_dionysus(multichannel_case):
    model, x, acts, w1, w2, w3 = multichannel_case
    results = onnxtopo.analyze(model, x, h1=True)
    for s, result in enumerate(results):
        edges = multichannel_edges(x[s], acts["r1"][s], acts["r2"][s], w1, w2, w3)
        h0, h1 = dionysus_diagrams(edges)
        assert len(h0) > 1 and len(h1) > 0
        assert_same_diagram(result.h0, h0, f"H0 of input {s}")
        assert_same_diagram(result.h1, h1, f"H1 of input {s}")
        assert len(result.subgraph) + len(result.h1) == len(edges)
        for engine, p in other_engine_results(model, x[s], result):
            assert_same_diagram(p.h0, h0, f"H0 of input {s}, engine {engine}")
            assert_same_diagram(p.h1, h1, f"H1 of input {s}, engine {engine}")
