"""onnxruntime, in one place: the session every module runs a model with, and the check of the
inputs a model is given.

Sessions are CPU-only and silent (failures come back as exceptions, not as C++ log lines on
stderr); ``threads`` pins onnxruntime to that many intra-op threads and one inter-op thread,
which is what a worker process sharing its machine with others needs.
"""

from __future__ import annotations

import numpy as np
import onnx

from .errors import BadInputError, BadModelError


def session(model: onnx.ModelProto | bytes, threads: int | None = None, *, optimized_path: str | None = None):
    """An onnxruntime InferenceSession of ``model`` (a ModelProto or its serialized bytes).

    ``threads``: onnxruntime's intra-op threads (None: its default pool). ``optimized_path``:
    apply only onnxruntime's basic graph optimizations and write the optimized model there.
    A model onnxruntime cannot load is a BadModelError.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if optimized_path is not None:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = optimized_path
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else bytes(model)
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        text = str(exc).strip()
        raise BadModelError(f"onnxruntime cannot load the model: {text.splitlines()[0] if text else type(exc).__name__}"
                            ) from exc


def check_inputs(x, *, input_name: str, dtype: np.dtype, sample_shape: tuple, allow_empty: bool = False
                 ) -> np.ndarray:
    """``x`` as a batch the model's input accepts, or a BadInputError saying what is wrong.

    ``dtype`` is the input's dtype; ``sample_shape`` its shape without the batch axis, ``None``
    for a symbolic dimension (not checked). Floating-point models refuse integer arrays (pixels
    not yet scaled), integer models (token ids) refuse floats; every sample must be finite. The
    result has the model's dtype.
    """
    x = np.asarray(x)
    dtype = np.dtype(dtype)
    if x.dtype.kind not in "fiub" or (x.dtype.kind in "iub" and dtype.kind == "f"):
        raise BadInputError(
            f"inputs have dtype {x.dtype}; the model takes {dtype}. Convert them first "
            f"(and scale them as the model was trained, e.g. pixels / 255)"
        )
    if dtype.kind in "iub" and x.dtype.kind == "f":
        raise BadInputError(
            f"inputs have dtype {x.dtype}; the model takes {dtype} (token ids, bytes...). Pass integer arrays"
        )
    fits = x.ndim == len(sample_shape) + 1 and all(
        want is None or want == got for want, got in zip(sample_shape, x.shape[1:], strict=True))
    if not fits:
        expected = ", ".join("?" if d is None else str(d) for d in sample_shape)
        raise BadInputError(
            f"inputs have shape {x.shape}; the model's input {input_name!r} takes "
            f"(n, {expected}), i.e. a batch of samples of shape ({expected})"
        )
    if x.shape[0] == 0 and not allow_empty:
        raise BadInputError("the inputs are empty (0 samples)")
    if x.dtype.kind == "f" and len(x):
        bad = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))
        if bad.size:
            raise BadInputError(
                f"{bad.size} input(s) hold NaN or infinite values (first: sample {bad[0]}); "
                "remove or repair them"
            )
    if len(x) and not np.can_cast(x.dtype, dtype):  # a narrowing cast: values may not fit
        info = np.finfo(dtype) if dtype.kind == "f" else np.iinfo(dtype)
        flat = x.reshape(len(x), -1)
        bad = np.flatnonzero(((flat < info.min) | (flat > info.max)).any(axis=1))
        if bad.size:
            raise BadInputError(
                f"{bad.size} input(s) hold values outside the range of the model's {dtype} "
                f"[{info.min:g}, {info.max:g}] (first: sample {bad[0]}); they would overflow when converted"
            )
    return x.astype(dtype, copy=False)


def validate_inputs(plan, x) -> np.ndarray:
    """The inputs as an array the planned model accepts, or a BadInputError saying what is wrong."""
    return check_inputs(x, input_name=plan.input_name, dtype=plan.input_dtype, sample_shape=plan.input_shape)
