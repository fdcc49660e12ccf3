"""Sliding-window geometry shared by Conv and the pooling ops.

For each output position and kernel offset, which input position the window reads, computed for
all positions at once by broadcasting, one spatial axis at a time.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import attribute, refuse


class WindowGeometry(NamedTuple):
    strides: list[int]
    dilations: list[int]
    begin: list[int]  # padding before the input, per spatial axis
    end: list[int]  # padding after it
    out: list[int]  # output size


def window_attributes(node, spatial_in, kernel, *, ceil_mode: bool = False) -> WindowGeometry:
    """Strides, dilations, pads and output size of a windowed op, following the ONNX spec.

    Handles ``pads``, every ``auto_pad`` mode and ``ceil_mode`` (where the last window must
    start inside the input or its begin padding, as onnxruntime computes it).
    """
    nd = len(spatial_in)
    strides = list(attribute(node, "strides", [1] * nd))
    dilations = list(attribute(node, "dilations", [1] * nd))
    pads = list(attribute(node, "pads", [0] * (2 * nd)))
    auto_pad = attribute(node, "auto_pad", "NOTSET")
    if len(strides) != nd or len(dilations) != nd or len(pads) != 2 * nd:
        raise refuse(node, f"strides/dilations/pads do not match its {nd} spatial axes")
    if min(strides) < 1 or min(dilations) < 1 or min(kernel) < 1 or min(pads) < 0:
        raise refuse(node, "strides, dilations and kernel sizes must be positive, pads non-negative")
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER") and max(dilations) > 1:
        # onnxruntime refuses this for Conv and computes MaxPool's output size against the spec.
        raise refuse(node, f"auto_pad {auto_pad} with dilations {dilations} is not supported",
                     "export the model with explicit pads")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = [-(-i // s) for i, s in zip(spatial_in, strides)]
        total = [max(0, (o - 1) * s + sp - i) for o, s, sp, i in zip(out, strides, span, spatial_in)]
        if auto_pad == "SAME_UPPER":
            begin = [t // 2 for t in total]
        else:
            begin = [t - t // 2 for t in total]
        end = [t - b for t, b in zip(total, begin)]
    elif auto_pad in ("VALID", "NOTSET"):
        begin = pads[:nd] if auto_pad == "NOTSET" else [0] * nd
        end = pads[nd:] if auto_pad == "NOTSET" else [0] * nd
        out = []
        for i, b, e, sp, s in zip(spatial_in, begin, end, span, strides):
            room = i + b + e - sp
            if room < 0:
                raise refuse(node, f"its window ({sp}) is larger than its padded input ({i + b + e})")
            n = (-(-room // s) if ceil_mode else room // s) + 1
            if ceil_mode and (n - 1) * s >= i + b:
                n -= 1
            out.append(n)
    else:
        raise refuse(node, f"unknown auto_pad {auto_pad!r}")
    return WindowGeometry(strides, dilations, begin, end, out)


def window_inputs(spatial_in, spatial_out, kernel, strides, dilations, begin):
    """Flat input positions read by each window and whether each lies inside the input.

    Returns two arrays of shape (number of output positions, number of kernel offsets): the
    row-major flat index into the spatial input and a validity mask (False where the window
    reads padding). Within a row, valid positions increase with the kernel offset.
    """
    flat = np.zeros((1, 1), dtype=np.int64)
    valid = np.ones((1, 1), dtype=bool)
    for i_len, o_len, k_len, s, d, b in zip(spatial_in, spatial_out, kernel, strides, dilations, begin):
        pos = np.arange(o_len)[:, None] * s - b + np.arange(k_len)[None, :] * d
        ok = (pos >= 0) & (pos < i_len)
        # Append this axis: rows become (previous rows × o_len), columns (previous × k_len).
        flat = (flat[:, None, :, None] * i_len + pos[None, :, None, :]).reshape(
            flat.shape[0] * o_len, flat.shape[1] * k_len
        )
        valid = (valid[:, None, :, None] & ok[None, :, None, :]).reshape(flat.shape)
    return flat, valid
