"""MaxPool: edges from the inputs of each output's window.

Rule ``window`` (the reference's, default): an edge of weight 1 from every input in ``v``'s
window. Rule ``argmax``: only from the input that attains the maximum, ties going to the lowest
flat index. Padding makes no vertex and no edge. Channels are pooled independently.
"""

from __future__ import annotations

from functools import cached_property

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

    @cached_property
    def windows(self) -> np.ndarray:
        """Candidate inputs of every output, shape (n_outputs, kernel size); -1 marks padding."""
        channels, spatial = self.in_shape[0], self.in_shape[1:]
        sp_in, valid = window_inputs(spatial, self.out_shape[1:], self.kernel, self.strides,
                                     self.dilations, self.begin)
        cand = np.arange(channels)[:, None, None] * int(np.prod(spatial)) + sp_in[None]
        cand = np.where(valid[None], cand, -1)
        return cand.reshape(-1, sp_in.shape[1])

    def build_pattern(self) -> EdgePattern:
        windows = self.windows
        valid = windows >= 0
        dst = np.broadcast_to(np.arange(windows.shape[0])[:, None], windows.shape)
        return EdgePattern(src=windows[valid], dst=dst[valid].astype(np.int64),
                           weight=np.ones(int(valid.sum())))

    def edge_values(self, h: np.ndarray) -> np.ndarray:
        values = super().edge_values(h)
        if self.rule_name == "argmax":
            windows = self.windows
            valid = windows >= 0
            candidates = np.where(valid, h[np.where(valid, windows, 0)], -np.inf)
            # np.argmax takes the first maximum; window positions increase along a row, so ties
            # go to the lowest flat index as the definition asks.
            chosen = np.zeros(windows.shape, dtype=bool)
            chosen[np.arange(windows.shape[0]), np.argmax(candidates, axis=1)] = True
            values = np.where(chosen[valid], values, 0.0)
        return values
