"""Op rules: how each ONNX op moves neurons or connects them.

One module per op family (``op_*.py``), each registering its handlers by op type, in the spirit of
``onnx/reference/ops``. Every rule follows one principle (design notes, section 2b): an edge
u -> v weighs φ = |∂v/∂u · h_u| at the input's own activations, which is |w·h| on linear ops.
There are five kinds of handler:

* ``EdgeRule`` subclasses make a new layer of vertices and the edges into it from the op's one
  activation operand (Gemm, Conv, Softmax, ...);
* operand rules make a new layer fed by several activation operands, one ``EdgeRule`` per
  operand (residual sums, products of activations, attention's MatMul, ...);
* layout handlers move or select the same vertices (Flatten, Reshape, Slice, ...);
* elementwise op types keep each vertex where it is (Relu, a bias Add, ...);
* affine op types (a constant scale, BatchNormalization) keep each vertex too, and when they
  directly follow an edge-making op they scale its edges (section 2b's fold).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

from ..errors import UnsupportedOpError

EDGE_RULES: dict[str, Callable[..., EdgeRule]] = {}  # rule classes, or factories choosing one
OPERAND_RULES: dict[str, Callable[..., list[EdgeRule]]] = {}
LAYOUT_OPS: dict[str, Callable] = {}
ELEMENTWISE_OPS: set[str] = set()
AFFINE_OPS: dict[str, Callable] = {}


def edge_rule(*op_types: str):
    """Decorator registering an EdgeRule class (or a factory returning one) for op types."""

    def register(cls):
        for op in op_types:
            EDGE_RULES[op] = cls
        return cls

    return register


def operand_rule(*op_types: str):
    """Decorator registering a factory of the rules of an op with several activation operands.

    The factory gets ``(node, names, shapes, constants, options)``: the names of the node's
    activation operands and their per-sample shapes, in input order. It returns one EdgeRule per
    operand, all with the same ``out_shape``; the walker makes one edge step per operand into
    one new layer.
    """

    def register(fn):
        for op in op_types:
            OPERAND_RULES[op] = fn
        return fn

    return register


def affine_op(op_type: str):
    """Function decorator registering a constant per-element affine map y = s·x + t.

    The handler gets the node, the name of its activation operand, the operand's per-sample
    shape and the constants, and returns s broadcastable to that shape, or None when the node is
    not such a map (its activation is in a place only a nonlinear function allows: c / x, say).
    """

    def register(fn):
        AFFINE_OPS[op_type] = fn
        return fn

    return register


def layout_op(op_type: str):
    """Function decorator registering how an op moves vertex ids.

    The handler gets the node, its operands (for each input, the array of vertex ids of an
    activation, with the batch axis first, or None for a constant or absent input) and the
    constants, and returns the array of vertex ids of the output (or a list of arrays, one per
    output, for ops with several outputs); -1 marks an element that is a constant (padding),
    not a neuron.
    """

    def register(fn):
        LAYOUT_OPS[op_type] = fn
        return fn

    return register


#: Id shift of the planner's second sample: more than any count of vertices. It tells, in any
#: arrangement of an id array, which axis is the batch axis.
SAMPLE_STRIDE = 1 << 40


class BatchLayout(NamedTuple):
    """Where the samples are in an id array: axis ``axis`` has size outer × batch × inner and
    position p holds sample (p // inner) % batch. Batch first is (0, 1, 1). Layout ops may move
    the batch axis (attention's heads often pass through a Transpose that puts it second) or
    merge it with others ((batch × heads, ...) or (tokens × batch, ...))."""

    axis: int
    outer: int
    inner: int


def batch_layout(index: np.ndarray) -> BatchLayout | None:
    """The BatchLayout of an id array (see ``layout_op``), or None when its samples are mixed.
    With a single sample (a model of fixed batch 1) nothing tells the batch axis apart: the
    first axis of size 1 is taken, else the leading axis, as the outer factor (0, 1, n)."""
    sample = np.where(index >= 0, index // SAMPLE_STRIDE, -1)
    if (sample < 0).all() or index.ndim == 0:  # constants only: they are shared by every sample
        return BatchLayout(0, 1, 1)
    count = int(sample.max()) + 1
    if count == 1:
        axis = next((axis for axis, n in enumerate(index.shape) if n == 1), None)
        return BatchLayout(0, 1, index.shape[0]) if axis is None else BatchLayout(axis, 1, 1)
    for axis, n in enumerate(index.shape):
        if n % count:
            continue
        line = np.moveaxis(sample, axis, 0).reshape(n, -1).max(axis=1)  # constants (-1) lose to samples
        if not ((sample == line.reshape([-1 if a == axis else 1 for a in range(index.ndim)])) | (sample < 0)).all():
            continue
        inner = int(np.argmax(line != line[0])) if (line != line[0]).any() else n
        if inner and n % (count * inner) == 0:
            pattern = np.arange(count).repeat(inner)
            if (line.reshape(-1, count * inner) == pattern).all():
                return BatchLayout(axis, n // (count * inner), inner)
    return None


def batch_axis(index: np.ndarray) -> int | None:
    """The axis of an id array that holds the samples (merged with others or not), or None when
    the samples are mixed: handlers ask here instead of assuming axis 0."""
    layout = batch_layout(index)
    return None if layout is None else layout.axis


def supported_ops() -> list[str]:
    return sorted(set(EDGE_RULES) | set(OPERAND_RULES) | set(LAYOUT_OPS) | ELEMENTWISE_OPS | set(AFFINE_OPS)
                  | {"Shape"})


#: Patterns of at most this many candidate edges are kept between inputs (24 bytes per edge).
PATTERN_CACHE_EDGES = 1 << 22


@dataclass(frozen=True)
class EdgePattern:
    """The candidate edges of one edge-making op, for one sample.

    ``src`` indexes the op's data input flattened per sample, ``dst`` its output flattened per
    sample, ``weight`` is w_{u->v}. The pattern depends on the model only, never on the input.
    """

    src: np.ndarray
    dst: np.ndarray
    weight: np.ndarray

    def __len__(self) -> int:
        return len(self.src)


class EdgeRule:
    """Base class of the rules of edge-making ops.

    A rule is built once per node from its attributes, constant operands and the per-sample
    shape of its data input; it knows its output shape and its edge pattern. The pattern is
    made of ``outer_size`` parts (output channels, input rows, ...) of ``edges_per_outer``
    candidate edges each, so that it can be counted without being built, and built part by part
    when it is too large to hold at once.
    """

    #: the name shown by ``onnxtopo inspect`` (e.g. ``dense``, ``conv``, ``window``)
    rule_name: str = ""
    #: Tensors besides the data input whose values the edge weights need (the op's output, its
    #: other operands): nonlinear rules evaluate ∂v/∂u at the input's own activations.
    reads: tuple[str, ...] = ()
    #: How the contributions of one neuron reaching an output through several input elements
    #: (after reflect padding, say) combine into one edge: "sum" for linear ops, "max" for max.
    repeats_combine: str = "sum"
    outer_size: int = 0
    edges_per_outer: int = 0

    def __init__(self, node, in_shape: tuple[int, ...], constants: dict[str, np.ndarray], options):
        self.node = node
        self.in_shape = tuple(in_shape)
        self.out_shape: tuple[int, ...] = ()

    @property
    def candidate_count(self) -> int:
        """Number of candidate edges (before the ones with φ = 0 are dropped)."""
        return self.outer_size * self.edges_per_outer

    @cached_property
    def pattern(self) -> EdgePattern:
        """The whole pattern, built once and kept."""
        return self.build_pattern(slice(0, self.outer_size))

    def chunks(self, max_edges: int | None = None):
        """The pattern in pieces of at most ``max_edges`` candidate edges (at least one part).

        A pattern small enough is built once and kept; a larger one is rebuilt part by part each
        time, so that large models do not hold hundreds of megabytes of patterns.
        """
        if max_edges is None or self.candidate_count <= min(max_edges, PATTERN_CACHE_EDGES):
            yield self.pattern
            return
        step = max(1, max_edges // max(1, self.edges_per_outer))
        for start in range(0, self.outer_size, step):
            yield self.build_pattern(slice(start, min(start + step, self.outer_size)))

    #: Optional: ``global_nonzero_edges(h, max_edges, input_vertices, offset, scale)`` yielding
    #: ``nonzero_edges``' blocks already in global vertex ids, constants dropped and the folded
    #: scale applied, for rules whose patterns are too large to keep (ConvRule does, compiled).
    global_nonzero_edges = None
    #: Whether ``global_nonzero_edges`` is used even where the pattern is small enough to keep.
    prefer_global_edges = False
    #: Optional: ``in_place_blocks(h, max_edges, input_vertices, offset, scale)`` yielding the
    #: same edges as ``global_nonzero_edges`` as blocks the forest engine reads in place, never
    #: written out (see ``homology.forest_persistence``; DenseRule does).
    in_place_blocks = None

    def output_layout(self, layout):
        """Where the output holds the samples, given where the data input holds them (see
        ``BatchLayout``): the same place, for every op but a few that move them (Gemm of a
        transposed activation)."""
        return layout

    def copied_inputs(self) -> np.ndarray | None:
        """For an op that only copies neurons (a nearest-neighbour Resize, a sum over axes of
        length 1), the flat input position each output element copies (-1: a constant); the
        walker then makes no layer (design notes 2b). None for an op that mixes neurons."""
        return None

    def build_pattern(self, part: slice) -> EdgePattern:
        """The candidate edges of the parts in ``part``, in pattern order."""
        raise NotImplementedError

    def nonzero_edges(self, h: np.ndarray, max_edges: int | None = None, context: dict | None = None):
        """(src, dst, w·h) of the pattern's edges with w·h ≠ 0, in pattern order, chunk by chunk.

        Rules whose zero products are cheap to skip before building edges (a dense layer after
        a ReLU) override this.
        """
        for pattern in self.chunks(max_edges):
            values = self.edge_values(h, pattern, context)
            nonzero = np.flatnonzero(values)
            yield pattern.src[nonzero], pattern.dst[nonzero], values[nonzero]

    def edge_values(self, h: np.ndarray, pattern: EdgePattern | None = None,
                    context: dict | None = None) -> np.ndarray:
        """Signed ∂v/∂u·h_u (w·h_u on linear ops) for every edge of ``pattern`` (default: the
        whole pattern), given one sample's flat data input ``h`` and, in ``context``, the flat
        values of the tensors named in ``reads``."""
        p = self.pattern if pattern is None else pattern
        return p.weight * h[p.src]


def refuse(node, why: str, what_to_do: str = "") -> UnsupportedOpError:
    name = node.name or "(unnamed)"
    msg = f"node {name!r} ({node.op_type}): {why}"
    if what_to_do:
        msg += f"; {what_to_do}"
    return UnsupportedOpError(msg)


def attribute(node, name: str, default=None):
    """The value of an ONNX node attribute as plain Python/numpy, or ``default``."""
    import onnx.helper

    for a in node.attribute:
        if a.name == name:
            v = onnx.helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


# Importing the op modules fills the registries.
from . import (  # noqa: F401
    op_conv,
    op_einsum,
    op_elementwise,
    op_gemm,
    op_layout,
    op_max,
    op_norm,
    op_normalization,
    op_pool,
    op_product,
    op_reduce,
    op_resize,
    op_select,
    op_softmax,
    op_sum,
)
