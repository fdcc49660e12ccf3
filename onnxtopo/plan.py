"""Stage 2: walk the normalized ONNX graph into a plan of layers and edge rules.

Each tensor of the graph is tracked as an integer array giving, for each of its elements, the
global id of the vertex it stands for. Elementwise ops pass the array on, layout ops move it
(applied to the array itself, so any Reshape/Transpose is followed exactly), and edge-making ops
start a new layer. The walk runs with two samples in the batch axis, the second one's ids shifted
by SAMPLE_STRIDE, which reveals any layout op that would mix samples.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import onnx
from onnx import numpy_helper

from .errors import BadModelError, ResourceLimitError, UnsupportedOpError
from .rules import (
    AFFINE_OPS,
    EDGE_RULES,
    ELEMENTWISE_OPS,
    LAYOUT_OPS,
    OPERAND_RULES,
    SAMPLE_STRIDE,
    BatchLayout,
    EdgeRule,
    attribute,
    batch_layout,
    refuse,
    supported_ops,
)
from .rules.decomposed import DecomposedOps
from .rules.op_pool import MAXPOOL_RULES

WALK_BATCH = 2
MAX_TENSOR_ELEMENTS = 1 << 28  # per sample; AlexNet's largest tensor has 2·10^5
#: Ops with several activation operands that combine them element by element (broadcasting):
#: when every operand carries the same neuron (x · sigmoid(x)), the op is elementwise.
ELEMENTWISE_COMBINE = ("Add", "Sub", "Sum", "Mul", "Div", "Max", "Min", "Mean")
#: Layout ops that only move neurons (a permutation), and elementwise ops that are the identity
#: (a Cast reaching the walk is between float types): an affine map after them still folds into
#: the edge-making op before them.
MOVES = ("Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "DepthToSpace", "SpaceToDepth")
IDENTITIES = ("Identity", "Dropout", "Cast")
#: Ops that, making the last layer, turn the network's scores into probabilities: not analyzed,
#: as in the reference (inside the network they make a layer like any other op).
OUTPUT_HEADS = ("Softmax", "LogSoftmax")


@dataclass(frozen=True)
class PlanOptions:
    """Choices that change the graph a model induces."""

    maxpool_rule: str = "window"
    start: str | None = None  # layer 0: this tensor instead of the model input
    stop: str | None = None  # the last layer: the one this tensor belongs to
    #: The model's ai.onnx opset, set by build_plan: a few ops changed meaning (Softmax at 13).
    opset: int | None = None

    def __post_init__(self):
        if self.maxpool_rule not in MAXPOOL_RULES:
            raise ValueError(f"maxpool_rule must be one of {MAXPOOL_RULES}, got {self.maxpool_rule!r}")


@dataclass(frozen=True)
class Layer:
    """One layer of vertices: the model input or the output of an edge-making op."""

    index: int
    tensor: str
    shape: tuple[int, ...]
    offset: int  # id of the layer's first vertex
    node: str = ""
    op_type: str = ""

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class EdgeStep:
    """The edges one edge-making node draws from the vertices its data input stands for to a new layer."""

    node: str
    op_type: str
    rule: EdgeRule
    target: int  # index of the layer the step creates
    input_tensor: str  # the op's data input: its values are the h_u of the edges
    input_vertices: np.ndarray  # per element of input_tensor (flat), its global vertex id (-1: a constant)

    @cached_property
    def reads_constants(self) -> bool:
        return bool((self.input_vertices < 0).any())

    @cached_property
    def repeats(self) -> bool:
        """Whether a neuron stands for several elements of the input (after reflect padding, say)."""
        neurons = self.input_vertices[self.input_vertices >= 0]
        if (neurons[1:] > neurons[:-1]).all():  # increasing ids, the usual layout: no sort needed
            return False
        return np.unique(neurons).size < neurons.size

    @property
    def candidate_edges(self) -> int:
        return self.rule.candidate_count


@dataclass
class Plan:
    """What onnxtopo will compute for a model: its layers and the rule of each edge step."""

    model: onnx.ModelProto
    input_name: str
    input_shape: tuple[int, ...]  # per sample
    input_dtype: np.dtype
    fixed_batch: int | None  # None when the batch axis is dynamic
    layers: list[Layer]
    steps: list[EdgeStep]
    ignored: list[str] = field(default_factory=list)  # nodes after the last layer, e.g. Softmax
    options: PlanOptions = PlanOptions()
    #: Per layer index, the scale s of each vertex (flat) from constant affine maps folded into
    #: the op that makes the layer (design notes 2b); layers without one are absent.
    scales: dict[int, np.ndarray] = field(default_factory=dict)
    #: Tensors the steps read whose samples are not along a batch axis in front (attention's
    #: layouts), with where they are: the runner views their values batch first as the plan does.
    layouts: dict[str, BatchLayout] = field(default_factory=dict)

    @property
    def n_vertices(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def origin(self) -> str:
        """Where layer 0 comes from, for ``onnxtopo inspect``: the model input, or why not."""
        first = self.layers[0].tensor
        if first == self.input_name:
            return f"layer 0 is the model input {first!r}"
        if first == self.options.start:
            return f"layer 0 is tensor {first!r} (--start)"
        return (f"layer 0 is tensor {first!r} ({self.layers[0].op_type} node {self.layers[0].node or '(unnamed)'!r}), the first "
                f"floating-point tensor computed from the {self.input_dtype} input {self.input_name!r}")

    def describe(self) -> list[dict]:
        """One row per layer, for ``onnxtopo inspect``."""
        first = self.layers[0]
        rows = [{"layer": 0, "node": first.node or "(input)", "op": first.op_type, "rule": "", "tensor": first.tensor,
                 "input_shape": "", "output_shape": self.layers[0].shape, "neurons": self.layers[0].size,
                 "edges": 0}]
        for step in self.steps:
            target = self.layers[step.target]
            rows.append({"layer": step.target, "node": step.node, "op": step.op_type,
                         "rule": step.rule.rule_name, "tensor": target.tensor,
                         "input_shape": step.rule.in_shape,
                         "output_shape": target.shape, "neurons": target.size,
                         "edges": step.candidate_edges})
        return rows


def _constant_value(node) -> np.ndarray:
    for attr in node.attribute:
        value = onnx.helper.get_attribute_value(attr)
        if isinstance(value, onnx.TensorProto):
            return numpy_helper.to_array(value)
        if attr.name in ("value_float", "value_floats"):
            return np.asarray(value, dtype=np.float32)
        if attr.name in ("value_int", "value_ints"):
            return np.asarray(value, dtype=np.int64)
    raise refuse(node, "this form of Constant is not supported")


def _fold(node, constants) -> list[np.ndarray]:
    """Evaluate a node whose inputs are all constant, with onnx's reference evaluator."""
    if node.op_type == "Constant":
        return [_constant_value(node)]
    from onnx.reference import ReferenceEvaluator

    try:
        return ReferenceEvaluator(node).run(None, {n: constants[n] for n in node.input if n})
    except Exception as exc:
        raise refuse(node, f"its constant inputs could not be evaluated ({exc})") from exc


def _fold_ahead(nodes, constants) -> None:
    """Evaluate every node computed from constants alone, before the walk: recognizing a
    decomposed op needs its constants (an ε cast to float, axes) before the walk reaches them."""
    for node in nodes:
        if all(name in constants for name in node.input if name) and node.op_type not in RANDOM_OPS:
            try:
                values = _fold(node, constants)
            except UnsupportedOpError:
                continue  # the walker reports it if the node matters
            for name, value in zip(node.output, values):
                constants[name] = np.asarray(value)


def _input_signature(graph) -> tuple[str, tuple[int, ...], np.dtype, int | None]:
    # Before IR version 4 every initializer was also listed as a graph input: those are constants.
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        names = ", ".join(repr(i.name) for i in inputs)
        raise UnsupportedOpError(
            f"the model has {len(inputs)} inputs ({names}); onnxtopo analyzes models with exactly one input"
        )
    value = inputs[0]
    tensor_type = value.type.tensor_type
    if not value.type.HasField("tensor_type") or not tensor_type.HasField("shape"):
        raise BadModelError(f"input {value.name!r} has no tensor shape; re-export with a declared input shape")
    dims = tensor_type.shape.dim
    if len(dims) < 2:
        raise BadModelError(
            f"input {value.name!r} has rank {len(dims)}; onnxtopo expects a batch axis then the sample's axes"
        )
    sample = []
    for axis, d in enumerate(dims[1:], start=1):
        if not d.HasField("dim_value") or d.dim_value <= 0:
            raise BadModelError(
                f"input {value.name!r} has a symbolic size {d.dim_param or '?'} at axis {axis}; "
                "re-export the model with a fixed input size (only the batch axis may be dynamic)"
            )
        sample.append(d.dim_value)
    batch = dims[0].dim_value if dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None
    if batch not in (None, 1):
        raise BadModelError(
            f"input {value.name!r} has a fixed batch size of {batch}; re-export with a dynamic batch axis or batch 1"
        )
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)
    return value.name, tuple(sample), np.dtype(dtype), batch


def _check_broadcast(node, index: np.ndarray, others: dict):
    """Operands that are not the neuron (constants, run-time values) must not enlarge it."""
    for name in node.input:
        if name in others:
            shape = np.shape(others[name])
            try:
                grown = np.broadcast_shapes(index.shape, shape) != index.shape
            except ValueError:
                grown = True
            if grown:
                raise refuse(node, f"its operand {name!r} of shape {shape} changes the "
                                   f"activation's shape (batch, {', '.join(map(str, index.shape[1:]))})")
            if len(shape) == index.ndim and shape[0] != 1:
                raise refuse(node, f"its operand {name!r} of shape {shape} holds one value per "
                                   "sample of a fixed batch", "onnxtopo needs operands shared by every sample")


def build_plan(model: onnx.ModelProto, options: PlanOptions = PlanOptions(), *, walk_batch: int | None = None) -> Plan:
    """Walk a checked, normalized model (see ``model.load_model``) into a Plan.

    The walk follows ``walk_batch`` samples (default 2, or the model's fixed batch). Where layout
    ops move or merge the batch axis, the walk is repeated with 3 samples: the samples'
    arrangement must not depend on the batch size (a reshape can look sample-preserving for
    one batch size only)."""
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    options = replace(options, opset=opset)
    input_name, sample_shape, dtype, batch = _input_signature(graph)
    walk_batch = walk_batch or (WALK_BATCH if batch is None else batch)
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}

    def fresh(layer):
        _check_size(layer.node or "(input)", layer.shape)
        ids = np.arange(layer.size, dtype=np.int64).reshape(layer.shape) + layer.offset
        return np.stack([ids + b * SAMPLE_STRIDE for b in range(walk_batch)])

    value_types = _value_types(model)
    nodes = _nodes_between(graph, input_name, options, constants)
    _fold_ahead(nodes, constants)
    decomposed = DecomposedOps(nodes, {name: len(dims) for name, (_, dims) in value_types.items() if dims is not None})
    layers: list[Layer] = []
    steps: list[EdgeStep] = []
    scales: dict[int, np.ndarray] = {}
    placed: dict[str, np.ndarray] = {}
    # Run-time values that are not neurons: everything computed from an integer input before its
    # first floating-point tensor, or before --start. Their elements are -1, as constants'.
    runtime: set[str] = set()
    if options.start in (None, input_name) and dtype.kind == "f":
        layers.append(Layer(0, input_name, sample_shape, 0))
        placed[input_name] = fresh(layers[0])
    else:
        runtime.add(input_name)
        placed[input_name] = np.full((walk_batch, *sample_shape), -1, dtype=np.int64)
    blocked: dict[str, tuple] = {}  # tensors downstream of an op without a rule: (node, reason)
    consumers = Counter(name for node in graph.node for name in node.input)
    # Tensors that are an edge-making op's output before any nonlinearity, each reached through
    # single-consumer moves and constant affine maps only: tensor -> the layer they make.
    pre_activation: dict[str, int] = {}

    def new_layer(node, shape, restored):
        last = layers[-1]
        layer = Layer(len(layers), node.output[0], tuple(shape), last.offset + last.size, node.name, node.op_type)
        layers.append(layer)
        placed[node.output[0]] = restored(fresh(layer))
        pre_activation[node.output[0]] = layer.index
        return layer

    def add_step(node, rule, layer, tensor, ids):
        vertices = ids[0].ravel().copy()
        steps.append(EdgeStep(node.name, node.op_type, rule, layer.index, tensor, vertices))

    def folds(tensor) -> int | None:
        """The layer whose edges an affine map of ``tensor`` scales, if it folds (section 2b)."""
        return pre_activation.get(tensor) if consumers[tensor] == 1 else None

    def first_layer(node, name):
        shape = _sample_shape(node, name, value_types)
        layers.append(Layer(0, name, shape, 0, node.name, node.op_type))
        placed[name] = fresh(layers[0])
        runtime.discard(name)

    for original in nodes:
        node = decomposed.substitute(original, constants)
        if node is None:
            continue
        try:
            _check_deterministic(node)
            data = [n for n in node.input if n and n not in constants]
            if not data:
                if not all(name in constants for name in node.output if name):  # not folded ahead
                    for name, value in zip(node.output, _fold(node, constants)):
                        constants[name] = np.asarray(value)
                continue
            if all(n in runtime for n in data):
                for name in filter(None, node.output):
                    runtime.add(name)
                    placed[name] = np.full((walk_batch, *_sample_shape(node, name, value_types)), -1, dtype=np.int64)
                    floating = value_types.get(name, (np.dtype(object), None))[0].kind == "f"
                    if not layers and (name == options.start or (options.start is None and floating)):
                        first_layer(node, name)
                continue
            reads_runtime = any(n in runtime for n in data)
            if reads_runtime:
                data = _neuron_operands(node, data, runtime)
            kind = _kind(node, data, placed)
            if reads_runtime and kind == "affine":
                kind = "elementwise"  # a run-time factor (a mask): diagonal, but not a constant to fold
            blocker = next((blocked[n] for n in data if n in blocked), None)
            if blocker is None:
                reason = _why_unhandled(node, kind, data, placed)
                if reason:
                    blocker = (node, reason)
            if blocker is not None:
                if kind in ("edges", "operands"):
                    raise _unsupported(*blocker)
                blocked.update({n: blocker for n in node.output if n})
                continue
            # Ops other than layout ops see each operand batch first (a batch axis merged into
            # the leading axis, as attention exports write (batch × heads, ...), is split out),
            # and give their output back in the operand's layout.
            free = kind in ("layout", "shape")  # these read any layout as it is
            view, layout = ({}, FIRST) if free else _batch_first_views(node, {n: placed[n] for n in data}, walk_batch)
            if layout != FIRST and kind in ("edges", "operands"):
                if layout.axis == placed[data[0]].ndim - 1 and node.op_type != "Gemm":  # its rule knows
                    raise refuse(node, "its input holds the samples along its last axis, which the op mixes",
                                 "keep the batch axis apart")
                _check_axes_from_the_end(node, constants, options.opset)

            def restored(ids, layout=layout, node=node):
                out = _restore(ids, layout)
                if out is None:
                    raise refuse(node, "its input holds the samples along a merged or moved axis that its "
                                       "output does not keep", "onnxtopo needs the batch axis kept apart")
                return out

            index = placed[data[0]] if free else view[data[0]]
            if kind == "edges":
                _check_finite(node, constants)
                rule = EDGE_RULES[node.op_type](node, index.shape[1:], constants, options)
                copied = rule.copied_inputs()
                if copied is None:
                    add_step(node, rule, new_layer(node, rule.out_shape,
                                                   lambda ids, rule=rule, layout=layout:
                                                       restored(ids, rule.output_layout(layout))),
                             data[0], index)
                else:  # the op only copies neurons: they keep their vertices
                    flat = index.reshape(len(index), -1)
                    placed[node.output[0]] = restored(np.where(copied >= 0, flat[:, copied], -1).reshape(
                        len(index), *rule.out_shape))
            elif kind == "operands":
                _check_finite(node, constants)
                rules = OPERAND_RULES[node.op_type](node, data, [view[n].shape[1:] for n in data],
                                                    constants, options)
                if node.op_type in ELEMENTWISE_COMBINE:
                    _check_broadcast(node, np.broadcast_to(0, (len(index), *rules[0].out_shape)), constants)
                    _check_distinct_operands(node, [view[n] for n in data])
                else:
                    _check_disjoint_operands(node, [view[n] for n in data])
                layer = new_layer(node, rules[0].out_shape, restored)
                for tensor, rule in zip(data, rules, strict=True):
                    add_step(node, rule, layer, tensor, view[tensor])
            elif kind == "shape":
                start, end = attribute(node, "start", 0), attribute(node, "end", None)
                constants[node.output[0]] = np.array(placed[data[0]].shape, dtype=np.int64)[start:end]
            elif kind == "layout":
                operands = [placed.get(n) if n and n not in constants else None for n in node.input]
                try:
                    moved = LAYOUT_OPS[node.op_type](node, operands, constants)
                except ValueError as exc:  # numpy refusing the layout: it does not fit the tensor
                    raise refuse(node, f"its layout does not fit its input ({exc})") from None
                outputs = moved if isinstance(moved, list) else [moved]
                for name, ids in zip(node.output, outputs):
                    if name:
                        _check_samples_kept_apart(node, ids, walk_batch)
                        placed[name] = ids
                target = folds(data[0])
                if node.op_type in MOVES and target is not None:
                    pre_activation[node.output[0]] = target
            else:
                if node.op_type != "BatchNormalization":
                    _check_broadcast(node, placed[data[0]], {n: constants[n] for n in node.input if n in constants})
                    _check_broadcast(node, placed[data[0]], {n: placed[n][:1] for n in node.input if n in runtime})
                placed[node.output[0]] = placed[data[0]]
                scale = None
                if kind == "affine":  # its handler checks its constants' shapes
                    _check_finite(node, constants)
                    if layout != FIRST and node.op_type == "BatchNormalization":
                        raise refuse(node, "its input holds the samples along a moved or merged axis, and its "
                                           "channel axis is counted from the front", "keep the batch axis first")
                    scale = AFFINE_OPS[node.op_type](node, data[0], index.shape[1:], constants)
                target = folds(data[0])
                if scale is not None and target is not None:
                    if np.any(scale != 1):
                        layer = layers[target]
                        factors = scales.setdefault(target, np.ones(layer.size))
                        factors[index[0].ravel() - layer.offset] *= np.broadcast_to(scale, index.shape[1:]).ravel()
                    pre_activation[node.output[0]] = target
                elif node.op_type in IDENTITIES and target is not None:
                    pre_activation[node.output[0]] = target
        except MemoryError:
            raise ResourceLimitError(
                f"node {node.name or '(unnamed)'!r} ({node.op_type}): planning it needs more memory than is available"
            ) from None

    if not layers:
        raise UnsupportedOpError(
            f"no floating-point tensor is computed from the {dtype} input {input_name!r}; onnxtopo needs one as its "
            "first layer" if options.start is None else f"tensor {options.start!r} (--start) is not computed")
    heads = set()
    while options.stop is None and len(steps) > 1 and steps[-1].op_type in OUTPUT_HEADS:
        head = steps.pop()
        layers.pop()
        scales.pop(head.target, None)
        heads.add(f"{head.node or '(unnamed)'} ({head.op_type})")
    if not steps:
        raise UnsupportedOpError(
            "the model has no edge-making op (Gemm, MatMul, Conv, pooling, ...) reachable from its input"
        )
    ignored = sorted({f"{n.name or '(unnamed)'} ({n.op_type})" for n, _ in blocked.values()} | heads)
    read = {t for step in steps for t in (step.input_tensor, *step.rule.reads)}
    layouts = {t: layout for t in sorted(read) for layout in [_layout_of(placed[t], walk_batch)] if layout != FIRST}
    if layouts and batch is None and walk_batch == WALK_BATCH:
        again = build_plan(model, options, walk_batch=WALK_BATCH + 1).layouts
        if again != layouts:
            moved = next(t for t in layouts if again.get(t) != layouts[t])
            raise UnsupportedOpError(f"the samples' arrangement in tensor {moved!r} depends on the batch size (its "
                                     "layout ops reshape the batch axis together with others); onnxtopo needs "
                                     "each sample's elements in the same places for every batch size")
    return Plan(model, input_name, sample_shape, dtype, batch, layers, steps, ignored, options, scales, layouts)


def _value_types(model) -> dict[str, tuple[np.dtype, tuple | None]]:
    """Element type and shape (None where unknown, a string for a symbolic size) of each tensor
    that shape inference or the graph declares."""
    out = {}
    graph = model.graph
    for value in [*graph.input, *graph.value_info, *graph.output]:
        tensor_type = value.type.tensor_type
        if not value.type.HasField("tensor_type") or not tensor_type.elem_type:
            continue
        dims = None
        if tensor_type.HasField("shape"):
            dims = tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tensor_type.shape.dim)
        out[value.name] = (np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type)), dims)
    return out


def _sample_shape(node, name, value_types) -> tuple[int, ...]:
    """The per-sample shape of a run-time tensor onnxtopo does not follow neuron by neuron."""
    dims = value_types.get(name, (None, None))[1]
    if not dims or any(not isinstance(d, int) or d <= 0 for d in dims[1:]):
        raise refuse(node, f"the shape of its output {name!r} is not known before running the model "
                           f"({'unknown' if dims is None else dims})",
                     "re-export the model with fixed input sizes")
    return tuple(dims[1:])


#: Ops whose output does not vary smoothly with a neuron: a layer after them has no φ.
PIECEWISE_CONSTANT = ("ArgMax", "ArgMin", "Round", "Floor", "Ceil", "Sign", "Equal", "Greater", "Less",
                      "GreaterOrEqual", "LessOrEqual", "Not", "And", "Or", "Xor", "IsNaN", "IsInf", "NonZero",
                      "OneHot", "Hardmax", "QuantizeLinear", "DynamicQuantizeLinear", "BitShift")


def _casts_to_float(node) -> bool:
    to = attribute(node, "to")
    return to is not None and np.dtype(onnx.helper.tensor_dtype_to_np_dtype(to)).kind == "f"


RANDOM_OPS = ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli")


def _check_deterministic(node) -> None:
    if node.op_type in RANDOM_OPS:
        raise refuse(node, "it draws random numbers, so the induced graph would change from run to run",
                     "export the model for inference, without random ops")


def _neuron_operands(node, data, runtime) -> list[str]:
    """The operands carrying neurons of a node that also reads run-time values that are not
    neurons (from an integer input or before --start). Such a value enters like a constant when
    the op is elementwise (a bias, a mask) or when a rule reads its values (attention's MatMul);
    otherwise the op is refused."""
    neurons = [n for n in data if n not in runtime]
    if node.op_type in ELEMENTWISE_COMBINE and len(neurons) == 1:
        return neurons
    if node.op_type in OPERAND_RULES or node.op_type in LAYOUT_OPS:
        return data  # rules read them as values; their elements (-1) make no vertex
    raise refuse(node, "it combines neurons with a value computed at run time before the first layer "
                       "(from an integer input, or before --start), which onnxtopo cannot treat as a weight",
                 "choose another --start")


def _nodes_between(graph, input_name: str, options: PlanOptions, constants) -> list:
    """The nodes to walk: all of them, or those between --start and --stop."""
    produced = {name: node for node in graph.node for name in node.output if name}
    for option, name in (("--start", options.start), ("--stop", options.stop)):
        if name is not None and name != input_name and name not in produced:
            what = "a constant" if name in constants else "not a tensor of the model"
            raise UnsupportedOpError(f"{option} {name!r} is {what}; name a tensor computed by the model "
                                     "(`onnxtopo inspect` lists the layers' tensors)")
    if options.stop is None or options.stop == input_name:
        if options.stop == input_name:
            raise UnsupportedOpError(f"--stop {input_name!r} is the model input: nothing would be analyzed")
        return list(graph.node)
    needed, frontier = set(), [options.stop]
    while frontier:  # the nodes --stop depends on
        node = produced.get(frontier.pop())
        if node is not None and id(node) not in needed:
            needed.add(id(node))
            frontier.extend(n for n in node.input if n)
    return [node for node in graph.node if id(node) in needed]


def _check_finite(node, constants) -> None:
    """Weights must be finite: an infinite one would give edges without a φ (inf · 0)."""
    for name in node.input:
        value = constants.get(name)
        if value is not None and value.dtype.kind == "f" and not np.isfinite(value).all():
            raise BadModelError(f"node {node.name or '(unnamed)'!r} ({node.op_type}) has infinite or NaN "
                                f"weights in {name!r}")


def _check_size(where: str, shape) -> None:
    """Refuse tensors too large to plan (a corrupt or hostile dimension) before allocating them."""
    size = math.prod(int(n) for n in shape)
    if size > MAX_TENSOR_ELEMENTS:
        raise ResourceLimitError(
            f"{where}: a tensor of shape {tuple(shape)} has {size:,} elements per sample; onnxtopo plans "
            f"tensors of at most {MAX_TENSOR_ELEMENTS:,}"
        )


def _kind(node, data, placed) -> str | None:
    """How the walker treats a node with activation inputs ``data``."""
    op = node.op_type
    if len(data) > 1 and op in ELEMENTWISE_COMBINE and _same_neurons([placed.get(n) for n in data]):
        return "elementwise"  # x · sigmoid(x): a function of one neuron (design notes 2b)
    if len(data) > 1 and op in OPERAND_RULES:
        return "operands"
    if op in EDGE_RULES:
        return "edges"
    if op == "Shape":
        return "shape"
    if op in LAYOUT_OPS:
        return "layout"
    if len(data) == 1 and op in AFFINE_OPS:
        return "affine"
    if op in ELEMENTWISE_OPS:
        return "elementwise"
    return None


def _same_neurons(operands) -> bool:
    """Whether every operand carries exactly the same neuron at every element."""
    if any(op is None for op in operands):
        return False
    try:
        ids = np.broadcast_arrays(*operands)
    except ValueError:
        return False
    return all(np.array_equal(ids[0], other) for other in ids[1:])


def _why_unhandled(node, kind, data, placed) -> str:
    """Why the walker cannot follow a node with activation inputs, or '' when it can."""
    untracked = [n for n in data if n not in placed]
    if untracked:
        return f"it reads {untracked[0]!r}, which is not a tensor onnxtopo follows"
    if node.op_type in PIECEWISE_CONSTANT or (node.op_type == "Cast" and not _casts_to_float(node)):
        return "its output is piecewise constant in its input (no derivative, so no edge weight)"
    if kind is None:
        return "onnxtopo has no rule for this op type"
    if kind == "elementwise" and len(data) != 1 and node.op_type not in ELEMENTWISE_COMBINE:
        return f"it combines {len(data)} activation tensors, which onnxtopo does not support"
    if kind == "layout" and node.op_type != "Concat" and data != [node.input[0]]:
        late = next(n for n in data if n != node.input[0])
        return (f"its input {late!r}, which sets how it moves the data, is computed at run time "
                "(re-export the model with static shapes)")
    return ""  # edge rules check their operands themselves, with messages of their own


def _check_distinct_operands(node, operands):
    """Refuse a sum in which one neuron would reach the same output twice (parallel edges)."""
    rank = max(op.ndim for op in operands)  # align sample axes to the right, batch axis first
    aligned = [op.reshape(op.shape[0], *[1] * (rank - op.ndim), *op.shape[1:]) for op in operands]
    ids = np.stack(np.broadcast_arrays(*aligned)).reshape(len(operands), -1)
    ids = np.sort(ids, axis=0)
    if ((ids[1:] == ids[:-1]) & (ids[1:] >= 0)).any():
        raise refuse(node, "it adds a neuron to itself (the same vertex in two operands)",
                     "onnxtopo's graphs have at most one edge between two neurons")


def _check_disjoint_operands(node, operands):
    """Refuse an op whose operands share a neuron (x @ x.T): its edges would run in parallel."""
    sets = [np.unique(op[0][op[0] >= 0]) for op in operands]
    for i, a in enumerate(sets):
        for b in sets[i + 1:]:
            if np.intersect1d(a, b, assume_unique=True).size:
                raise refuse(node, "two of its operands carry the same neuron",
                             "onnxtopo's graphs have at most one edge between two neurons")


def _unsupported(node, reason: str) -> UnsupportedOpError:
    before = next((n for n in node.input if n), None)
    hint = (f"; to analyze the network up to it, pass --stop {before!r} (API: stop={before!r}), or start after it "
            "with --start" if before else "")
    return UnsupportedOpError(
        f"node {node.name or '(unnamed)'!r} (op type {node.op_type}) feeds the network's layers but "
        f"{reason}{hint}. Supported op types: {', '.join(supported_ops())}"
    )


FIRST = BatchLayout(0, 1, 1)


def _check_samples_kept_apart(node, moved: np.ndarray, walk_batch: int):
    """A layout op may move the batch axis or merge it with others (the ops after it see the
    samples apart again, see ``batch_first``), never drop, copy or mix samples."""
    layout = batch_layout(moved) if moved.ndim else None
    if layout is None or moved.shape[layout.axis] != layout.outer * walk_batch * layout.inner:
        raise refuse(node, "it mixes elements of different samples", "keep the batch axis apart")


def batch_first(index: np.ndarray, layout: BatchLayout, batch: int) -> np.ndarray:
    """An array (ids, or values at run time) of the given layout with the samples first: the
    batch axis is split out of its axis and moved to the front. With the batch axis first
    already, as is; otherwise the sample's rank is the tensor's (its axis keeps outer × inner)."""
    if layout == FIRST and index.shape[0] == batch:
        return index
    axis, outer, inner = layout
    split = index.reshape(*index.shape[:axis], outer, batch, inner, *index.shape[axis + 1:])
    return np.moveaxis(split, axis + 1, 0).reshape(batch, *index.shape[:axis], outer * inner, *index.shape[axis + 1:])


def _restore(index: np.ndarray, layout: BatchLayout) -> np.ndarray:
    """The inverse of ``batch_first``: an op's output ids in the layout of its operand."""
    if layout == FIRST:
        return index
    axis, outer, inner = layout
    batch = index.shape[0]
    if index.ndim < axis + 2 or index.shape[axis + 1] != outer * inner:
        return None
    split = index.reshape(batch, *index.shape[1:axis + 1], outer, inner, *index.shape[axis + 2:])
    moved = np.moveaxis(split, 0, axis + 1)
    return moved.reshape(*index.shape[1:axis + 1], outer * batch * inner, *index.shape[axis + 2:])


def _layout_of(index: np.ndarray, walk_batch: int) -> BatchLayout | None:
    layout = batch_layout(index) if index.ndim else None
    if layout == FIRST and index.shape[0] != walk_batch:  # a single sample without its axis
        layout = BatchLayout(0, 1, index.shape[0])
    return layout


def _batch_first_views(node, operands: dict, walk_batch: int) -> tuple[dict, BatchLayout]:
    """Each operand's id array with the samples first (``batch_first``), and their layout, which
    must be the same for all (the op's output gets it back)."""
    views, layouts = {}, set()
    for name, index in operands.items():
        layout = _layout_of(index, walk_batch)
        if layout is None:
            raise refuse(node, f"its operand {name!r} mixes samples", "keep the batch axis apart")
        views[name] = batch_first(index, layout, walk_batch)
        layouts.add(layout)
    if len(layouts) > 1:
        raise refuse(node, "its operands hold their samples along different axes",
                     "onnxtopo needs every operand's batch axis in the same place")
    return views, layouts.pop()


def _check_axes_from_the_end(node, constants, opset) -> None:
    """Rules count an op's axes with the batch axis first; on a tensor whose leading axis merges
    the batch with another, a non-negative axis would count differently, so only axes counted
    from the end are accepted there."""
    axes = [attribute(node, name) for name in ("axis", "axes")]
    if axes[0] is None and node.op_type in ("Softmax", "LogSoftmax") and (opset or 0) < 13:
        axes.append(1)  # their default axis before opset 13
    if node.op_type.startswith("Reduce") and len(node.input) > 1 and node.input[1] in constants:
        axes.append(constants[node.input[1]])
    if any(a is not None and (np.asarray(a) >= 0).any() for a in axes):
        raise refuse(node, "its input holds the samples along a moved or merged axis and its axes are "
                           "counted from the front", "onnxtopo follows such an op when its axes are negative")


