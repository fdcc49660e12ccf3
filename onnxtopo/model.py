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
import onnx.external_data_helper
import onnx.numpy_helper
import onnx.shape_inference

from .errors import BadModelError, UnsupportedOpError


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


STANDARD_DOMAINS = ("", "ai.onnx", "ai.onnx.ml")
CONTROL_FLOW = ("If", "Loop", "Scan")


def read_model(model) -> onnx.ModelProto:
    """The ModelProto behind a path, serialized bytes or a ModelProto.

    External data is read only from files inside the model's own directory: a location that is
    absolute, climbs out with '..' or leaves through a link is refused before anything is read.
    """
    if isinstance(model, onnx.ModelProto):
        proto, base = model, None
    else:
        try:
            if isinstance(model, (bytes, bytearray)):
                proto, base = onnx.load_from_string(bytes(model)), None
            else:
                path = Path(model)
                if not path.is_file():
                    raise BadModelError(f"model file {str(path)!r} does not exist or is not a file")
                proto, base = onnx.load(str(path), load_external_data=False), path.resolve().parent
        except BadModelError:
            raise
        except Exception as exc:  # protobuf raises DecodeError and others
            raise BadModelError(f"{model!r} is not a readable ONNX model ({_first_line(exc)})") from exc
    external = [t for t in _tensors(proto.graph) if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        if base is None:
            raise BadModelError("the model keeps tensors in external data files; pass the model's path instead")
        for tensor in external:
            _check_location(tensor, base)
        try:
            onnx.external_data_helper.load_external_data_for_model(proto, str(base))
        except Exception as exc:
            raise BadModelError(f"cannot read the model's external data ({_first_line(exc)})") from exc
    return proto


def _tensors(graph):
    """Every TensorProto of a graph: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for g in attr.graphs:
                yield from _tensors(g)


def _check_location(tensor, base: Path) -> None:
    entries = {e.key: e.value for e in tensor.external_data}
    location = entries.get("location", "")
    try:
        target = (base / location).resolve()
        inside = target.is_relative_to(base)
        exists = target.is_file()
    except (OSError, ValueError):  # a name too long, a NUL byte: not a file name at all
        raise BadModelError(f"tensor {tensor.name!r} has an invalid external data location {location!r}") from None
    if not location or os.path.isabs(location) or ".." in Path(location).parts or not inside:
        raise BadModelError(
            f"tensor {tensor.name!r} points to external data at {location!r}, outside the model's directory; "
            "onnxtopo reads external data only from files beside the model"
        )
    if not exists:
        raise BadModelError(f"tensor {tensor.name!r} needs the external data file {location!r}, which is missing")


def _check_names(proto: onnx.ModelProto) -> None:
    """Names must be text: protobuf hands back bytes for strings that are not valid UTF-8."""
    graph = proto.graph
    names = [v.name for v in [*graph.input, *graph.output, *graph.initializer]]
    for node in graph.node:
        names += [node.name, node.op_type, node.domain, *node.input, *node.output]
    if any(not isinstance(name, str) for name in names):
        raise BadModelError("the model has node or tensor names that are not valid UTF-8 text")


def check_trusted_ops(proto: onnx.ModelProto) -> None:
    """Refuse custom-domain ops, control flow and training-mode graphs before running anything."""
    _check_names(proto)
    for node in proto.graph.node:
        name = node.name or "(unnamed)"
        if node.domain not in STANDARD_DOMAINS:
            raise UnsupportedOpError(
                f"node {name!r} ({node.op_type}) is from the custom domain {node.domain!r}; onnxtopo runs "
                "only standard ONNX ops"
            )
        if node.op_type in CONTROL_FLOW:
            raise UnsupportedOpError(
                f"node {name!r} is control flow ({node.op_type}); onnxtopo needs a straight-line network"
            )
        training = any(a.name == "training_mode" and a.i for a in node.attribute)
        if training:
            raise UnsupportedOpError(
                f"node {name!r} ({node.op_type}) is in training mode; export the model for inference (model.eval())"
            )
    training_inputs = {n.input[2] for n in proto.graph.node if n.op_type == "Dropout" and len(n.input) > 2}
    graph_inputs = {i.name for i in proto.graph.input}
    constants = {t.name: t for t in proto.graph.initializer}
    for name in training_inputs - {""}:
        if name in graph_inputs - constants.keys() or (
                name in constants and onnx.numpy_helper.to_array(constants[name]).any()):
            raise UnsupportedOpError(
                f"a Dropout runs in training mode (input {name!r}); export the model for inference (model.eval())"
            )


def load_model(model) -> onnx.ModelProto:
    """Read, check and normalize a model; the result is what the walker plans from."""
    proto = read_model(model)
    check_trusted_ops(proto)
    proto = _initializers_as_constants(proto)
    proto = _drop_absent_trailing_inputs(proto)
    try:
        onnx.checker.check_model(proto)
    except Exception as exc:
        raise BadModelError(f"the model fails onnx.checker: {_first_line(exc)}") from exc
    try:
        proto = onnx.shape_inference.infer_shapes(proto)
    except Exception as exc:
        raise BadModelError(f"onnx shape inference fails on the model: {_first_line(exc)}") from exc
    return onnx.shape_inference.infer_shapes(_optimize_basic(proto))


def _initializers_as_constants(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Before IR version 4 every initializer had to be listed among the graph's inputs too (as an
    input's default value), so onnxruntime may neither fold nor fuse them. Every classic model-zoo
    file is written so; onnxtopo treats them as the trained constants they are."""
    initializers = {t.name for t in proto.graph.initializer}
    if not any(i.name in initializers for i in proto.graph.input):
        return proto
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)  # the caller's model stays as it was
    del copy.graph.input[:]
    copy.graph.input.extend(i for i in proto.graph.input if i.name not in initializers)
    copy.ir_version = max(copy.ir_version, 4)
    return copy


def _drop_absent_trailing_inputs(proto: onnx.ModelProto) -> onnx.ModelProto:
    """An optional input given as an empty name at the end of a node's inputs means the same as
    no input, but onnxruntime crashes the process on some (LayerNormalization without a bias,
    as PyTorch exports LayerNorm(bias=False)); so they are removed, from a copy."""
    if not any(node.input and not node.input[-1] for node in proto.graph.node):
        return proto
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    for node in copy.graph.node:
        while node.input and not node.input[-1]:
            node.input.pop()
    return copy


def _optimize_basic(proto: onnx.ModelProto) -> onnx.ModelProto:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.log_severity_level = 4  # failures come back as exceptions; no C++ log lines on stderr
    with tempfile.TemporaryDirectory(prefix="onnxtopo-") as tmp:
        options.optimized_model_filepath = os.path.join(tmp, "optimized.onnx")
        try:
            ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise BadModelError(f"onnxruntime cannot load the model: {_first_line(exc)}") from exc
        return onnx.load(options.optimized_model_filepath)
