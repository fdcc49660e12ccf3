"""Conv and ConvTranspose: an edge from every input neuron a kernel element multiplies to the
output neuron it contributes to.

* Conv: w_{u->v} is the kernel element that multiplies input ``u`` in the window of output ``v``;
  each output channel only sees the input channels of its group.
* ConvTranspose: input (c, i) is spread over the outputs (m, i·stride − pad_begin + k·dilation),
  w_{u->v} = W[c, m mod (M / group), k] for the output channels m of c's group. Along each axis
  the kernel offset k is fixed by i and the output position, so one input reaches one output
  through one kernel element at most.

Padding (and a transposed convolution's cropping) makes no vertex and no edge; the bias adds no
edge. Any number of spatial axes, strides, pads, auto_pad, dilations and groups (depthwise too);
ConvTranspose also output_padding and output_shape.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from . import EdgePattern, EdgeRule, attribute, edge_rule, refuse
from .op_layout import check_size
from .windows import window_attributes, window_inputs


def constant_kernel(node, constants) -> np.ndarray:
    """The kernel W of a convolution, checking that its weights and bias are constants."""
    if len(node.input) < 2 or node.input[1] not in constants:
        raise refuse(node, "its kernel is not a constant", "onnxtopo needs trained, fixed weights")
    if len(node.input) > 2 and node.input[2] and node.input[2] not in constants:
        raise refuse(node, "its bias is computed at run time", "onnxtopo needs constant weights and biases")
    return np.asarray(constants[node.input[1]], dtype=np.float64)


#: Convs with fewer candidate edges stream them from their kept pattern. Measured (same-process
#: A/B, caches flushed between calls): on CCFF's Conv 3→3 3×3 (39k candidates, 43 % of the
#: inputs nonzero) the kept pattern takes 0.17 ms, the windows 0.23 ms (it fits in cache, and
#: three output channels reuse each window little); from about 10⁵ candidates on the windows are
#: as fast or faster (1.1-5× faster from 3·10⁵ on, the more output channels per group the more),
#: and hold no pattern of 24 bytes per candidate.
WINDOW_EDGES_MIN = 1 << 16


@edge_rule("Conv")
class ConvRule(EdgeRule):
    rule_name = "conv"

    def __init__(self, node, in_shape, constants, options):
        super().__init__(node, in_shape, constants, options)
        self.kernel = constant_kernel(node, constants)
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
        self.in_positions, self.kernel_offsets = int(np.prod(spatial)), int(np.prod(kernel_shape))

    def nonzero_edges(self, h, max_edges=None, context=None):
        """As the base class, from one compiled loop per chunk of output channels over the
        windows' nonzero inputs (``_compiled.conv_window_edges``), without building the pattern."""
        from .. import _compiled

        return self.global_nonzero_edges(h, max_edges, _compiled.NO_INDEX, 0, _compiled.NO_SCALE)

    @cached_property
    def _windows(self):
        """The windows as the compiled loops read them: (window_start, window_src, kernel offset,
        output position) per valid (output position, kernel offset) pair, in row-major order
        (input positions and kernel offsets as int32: half the memory the loops read)."""
        positions, offsets = np.nonzero(self.valid)
        return np.searchsorted(positions, np.arange(len(self.valid) + 1)), \
            self.windows[positions, offsets].astype(np.int32), offsets.astype(np.int32), positions

    def nonzero_windows(self, h, first_group: int, stop_group: int, input_vertices):
        """``_compiled.conv_windows`` of groups ``first_group .. stop_group-1`` for activations ``h``,
        sources in global ids through ``input_vertices`` (if not empty)."""
        from .. import _compiled

        window_start, window_src, offsets, _ = self._windows
        return _compiled.conv_windows(h, window_start, window_src, offsets, first_group, stop_group,
                                      self.kernel.shape[1], self.in_positions, self.kernel_offsets, input_vertices)

    @property
    def prefer_global_edges(self) -> bool:
        """Whether edges come from the windows even where the pattern is small enough to keep:
        from ``WINDOW_EDGES_MIN`` candidates on, where the pattern no longer stays in cache."""
        return self.candidate_count >= WINDOW_EDGES_MIN

    def global_nonzero_edges(self, h, max_edges, input_vertices, offset, scale):
        """``nonzero_edges`` in global vertex ids, as ``_compiled.global_edges`` maps them (with
        ``input_vertices`` not empty), in the same loop. Each chunk of output channels reads the
        windows of its groups, listed once for all the chunks that share them."""
        from .. import _compiled

        kernel = self.kernel.reshape(self.kernel.shape[0], -1)
        out_channels, per_group = self.outer_size, self.outer_size // self.group
        step = out_channels if max_edges is None else max(1, max_edges // max(1, self.edges_per_outer))
        groups = windows = None
        for first in range(0, out_channels, step):
            stop = min(first + step, out_channels)
            chunk_groups = (first // per_group, (stop - 1) // per_group + 1)
            if chunk_groups != groups:
                groups, windows = chunk_groups, self.nonzero_windows(h, *chunk_groups, input_vertices)
            yield _compiled.conv_window_edges(kernel, windows, len(self.valid), groups[0], first, stop, per_group,
                                              offset, scale)

    def forest_passes(self, h, scale) -> ConvPasses:
        """The passes ``homology.step_forest`` reduces this step's edges with, for activations ``h``
        (0 where the input is a constant) and the folded ``scale`` of the targets (or empty)."""
        return ConvPasses(self, h, scale)

    def build_pattern(self, part: slice) -> EdgePattern:
        out_channels, group_channels = self.kernel.shape[:2]
        n_out, n_k = self.windows.shape
        m = np.arange(out_channels)[part]
        first_channel = (m // (out_channels // self.group)) * group_channels
        channel = first_channel[:, None] + np.arange(group_channels)[None, :]  # (m, Cg)
        # Axes: (output channel, output position, input channel in group, kernel offset).
        src = channel[:, None, :, None] * self.in_positions + self.windows[None, :, None, :]
        dst = m[:, None, None, None] * n_out + np.arange(n_out)[None, :, None, None]
        weight = self.kernel[part].reshape(len(m), 1, group_channels, n_k)
        shape = (len(m), n_out, group_channels, n_k)
        keep = np.broadcast_to(self.valid[None, :, None, :], shape)
        return EdgePattern(
            src=src[keep].astype(np.int64),
            dst=np.broadcast_to(dst, shape)[keep].astype(np.int64),
            weight=np.broadcast_to(weight, shape)[keep],
        )


class ConvPasses:
    """A convolution's edges read in place by compiled passes (see ``homology.step_forest``).

    Local vertex ids: the flat input positions, then h.size + each flat output position.
    """

    def __init__(self, rule: ConvRule, h: np.ndarray, scale: np.ndarray):
        from .. import _compiled

        self.rule, self.h, self.scale = rule, h, scale
        windows = rule.nonzero_windows(h, 0, rule.group, _compiled.LOCAL_IDS)
        self.loops = (rule.kernel.reshape(rule.kernel.shape[0], -1), windows, h.size, rule.outer_size // rule.group,
                      scale)

    def sample(self, n: int) -> np.ndarray:
        """φ of ``n`` candidate edges drawn uniformly (with a fixed seed: runs repeat exactly)."""
        rule = self.rule
        _, window_src, offsets, positions = rule._windows
        kernel = rule.kernel.reshape(*rule.kernel.shape[:2], -1)
        if not rule.candidate_count:
            return np.zeros(0)
        m, rest = np.divmod(np.random.default_rng(0).integers(0, rule.candidate_count, n), rule.edges_per_outer)
        c, pair = np.divmod(rest, window_src.size)
        channel = (m // (rule.outer_size // rule.group)) * kernel.shape[1] + c
        values = kernel[m, c, offsets[pair]] * self.h[channel * rule.in_positions + window_src[pair]]
        if self.scale.size:
            values *= self.scale[m * len(rule.valid) + positions[pair]]
        return np.abs(values)

    def heavy(self, pivot, capacity, strongest, first_edge):
        from .. import _compiled

        return _compiled.conv_heavy_edges(*self.loops, pivot, capacity, strongest, first_edge)

    def light(self, low, high, label, capacity):
        from .. import _compiled

        return _compiled.conv_light_edges(*self.loops, low, high, label, capacity)


@edge_rule("ConvTranspose")
class ConvTransposeRule(EdgeRule):
    rule_name = "conv-transpose"

    def __init__(self, node, in_shape, constants, options):
        super().__init__(node, in_shape, constants, options)
        self.kernel = constant_kernel(node, constants)
        if self.kernel.ndim < 3 or len(in_shape) != self.kernel.ndim - 1:
            raise refuse(node, f"its kernel of shape {self.kernel.shape} does not fit an input of per-sample "
                               f"shape {in_shape}, expected (C, M/group, k1, ...) and (C, spatial...)")
        channels, spatial = in_shape[0], tuple(in_shape[1:])
        kernel_shape = tuple(self.kernel.shape[2:])
        self.group = int(attribute(node, "group", 1))
        if self.group < 1 or self.kernel.shape[0] != channels or channels % self.group:
            raise refuse(node, f"{channels} input channels and group={self.group} do not fit kernel "
                               f"{self.kernel.shape}")
        declared = attribute(node, "kernel_shape")
        if declared is not None and tuple(declared) != kernel_shape:
            raise refuse(node, f"kernel_shape {tuple(declared)} differs from the kernel {kernel_shape}")
        strides, dilations, begin, out_spatial = self._geometry(node, spatial, kernel_shape)
        self.out_shape = (self.kernel.shape[1] * self.group, *out_spatial)
        check_size(node, self.out_shape)
        # Rows are input positions, columns kernel offsets: which output each pair reaches.
        self.targets, self.valid = window_inputs(out_spatial, spatial, kernel_shape, strides, dilations, begin)
        self.outer_size = channels  # parts are input channels
        self.edges_per_outer = self.kernel.shape[1] * int(self.valid.sum())

    @staticmethod
    def _geometry(node, spatial, kernel):
        """Strides, dilations, padding before each axis and output size, as onnxruntime (and the
        ONNX spec) derive them."""
        nd = len(spatial)
        strides = list(attribute(node, "strides", [1] * nd))
        dilations = list(attribute(node, "dilations", [1] * nd))
        pads = list(attribute(node, "pads", [0] * (2 * nd)))
        output_padding = list(attribute(node, "output_padding", [0] * nd))
        output_shape = attribute(node, "output_shape")
        auto_pad = attribute(node, "auto_pad", "NOTSET")
        if (len(strides), len(dilations), len(pads), len(output_padding)) != (nd, nd, 2 * nd, nd) or (
                output_shape is not None and len(output_shape) != nd):
            raise refuse(node, f"strides/dilations/pads/output_padding/output_shape do not match its {nd} "
                               "spatial axes")
        if min(strides) < 1 or min(dilations) < 1 or min(pads) < 0 or min(output_padding) < 0:
            raise refuse(node, "strides and dilations must be positive, pads and output_padding non-negative")
        if auto_pad not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
            raise refuse(node, f"unknown auto_pad {auto_pad!r}")
        # The output before any cropping: every input spread over its whole kernel.
        full = [(i - 1) * s + p + (k - 1) * d + 1
                for i, s, p, k, d in zip(spatial, strides, output_padding, kernel, dilations)]
        if output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            wanted = list(output_shape) if output_shape is not None else [i * s for i, s in zip(spatial, strides)]
            total = [max(0, f - w) for f, w in zip(full, wanted)]
            begin = [t // 2 if auto_pad == "SAME_UPPER" else t - t // 2 for t in total]
            out = wanted if output_shape is not None else [f - t for f, t in zip(full, total)]
        elif auto_pad == "VALID":
            begin, out = [0] * nd, full
        else:
            begin, out = pads[:nd], [f - b - e for f, b, e in zip(full, pads[:nd], pads[nd:])]
        if min(out) < 1:
            raise refuse(node, f"its output would have spatial shape {tuple(out)}: pads crop everything")
        return strides, dilations, begin, out

    def build_pattern(self, part: slice) -> EdgePattern:
        channels, per_group = self.kernel.shape[:2]
        n_in, n_k = self.targets.shape
        n_out = int(np.prod(self.out_shape[1:]))
        c = np.arange(channels)[part]
        m = (c // (channels // self.group))[:, None] * per_group + np.arange(per_group)[None, :]
        # Axes: (input channel, output channel of its group, input position, kernel offset).
        shape = (len(c), per_group, n_in, n_k)
        src = c[:, None, None, None] * n_in + np.arange(n_in)[None, None, :, None]
        dst = m[:, :, None, None] * n_out + self.targets[None, None]
        weight = self.kernel[part].reshape(len(c), per_group, 1, n_k)
        keep = np.broadcast_to(self.valid[None, None], shape)
        return EdgePattern(src=np.broadcast_to(src, shape)[keep].astype(np.int64),
                           dst=np.broadcast_to(dst, shape)[keep].astype(np.int64),
                           weight=np.broadcast_to(weight, shape)[keep])
