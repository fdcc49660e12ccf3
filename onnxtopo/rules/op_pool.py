"""MaxPool: edges from the inputs of each output's window.

Rule ``window`` (the reference's, default): an edge of weight 1 from every input in ``v``'s
window. Rule ``argmax``: only from the input that attains the maximum, ties going to the lowest
flat index. Padding makes no vertex and no edge. Channels are pooled independently.
"""

from __future__ import annotations

import numpy as np

from . import EdgePattern, EdgeRule, attribute, edge_rule, refuse
from .windows import window_attributes, window_inputs

MAXPOOL_RULES = ("window", "argmax")


@edge_rule("MaxPool")
class MaxPoolRule(EdgeRule):
    def __init__(self, node, in_shape, constants, options):
        super().__init__(node, in_shape, constants, options)
        self.rule_name = options.maxpool_rule
        if self.rule_name not in MAXPOOL_RULES:
            raise ValueError(f"maxpool_rule must be one of {MAXPOOL_RULES}, got {self.rule_name!r}")
        if len(node.output) > 1 and node.output[1]:
            raise refuse(node, "its Indices output is not supported", "export MaxPool without indices")
        kernel = attribute(node, "kernel_shape")
        if kernel is None or len(in_shape) != len(kernel) + 1:
            raise refuse(node, f"kernel_shape {kernel} does not fit per-sample input shape {in_shape}")
        self.kernel = tuple(kernel)
        ceil_mode = bool(attribute(node, "ceil_mode", 0))
        self.strides, self.dilations, self.begin, out_spatial = window_attributes(
            node, in_shape[1:], self.kernel, ceil_mode=ceil_mode
        )
        self.out_shape = (in_shape[0], *out_spatial)
        self.windows, self.valid = window_inputs(in_shape[1:], out_spatial, self.kernel, self.strides,
                                                 self.dilations, self.begin)
        self.outer_size = in_shape[0]  # parts are channels, pooled independently
        self.edges_per_outer = int(self.valid.sum())

    def build_pattern(self, part: slice) -> EdgePattern:
        n_in = int(np.prod(self.in_shape[1:]))
        n_out = self.windows.shape[0]
        c = np.arange(self.outer_size)[part][:, None, None]
        shape = (c.shape[0], *self.windows.shape)
        keep = np.broadcast_to(self.valid, shape)
        src = c * n_in + self.windows[None]
        dst = c * n_out + np.arange(n_out)[None, :, None]
        return EdgePattern(src=src[keep].astype(np.int64), dst=np.broadcast_to(dst, shape)[keep].astype(np.int64),
                           weight=np.ones(int(keep.sum())))

    def edge_values(self, h: np.ndarray, pattern: EdgePattern | None = None) -> np.ndarray:
        p = self.pattern if pattern is None else pattern
        values = super().edge_values(h, p)
        if self.rule_name == "argmax":
            values = np.where(p.src == self._argmax_inputs(h)[p.dst], values, 0.0)
        return values

    def _argmax_inputs(self, h: np.ndarray) -> np.ndarray:
        """Per output (flat), the flat input attaining its window's maximum."""
        n_in = int(np.prod(self.in_shape[1:]))
        per_channel = h.reshape(self.outer_size, n_in)
        candidates = np.where(self.valid[None], per_channel[:, np.where(self.valid, self.windows, 0)], -np.inf)
        # np.argmax takes the first maximum; window positions increase along a row, so ties go to
        # the lowest flat index as the definition asks.
        best = np.argmax(candidates, axis=2)  # (channel, output position)
        chosen = np.take_along_axis(self.windows[None], best[..., None], axis=2)[..., 0]
        return (np.arange(self.outer_size)[:, None] * n_in + chosen).ravel()
