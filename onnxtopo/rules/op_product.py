"""Products of two activations: Mul, Div and MatMul, a new layer.

* Mul y = a ⊙ b and Div y = a / b (squeeze-excitation gates, gated units; broadcasting
  included): an edge from each operand's element to every output it enters, with
  ∂y_v/∂a_u · a_u = y_v (for Div's divisor −y_v), so φ = |y_v| for both operands.
* MatMul of two activations (attention's Q·Kᵀ and softmax(...)·V), leading axes broadcast:
  y_ij = Σ_k A_ik B_kj gives A_ik -> y_ij and B_kj -> y_ij, both with φ = |A_ik · B_kj|
  (the contraction rule of op_einsum).

A product of a neuron with a function of itself (x · sigmoid(x)) is elementwise: the walker keeps
the vertex. Mul or Div by a constant is a constant affine map (op_elementwise), MatMul with a
constant operand a dense layer (op_gemm). The operands must have the same per-sample rank: with
the batch axis in front of each, ONNX would line up a shorter operand's batch axis with a sample
axis of the other, mixing samples. For the same reason each MatMul operand must be a stack of
matrices (per-sample rank 2 or more): one of per-sample rank 1 is a matrix whose rows are samples.
"""

from __future__ import annotations

import numpy as np

from . import EdgePattern, operand_rule, refuse
from .op_einsum import ContractionRule, contraction
from .op_sum import OperandRule, broadcast_shape, check_same_rank


class ProductRule(OperandRule):
    """Edges from one operand of Mul or Div to the outputs it enters: signed value ±y_v."""

    def __init__(self, node, in_shape, out_shape, sign: float):
        super().__init__(node, in_shape, out_shape, sign)
        self.rule_name = "product" if node.op_type == "Mul" else "quotient"
        self.reads = (node.output[0],)

    def edge_values(self, h: np.ndarray, pattern: EdgePattern | None = None,
                    context: dict | None = None) -> np.ndarray:
        p = self.pattern if pattern is None else pattern
        return p.weight * context[self.reads[0]][p.dst]


@operand_rule("Mul", "Div")
def product_rules(node, names, operand_shapes, constants, options) -> list[ProductRule]:
    out_shape = broadcast_shape(node, operand_shapes)
    signs = [1.0, -1.0 if node.op_type == "Div" else 1.0]
    return [ProductRule(node, shape, out_shape, sign) for shape, sign in zip(operand_shapes, signs, strict=True)]


@operand_rule("MatMul")
def matmul_rules(node, names, operand_shapes, constants, options) -> list[ContractionRule]:
    a, b = (tuple(shape) for shape in operand_shapes)
    if len(a) < 2 or len(b) < 2:
        raise refuse(node, f"its operands have per-sample shapes {a} and {b}: with the batch axis in front, an "
                           "operand of per-sample rank below 2 is a matrix whose rows are samples, and the "
                           "product would mix samples", "multiply stacks of matrices (Unsqueeze the vectors)")
    check_same_rank(node, [a, b])
    if a[-1] != b[-2]:
        raise refuse(node, f"its operands of per-sample shapes {a} and {b} cannot be multiplied")
    lead = list(range(len(a) - 3, -1, -1))
    spec = contraction(node, [lead + ["m", "k"], lead + ["k", "n"]], [a, b], lead + ["m", "n"])
    return [ContractionRule(node, spec, i, shape, list(names)) for i, shape in enumerate((a, b))]
