"""ReduceSum and ReduceMean over sample axes: a new layer, each input neuron feeding the one
output it is reduced into.

* ReduceSum: w_{u->v} = 1, so φ = |h_u|;
* ReduceMean: w_{u->v} = 1 / n, with n the number of elements reduced into each output
  (``x.mean(dim=(2, 3))``: n = H·W), so φ = |h_u| / n.

The axes come from the attribute (ReduceSum before opset 13, ReduceMean before 18) or the
constant second input (later opsets), negative axes counting from the end; ``keepdims`` 0 or 1.
No axes means every axis, the batch axis included, unless ``noop_with_empty_axes`` = 1 (then the
op is the identity). A reduction over the batch axis mixes the samples of a batch: refused.
A reduction that reduces nothing (no axes with ``noop_with_empty_axes``, or only axes of length
1) only copies its neurons: it makes no layer (design notes 2b).
"""

from __future__ import annotations

import math

import numpy as np

from . import EdgePattern, EdgeRule, attribute, edge_rule, refuse
from .op_layout import constant_operand


@edge_rule("ReduceSum", "ReduceMean")
class ReduceRule(EdgeRule):
    rule_name = "reduce"

    def __init__(self, node, in_shape, constants, options):
        super().__init__(node, in_shape, constants, options)
        if node.input[0] in constants:
            raise refuse(node, "its data input is a constant while its axes are computed at run time")
        rank = len(in_shape) + 1  # the batch axis first
        axes = attribute(node, "axes")
        if axes is None:
            axes = constant_operand(node, constants, 1, "axes input")
        if not axes:
            if attribute(node, "noop_with_empty_axes", 0):
                axes = []
            else:
                raise refuse(node, "it has no axes, so it reduces every axis, the batch axis included",
                             "give the sample axes to reduce (e.g. axes=[1, 2, 3])")
        if any(not -rank <= a < rank for a in axes):
            raise refuse(node, f"its axes {list(axes)} do not fit a tensor of rank {rank}")
        axes = sorted({a % rank for a in axes})
        if 0 in axes:
            raise refuse(node, "it reduces over the batch axis (axis 0), mixing the samples of a batch",
                         "reduce over the sample axes only")
        self.reduced = [a - 1 for a in axes]  # per-sample axes
        keepdims = attribute(node, "keepdims", 1)
        self.out_shape = tuple(1 if a in self.reduced else n for a, n in enumerate(in_shape)
                               if keepdims or a not in self.reduced)
        self.count = math.prod(in_shape[a] for a in self.reduced)
        self.weight = 1.0 / self.count if node.op_type == "ReduceMean" and self.count else 1.0
        # Parts are input neurons: each has exactly one edge, into the output it is reduced into.
        self.outer_size = math.prod(in_shape)
        self.edges_per_outer = 1

    def copied_inputs(self):
        if self.count != 1:
            return None
        return np.arange(self.outer_size, dtype=np.int64)

    def build_pattern(self, part: slice) -> EdgePattern:
        src = np.arange(self.outer_size, dtype=np.int64)[part]
        position = list(np.unravel_index(src, self.in_shape))
        for a in self.reduced:
            position[a] = np.zeros_like(src)
        # Dropping the reduced axes (keepdims=0) leaves the flat order unchanged.
        kept_shape = tuple(1 if a in self.reduced else n for a, n in enumerate(self.in_shape))
        dst = np.ravel_multi_index(position, kept_shape).astype(np.int64)
        return EdgePattern(src=src, dst=dst, weight=np.full(src.size, self.weight))
