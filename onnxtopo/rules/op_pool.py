"""Pooling: edges from the inputs of each output's window, channel by channel.

* MaxPool, GlobalMaxPool, rule ``window`` (the reference's, default): an edge of weight 1 from
  every input in ``v``'s window. Rule ``argmax``: only from the input that attains the maximum,
  ties going to the lowest flat index.
* AveragePool, GlobalAveragePool: an edge from every input in the window, of weight
  1 / (number of elements averaged), as onnxruntime counts them (``count_include_pad``).

Padding makes no vertex and no edge.
"""

from __future__ import annotations

import numpy as np

from . import EdgePattern, EdgeRule, attribute, edge_rule, refuse
from .windows import window_attributes, window_inputs

MAXPOOL_RULES = ("window", "argmax")


class WindowPoolRule(EdgeRule):
    """Channels pooled independently over sliding windows (``windows``: flat spatial inputs)."""

    global_pool = False

    def __init__(self, node, in_shape, constants, options):
        super().__init__(node, in_shape, constants, options)
        if len(node.output) > 1 and node.output[1]:
            raise refuse(node, "its Indices output is not supported", "export the pooling without indices")
        spatial = tuple(in_shape[1:])
        if not spatial:
            raise refuse(node, f"its input has per-sample shape {in_shape}, expected (C, spatial...)")
        if self.global_pool:  # one window covering the whole input
            self.kernel, out_spatial = spatial, [1] * len(spatial)
            self.strides, self.dilations = [1] * len(spatial), [1] * len(spatial)
            self.begin, self.end = [0] * len(spatial), [0] * len(spatial)
        else:
            kernel = attribute(node, "kernel_shape")
            if kernel is None or len(kernel) != len(spatial):
                raise refuse(node, f"kernel_shape {kernel} does not fit per-sample input shape {in_shape}")
            self.kernel = tuple(kernel)
            self.strides, self.dilations, self.begin, self.end, out_spatial = window_attributes(
                node, spatial, self.kernel, ceil_mode=bool(attribute(node, "ceil_mode", 0)))
        self.out_shape = (in_shape[0], *out_spatial)
        self.windows, self.valid = window_inputs(spatial, out_spatial, self.kernel, self.strides,
                                                 self.dilations, self.begin)
        self.outer_size = in_shape[0]  # parts are channels, pooled independently
        self.edges_per_outer = int(self.valid.sum())

    def window_weights(self) -> np.ndarray:
        """w_{u->v} for every (output position, kernel offset) of the windows."""
        return np.ones(self.windows.shape)

    def build_pattern(self, part: slice) -> EdgePattern:
        n_in = int(np.prod(self.in_shape[1:]))
        n_out = self.windows.shape[0]
        c = np.arange(self.outer_size)[part][:, None, None]
        shape = (c.shape[0], *self.windows.shape)
        keep = np.broadcast_to(self.valid, shape)
        src = c * n_in + self.windows[None]
        dst = c * n_out + np.arange(n_out)[None, :, None]
        return EdgePattern(src=src[keep].astype(np.int64), dst=np.broadcast_to(dst, shape)[keep].astype(np.int64),
                           weight=np.broadcast_to(self.window_weights(), shape)[keep])


@edge_rule("MaxPool")
class MaxPoolRule(WindowPoolRule):
    # A neuron seen twice in one window (after reflect padding) is still one input of the max.
    repeats_combine = "max"

    def __init__(self, node, in_shape, constants, options):
        super().__init__(node, in_shape, constants, options)
        self.rule_name = options.maxpool_rule
        if self.rule_name not in MAXPOOL_RULES:
            raise ValueError(f"maxpool_rule must be one of {MAXPOOL_RULES}, got {self.rule_name!r}")

    def edge_values(self, h: np.ndarray, pattern: EdgePattern | None = None,
                    context: dict | None = None) -> np.ndarray:
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


@edge_rule("AveragePool")
class AveragePoolRule(WindowPoolRule):
    rule_name = "average"

    def window_weights(self) -> np.ndarray:
        if self.global_pool or not attribute(self.node, "count_include_pad", 0):
            count = self.valid.sum(axis=1, keepdims=True)
        else:
            # Padding counts, but not window positions beyond it (ceil_mode), as onnxruntime does.
            count = np.ones((1, 1), dtype=np.int64)
            for i_len, o_len, k_len, s, d, b, e in zip(self.in_shape[1:], self.out_shape[1:], self.kernel,
                                                       self.strides, self.dilations, self.begin, self.end):
                pos = np.arange(o_len)[:, None] * s - b + np.arange(k_len)[None, :] * d
                inside = (pos >= -b) & (pos < i_len + e)
                count = (count[:, None, :, None] * inside[None, :, None, :]).reshape(count.shape[0] * o_len, -1)
            count = count.sum(axis=1, keepdims=True)
        return np.broadcast_to(1.0 / np.maximum(count, 1), self.windows.shape)


@edge_rule("GlobalMaxPool")
class GlobalMaxPoolRule(MaxPoolRule):
    global_pool = True


@edge_rule("GlobalAveragePool")
class GlobalAveragePoolRule(AveragePoolRule):
    global_pool = True
