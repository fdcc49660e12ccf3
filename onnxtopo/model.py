"""Stage 1: load an ONNX model, check it and normalize it.

Normalization is left to well-kept tools: onnx's checker and shape inference, then
onnxruntime's basic graph optimizations (constant folding, Identity/Dropout removal, Conv + Add
and Conv + BatchNormalization fusion), so the walker sees the network, not an exporter's habits.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import onnx
import onnx.shape_inference

from .errors import BadModelError

ModelLike = "str | os.PathLike | bytes | onnx.ModelProto"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_model(model) -> onnx.ModelProto:
    """The ModelProto behind a path, serialized bytes or a ModelProto."""
    if isinstance(model, onnx.ModelProto):
        return model
    try:
        if isinstance(model, (bytes, bytearray)):
            return onnx.load_from_string(bytes(model))
        path = Path(model)
        if not path.is_file():
            raise BadModelError(f"model file {str(path)!r} does not exist or is not a file")
        return onnx.load(str(path))
    except BadModelError:
        raise
    except Exception as exc:  # protobuf raises DecodeError and others
        raise BadModelError(f"{model!r} is not a readable ONNX model ({_first_line(exc)})") from exc


def load_model(model) -> onnx.ModelProto:
    """Read, check and normalize a model; the result is what the walker plans from."""
    proto = read_model(model)
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise BadModelError(f"the model fails onnx.checker: {_first_line(exc)}") from exc
    try:
        proto = onnx.shape_inference.infer_shapes(proto)
    except Exception as exc:
        raise BadModelError(f"onnx shape inference fails on the model: {_first_line(exc)}") from exc
    return onnx.shape_inference.infer_shapes(_optimize_basic(proto))


def _optimize_basic(proto: onnx.ModelProto) -> onnx.ModelProto:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="onnxtopo-") as tmp:
        options.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
        try:
            ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise BadModelError(f"onnxruntime cannot load the model: {_first_line(exc)}") from exc
        return onnx.load(options.optimized_model_filepath)
