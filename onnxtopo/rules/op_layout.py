"""Layout ops: the same scalars in another arrangement, so every vertex keeps its id.

Each handler applies the op to integer arrays holding, for every element of the op's inputs,
the vertex id it stands for (with the batch axis in front), and returns the array for the op's
output. None of these ops makes a layer or an edge:

* Flatten, Reshape, Transpose, Squeeze, Unsqueeze, DepthToSpace (DCR and CRD modes) and
  SpaceToDepth move vertices;
* Concat joins the vertices of its operands; a constant operand (a vision transformer's class
  token) holds no neuron: its elements are constants (id -1), which make no vertex and no edge;
* Pad adds constants (id -1) in mode ``constant``, and copies of border vertices in modes
  ``reflect``, ``edge`` and ``wrap`` (one vertex in several places); negative pads crop.

A layout op never touches the batch axis: an op that would move, drop, copy or mix samples is
refused.
"""

from __future__ import annotations

import numpy as np

from . import attribute, batch_axis, layout_op, refuse


def constant_array(node, constants, position: int, what: str) -> np.ndarray | None:
    """Input ``position`` of ``node`` as an int64 array (its shape kept), None when absent."""
    if len(node.input) <= position or not node.input[position]:
        return None
    name = node.input[position]
    if name not in constants:
        raise refuse(
            node,
            f"its {what} ({name!r}) is computed at run time",
            "export the model with static shapes (or constant-fold it) so the layout is known",
        )
    return np.asarray(constants[name]).astype(np.int64)


def constant_operand(node, constants, position: int, what: str) -> list[int] | None:
    """Input ``position`` of ``node`` as a flat list of Python ints, None when absent."""
    value = constant_array(node, constants, position, what)
    return None if value is None else value.ravel().tolist()


def sample_axis(node, axis, index: np.ndarray, what: str = "axis") -> int:
    """``axis`` of the id array ``index`` made non-negative; the batch axis and axes out of range
    are refused."""
    rank = index.ndim
    if axis is None or not -rank <= axis < rank:
        raise refuse(node, f"its {what} {axis} does not fit a tensor of rank {rank}")
    axis %= rank
    if axis == batch_axis(index):
        raise refuse(node, f"its {what} is the batch axis", "onnxtopo needs the batch axis untouched")
    return axis


def check_size(node, shape) -> None:
    """Refuse an output of per-sample ``shape`` too large to plan, before allocating it (a tiny
    model can ask Tile or Expand for a huge tensor)."""
    from ..plan import _check_size  # plan imports this package: a module-level import would be circular

    _check_size(f"node {node.name or '(unnamed)'!r} ({node.op_type})", shape)


def _axes(node, constants):
    axes = attribute(node, "axes")
    return constant_operand(node, constants, 1, "axes input") if axes is None else list(axes)


@layout_op("Flatten")
def flatten(node, operands, constants):
    index = operands[0]
    axis = attribute(node, "axis", 1)
    if not -index.ndim <= axis <= index.ndim:
        raise refuse(node, f"its axis {axis} does not fit a tensor of rank {index.ndim}")
    axis = axis + index.ndim if axis < 0 else axis  # axis r is valid here: -1 is r - 1, not r
    return index.reshape(int(np.prod(index.shape[:axis])), -1)


@layout_op("Reshape")
def reshape(node, operands, constants):
    index = operands[0]
    shape = constant_operand(node, constants, 1, "target shape")
    if shape is None:
        raise refuse(node, "it has no target shape")
    if not attribute(node, "allowzero", 0):
        shape = [index.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    try:
        return index.reshape(shape)
    except ValueError:
        raise refuse(node, f"cannot reshape {index.shape} to {tuple(shape)}") from None


@layout_op("Transpose")
def transpose(node, operands, constants):
    index = operands[0]
    perm = attribute(node, "perm")
    if perm is not None and sorted(perm) != list(range(index.ndim)):
        raise refuse(node, f"perm {list(perm)} is not a permutation of the {index.ndim} axes of its input")
    return np.transpose(index, perm)


@layout_op("Squeeze")
def squeeze(node, operands, constants):
    index = operands[0]
    axes = _axes(node, constants)
    if axes is None:
        axes = [i for i, n in enumerate(index.shape) if n == 1 and i != batch_axis(index)]
    if any(not -index.ndim <= a < index.ndim for a in axes):
        raise refuse(node, f"its axes {axes} do not fit a tensor of rank {index.ndim}")
    axes = [a % index.ndim for a in axes]
    batch = batch_axis(index)
    if any(a == batch or index.shape[a] != 1 for a in axes):
        raise refuse(node, f"it squeezes axes {axes} of a tensor of shape {index.shape} (batch axis {batch})",
                     "only sample axes of size 1 can be squeezed")
    return np.squeeze(index, axis=tuple(axes))


@layout_op("Unsqueeze")
def unsqueeze(node, operands, constants):
    index = operands[0]
    axes = _axes(node, constants)
    if not axes:
        raise refuse(node, "it has no axes")
    rank = index.ndim + len(axes)
    return np.expand_dims(index, axis=tuple(a % rank for a in axes))


@layout_op("DepthToSpace")
def depth_to_space(node, operands, constants):
    index = operands[0]
    b = _blocksize(node, index)
    n, c, h, w = index.shape
    if c % (b * b):
        raise refuse(node, f"its {c} channels are not a multiple of blocksize² = {b * b}")
    mode = attribute(node, "mode", "DCR")
    if mode == "DCR":
        blocks = index.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    elif mode == "CRD":
        blocks = index.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    else:
        raise refuse(node, f"DepthToSpace mode {mode!r} is not one of DCR, CRD")
    return blocks.reshape(n, c // (b * b), h * b, w * b)


@layout_op("SpaceToDepth")
def space_to_depth(node, operands, constants):
    index = operands[0]
    b = _blocksize(node, index)
    n, c, h, w = index.shape
    if h % b or w % b:
        raise refuse(node, f"its height {h} and width {w} are not multiples of blocksize {b}")
    blocks = index.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
    return blocks.reshape(n, c * b * b, h // b, w // b)


def _blocksize(node, index) -> int:
    b = attribute(node, "blocksize")
    if index.ndim != 4:
        raise refuse(node, f"its input has rank {index.ndim}; {node.op_type} takes (N, C, H, W) tensors")
    if b is None or b < 1:
        raise refuse(node, f"its blocksize {b} is not a positive integer")
    return b


@layout_op("Concat")
def concat(node, operands, constants):
    activation = next(op for op in operands if op is not None)
    rank = activation.ndim
    axis = sample_axis(node, attribute(node, "axis"), activation)
    batch = batch_axis(activation)
    parts = []
    for name, op in zip(node.input, operands):
        if op is None:
            shape = np.shape(constants[name])
            if len(shape) != rank:
                raise refuse(node, f"its constant operand {name!r} of shape {shape} does not have rank {rank}")
            # Whatever batch size the constant was folded with (an Expand to the walk's batch, or
            # 1), it is the same constant in every sample.
            shape = tuple(activation.shape[batch] if a == batch else n for a, n in enumerate(shape))
            check_size(node, shape)
            op = np.full(shape, -1, dtype=np.int64)
        parts.append(op)
    shapes = [p.shape for p in parts]
    if any(s[:axis] + s[axis + 1:] != shapes[0][:axis] + shapes[0][axis + 1:] for s in shapes):
        raise refuse(node, f"its operands of shapes {shapes} cannot be joined on axis {axis}")
    return np.concatenate(parts, axis=axis)


@layout_op("Pad")
def pad(node, operands, constants):
    index = operands[0]
    rank = index.ndim
    mode = attribute(node, "mode", "constant")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise refuse(node, f"Pad mode {mode!r} is not one of constant, reflect, edge, wrap")
    pads = attribute(node, "pads")  # opsets 2 to 10; an input since opset 11
    if pads is None:
        pads = constant_operand(node, constants, 1, "pads input")
    axes = constant_operand(node, constants, 3, "axes input")  # opset 18
    axes = list(range(rank)) if axes is None else axes
    if pads is None or len(pads) != 2 * len(axes) or any(not -rank <= a < rank for a in axes):
        raise refuse(node, f"its pads {pads} do not fit axes {axes} of a tensor of rank {rank}")
    before, after = [0] * rank, [0] * rank
    for i, axis in enumerate(axes):
        before[axis % rank], after[axis % rank] = pads[i], pads[i + len(axes)]
    batch = batch_axis(index)
    if before[batch] or after[batch]:
        raise refuse(node, f"its pads {pads} pad or crop the batch axis", "onnxtopo needs the batch axis untouched")
    if any(max(-b, 0) + max(-a, 0) > n for n, b, a in zip(index.shape, before, after)):
        raise refuse(node, f"its pads {pads} crop more than the tensor of shape {index.shape[1:]} holds")
    # Negative pads crop first; the padding then extends what is left (as onnxruntime does).
    cropped = index[tuple(slice(max(-b, 0), n - max(-a, 0)) for n, b, a in zip(index.shape, before, after))]
    widths = [(max(b, 0), max(a, 0)) for b, a in zip(before, after)]
    check_size(node, [n + b + a for axis, (n, (b, a)) in enumerate(zip(cropped.shape, widths)) if axis != batch])
    if mode == "constant":
        # Padding holds a constant, not a neuron: it makes no vertex and no edge.
        return np.pad(cropped, widths, mode="constant", constant_values=-1)
    for n, (b, a) in zip(cropped.shape, widths):
        if (b or a) and (n == 0 or (mode == "reflect" and max(b, a) > n - 1)):
            raise refuse(node, f"its {mode} pads {pads} reach beyond the tensor of shape {cropped.shape[1:]}")
    return np.pad(cropped, widths, mode=mode)
