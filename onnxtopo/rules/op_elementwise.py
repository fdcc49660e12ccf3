"""Ops that keep each neuron where it is.

Nonlinearities, Dropout and Identity change a neuron's value, not its identity: φ always reads
the value a neuron has where it enters the next edge-making op. Arithmetic with a constant
operand (a bias Add, a scale) is a constant affine map: it keeps the vertex too, and right after
an edge-making op its scale multiplies that op's edges (section 2b). The walker checks that
constant operands broadcast without enlarging the activation.
"""

from __future__ import annotations

import numpy as np

from . import ELEMENTWISE_OPS, affine_op

ELEMENTWISE_OPS.update(
    {
        # activations
        "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Elu", "Selu", "Celu", "Softplus",
        "Softsign", "Clip", "HardSigmoid", "HardSwish", "ThresholdedRelu", "Gelu", "Mish",
        "Erf", "Exp", "Log", "Abs", "Neg", "Sqrt", "Reciprocal", "Pow", "Sin", "Cos",
        # no-ops at inference; a Cast between floating-point types (the walker refuses casts
        # of a neuron to integers: no derivative)
        "Dropout", "Identity", "Cast",
    }
)


def per_sample(value: np.ndarray, rank: int) -> np.ndarray:
    """A constant operand as it broadcasts over one sample of a rank-``rank`` activation (its
    batch axis, if it has one, is of size 1: the walker checked it does not enlarge the batch)."""
    value = np.asarray(value, dtype=np.float64)
    return value.reshape(value.shape[1:]) if value.ndim > rank else value


@affine_op("Add")
@affine_op("Sum")
def shift_scale(node, operand, in_shape, constants):
    return np.ones(())


@affine_op("Sub")
def subtract_scale(node, operand, in_shape, constants):
    return np.ones(()) if node.input[0] == operand else -np.ones(())


@affine_op("Mul")
def multiply_scale(node, operand, in_shape, constants):
    others = [per_sample(constants[n], len(in_shape)) for n in node.input if n != operand]
    return np.prod(np.broadcast_arrays(*others), axis=0) if others else np.ones(())


@affine_op("Div")
def divide_scale(node, operand, in_shape, constants):
    if node.input[0] != operand:
        return None  # c / x: a nonlinear function of the neuron
    return 1.0 / per_sample(constants[node.input[1]], len(in_shape))
