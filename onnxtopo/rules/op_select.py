"""Select ops: some elements of a tensor, or copies of them, so every vertex keeps its id.

Like the layout ops (op_layout), these handlers apply the op to the arrays of vertex ids and
make no layer and no edge. What they select must be known when the model is planned: indices,
starts, ends, repeats and shapes are constants.

* Slice (attributes in opset 1, inputs since opset 10: negative steps, negative and clamped
  indices) and Split (sizes as attribute or input, ``num_outputs`` with a smaller last chunk, or
  equal parts) keep a part of the vertices;
* Gather, GatherElements and GatherND with constant indices pick vertices, possibly the same one
  several times;
* Tile and Expand copy vertices: a neuron copied to several elements stays one vertex, so an
  edge-making op reading several copies draws one edge from it, whose w·h sums over the copies.

None of them may select along the batch axis. (A Gather of a constant table at indices computed
from the model's input is an embedding lookup, not a selection of neurons: the walker deals with
it before any handler here.)
"""

from __future__ import annotations

import math

import numpy as np

from . import attribute, batch_axis, layout_op, refuse
from .op_layout import check_size, constant_array, constant_operand, sample_axis

#: Larger than any batch (and the "to the end" of exporters writing int32): a slice of the batch
#: axis must keep every sample at every batch size.
ANY_BATCH = 2**31 - 1


def _clamped_slice(start: int, end: int, step: int, n: int) -> slice:
    """The Python slice of ONNX Slice's ``start:end:step`` on an axis of size ``n`` (its clamping
    rules, which differ from Python's for negative steps)."""
    start += n if start < 0 else 0
    end += n if end < 0 else 0
    if step > 0:
        start, end = min(max(start, 0), n), min(max(end, 0), n)
    else:
        start, end = min(max(start, 0), n - 1), min(max(end, -1), n - 1)
    return slice(start, None if end < 0 else end, step)


def _keeps_every_sample(start: int, end: int, step: int, batch: int) -> bool:
    # The walk's batch is 1 only for a model of fixed batch 1; otherwise the batch is dynamic.
    sizes = (1,) if batch == 1 else (batch, ANY_BATCH)
    return all(_clamped_slice(start, end, step, n) == slice(0, n, 1) for n in sizes)


@layout_op("Slice")
def slice_(node, operands, constants):
    index = operands[0]
    if attribute(node, "starts") is not None:  # opset 1
        starts, ends, axes = attribute(node, "starts"), attribute(node, "ends"), attribute(node, "axes")
        steps = None
    else:
        starts = constant_operand(node, constants, 1, "starts input")
        ends = constant_operand(node, constants, 2, "ends input")
        axes = constant_operand(node, constants, 3, "axes input")
        steps = constant_operand(node, constants, 4, "steps input")
    if starts is None or ends is None:
        raise refuse(node, "it has no starts or ends")
    axes = list(range(len(starts))) if axes is None else list(axes)
    steps = [1] * len(starts) if steps is None else steps
    rank = index.ndim
    if not len(starts) == len(ends) == len(axes) == len(steps) or any(not -rank <= a < rank for a in axes):
        raise refuse(node, f"its starts {starts}, ends {ends}, axes {axes} and steps {steps} do not fit a "
                           f"tensor of rank {rank}")
    axes = [a % rank for a in axes]
    if len(set(axes)) != len(axes) or 0 in steps:
        raise refuse(node, f"its axes {axes} repeat an axis or its steps {steps} hold a 0")
    window = [slice(None)] * rank
    batch = batch_axis(index)
    for start, end, axis, step in zip(starts, ends, axes, steps):
        if axis == batch:
            if not _keeps_every_sample(start, end, step, index.shape[batch]):
                raise refuse(node, f"it slices the batch axis ({start}:{end}:{step})",
                             "onnxtopo needs the batch axis first and untouched")
            continue
        window[axis] = _clamped_slice(start, end, step, index.shape[axis])
    return index[tuple(window)]


@layout_op("Split")
def split(node, operands, constants):
    index = operands[0]
    axis = sample_axis(node, attribute(node, "axis", 0), index)
    n, count = index.shape[axis], len(node.output)
    sizes = constant_operand(node, constants, 1, "split input")  # an input since opset 13
    if sizes is None:
        sizes = attribute(node, "split")
    if sizes is None:
        chunks = attribute(node, "num_outputs")  # opset 18: the last chunk may be smaller
        if chunks is None and n % count:
            raise refuse(node, f"its axis of size {n} does not split evenly into {count} outputs")
        size = -(-n // count)
        sizes = [size] * (count - 1) + [n - size * (count - 1)]
        if chunks not in (None, count) or sizes[-1] < 0:
            raise refuse(node, f"its axis of size {n} does not split into {chunks} chunks of {size}")
    if len(sizes) != count or min(sizes) < 0 or sum(sizes) != n:
        raise refuse(node, f"its split sizes {list(sizes)} do not cut an axis of size {n} into {count} outputs")
    return np.split(index, np.cumsum(sizes)[:-1], axis=axis)


def _indices(node, constants, extent: int) -> np.ndarray:
    """The node's constant indices, checked to lie in [-extent, extent)."""
    indices = constant_array(node, constants, 1, "indices input")
    if indices is None:
        raise refuse(node, "it has no indices")
    if indices.size and (indices.min() < -extent or indices.max() >= extent):
        raise refuse(node, f"its indices range over [{indices.min()}, {indices.max()}], outside an axis of "
                           f"size {extent}")
    return indices


def _check_batch_indices(node, index, indices):
    """Indices that carry the batch axis must hold one row per sample of a fixed batch."""
    if indices.ndim == 0 or indices.shape[0] != index.shape[0]:
        raise refuse(node, f"its constant indices of shape {indices.shape} do not hold one row per sample",
                     "onnxtopo needs the same selection in every sample (a model of fixed batch 1, or "
                     "a Gather on a sample axis)")


@layout_op("Gather")
def gather(node, operands, constants):
    index = operands[0]
    axis = sample_axis(node, attribute(node, "axis", 0), index)
    indices = _indices(node, constants, index.shape[axis])
    per_sample = [1 if a == batch_axis(index) else n for a, n in enumerate(index.shape)]
    check_size(node, per_sample[:axis] + list(indices.shape) + per_sample[axis + 1:])
    return np.take(index, indices, axis=axis)


@layout_op("GatherElements")
def gather_elements(node, operands, constants):
    index = operands[0]
    axis = sample_axis(node, attribute(node, "axis", 0), index)
    indices = _indices(node, constants, index.shape[axis])
    if indices.ndim != index.ndim or any(k > n for a, (k, n) in enumerate(zip(indices.shape, index.shape))
                                         if a != axis):
        raise refuse(node, f"its indices of shape {indices.shape} do not fit its input of shape {index.shape}")
    _check_batch_indices(node, index, indices)
    check_size(node, indices.shape[1:])
    # Off the axis, output element i reads input element i: the input's corner the indices cover.
    corner = index[tuple(slice(None) if a == axis else slice(0, k) for a, k in enumerate(indices.shape))]
    return np.take_along_axis(corner, indices, axis=axis)


@layout_op("GatherND")
def gather_nd(node, operands, constants):
    index = operands[0]
    batch_dims = attribute(node, "batch_dims", 0)
    indices = constant_array(node, constants, 1, "indices input")
    if batch_dims < 1:
        raise refuse(node, "its indices pick samples (batch_dims = 0)",
                     "onnxtopo needs the same selection in every sample")
    depth = indices.shape[-1] if indices.ndim else 0
    if not batch_dims < indices.ndim or not 1 <= depth <= index.ndim - batch_dims \
            or indices.shape[:batch_dims] != index.shape[:batch_dims]:
        raise refuse(node, f"its indices of shape {indices.shape} (batch_dims {batch_dims}) do not fit its input "
                           f"of shape {index.shape}")
    _check_batch_indices(node, index, indices)
    extents = np.array(index.shape[batch_dims:batch_dims + depth])
    if indices.size and ((indices < -extents).any() or (indices >= extents).any()):
        raise refuse(node, f"its indices fall outside the axes of sizes {extents.tolist()} they index")
    rest = index.shape[batch_dims + depth:]
    check_size(node, indices.shape[1:-1] + rest)
    groups = math.prod(index.shape[:batch_dims])
    data = index.reshape(groups, *index.shape[batch_dims:])
    coordinates = np.moveaxis(indices.reshape(groups, -1, depth), -1, 0)
    picked = data[(np.arange(groups)[:, None], *coordinates)]
    return picked.reshape(*indices.shape[:-1], *rest)


@layout_op("Tile")
def tile(node, operands, constants):
    index = operands[0]
    repeats = constant_operand(node, constants, 1, "repeats input")
    if repeats is None or len(repeats) != index.ndim or min(repeats) < 0:
        raise refuse(node, f"its repeats {repeats} do not fit a tensor of rank {index.ndim}")
    batch = batch_axis(index)
    if repeats[batch] != 1:
        raise refuse(node, f"it repeats the batch axis {repeats[batch]} times", "onnxtopo needs every sample apart")
    check_size(node, [n * r for axis, (n, r) in enumerate(zip(index.shape, repeats)) if axis != batch])
    return np.tile(index, repeats)


@layout_op("Expand")
def expand(node, operands, constants):
    index = operands[0]
    shape = constant_operand(node, constants, 1, "shape input")
    if shape is None or len(shape) > index.ndim:
        raise refuse(node, f"its shape {shape} adds axes in front of the batch axis",
                     "onnxtopo needs the batch axis first")
    try:
        out = np.broadcast_shapes(index.shape, tuple(shape))  # ONNX's broadcasting is numpy's
    except ValueError:
        raise refuse(node, f"its shape {shape} does not broadcast with its input's {index.shape}") from None
    if out[0] != index.shape[0]:
        raise refuse(node, f"it copies samples (shape {shape})", "onnxtopo needs every sample apart")
    check_size(node, out[1:])
    return np.broadcast_to(index, out).copy()
