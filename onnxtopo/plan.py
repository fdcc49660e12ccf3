"""Stage 2: walk the normalized ONNX graph into a plan of layers and edge rules.

Each tensor of the graph is tracked as an integer array giving, for each of its elements, the
global id of the vertex it stands for. Elementwise ops pass the array on, layout ops move it
(applied to the array itself, so any Reshape/Transpose is followed exactly), and edge-making ops
start a new layer. The walk runs with two samples in the batch axis, the second one's ids shifted
by SAMPLE_STRIDE, which reveals any layout op that would mix samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
import numpy as np
import onnx
from onnx import numpy_helper

from .errors import BadModelError, ResourceLimitError, UnsupportedOpError
from .rules import EDGE_RULES, ELEMENTWISE_OPS, LAYOUT_OPS, EdgeRule, attribute, refuse, supported_ops
from .rules.op_pool import MAXPOOL_RULES
from .rules.op_sum import COMBINE_OPS, operand_rules

WALK_BATCH = 2
MAX_TENSOR_ELEMENTS = 1 << 28  # per sample; AlexNet's largest tensor has 2·10^5
SAMPLE_STRIDE = 1 << 40  # id shift of the walk's second sample; more than any layer count of vertices


@dataclass(frozen=True)
class PlanOptions:
    """Choices that change the graph a model induces."""

    maxpool_rule: str = "window"

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

    @property
    def n_vertices(self) -> int:
        return sum(layer.size for layer in self.layers)

    def describe(self) -> list[dict]:
        """One row per layer, for ``onnxtopo inspect``."""
        rows = [dict(layer=0, node="(input)", op="", rule="", tensor=self.layers[0].tensor,
                     input_shape="", output_shape=self.layers[0].shape, neurons=self.layers[0].size,
                     edges=0)]
        for step in self.steps:
            target = self.layers[step.target]
            rows.append(dict(layer=step.target, node=step.node, op=step.op_type,
                             rule=step.rule.rule_name, tensor=target.tensor,
                             input_shape=step.rule.in_shape,
                             output_shape=target.shape, neurons=target.size,
                             edges=step.candidate_edges))
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


def _input_signature(graph) -> tuple[str, tuple[int, ...], np.dtype, int | None]:
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


def _check_broadcast(node, index: np.ndarray, constants):
    for name in node.input:
        if name in constants:
            shape = np.shape(constants[name])
            try:
                grown = np.broadcast_shapes(index.shape, shape) != index.shape
            except ValueError:
                grown = True
            if grown:
                raise refuse(node, f"its constant operand {name!r} of shape {shape} changes the "
                                   f"activation's shape (batch, {', '.join(map(str, index.shape[1:]))})")


def build_plan(model: onnx.ModelProto, options: PlanOptions = PlanOptions()) -> Plan:
    """Walk a checked, normalized model (see ``model.load_model``) into a Plan."""
    graph = model.graph
    input_name, sample_shape, dtype, batch = _input_signature(graph)
    walk_batch = WALK_BATCH if batch is None else batch
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}

    def fresh(layer):
        _check_size(layer.node or "(input)", layer.shape)
        ids = np.arange(layer.size, dtype=np.int64).reshape(layer.shape) + layer.offset
        return np.stack([ids + b * SAMPLE_STRIDE for b in range(walk_batch)])

    layers = [Layer(0, input_name, sample_shape, 0)]
    steps: list[EdgeStep] = []
    placed = {input_name: fresh(layers[0])}
    blocked: dict[str, tuple] = {}  # tensors downstream of an op without a rule: (node, reason)

    def new_layer(node, shape):
        last = layers[-1]
        layer = Layer(len(layers), node.output[0], tuple(shape), last.offset + last.size, node.name, node.op_type)
        layers.append(layer)
        placed[node.output[0]] = fresh(layer)
        return layer

    def add_step(node, rule, layer, tensor):
        vertices = placed[tensor][0].ravel().copy()
        steps.append(EdgeStep(node.name, node.op_type, rule, layer.index, tensor, vertices))

    for node in graph.node:
        try:
            data = [n for n in node.input if n and n not in constants]
            if not data:
                for name, value in zip(node.output, _fold(node, constants)):
                    constants[name] = np.asarray(value)
                continue
            kind = _kind(node, data)
            blocker = next((blocked[n] for n in data if n in blocked), None)
            if blocker is None:
                reason = _why_unhandled(node, kind, data, placed)
                if reason:
                    blocker = (node, reason)
            if blocker is not None:
                if kind in ("edges", "sum"):
                    raise _unsupported(*blocker)
                blocked.update({n: blocker for n in node.output if n})
                continue
            index = placed[data[0]]
            if kind == "edges":
                _check_finite(node, constants)
                rule = EDGE_RULES[node.op_type](node, index.shape[1:], constants, options)
                add_step(node, rule, new_layer(node, rule.out_shape), data[0])
            elif kind == "sum":
                rules = operand_rules(node, [placed[n].shape[1:] for n in data])
                _check_distinct_operands(node, [placed[n] for n in data])
                layer = new_layer(node, rules[0].out_shape)
                for tensor, rule in zip(data, rules):
                    add_step(node, rule, layer, tensor)
            elif kind == "shape":
                start, end = attribute(node, "start", 0), attribute(node, "end", None)
                constants[node.output[0]] = np.array(index.shape, dtype=np.int64)[start:end]
            elif kind == "layout":
                operands = [placed.get(n) if n and n not in constants else None for n in node.input]
                try:
                    moved = LAYOUT_OPS[node.op_type](node, operands, constants)
                except ValueError as exc:  # numpy refusing the layout: it does not fit the tensor
                    raise refuse(node, f"its layout does not fit its input ({exc})") from None
                _check_samples_kept_apart(node, moved, walk_batch)
                placed[node.output[0]] = moved
            else:
                _check_broadcast(node, index, constants)
                placed[node.output[0]] = index
        except MemoryError:
            raise ResourceLimitError(
                f"node {node.name or '(unnamed)'!r} ({node.op_type}): planning it needs more memory than is available"
            ) from None

    if not steps:
        raise UnsupportedOpError(
            "the model has no edge-making op (Gemm, MatMul, Conv, pooling, ...) reachable from its input"
        )
    ignored = sorted({f"{n.name or '(unnamed)'} ({n.op_type})" for n, _ in blocked.values()})
    return Plan(model, input_name, sample_shape, dtype, batch, layers, steps, ignored, options)


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


def _kind(node, data) -> str | None:
    """How the walker treats a node with activation inputs ``data``."""
    if node.op_type in EDGE_RULES:
        return "edges"
    if node.op_type in COMBINE_OPS and len(data) > 1:
        return "sum"
    if node.op_type == "Shape":
        return "shape"
    if node.op_type in LAYOUT_OPS:
        return "layout"
    if node.op_type in ELEMENTWISE_OPS:
        return "elementwise"
    return None


def _why_unhandled(node, kind, data, placed) -> str:
    """Why the walker cannot follow a node with activation inputs, or '' when it can."""
    untracked = [n for n in data if n not in placed]
    if untracked:
        return f"it reads {untracked[0]!r}, which is not a tensor onnxtopo follows"
    if kind is None:
        return "onnxtopo has no rule for this op type"
    if kind == "elementwise" and len(data) != 1:
        return f"it combines {len(data)} activation tensors, which onnxtopo does not support"
    if kind == "layout" and node.op_type != "Concat" and data != [node.input[0]]:
        return "its data operand is constant while another operand is computed at run time"
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


def _unsupported(node, reason: str) -> UnsupportedOpError:
    return UnsupportedOpError(
        f"node {node.name or '(unnamed)'!r} (op type {node.op_type}) feeds the network's layers but "
        f"{reason}. Supported op types: {', '.join(supported_ops())}"
    )


def _check_samples_kept_apart(node, moved: np.ndarray, walk_batch: int):
    if moved.ndim == 0 or moved.shape[0] != walk_batch:
        raise refuse(node, "it moves the batch axis", "onnxtopo needs the batch axis first and untouched")
    sample = moved.reshape(walk_batch, -1) // SAMPLE_STRIDE
    if not ((sample == np.arange(walk_batch)[:, None]) | (moved.reshape(walk_batch, -1) < 0)).all():
        raise refuse(node, "it mixes elements of different samples", "keep the batch axis first and untouched")
