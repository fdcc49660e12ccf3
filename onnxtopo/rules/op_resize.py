"""Resize (opsets 10 to 19) and Upsample (opsets 7 and 9): interpolation, a linear op.

Every mode onnxruntime implements is separable: output v = Σ_u w_{u->v} h_u with w_{u->v} the
product over the sample's axes of one-dimensional interpolation coefficients, so
φ(u, v) = |w_{u->v} · h_u| (design notes 2b). Along an axis, the coefficients of output ``o`` are

* mode ``nearest``: 1 for the one input ``nearest_mode`` picks (``round_prefer_floor``,
  ``round_prefer_ceil``, ``floor``, ``ceil``; Upsample and Resize-10 round down when upsampling,
  up when downsampling);
* mode ``linear``: 1 − t and t for the two inputs around the source coordinate;
* mode ``cubic``: the four Keys coefficients (``cubic_coeff_a``), renormalized over the inputs
  inside the tensor with ``exclude_outside``;
* ``antialias`` (opset 18): the linear or cubic filter stretched by 1 / scale when downsampling,
  normalized to sum 1;

at the source coordinate that ``coordinate_transformation_mode`` gives (``half_pixel``,
``half_pixel_symmetric``, ``pytorch_half_pixel``, ``align_corners``, ``asymmetric``,
``tf_half_pixel_for_nn``, ``tf_crop_and_resize`` with ``roi``), computed in float32 as
onnxruntime computes it. A coefficient reaching past the border goes to the border input.
With ``tf_crop_and_resize``, an output whose source lies outside the input holds
``extrapolation_value``: a constant, with no edge. Scales or sizes (with opset 18's ``axes`` and
``keep_aspect_ratio_policy``) must be constants; an axis of scale 1, or a whole op whose output
has its input's shape, is left as it is, as onnxruntime does.

A resize whose every output copies one input (nearest mode, or strides that land on inputs) only
copies neurons, as Tile does: it makes no layer (design notes 2b). Resizing the batch axis is
refused.
"""

from __future__ import annotations

import math

import numpy as np

from . import EdgePattern, EdgeRule, attribute, edge_rule, refuse
from .op_layout import check_size

F32 = np.float32
COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
                    "tf_half_pixel_for_nn", "tf_crop_and_resize")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


class AxisCoefficients:
    """The nonzero one-dimensional coefficients of one axis, as (output, input, weight) triples
    sorted by output then input."""

    def __init__(self, out_index: np.ndarray, in_index: np.ndarray, weight: np.ndarray):
        self.out_index, self.in_index, self.weight = out_index, in_index, weight

    @classmethod
    def identity(cls, length: int) -> AxisCoefficients:
        index = np.arange(length, dtype=np.int64)
        return cls(index, index, np.ones(length))

    @classmethod
    def from_taps(cls, taps: np.ndarray, weights: np.ndarray, in_len: int, outside=None) -> AxisCoefficients:
        """Merge the taps (out_len, width) clamped to the input, dropping outputs in ``outside``
        (extrapolated: constants) and zero coefficients."""
        out_len, width = taps.shape
        weights = np.asarray(weights, dtype=np.float64)
        if outside is not None:
            weights = np.where(outside[:, None], 0.0, weights)
        rows = np.repeat(np.arange(out_len, dtype=np.int64), width)
        keys, where = np.unique(rows * in_len + np.clip(taps, 0, in_len - 1).ravel(), return_inverse=True)
        merged = np.bincount(where.ravel(), weights=weights.ravel(), minlength=keys.size)
        keep = merged != 0
        return cls(keys[keep] // in_len, keys[keep] % in_len, merged[keep])

    def copies(self, out_len: int) -> np.ndarray | None:
        """Per output, the one input it copies (-1: none, a constant), or None if some output
        mixes inputs or scales one."""
        if np.any(self.weight != 1) or np.unique(self.out_index).size != self.out_index.size:
            return None
        source = np.full(out_len, -1, dtype=np.int64)
        source[self.out_index] = self.in_index
        return source


@edge_rule("Resize", "Upsample")
class ResizeRule(EdgeRule):
    rule_name = "resize"

    def __init__(self, node, in_shape, constants, options):
        super().__init__(node, in_shape, constants, options)
        if node.input[0] in constants:
            raise refuse(node, "its data input is a constant while its scales or sizes are computed at run time")
        self.mode = attribute(node, "mode", "nearest")
        if self.mode not in ("nearest", "linear", "cubic"):
            raise refuse(node, f"unknown mode {self.mode!r}")
        # Upsample, and Resize-10 (two inputs: X, scales), knew one coordinate transformation.
        legacy = node.op_type == "Upsample" or len(node.input) == 2
        self.coordinates = "asymmetric" if legacy else attribute(node, "coordinate_transformation_mode",
                                                                  "half_pixel")
        if self.coordinates not in COORDINATE_MODES:
            raise refuse(node, f"unknown coordinate_transformation_mode {self.coordinates!r}")
        self.nearest = "" if legacy else attribute(node, "nearest_mode", "round_prefer_floor")
        if self.nearest not in ("", *NEAREST_MODES):
            raise refuse(node, f"unknown nearest_mode {self.nearest!r}")
        self.cubic_a = F32(attribute(node, "cubic_coeff_a", -0.75))
        self.exclude_outside = bool(attribute(node, "exclude_outside", 0))
        self.antialias = bool(attribute(node, "antialias", 0))
        scales, sizes, self.roi, axes = self._parameters(node, constants, in_shape)
        self.scales, out_shape = self._output_size(node, in_shape, scales, sizes, axes)
        self.out_shape = tuple(out_shape)
        check_size(node, self.out_shape)
        if self.out_shape == self.in_shape:  # onnxruntime copies its input then, whatever the mode
            self.axes = [AxisCoefficients.identity(n) for n in in_shape]
        else:
            self.axes = [self._axis(a) for a in range(len(in_shape))]
        entries = [len(axis.weight) for axis in self.axes]
        self.outer_size = entries[0] if entries else 1  # parts are coefficients of the first sample axis
        self.edges_per_outer = math.prod(entries[1:])

    # ---------------------------------------------------------------------------------------
    # The node's scales, sizes and region of interest, over every axis (the batch axis first)
    # ---------------------------------------------------------------------------------------

    def _parameters(self, node, constants, in_shape):
        """Scales, sizes and roi over every axis (None when absent), and the axes they were given for."""
        rank = len(in_shape) + 1

        def constant(position, what, dtype):
            if len(node.input) <= position or not node.input[position]:
                return None
            name = node.input[position]
            if name not in constants:
                raise refuse(node, f"its {what} ({name!r}) is computed at run time",
                             "export the model with constant scales or sizes")
            value = np.asarray(constants[name]).astype(dtype).ravel()
            return value if value.size else None

        if node.op_type == "Upsample":
            scales = attribute(node, "scales")
            scales = constant(1, "scales input", F32) if scales is None else np.asarray(scales, dtype=F32)
            return scales, None, None, list(range(rank))
        if len(node.input) == 2:  # Resize-10
            return constant(1, "scales input", F32), None, None, list(range(rank))
        roi = constant(1, "roi input", F32) if self.coordinates == "tf_crop_and_resize" else None
        scales, sizes = constant(2, "scales input", F32), constant(3, "sizes input", np.int64)
        axes = attribute(node, "axes")
        if axes is None:
            axes = list(range(rank))
        else:
            if any(not -rank <= a < rank for a in axes) or len({a % rank for a in axes}) != len(axes):
                raise refuse(node, f"its axes {list(axes)} do not fit a tensor of rank {rank}")
            if min(axes) < 0 and attribute(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
                raise refuse(node, f"its keep_aspect_ratio_policy with negative axes {list(axes)}: onnxruntime "
                                   "leaves those axes out of the policy", "give the axes as non-negative numbers")
            axes = [a % rank for a in axes]
            # Axes left out keep their size; the batch entry 1 stands for "the batch, kept".
            scales = self._spread(node, scales, axes, np.ones(rank, dtype=F32), "scales")
            sizes = self._spread(node, sizes, axes, np.array([1, *in_shape], dtype=np.int64), "sizes")
        if self.coordinates == "tf_crop_and_resize":
            whole = np.concatenate([np.zeros(rank, dtype=F32), np.ones(rank, dtype=F32)])
            if roi is None:
                roi = whole
            elif roi.size != 2 * len(axes):
                raise refuse(node, f"its roi has {roi.size} values for {len(axes)} axes, expected {2 * len(axes)}")
            else:
                roi = np.concatenate([self._spread(node, roi[:len(axes)], axes, whole[:rank], "roi"),
                                      self._spread(node, roi[len(axes):], axes, whole[rank:], "roi")])
        return scales, sizes, roi, axes

    @staticmethod
    def _spread(node, values, axes, default, what):
        """Values given for ``axes``, over every axis (``default`` for the others)."""
        if values is None:
            return None
        if values.size != len(axes):
            raise refuse(node, f"its {what} has {values.size} values for {len(axes)} axes")
        full = default.copy()
        full[axes] = values
        return full

    def _output_size(self, node, in_shape, scales, sizes, axes):
        """Per-sample float32 scales and output shape, as onnxruntime derives them."""
        rank = len(in_shape) + 1
        if (scales is None) == (sizes is None):
            raise refuse(node, "it needs exactly one of scales and sizes")
        given = scales if sizes is None else sizes
        if given.size != rank:
            raise refuse(node, f"its {'scales' if sizes is None else 'sizes'} have {given.size} values for a "
                               f"tensor of rank {rank}")
        if sizes is None:
            if scales[0] != 1:
                raise refuse(node, f"it scales the batch axis by {scales[0]}, mixing the samples of a batch",
                             "resize the sample axes only (scale 1 on axis 0)")
            if np.any(~(scales > 0)) or (node.op_type == "Upsample" and np.any(scales < 1)):
                raise refuse(node, f"its scales {scales.tolist()} are not all positive (Upsample: at least 1)")
            scales = scales[1:]
            with np.errstate(over="ignore"):
                products = scales * np.array(in_shape, dtype=F32)
            if not np.isfinite(products).all():
                raise refuse(node, f"its scales {scales.tolist()} give an output of infinite size")
            out = [int(p) for p in products]  # truncated, as onnxruntime does
        else:
            from ..plan import WALK_BATCH  # plan imports this package: a module-level import would be circular

            # The batch entry is the batch only when it comes from the input's Shape, which the
            # walk folds with its own batch (1 for a model of batch 1).
            if sizes[0] not in (1, WALK_BATCH):
                raise refuse(node, f"its sizes {sizes.tolist()} resize the batch axis",
                             "take the batch entry of sizes from the input's Shape, or give axes")
            out = [int(n) for n in sizes[1:]]
            scales = np.array([F32(o) / F32(n) for o, n in zip(out, in_shape)], dtype=F32)
            policy = attribute(node, "keep_aspect_ratio_policy", "stretch")
            if policy not in ("stretch", "not_larger", "not_smaller"):
                raise refuse(node, f"unknown keep_aspect_ratio_policy {policy!r}")
            if policy != "stretch":
                full = np.concatenate([[F32(1)], scales])
                chosen = full[axes]
                scale = F32(chosen.min() if policy == "not_larger" else chosen.max())
                if 0 in axes and scale != 1:
                    raise refuse(node, f"its keep_aspect_ratio_policy {policy!r} over every axis scales the batch "
                                       f"axis by {scale}", "give the axes to resize")
                resized = [a - 1 for a in axes if a > 0]
                scales = np.array([scale if a in resized else F32(1) for a in range(len(in_shape))], dtype=F32)
                out = [_round_half_away(scale * F32(n)) if a in resized else n for a, n in enumerate(in_shape)]
        if min(out, default=1) < 1:
            raise refuse(node, f"its output would have shape {tuple(out)}: an empty or invalid axis")
        return scales, out

    # ---------------------------------------------------------------------------------------
    # One axis's coefficients
    # ---------------------------------------------------------------------------------------

    def _axis(self, axis: int) -> AxisCoefficients:
        in_len, out_len, scale = self.in_shape[axis], self.out_shape[axis], self.scales[axis]
        if scale == 1:
            return AxisCoefficients.identity(in_len)
        source = self._source(axis, in_len, out_len, scale)
        if self.antialias:
            return self._antialiased(source, in_len, out_len, scale)
        outside = None
        if self.coordinates == "tf_crop_and_resize":
            outside = (source < 0) | (source > F32(in_len - 1))
        if self.mode == "nearest":
            taps = _nearest(source, self.nearest, scale < 1)[:, None]
            return AxisCoefficients.from_taps(taps, np.ones(taps.shape), in_len, outside)
        if self.mode == "linear":
            clamped = np.clip(source, F32(0), F32(in_len - 1))
            low = np.minimum(clamped.astype(np.int64), in_len - 1)
            high = np.minimum(low + 1, in_len - 1)
            # Equal neighbours (at the last input) share the output: their two halves merge into 1.
            weights = np.where((low == high)[:, None], 0.5,
                               np.stack([np.abs(clamped - high.astype(F32)), np.abs(clamped - low.astype(F32))], 1))
            return AxisCoefficients.from_taps(np.stack([low, high], 1), weights, in_len, outside)
        start = np.floor(source).astype(np.int64)
        taps = start[:, None] + np.arange(-1, 3)
        weights = _keys(source - start.astype(F32), self.cubic_a)
        if self.exclude_outside:
            weights[(taps < 0) | (taps >= in_len)] = 0
            total = weights.sum(axis=1, keepdims=True)
            weights = np.divide(weights, total, out=weights, where=total != 0)
        return AxisCoefficients.from_taps(taps, weights, in_len, outside)

    def _source(self, axis, in_len, out_len, scale) -> np.ndarray:
        """The source coordinate of each output, in float32 in onnxruntime's order of operations."""
        x = np.arange(out_len, dtype=F32)
        mode, length, resized = self.coordinates, F32(in_len), F32(out_len)
        if mode == "asymmetric":
            return x / scale
        if mode == "pytorch_half_pixel":
            return (x + F32(0.5)) / scale - F32(0.5) if out_len > 1 else np.zeros(out_len, dtype=F32)
        if mode == "tf_half_pixel_for_nn":
            return (x + F32(0.5)) / scale
        if mode == "align_corners":
            return x * (length - F32(1)) / (resized - F32(1)) if out_len > 1 else np.zeros(out_len, dtype=F32)
        if mode == "tf_crop_and_resize":
            start, end = self.roi[axis + 1], self.roi[len(self.roi) // 2 + axis + 1]
            if out_len > 1:
                return start * (length - F32(1)) + (x * (end - start) * (length - F32(1))) / (resized - F32(1))
            return np.full(out_len, F32(0.5 * float(start + end) * float(length - F32(1))), dtype=F32)
        if mode == "half_pixel_symmetric":
            adjustment = resized / (scale * length)
            offset = length / F32(2) * (F32(1) - adjustment)
            return (float(offset) + (x.astype(np.float64) + 0.5) / float(scale) - 0.5).astype(F32)
        return (x + F32(0.5)) / scale - F32(0.5)  # half_pixel

    def _antialiased(self, source, in_len, out_len, scale) -> AxisCoefficients:
        """onnxruntime's antialiasing filter: support stretched by 1 / scale when downsampling."""
        if out_len == in_len:  # onnxruntime copies such an axis, whatever its scale
            return AxisCoefficients.identity(in_len)
        stretch = F32(1) / scale
        half_support = F32(1 if self.mode == "linear" else 2)
        support = half_support * stretch if stretch >= 1 else half_support
        compress = F32(1) / stretch if stretch >= 1 else F32(1)
        centre = source + F32(0.5)
        first = np.floor(centre - support + F32(0.5)).astype(np.int64)
        last = np.floor(centre + support + F32(0.5)).astype(np.int64)  # exclusive
        if self.exclude_outside:
            first, last = np.maximum(first, 0), np.minimum(last, in_len)
        width = 2 * math.ceil(support) + 1
        taps = first[:, None] + np.arange(width)
        distance = (taps.astype(F32) - centre[:, None] + F32(0.5)) * compress
        weights = self._filter(distance).astype(np.float64)
        weights[taps >= last[:, None]] = 0
        total = weights.sum(axis=1, keepdims=True)
        weights = np.divide(weights, total, out=weights, where=total != 0)
        # An output whose window misses the input entirely reads nothing.
        nothing = np.maximum(first, 0) >= np.minimum(last, in_len)
        if self.coordinates == "tf_crop_and_resize":
            nothing |= (centre - F32(0.5) < 0) | (centre - F32(0.5) > F32(in_len - 1))
        return AxisCoefficients.from_taps(taps, weights, in_len, nothing)

    def _filter(self, x: np.ndarray) -> np.ndarray:
        x = np.abs(x)
        if self.mode == "linear":
            return np.where(x < 1, F32(1) - x, F32(0))
        a = self.cubic_a
        near = ((a + F32(2)) * x - (a + F32(3))) * x * x + F32(1)
        far = (((x - F32(5)) * x + F32(8)) * x - F32(4)) * a
        return np.where(x < 1, near, np.where(x < 2, far, F32(0)))

    # ---------------------------------------------------------------------------------------

    def copied_inputs(self) -> np.ndarray | None:
        sources = [axis.copies(n) for axis, n in zip(self.axes, self.out_shape)]
        if any(s is None for s in sources):
            return None
        flat = np.zeros(1, dtype=np.int64)
        for source, in_len in zip(sources, self.in_shape):
            flat = np.where((flat[:, None] < 0) | (source[None, :] < 0), -1, flat[:, None] * in_len + source).ravel()
        return flat

    def build_pattern(self, part: slice) -> EdgePattern:
        first = self.axes[0]
        src, dst, weight = first.in_index[part], first.out_index[part], first.weight[part]
        for axis, in_len, out_len in zip(self.axes[1:], self.in_shape[1:], self.out_shape[1:]):
            src = (src[:, None] * in_len + axis.in_index[None, :]).ravel()
            dst = (dst[:, None] * out_len + axis.out_index[None, :]).ravel()
            weight = (weight[:, None] * axis.weight[None, :]).ravel()
        return EdgePattern(src=src.astype(np.int64), dst=dst.astype(np.int64), weight=weight)


def _round_half_away(value) -> int:
    value = float(value)  # in float32, value + 0.5 could round up
    return math.floor(value + 0.5) if value >= 0 else math.ceil(value - 0.5)


def _nearest(source: np.ndarray, mode: str, downsampling: bool) -> np.ndarray:
    """The input index each output copies, before clamping to the input."""
    x = source.astype(np.float64)  # exact for float32 values: x ± 0.5 does not round
    if mode == "":  # Upsample and Resize-10
        return (np.ceil(x) if downsampling else np.trunc(x)).astype(np.int64)
    if mode == "floor":
        return np.floor(x).astype(np.int64)
    if mode == "ceil":
        return np.ceil(x).astype(np.int64)
    away = np.where(x >= 0, np.floor(x + 0.5), np.ceil(x - 0.5))  # C's round(): halves away from zero
    if mode == "round_prefer_ceil":
        return away.astype(np.int64)
    return np.where(x == np.trunc(x) + 0.5, np.floor(x), away).astype(np.int64)  # round_prefer_floor


def _keys(t: np.ndarray, a) -> np.ndarray:
    """Keys' cubic convolution coefficients of the four inputs around a source at fraction t
    (distances t + 1, t, 1 - t and 2 - t)."""
    t = np.abs(t)

    def near(d):
        return ((a + F32(2)) * d - (a + F32(3))) * d * d + F32(1)

    def far(d):
        return ((a * d - F32(5) * a) * d + F32(8) * a) * d - F32(4) * a

    return np.stack([far(t + F32(1)), near(t), near(F32(1) - t), far(F32(2) - t)], axis=1).astype(np.float64)
