"""Ops that keep each neuron where it is.

Nonlinearities, Dropout and Identity, and arithmetic with a constant operand (a bias Add, a
scale): they change a neuron's value, not its identity, and φ always reads the value a neuron
has where it enters the next edge-making op. The walker checks that constant operands broadcast
without enlarging the activation.
"""

from . import ELEMENTWISE_OPS

ELEMENTWISE_OPS.update(
    {
        # activations
        "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "Elu", "Selu", "Celu", "Softplus",
        "Softsign", "Clip", "HardSigmoid", "HardSwish", "ThresholdedRelu", "Gelu", "Mish",
        "Erf", "Exp", "Abs", "Neg", "Sqrt", "Reciprocal",
        # no-ops at inference
        "Dropout", "Identity",
        # arithmetic with a constant operand (biases, scales, input normalization)
        "Add", "Sub", "Mul", "Div", "Sum",
    }
)
