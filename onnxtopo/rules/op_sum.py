"""Add, Sub and Sum of activation tensors (residual connections): a new layer.

Each output neuron gets an edge from the neuron of each operand it adds, w = 1 (−1 for Sub's
second operand), so φ = |h_u|. An operand broadcast over several outputs sends an edge to each.
The walker makes one edge step per operand into the same layer; this rule is one operand's.
"""

from __future__ import annotations

import numpy as np

from . import EdgePattern, EdgeRule, operand_rule, refuse


class OperandRule(EdgeRule):
    """Edges from one operand of a sum to the outputs it is added to."""

    rule_name = "sum"

    def __init__(self, node, in_shape, out_shape, sign: float):
        super().__init__(node, in_shape, {}, None)
        if len(in_shape) > len(out_shape):
            raise refuse(node, f"operand of shape {in_shape} does not broadcast to {out_shape}")
        self.out_shape = tuple(out_shape)
        self.sign = sign
        self.outer_size = 1
        self.edges_per_outer = int(np.prod(out_shape))

    def build_pattern(self, part: slice) -> EdgePattern:
        positions = np.arange(int(np.prod(self.in_shape)), dtype=np.int64).reshape(self.in_shape)
        src = np.broadcast_to(positions, self.out_shape).ravel().copy()
        return EdgePattern(src=src, dst=np.arange(src.size, dtype=np.int64), weight=np.full(src.size, self.sign))


def check_same_rank(node, operand_shapes) -> None:
    """Activation operands of different ranks are refused: ONNX would line up the batch axis of
    one with a sample axis of another."""
    if len({len(shape) for shape in operand_shapes}) > 1:
        raise refuse(node, f"its operands have per-sample shapes {list(map(tuple, operand_shapes))} of different "
                           "ranks: ONNX would line up the batch axis of one with a sample axis of another",
                     "give every operand the same rank (Unsqueeze the smaller ones)")


def broadcast_shape(node, operand_shapes) -> tuple[int, ...]:
    """The per-sample shape activation operands of one rank broadcast to, or a refusal naming them."""
    check_same_rank(node, operand_shapes)
    try:
        return tuple(np.broadcast_shapes(*operand_shapes))
    except ValueError:
        raise refuse(node, f"its operands of shapes {list(operand_shapes)} do not broadcast together") from None


@operand_rule("Add", "Sub", "Sum")
def sum_rules(node, names, operand_shapes, constants, options) -> list[OperandRule]:
    """One rule per activation operand of a sum node; shapes are per sample. A constant operand
    (a bias) adds no edge."""
    out_shape = broadcast_shape(node, operand_shapes)
    signs = {name: -1.0 if node.op_type == "Sub" and i == 1 else 1.0 for i, name in enumerate(node.input)}
    return [OperandRule(node, shape, out_shape, signs[name]) for name, shape in zip(names, operand_shapes)]
