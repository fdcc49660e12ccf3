"""Conv: an edge from every input neuron a kernel element multiplies to the output neuron.

w_{u->v} is the kernel element that multiplies input ``u`` in the window of output ``v``; each
output channel only sees the input channels of its group. Padding makes no vertex and no edge.
Any number of spatial axes, strides, pads, auto_pad, dilations and groups (depthwise too).
"""

from __future__ import annotations

import numpy as np

from . import EdgePattern, EdgeRule, attribute, edge_rule, refuse
from .windows import window_attributes, window_inputs


@edge_rule("Conv")
class ConvRule(EdgeRule):
    rule_name = "conv"

    def __init__(self, node, in_shape, constants, options):
        super().__init__(node, in_shape, constants, options)
        if len(node.input) < 2 or node.input[1] not in constants:
            raise refuse(node, "its kernel is not a constant", "onnxtopo needs trained, fixed weights")
        self.kernel = np.asarray(constants[node.input[1]], dtype=np.float64)
        if self.kernel.ndim < 3:
            raise refuse(node, f"its kernel has shape {self.kernel.shape}; expected (M, C/group, k1, ...)")
        if len(in_shape) < 2:
            raise refuse(node, f"its input has per-sample shape {in_shape}, expected (C, spatial...)")
        channels, spatial = in_shape[0], tuple(in_shape[1:])
        out_channels, group_channels = self.kernel.shape[:2]
        kernel_shape = tuple(self.kernel.shape[2:])
        self.group = int(attribute(node, "group", 1))
        if len(kernel_shape) != len(spatial):
            raise refuse(node, f"kernel {self.kernel.shape} does not fit input {in_shape}")
        if channels != group_channels * self.group or out_channels % self.group:
            raise refuse(
                node,
                f"{channels} input channels, {out_channels} output channels and group={self.group} "
                f"do not fit kernel {self.kernel.shape}",
            )
        declared = attribute(node, "kernel_shape")
        if declared is not None and tuple(declared) != kernel_shape:
            raise refuse(node, f"kernel_shape {tuple(declared)} differs from the kernel {kernel_shape}")
        self.strides, self.dilations, self.begin, _, out_spatial = window_attributes(node, spatial, kernel_shape)
        self.out_shape = (out_channels, *out_spatial)
        self.windows, self.valid = window_inputs(spatial, out_spatial, kernel_shape, self.strides,
                                                 self.dilations, self.begin)
        self.outer_size = out_channels
        self.edges_per_outer = group_channels * int(self.valid.sum())

    def build_pattern(self, part: slice) -> EdgePattern:
        out_channels, group_channels = self.kernel.shape[:2]
        n_out, n_k = self.windows.shape
        m = np.arange(out_channels)[part]
        first_channel = (m // (out_channels // self.group)) * group_channels
        channel = first_channel[:, None] + np.arange(group_channels)[None, :]  # (m, Cg)
        # Axes: (output channel, output position, input channel in group, kernel offset).
        src = channel[:, None, :, None] * int(np.prod(self.in_shape[1:])) + self.windows[None, :, None, :]
        dst = m[:, None, None, None] * n_out + np.arange(n_out)[None, :, None, None]
        weight = self.kernel[part].reshape(len(m), 1, group_channels, n_k)
        shape = (len(m), n_out, group_channels, n_k)
        keep = np.broadcast_to(self.valid[None, :, None, :], shape)
        return EdgePattern(
            src=src[keep].astype(np.int64),
            dst=np.broadcast_to(dst, shape)[keep].astype(np.int64),
            weight=np.broadcast_to(weight, shape)[keep],
        )
