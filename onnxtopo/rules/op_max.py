"""Max, Min and Mean of several activations, ReduceMax and ReduceMin: a new layer.

* Max and Min of activation tensors (broadcasting included), ReduceMax and ReduceMin over some
  axes (``axes``, ``keepdims``, ``noop_with_empty_axes`` as ReduceSum reads them) follow the
  MaxPool rule in force: ``window`` (default), an edge of weight 1 from every element the output
  is the maximum (minimum) of, φ = |h_u|; ``argmax``, only from the element attaining it. Ties go
  to the lowest operand index for Max and Min (a constant operand counts: when it attains the
  extremum, the output has no edge), to the lowest flat index for ReduceMax and ReduceMin.
* Mean of n operands: w = 1/n from each activation operand (constants count in n, add no edge).

With one activation operand and the others constant, Max and Min (Relu is Max(x, 0)) are
elementwise, and Mean is a constant affine map of scale 1/n: none makes a layer. As for
ReduceSum, a reduction over the batch axis (also the default, every axis) is refused, and one
that reduces nothing (axes of length 1 only) makes no layer.
"""

from __future__ import annotations

import numpy as np

from . import ELEMENTWISE_OPS, EdgePattern, affine_op, edge_rule, operand_rule, refuse
from .op_elementwise import per_sample
from .op_reduce import ReduceRule
from .op_sum import OperandRule, broadcast_shape

ELEMENTWISE_OPS.update({"Max", "Min"})


@affine_op("Mean")
def mean_scale(node, operand, in_shape, constants):
    return np.full((), 1.0 / len(node.input))


class MeanRule(OperandRule):
    rule_name = "mean"


class ExtremumOperandRule(OperandRule):
    """Edges from one operand of Max or Min to every output it competes for."""

    # a neuron in several elements competing for one output is still one input of the max
    repeats_combine = "max"

    def __init__(self, node, in_shape, out_shape, position: int, competitors, maxpool_rule: str):
        """``competitors``: per input of the node, (activation name, per-sample shape) or its
        constant value; ``position`` is this operand's input index."""
        super().__init__(node, in_shape, out_shape, 1.0)
        self.rule_name = maxpool_rule
        self.position = position
        self.competitors = competitors
        if maxpool_rule == "argmax":
            self.reads = tuple(dict.fromkeys(c[0] for c in competitors if isinstance(c, tuple)))

    def edge_values(self, h: np.ndarray, pattern: EdgePattern | None = None,
                    context: dict | None = None) -> np.ndarray:
        p = self.pattern if pattern is None else pattern
        values = super().edge_values(h, p)
        if self.rule_name == "argmax":
            values = np.where(self._winners(context)[p.dst] == self.position, values, 0.0)
        return values

    def _winners(self, context) -> np.ndarray:
        """Per output (flat), the input index attaining the extremum, the lowest on ties."""
        # the walker checked that constants broadcast to the output without enlarging it
        values = [np.reshape(context[c[0]], c[1]) if isinstance(c, tuple) else per_sample(c, len(self.out_shape))
                  for c in self.competitors]
        stacked = np.stack([np.broadcast_to(v, self.out_shape) for v in values])
        pick = np.argmax if self.node.op_type == "Max" else np.argmin  # both take the first extremum
        return pick(stacked, axis=0).ravel()


@operand_rule("Max", "Min", "Mean")
def extremum_rules(node, names, operand_shapes, constants, options) -> list[OperandRule]:
    out_shape = broadcast_shape(node, operand_shapes)
    shapes = dict(zip(names, map(tuple, operand_shapes)))
    positions = [i for i, name in enumerate(node.input) if name in shapes]
    if node.op_type == "Mean":
        return [MeanRule(node, shapes[node.input[i]], out_shape, 1.0 / len(node.input)) for i in positions]
    competitors = [(name, shapes[name]) if name in shapes else constants[name] for name in node.input]
    return [ExtremumOperandRule(node, shapes[node.input[i]], out_shape, i, competitors, options.maxpool_rule)
            for i in positions]


@edge_rule("ReduceMax", "ReduceMin")
class ReduceExtremumRule(ReduceRule):
    """ReduceSum's edges (each input element into the output it is reduced into), weight 1, under
    the MaxPool rule."""

    repeats_combine = "max"

    def __init__(self, node, in_shape, constants, options):
        super().__init__(node, in_shape, constants, options)
        if self.count == 0:
            raise refuse(node, f"it reduces an empty axis of its input of per-sample shape {in_shape}")
        self.rule_name = options.maxpool_rule

    def edge_values(self, h: np.ndarray, pattern: EdgePattern | None = None,
                    context: dict | None = None) -> np.ndarray:
        p = self.pattern if pattern is None else pattern
        values = super().edge_values(h, p)
        if self.rule_name == "argmax":
            values = np.where(self._attaining(h)[p.src], values, 0.0)
        return values

    def _attaining(self, h: np.ndarray) -> np.ndarray:
        """Per input element (flat), whether it is the one attaining its group's extremum."""
        kept = [a for a in range(len(self.in_shape)) if a not in self.reduced]
        # one row per group; along a row the reduced axes run row-major, so flat indices ascend
        # and the first extremum np.argmax (np.argmin) takes is the lowest flat index
        groups = np.arange(h.size).reshape(self.in_shape).transpose(kept + self.reduced).reshape(-1, self.count)
        pick = np.argmax if self.node.op_type == "ReduceMax" else np.argmin
        best = pick(h[groups], axis=1)
        attaining = np.zeros(h.size, dtype=bool)
        attaining[groups[np.arange(len(groups)), best]] = True
        return attaining
