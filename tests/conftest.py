"""Shared test helpers, each once: one-node ONNX models, onnxruntime as the reference, edge-set
comparison, the brute-force index arithmetic and window geometry of the rule tests, finite-difference
Jacobians, the product tests' network builder (Net) and the one persistence comparison
(assert_same_persistence)."""

from __future__ import annotations

import dataclasses
import itertools
import math
from types import SimpleNamespace

import numpy as np
import onnx
import onnx.shape_inference
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import onnxtopo
from onnxtopo import graph as graph_module

OPSET = 17
NET_BATCH = 2  # the samples of a Net case


def make_model(nodes, sample_shape, initializers=None, *, input_name="x", output_name="y", opset=OPSET):
    """A float32 model with one input of shape ("N", *sample_shape) and one output, at ``opset``.

    The output's shape is filled by onnx shape inference, so the model passes onnx.checker.
    """
    initializers = initializers or {}
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", *sample_shape])
    y = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, None)
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()]
    graph = helper.make_graph(list(nodes), "test", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    return model


def ort_outputs(model, x, tensors=("y",), *, input_name="x"):
    """onnxruntime's values of the named tensors (intermediate ones too), graph optimizations off."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    known = {v.name: v for v in list(m.graph.value_info) + list(m.graph.output)}
    present = {o.name for o in m.graph.output}
    for name in tensors:
        if name not in present:
            m.graph.output.append(known[name])
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return dict(zip(tensors, session.run(list(tensors), {input_name: np.asarray(x, dtype=np.float32)})))


def assert_same_persistence(a, b, what=""):
    """Two analyses (``Persistence`` or ``AnalysisResult``) agree exactly: the H0 diagrams point for
    point in order, the H1 diagrams too when either has one, and every array of the persistent
    subgraph byte for byte (dtype and shape included)."""
    np.testing.assert_array_equal(a.h0, b.h0, err_msg=f"{what} H0")
    assert (a.h1 is None) == (b.h1 is None), f"{what}: H1 computed for one side only"
    if a.h1 is not None:
        np.testing.assert_array_equal(a.h1, b.h1, err_msg=f"{what} H1")
    for field in dataclasses.fields(a.subgraph):
        x, y = getattr(a.subgraph, field.name), getattr(b.subgraph, field.name)
        np.testing.assert_array_equal(x, y, err_msg=f"{what} subgraph.{field.name}")
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), (
            f"{what} subgraph.{field.name}: {x.dtype} vs {y.dtype}, equal values but not the same bytes")


def edges_as_dict(src, dst, value, what="edge"):
    """{(src, dst): value}, asserting that each (src, dst) pair occurs once."""
    src, dst, value = np.asarray(src), np.asarray(dst), np.asarray(value)
    assert src.ndim == dst.ndim == value.ndim == 1 and len(src) == len(dst) == len(value)
    keys = list(zip(src.tolist(), dst.tolist()))
    assert len(set(keys)) == len(keys), f"some {what} (src, dst) pairs occur more than once"
    return dict(zip(keys, value.tolist()))


def assert_same_edges(got: dict, expected: dict, *, rtol=1e-6, atol=0.0, what="edges"):
    """Same (src, dst) keys, and values equal to tolerance."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    assert not missing and not extra, (
        f"{what}: {len(missing)} missing (first {missing[:5]}), {len(extra)} unexpected (first {extra[:5]}); "
        f"{len(got)} found, {len(expected)} expected"
    )
    keys = sorted(expected)
    np.testing.assert_allclose([got[k] for k in keys], [expected[k] for k in keys], rtol=rtol, atol=atol,
                               err_msg=what)


def node_jacobian(node, operands: dict, wrt: str, *, output: int = 0, step: float = 1e-6, opset: int = OPSET):
    """The Jacobian ∂y/∂x of one ONNX node by central finite differences in float64.

    ``operands`` maps each input name of ``node`` to its value for ONE sample, batch axis
    included (size 1), in float64 (constants too); ``wrt`` names the input to differentiate
    against. The node runs alone, at ``opset``, in onnxruntime when it has a float64 kernel for
    the op, else in onnx's reference evaluator. Returns an array of shape (output size, input
    size) over the flattened tensors, batch axis of size 1 dropped.
    """
    run = _double_runner(node, operands, output, opset)
    x = np.asarray(operands[wrt], dtype=np.float64)
    y0 = run({**operands, wrt: x})
    jac = np.empty((y0.size, x.size))
    flat = x.reshape(-1)
    for j in range(x.size):
        plus, minus = flat.copy(), flat.copy()
        plus[j] += step
        minus[j] -= step
        jac[:, j] = (run({**operands, wrt: plus.reshape(x.shape)})
                     - run({**operands, wrt: minus.reshape(x.shape)})).reshape(-1) / (2 * step)
    return jac


def _double_runner(node, operands, output, opset):
    names = [n for n in node.input if n]
    inputs = [helper.make_tensor_value_info(n, TensorProto.DOUBLE if np.asarray(operands[n]).dtype.kind == "f"
                                            else TensorProto.INT64, np.shape(operands[n])) for n in names]
    outputs = [helper.make_tensor_value_info(o, TensorProto.DOUBLE, None) for o in node.output if o]
    graph = helper.make_graph([node], "one-node", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])

    def feeds(values):
        return {n: np.asarray(values[n], dtype=np.float64 if np.asarray(values[n]).dtype.kind == "f" else np.int64)
                for n in names}

    try:
        options = ort.SessionOptions()
        options.log_severity_level = 4
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        session.run(None, feeds(operands))
        return lambda values: session.run(None, feeds(values))[output]
    except Exception:  # noqa: BLE001 - no float64 kernel in onnxruntime: onnx's reference evaluator
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(model)
        return lambda values: np.asarray(evaluator.run(None, feeds(values))[output], dtype=np.float64)


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


def add_phi_edges(out: dict, edges: dict, h, src_offset, dst_offset, src_vertex=None):
    """Add |w·h_u| for each edge with a nonzero product, in global vertex ids."""
    for (u, v), w in edges.items():
        phi = abs(w * float(h[u]))
        if phi > 0:
            su = src_vertex[u] if src_vertex is not None else u + src_offset
            out[(int(su), v + dst_offset)] = phi


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
    parts = list(graph_module.step_edges(plan, step, np.asarray(h, dtype=np.float64).reshape(-1), {}, None, plan.n_vertices,
                                 keep_zeros=True))
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))


def ids_of(offset, shape):
    return offset + np.arange(size_of(shape), dtype=np.int64).reshape(shape)


def graph_edges(model, x, **kw):
    return [edges_as_dict(g.src, g.dst, g.phi) for g in onnxtopo.Analyzer(model, **kw).graphs(x)]


# --------------------------------------------------------------------------------------------
# Invariance: the map fused into the weights, or not, gives the same graph
# --------------------------------------------------------------------------------------------

def assert_same_analysis_to_rounding(a, b, x):
    """Models ``a`` and ``b`` (a constant map fused into the weights or not) give the same layers, and
    on ``x`` the same edges and H0 up to float32 rounding (assert_same_persistence is the exact test)."""
    plan_a, plan_b = onnxtopo.inspect(a), onnxtopo.inspect(b)
    assert [layer.shape for layer in plan_a.layers] == [layer.shape for layer in plan_b.layers]
    for ga, gb in zip(graph_edges(a, x), graph_edges(b, x), strict=True):
        assert_same_edges(ga, gb, rtol=1e-4, atol=1e-6, what="fused vs unfused")
    for ra, rb in zip(onnxtopo.analyze(a, x), onnxtopo.analyze(b, x), strict=True):
        np.testing.assert_allclose(ra.h0, rb.h0, rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------------------------
# One edge step of a linear op
# --------------------------------------------------------------------------------------------

def only_step(model, op_type):
    plan = onnxtopo.inspect(model)
    steps = [s for s in plan.steps if s.op_type == op_type]
    assert len(steps) == 1, [s.op_type for s in plan.steps]
    return plan, steps[0]


def rebuilt_outputs(rule, x):
    """Per sample, Σ over each output's incoming edges of the rule's signed w·h."""
    p = rule.pattern
    assert len(p) == rule.candidate_count  # the count the memory estimate uses is exact
    outputs = []
    for n in range(len(x)):
        out = np.zeros(math.prod(rule.out_shape))
        np.add.at(out, p.dst, rule.edge_values(x[n].reshape(-1).astype(np.float64)))
        outputs.append(out)
    return np.array(outputs)


def assert_parts_make_the_pattern(rule, max_edges):
    """Built part by part (the streaming path), the pattern is the same."""
    whole = rule.pattern
    assert rule.candidate_count > max_edges
    parts = list(rule.chunks(max_edges))
    assert len(parts) > 1
    for name in ("src", "dst", "weight"):
        np.testing.assert_array_equal(np.concatenate([getattr(p, name) for p in parts]), getattr(whole, name))


# --------------------------------------------------------------------------------------------
# Jacobians of the nonlinear ops
# --------------------------------------------------------------------------------------------

JACOBIAN_TOL = 1e-7  # finite differences in float64 are accurate to about 1e-10 here


def weights(rng, *shape):
    return rng.normal(scale=0.7, size=shape).astype(np.float32)


def step_index(plan, op_type) -> int:
    return next(i for i, s in enumerate(plan.steps) if s.op_type == op_type)


def step_edges(graph, plan, index) -> dict:
    """{(flat element of the op's input, flat element of its output): φ} of one edge step."""
    step = plan.steps[index]
    position = {int(v): i for i, v in enumerate(step.input_vertices) if v >= 0}
    mask = graph.step == index
    return edges_as_dict([position[int(u)] for u in graph.src[mask]],
                         graph.dst[mask] - plan.layers[step.target].offset, graph.phi[mask])


def jacobian_edges(jacobian, h) -> dict:
    """The expected edges: {(u, v): |J[v, u] · h_u|} where J[v, u] is nonzero and h_u ≠ 0."""
    rows, cols = np.nonzero(np.abs(jacobian) > JACOBIAN_TOL)
    return {(int(u), int(v)): abs(jacobian[v, u] * h[u]) for v, u in zip(rows, cols) if h[u] != 0}


def check_against_jacobian(model, x, node, inits, *, opset=17, jacobian_node=None):
    """Every sample's edges of ``node``'s step against the node's finite-difference Jacobian.

    ``model`` is a model or its plan; ``jacobian_node`` (default ``node``) is the node the
    Jacobian is computed from: the same function, when ``node`` itself would compute in float32."""
    analyzer = onnxtopo.Analyzer(model)
    model = analyzer.plan.model
    index = step_index(analyzer.plan, node.op_type)
    rule = analyzer.plan.steps[index].rule
    assert rule.candidate_count == len(rule.pattern)  # counted exactly before being built
    data = node.input[0]
    h = ort_outputs(model, x, (data,))[data].astype(np.float64)
    constants = {name: np.asarray(inits[name], dtype=np.float64) for name in node.input[1:] if name}
    graphs = list(analyzer.graphs(x))
    assert len(graphs) == len(x)
    for n, graph in enumerate(graphs):
        jacobian = node_jacobian(jacobian_node or node, {**constants, data: h[n:n + 1]}, data, opset=opset)
        expected = jacobian_edges(jacobian, h[n].ravel())
        assert expected, "the test should have edges to compare"
        assert_same_edges(step_edges(graph, analyzer.plan, index), expected, rtol=1e-4, atol=1e-7, what=f"sample {n}")


def assert_engines_agree(model, x):
    """``model`` (a model or its plan) gives the same persistence with both engines, exactly."""
    analyzer = onnxtopo.Analyzer(model)
    forest, dionysus = (list(analyzer.analyze(x, engine=engine)) for engine in ("forest", "dionysus"))
    for a, b in zip(forest, dionysus, strict=True):
        assert a.n_edges == b.n_edges > 0
        assert_same_persistence(a, b)


# --------------------------------------------------------------------------------------------
# Building the networks
# --------------------------------------------------------------------------------------------

class Net:
    """Nodes and constants of a network under construction; ``sources`` maps each operand of the
    op to (the layer tensor its neurons belong to, how the layer's ids are arranged in it)."""

    def __init__(self, seed, sample):
        self.rng = np.random.default_rng(seed)
        self.sample = sample
        self.nodes, self.inits, self.sources = [], {}, {}

    def const(self, name, shape, spread=None):
        """Normal values, or uniform in [-spread, spread]."""
        value = self.rng.normal(size=shape) if spread is None else self.rng.uniform(-spread, spread, size=shape)
        self.inits[name] = value.astype(np.float32)
        return name

    def node(self, op, inputs, output, **attrs):
        self.nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    def dense(self, src, out, k, n):
        """A layer: MatMul by a constant (k, n)."""
        return self.node("MatMul", [src, self.const(f"W_{out}", (k, n))], out)

    def flat_dense(self, out, n, shape):
        """A layer from the flattened input, reshaped to per-sample ``shape``."""
        flat = self.dense(self.node("Flatten", ["x"], f"{out}_in"), f"{out}_flat", size_of(self.sample), n)
        return self.node("Reshape", [flat, self.const_int(f"{out}_shape", [-1, *shape])], out)

    def const_int(self, name, values):
        self.inits[name] = np.asarray(values, dtype=np.int64)
        return name

    def scalar(self, name, value):
        self.inits[name] = np.float32(value)
        return name

    def source(self, operand, layer, arrange=lambda ids: ids):
        self.sources[operand] = (layer, arrange)

    def finish(self, op_node, out_shape, *, opset=17):
        """Append the op (output "p") and the head; the model, a batch and the activations."""
        self.nodes.append(op_node)
        head = [helper.make_node("Reshape", ["p", self.const_int("per_sample", [-1, size_of(out_shape)])], ["f"]),
                helper.make_node("MatMul", ["f", self.const("W_head", (size_of(out_shape), 2))], ["y"])]
        model = make_model(self.nodes + head, self.sample, self.inits, opset=opset)
        x = self.rng.normal(size=(NET_BATCH, *self.sample)).astype(np.float32)
        names = sorted(({n for n in op_node.input if n and n not in self.inits} | {"p"}
                        | {layer for layer, _ in self.sources.values()}) - {"x"})
        # a tensor whose leading axis merges the batch with the heads, viewed batch first
        acts = {name: value.reshape(NET_BATCH, -1, *value.shape[1:]) if value.shape[0] != NET_BATCH else value
                for name, value in ort_outputs(model, x, names).items()}
        acts["x"] = x
        assert acts["p"].shape[1:] == tuple(out_shape)  # the expected shape, from the ONNX spec
        return SimpleNamespace(model=model, x=x, acts=acts, op=op_node, inits=self.inits, sources=self.sources,
                               out_shape=tuple(out_shape), options={})


def vertex_ids(plan, case, operand) -> list[int]:
    """The vertex of each element (flat) of one of the op's operands."""
    tensor, arrange = case.sources[operand]
    layer = layer_of(plan, tensor)
    return arrange(layer.offset + np.arange(layer.size).reshape(layer.shape)).ravel().tolist()


def analyzed(case):
    """The plan, the op's layer and, per sample, the edges into it {(src, dst): φ}."""
    analyzer = onnxtopo.Analyzer(case.model, **case.options)
    target = layer_of(analyzer.plan, "p")
    assert target.shape == case.out_shape and target.op_type == case.op.op_type
    for step in (s for s in analyzer.plan.steps if s.target == target.index):
        check_parts(step.rule)
    got = [graph_dict(g, target.offset, target.offset + target.size) for g in analyzer.graphs(case.x)]
    return analyzer.plan, target, got


def check_parts(rule):
    """The candidate count (the memory estimate's) is the pattern's size, and the pattern built
    part by part is the whole pattern."""
    whole = rule.pattern
    assert rule.candidate_count == len(whole)
    parts = list(rule.chunks(max_edges=7))
    for field in ("src", "dst", "weight", "partner"):
        if hasattr(whole, field):
            np.testing.assert_array_equal(np.concatenate([getattr(p, field) for p in parts]), getattr(whole, field))


def operand_values(case, n):
    """The op's inputs for sample n, batch axis of size 1 kept, in float64."""
    return {name: (case.acts[name][n:n + 1] if name in case.acts else case.inits[name]).astype(np.float64)
            for name in case.op.input}


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
