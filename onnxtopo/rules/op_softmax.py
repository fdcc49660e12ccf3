"""Softmax and LogSoftmax inside the network: a new layer, dense within the softmax's axis.

Every output y_i of a softmax group depends on every input x_j of the group, so the edge
j -> i weighs φ = |∂y_i/∂x_j · x_j| at the input's own values (design notes 2b), with y the
softmax of the group:

* Softmax: ∂y_i/∂x_j = y_i · (δ_ij − y_j);
* LogSoftmax: ∂y_i/∂x_j = δ_ij − y_j.

From opset 13 a group is one line along ``axis`` (default −1). Before opset 13 the input is
coerced to 2-D at ``axis`` (default 1): a group is all trailing axes from ``axis``, flattened.
A softmax over the batch axis mixes samples and is refused. A Softmax or LogSoftmax that makes
the network's last layer turns scores into probabilities and is not analyzed (see ``plan``).
"""

from __future__ import annotations

import math

import numpy as np

from . import attribute, edge_rule, refuse
from .op_normalization import GroupRule


@edge_rule("Softmax", "LogSoftmax")
class SoftmaxRule(GroupRule):
    rule_name = "softmax"

    def __init__(self, node, in_shape, constants, options):
        super().__init__(node, in_shape, constants, options)
        rank = len(in_shape) + 1  # with the batch axis
        legacy = options.opset is not None and options.opset < 13
        axis = int(attribute(node, "axis", 1 if legacy else -1))
        axis = axis + rank if axis < 0 else axis
        if axis == 0:
            raise refuse(node, "its softmax runs over the batch axis, mixing samples",
                         "onnxtopo analyzes each sample on its own")
        if not 0 < axis < rank:
            raise refuse(node, f"its axis {attribute(node, 'axis')} is outside its input's {rank} axes")
        outer = math.prod(in_shape[:axis - 1])
        if legacy:
            self._set_groups(outer, math.prod(in_shape[axis - 1:]), 1, np.ones(math.prod(in_shape)))
        else:
            self._set_groups(outer, in_shape[axis - 1], math.prod(in_shape[axis:]), np.ones(math.prod(in_shape)))
        self.log = node.op_type == "LogSoftmax"

    def derivative(self, x, g, i, j):
        exp = np.exp(x - x.max(axis=1, keepdims=True))
        y = exp / exp.sum(axis=1, keepdims=True)
        jacobian = (i == j) - y[g, j]
        return jacobian if self.log else y[g, i] * jacobian
