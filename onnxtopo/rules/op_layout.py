"""Layout ops: the same scalars in another arrangement, so every vertex keeps its id.

Each handler applies the op to integer arrays holding, for every element of the op's inputs,
the vertex id it stands for (with the batch axis in front), and returns the array for the op's
output. Concat joins vertices of several tensors; Pad adds constants (id -1), not vertices.
"""

from __future__ import annotations

import math

import numpy as np

from . import attribute, layout_op, refuse


MAX_PADDED_ELEMENTS = 1 << 28  # per sample


def _constant_operand(node, constants, position: int, what: str):
    if len(node.input) <= position or not node.input[position]:
        return None
    name = node.input[position]
    if name not in constants:
        raise refuse(
            node,
            f"its {what} ({name!r}) is computed at run time",
            "export the model with static shapes (or constant-fold it) so the layout is known",
        )
    return np.asarray(constants[name]).astype(np.int64).ravel().tolist()


def _axes(node, constants):
    axes = attribute(node, "axes")
    return _constant_operand(node, constants, 1, "axes input") if axes is None else list(axes)


@layout_op("Flatten")
def flatten(node, operands, constants):
    index = operands[0]
    axis = attribute(node, "axis", 1) % (index.ndim + 1)
    return index.reshape(int(np.prod(index.shape[:axis])), -1)


@layout_op("Reshape")
def reshape(node, operands, constants):
    index = operands[0]
    shape = _constant_operand(node, constants, 1, "target shape")
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
        axes = [i for i, n in enumerate(index.shape) if n == 1 and i > 0]
    axes = [a % index.ndim for a in axes]
    if any(a == 0 or index.shape[a] != 1 for a in axes):
        raise refuse(node, f"it squeezes axes {axes} of a tensor of shape (batch, {', '.join(map(str, index.shape[1:]))})",
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


@layout_op("Concat")
def concat(node, operands, constants):
    if any(op is None for op in operands):
        raise refuse(node, "it concatenates constants with activations")
    axis = attribute(node, "axis")
    rank = operands[0].ndim
    if axis is None or not -rank <= axis < rank or any(op.ndim != rank for op in operands):
        raise refuse(node, f"axis {axis} does not fit operands of rank {rank}")
    try:
        return np.concatenate(operands, axis=axis)
    except ValueError:
        raise refuse(node, f"its operands of shapes {[op.shape for op in operands]} cannot be joined") from None


@layout_op("Pad")
def pad(node, operands, constants):
    index = operands[0]
    mode = attribute(node, "mode", "constant")
    pads = attribute(node, "pads")
    if pads is None:
        pads = _constant_operand(node, constants, 1, "pads input")
    axes = _constant_operand(node, constants, 3, "axes input")
    axes = list(range(index.ndim)) if axes is None else [a % index.ndim for a in axes]
    widths = [(0, 0)] * index.ndim
    for i, axis in enumerate(axes):
        widths[axis] = (pads[i], pads[i + len(axes)])
    if min(min(w) for w in widths) < 0:
        raise refuse(node, "negative pads (cropping) are not supported")
    padded = [n + sum(w) for n, w in zip(index.shape, widths)]
    if widths[0] != (0, 0) or math.prod(padded[1:]) > MAX_PADDED_ELEMENTS:
        raise refuse(node, f"its pads {pads} would make a tensor of shape {tuple(padded)}")
    if mode == "constant":
        # Padding holds a constant, not a neuron: it makes no vertex and no edge.
        return np.pad(index, widths, mode="constant", constant_values=-1)
    if mode in ("reflect", "edge"):
        return np.pad(index, widths, mode=mode)
    raise refuse(node, f"Pad mode {mode!r} is not supported")
