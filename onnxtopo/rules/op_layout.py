"""Layout ops: the same scalars in another arrangement, so every vertex keeps its id.

Each handler applies the op to an integer array holding, for every element of the op's input,
the vertex position it stands for (with the batch axis in front), and returns the array for the
op's output.
"""

from __future__ import annotations

import numpy as np

from . import attribute, layout_op, refuse


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
def flatten(index, node, constants):
    axis = attribute(node, "axis", 1) % (index.ndim + 1)
    return index.reshape(int(np.prod(index.shape[:axis])), -1)


@layout_op("Reshape")
def reshape(index, node, constants):
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
def transpose(index, node, constants):
    perm = attribute(node, "perm")
    return np.transpose(index, perm)


@layout_op("Squeeze")
def squeeze(index, node, constants):
    axes = _axes(node, constants)
    if axes is None:
        axes = [i for i, n in enumerate(index.shape) if n == 1]
    return np.squeeze(index, axis=tuple(a % index.ndim for a in axes))


@layout_op("Unsqueeze")
def unsqueeze(index, node, constants):
    axes = _axes(node, constants)
    if not axes:
        raise refuse(node, "it has no axes")
    rank = index.ndim + len(axes)
    return np.expand_dims(index, axis=tuple(a % rank for a in axes))
