"""The fuzzer's generators: mutated models, mutated inputs, random nets and CLI calls, and the
contract every outcome is judged against.

The contract ("Reliability and security"): every outcome of ``onnxtopo.inspect(model)``,
``onnxtopo.analyze(model, x)`` and the CLI is either a result or a documented error (an
``OnnxtopoError`` subclass; for the CLI one line ``onnxtopo: error: ...`` and its documented
exit code, never a traceback, never exit 70), within a time bound; never a crash, never a hang.

``tests/test_fuzz.py`` drives these generators with hypothesis; ``scripts/fuzz.py`` runs them
stand-alone for any number of seeds. Every generator takes a ``random.Random``-like ``rng`` and
nothing else random, so a case is fully determined by its seed.

Case kinds (seed ``s`` is of kind ``kinds[s % len(kinds)]``; its case is built from
``random.Random(s)``):

* ``bytes``:  a small model's serialized bytes with random flips/insertions/deletions/truncation;
* ``proto``:  structure-aware mutations of a small model (op types, attributes, initializers,
  tensor names, input dims and dtype, graph inputs/outputs, opsets, external data);
* ``inputs``: a valid model with random input arrays (shapes, dtypes, NaN/Inf, huge values);
* ``cli``:    ``onnxtopo.cli.main`` in-process on mutated models, input files and options;
* ``net``:    a random small architecture valid by onnx's shape inference (Conv/ConvTranspose/pool
  geometry, groups, pads, layouts, residual sums, normalizations, softmaxes, reductions, resizes,
  selections, products of two activations, Einsum, a few unsupported ops), sometimes mutated once more.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[1]
KINDS = ("bytes", "proto", "inputs", "cli", "net")
#: A call that takes longer than this (seconds) breaks the contract's time bound.
TIME_BOUND = 20.0
#: Exit codes the README documents (0 success, 2 command line, 3..7 the error classes).
CLI_CODES = {0, 2, 3, 4, 5, 6, 7}
#: analyze() is only attempted on plans the package itself estimates below this (bytes): the
#: Python API has no memory guard, and the fuzzer must not exhaust a shared machine.
ANALYZE_MEMORY = 512 << 20
OPSET = 17

# --------------------------------------------------------------------------------------------
# Seed models: small, valid, covering the supported rules.
# --------------------------------------------------------------------------------------------


def _init(name, shape, seed, dtype=np.float32, scale=0.5):
    values = np.random.default_rng(seed).normal(0, scale, size=shape).astype(dtype)
    return numpy_helper.from_array(values, name)


def _model(nodes, inputs, outputs, inits, opset=OPSET):
    graph = helper.make_graph(nodes, "fuzz", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="fuzz")
    model.ir_version = 8
    return model


def _vi(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


def conv_net() -> onnx.ModelProto:
    """Conv -> Relu -> MaxPool -> Flatten -> Gemm (transB) -> Softmax; input (N, 1, 8, 8)."""
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv", kernel_shape=[3, 3],
                         strides=[1, 1], pads=[0, 0, 0, 0]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Flatten", ["p1"], ["f1"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f1", "w2", "b2"], ["g1"], name="fc", transB=1, alpha=1.0),
        helper.make_node("Softmax", ["g1"], ["y"], name="softmax", axis=1),
    ]
    inits = [_init("w1", (4, 1, 3, 3), 1), _init("b1", (4,), 2), _init("w2", (5, 36), 3), _init("b2", (5,), 4)]
    return _model(nodes, [_vi("x", ["N", 1, 8, 8])], [_vi("y", ["N", 5])], inits)


def mlp() -> onnx.ModelProto:
    """MatMul -> Add -> Sigmoid -> MatMul -> Add; input (N, 6)."""
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m1"], name="fc1"),
        helper.make_node("Add", ["m1", "b1"], ["a1"], name="bias1"),
        helper.make_node("Sigmoid", ["a1"], ["s1"], name="act"),
        helper.make_node("MatMul", ["s1", "w2"], ["m2"], name="fc2"),
        helper.make_node("Add", ["m2", "b2"], ["y"], name="bias2"),
    ]
    inits = [_init("w1", (6, 8), 5), _init("b1", (8,), 6), _init("w2", (8, 4), 7), _init("b2", (4,), 8)]
    return _model(nodes, [_vi("x", ["N", 6])], [_vi("y", ["N", 4])], inits)


def residual() -> onnx.ModelProto:
    """MatMul -> Relu -> MatMul, + skip (Add of two activations) -> Relu -> Gemm; input (1, 5),
    opset 13."""
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["m1"], name="fc1"),
        helper.make_node("Relu", ["m1"], ["r1"], name="relu1"),
        helper.make_node("MatMul", ["r1", "w2"], ["m2"], name="fc2"),
        helper.make_node("Add", ["m2", "r1"], ["s"], name="skip"),
        helper.make_node("Relu", ["s"], ["r2"], name="relu2"),
        helper.make_node("Gemm", ["r2", "w3"], ["y"], name="fc3"),
    ]
    inits = [_init("w1", (5, 5), 9), _init("w2", (5, 5), 10), _init("w3", (5, 3), 11)]
    return _model(nodes, [_vi("x", [1, 5])], [_vi("y", [1, 3])], inits, opset=13)


def conv_residual() -> onnx.ModelProto:
    """Pad -> Conv -> BatchNormalization -> Relu, + skip -> AveragePool -> Transpose -> Reshape
    -> Gemm; input (N, 2, 6, 6)."""
    nodes = [
        helper.make_node("Pad", ["x", "pads"], ["xp"], name="pad", mode="constant"),
        helper.make_node("Conv", ["xp", "w1"], ["c1"], name="conv", kernel_shape=[3, 3], group=1,
                         dilations=[1, 1]),
        helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["b1"], name="bn",
                         epsilon=1e-5),
        helper.make_node("Relu", ["b1"], ["r1"], name="relu"),
        helper.make_node("Add", ["r1", "x"], ["s"], name="skip"),
        helper.make_node("AveragePool", ["s"], ["p"], name="avg", kernel_shape=[2, 2], strides=[2, 2],
                         count_include_pad=0),
        helper.make_node("Transpose", ["p"], ["t"], name="transpose", perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", ["t", "shape"], ["f"], name="reshape"),
        helper.make_node("Gemm", ["f", "w2"], ["y"], name="fc", alpha=0.5),
    ]
    inits = [
        numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=np.int64), "pads"),
        _init("w1", (2, 2, 3, 3), 12),
        numpy_helper.from_array(np.array([1.0, 0.5], dtype=np.float32), "bn_s"),
        numpy_helper.from_array(np.array([0.1, -0.1], dtype=np.float32), "bn_b"),
        numpy_helper.from_array(np.array([0.0, 0.2], dtype=np.float32), "bn_m"),
        numpy_helper.from_array(np.array([1.0, 2.0], dtype=np.float32), "bn_v"),
        numpy_helper.from_array(np.array([0, 18], dtype=np.int64), "shape"),
        _init("w2", (18, 3), 13),
    ]
    return _model(nodes, [_vi("x", ["N", 2, 6, 6])], [_vi("y", ["N", 3])], inits)


def resnet_mini() -> onnx.ModelProto:
    """The shipped ResNet-style CNN (23 kB, a real exporter's output); used by the script only."""
    return onnx.load(str(REPO / "models" / "resnet-mini.onnx"))


SEEDS = {"conv": conv_net, "mlp": mlp, "residual": residual, "convres": conv_residual}
SCRIPT_SEEDS = {**SEEDS, "resnet-mini": resnet_mini}
_SEED_BYTES: dict[str, bytes] = {}


def seed_bytes(name: str) -> bytes:
    if name not in _SEED_BYTES:
        _SEED_BYTES[name] = SCRIPT_SEEDS[name]().SerializeToString()
    return _SEED_BYTES[name]


def seed_proto(name: str) -> onnx.ModelProto:
    return onnx.load_from_string(seed_bytes(name))


def seed_input_shape(name: str) -> tuple[int, ...]:
    dims = seed_proto(name).graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_value for d in dims[1:])


def valid_inputs(shape, dtype, rng, n: int = 2) -> np.ndarray:
    """Inputs the model declares it takes: ``n`` samples of ``shape`` in [0, 1)."""
    values = np.random.default_rng(rng.getrandbits(32)).random((n, *shape))
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return values.astype(dtype)
    if dtype.kind in "iu":
        return (values * 4).astype(dtype)
    if dtype.kind == "b":
        return values > 0.5
    return values.astype(np.float32)


# --------------------------------------------------------------------------------------------
# (a) Byte mutations of a serialized model.
# --------------------------------------------------------------------------------------------

INTERESTING_BYTES = (0x00, 0x01, 0x7F, 0x80, 0xFF, 0x08, 0x0A, 0x12, 0x1A, 0x22, 0x3A, 0x42)


def _weight_spans(data: bytes, proto: onnx.ModelProto | None) -> list[tuple[int, int]]:
    spans = []
    if proto is not None:
        for t in proto.graph.initializer:
            if len(t.raw_data) >= 16:
                start = data.find(t.raw_data)
                if start >= 0:
                    spans.append((start, start + len(t.raw_data)))
    return spans


def _position(rng, data, spans) -> int:
    """A position in the data, mostly in the protobuf structure rather than in weight bytes."""
    if not data:
        return 0
    for _ in range(20):
        pos = rng.randrange(len(data))
        if rng.random() < 0.15 or not any(a <= pos < b for a, b in spans):
            return pos
    return rng.randrange(len(data))


def _varint(value: int) -> bytes:
    enc = bytearray()
    while True:
        b, value = value & 0x7F, value >> 7
        enc.append(b | (0x80 if value else 0))
        if not value:
            return bytes(enc)


def _edit_bytes(data: bytes, rng, spans) -> tuple[bytes, list[str]]:
    buf = bytearray(data)
    done = []
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 4])):
        op = rng.choice(["flip", "flip", "flip", "set", "set", "insert", "delete", "duplicate", "varint",
                         "truncate"])
        pos = _position(rng, buf, spans)
        if op == "flip" and buf:
            bit = rng.randrange(8)
            buf[pos] ^= 1 << bit
            done.append(f"flip bit {bit} of byte {pos}")
        elif op == "set" and buf:
            value = rng.choice(INTERESTING_BYTES) if rng.random() < 0.5 else rng.randrange(256)
            buf[pos] = value
            done.append(f"set byte {pos} to {value:#x}")
        elif op == "insert":
            chunk = bytes(rng.choice(INTERESTING_BYTES) if rng.random() < 0.5 else rng.randrange(256)
                          for _ in range(rng.randint(1, 8)))
            buf[pos:pos] = chunk
            done.append(f"insert {chunk.hex()} at {pos}")
        elif op == "delete" and buf:
            n = rng.randint(1, 16)
            del buf[pos:pos + n]
            done.append(f"delete {n} bytes at {pos}")
        elif op == "duplicate" and buf:
            n = rng.randint(1, 32)
            buf[pos:pos] = buf[pos:pos + n]
            done.append(f"duplicate {n} bytes at {pos}")
        elif op == "varint" and buf:
            # A long varint: a length, dim or enum far beyond what was there.
            enc = _varint(rng.choice([1 << 31, 1 << 40, (1 << 63) - 1, 1 << 20, 300]))
            buf[pos:pos + 1] = enc
            done.append(f"replace byte {pos} by varint {enc.hex()}")
        elif op == "truncate" and buf:
            del buf[pos:]
            done.append(f"truncate at {pos}")
    return bytes(buf), done


def _parses(data: bytes) -> bool:
    try:
        onnx.load_from_string(data)
        return True
    except Exception:  # noqa: BLE001 - any parse failure
        return False


def mutate_bytes(data: bytes, rng, proto: onnx.ModelProto | None = None) -> tuple[bytes, list[str]]:
    """1 to 4 random edits of ``data`` (bit flips, byte sets, insertions, deletions, chunk
    duplication, huge varints, truncation), mostly outside the weights' raw bytes. Returns the
    bytes and a description of each edit.

    Most edits leave bytes protobuf cannot parse; half of the time the edits are redrawn (up to
    20 times) until the result parses, so that mutated bytes also reach the checker and beyond.
    """
    spans = _weight_spans(data, proto)
    parseable = rng.random() < 0.5
    for _ in range(20 if parseable else 1):
        out, done = _edit_bytes(data, rng, spans)
        if not parseable or _parses(out):
            break
    return out, done


# --------------------------------------------------------------------------------------------
# (b) Structure-aware mutations of a ModelProto.
# --------------------------------------------------------------------------------------------

SUPPORTED_OPS = (
    "Conv", "MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool", "Gemm", "MatMul",
    "BatchNormalization", "Add", "Sub", "Mul", "Div", "Sum", "Relu", "LeakyRelu", "PRelu",
    "Sigmoid", "Tanh", "Elu", "Selu", "Softplus", "Clip", "HardSwish", "Gelu", "Erf", "Exp", "Abs",
    "Neg", "Sqrt", "Reciprocal", "Dropout", "Identity", "Flatten", "Reshape", "Transpose", "Squeeze",
    "Unsqueeze", "Concat", "Pad", "Shape", "Softmax", "LogSoftmax", "LayerNormalization",
    "InstanceNormalization", "LRN", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "Resize",
    "ConvTranspose", "Slice", "Split", "Gather", "Tile", "Expand", "Max", "Min", "Mean", "Einsum",
)
OTHER_OPS = (  # standard, but without a rule (or only fine after the last layer)
    "Pow", "Log", "LpPool", "Cast", "CastLike", "ArgMax", "TopK",
    "Upsample", "DepthToSpace", "SpaceToDepth", "Where", "Equal", "Not", "Size", "ConstantOfShape",
    "Range", "NonZero", "QuantizeLinear", "DequantizeLinear", "QLinearConv", "MatMulInteger",
    "If", "Loop", "Scan", "Constant", "RandomNormalLike", "Trilu", "CumSum", "MaxUnpool",
    "MaxRoiPool", "Compress", "OneHot", "Det", "NoSuchOp",
)
ATTRIBUTE_NAMES = ("kernel_shape", "strides", "pads", "dilations", "group", "axis", "axes", "perm",
                   "auto_pad", "ceil_mode", "count_include_pad", "transA", "transB", "alpha", "beta",
                   "epsilon", "momentum", "training_mode", "allowzero", "mode", "storage_order", "keepdims",
                   "to", "value", "spatial", "size", "bias", "noop_with_empty_axes", "coordinate_transformation_mode",
                   "nearest_mode", "cubic_coeff_a", "exclude_outside", "output_padding", "output_shape",
                   "num_outputs", "equation", "stash_type", "split")
#: Attributes each seed op may carry (a schema-valid name, so the mutation gets past the checker).
PLAUSIBLE_ATTRIBUTES = {
    "Conv": ("strides", "pads", "dilations", "group", "auto_pad", "kernel_shape"),
    "MaxPool": ("strides", "pads", "dilations", "ceil_mode", "auto_pad", "storage_order", "kernel_shape"),
    "AveragePool": ("strides", "pads", "ceil_mode", "auto_pad", "count_include_pad", "kernel_shape"),
    "Gemm": ("transA", "transB", "alpha", "beta"),
    "Flatten": ("axis",), "Softmax": ("axis",), "Transpose": ("perm",), "Pad": ("mode",),
    "Reshape": ("allowzero",), "BatchNormalization": ("epsilon", "momentum", "training_mode"),
    "ConvTranspose": ("strides", "pads", "dilations", "group", "auto_pad", "kernel_shape", "output_padding",
                      "output_shape"),
    "LogSoftmax": ("axis",), "LayerNormalization": ("axis", "epsilon", "stash_type"),
    "InstanceNormalization": ("epsilon",), "LRN": ("size", "alpha", "beta", "bias"),
    "ReduceMean": ("axes", "keepdims", "noop_with_empty_axes"), "ReduceSum": ("keepdims", "noop_with_empty_axes"),
    "ReduceMax": ("axes", "keepdims", "noop_with_empty_axes"),
    "Resize": ("mode", "coordinate_transformation_mode", "nearest_mode", "cubic_coeff_a", "exclude_outside"),
    "Split": ("axis", "split", "num_outputs"), "Gather": ("axis",), "Einsum": ("equation",),
}
INT_ATTRIBUTES = ("group", "axis", "ceil_mode", "count_include_pad", "transA", "transB", "allowzero",
                  "storage_order", "training_mode", "keepdims", "to", "spatial", "size", "noop_with_empty_axes",
                  "exclude_outside", "num_outputs", "stash_type")
INTS_ATTRIBUTES = ("kernel_shape", "strides", "pads", "dilations", "perm", "axes", "output_padding", "output_shape",
                   "split")
FLOAT_ATTRIBUTES = ("alpha", "beta", "epsilon", "momentum", "bias", "cubic_coeff_a")
STRING_ATTRIBUTES = ("auto_pad", "mode", "coordinate_transformation_mode", "nearest_mode", "equation")
INTS = (-(1 << 40), -3, -2, -1, 0, 1, 2, 3, 4, 5, 7, 17, 1 << 31, 1 << 40, (1 << 63) - 1)
FLOATS = (0.0, -1.0, 0.5, 1.0, 1e-30, 1e30, float("nan"), float("inf"), -float("inf"))
STRINGS = ("", "NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER", "same_upper", "constant", "reflect", "edge",
           "wrap", "garbage", "\x00", "é", "nearest", "linear", "cubic", "half_pixel", "align_corners",
           "asymmetric", "tf_crop_and_resize", "floor", "round_prefer_ceil", "bi,ij->bj", "bij,bkj->bik",
           "ii->i", "...i,...i", "b...->...b", "bi,bi->", "a->aa", "ab,,->")
DIMS = (0, -1, -7, 1, 2, 3, 5, 6, 8, 36, 1 << 31, 1 << 40, (1 << 63) - 1)
ELEM_TYPES = (
    TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16, TensorProto.INT64,
    TensorProto.INT32, TensorProto.INT8, TensorProto.UINT8, TensorProto.BOOL, TensorProto.STRING,
    TensorProto.COMPLEX64, TensorProto.FLOAT8E4M3FN, TensorProto.UNDEFINED, 99,
)
INIT_DTYPES = (np.int64, np.int32, np.float16, np.float64, np.uint8, np.bool_, np.int8, np.complex64)


def _random_ints(rng, length):
    if rng.random() < 0.5:  # plausible small values
        return [rng.choice([0, 1, 2, 3]) for _ in range(length)]
    return [rng.choice(INTS) for _ in range(length)]


def _random_attribute(rng, name):
    """An attribute ``name`` of a random value, mostly of the type that name usually has."""
    kind = rng.choice(["int", "ints", "float", "floats", "string", "tensor"])
    if rng.random() < 0.8:
        kind = ("ints" if name in INTS_ATTRIBUTES else "int" if name in INT_ATTRIBUTES
                else "float" if name in FLOAT_ATTRIBUTES else "string" if name in STRING_ATTRIBUTES else kind)
    if kind == "int":
        return helper.make_attribute(name, rng.choice(INTS))
    if kind == "ints":  # often of an unexpected length, with negative or huge entries
        length = rng.choice([2, 4] if rng.random() < 0.5 else [0, 1, 3, 5, 6, 7])
        return helper.make_attribute(name, _random_ints(rng, length), attr_type=onnx.AttributeProto.INTS)
    if kind == "float":
        return helper.make_attribute(name, rng.choice(FLOATS))
    if kind == "floats":
        return helper.make_attribute(name, [rng.choice(FLOATS) for _ in range(rng.randint(0, 4))],
                                     attr_type=onnx.AttributeProto.FLOATS)
    if kind == "string":
        return helper.make_attribute(name, rng.choice(STRINGS))
    return helper.make_attribute(name, numpy_helper.from_array(np.ones(rng.choice([1, 3]), np.float32)))


def _perturbed_attribute(rng, attr):
    """An attribute of the same name and type as ``attr``, its value changed."""
    value = helper.get_attribute_value(attr)
    if attr.type == onnx.AttributeProto.INTS:
        value = list(value)
        what = rng.choice(["entry", "entry", "longer", "shorter", "negative", "zero"])
        if what == "entry" and value:
            value[rng.randrange(len(value))] = rng.choice(INTS)
        elif what == "longer":
            value.append(rng.choice([0, 1, 2, 3]))
        elif what == "shorter" and value:
            value.pop(rng.randrange(len(value)))
        elif what == "negative" and value:
            value[rng.randrange(len(value))] = -rng.choice([1, 2, 3])
        elif what == "zero" and value:
            value[rng.randrange(len(value))] = 0
        return helper.make_attribute(attr.name, value, attr_type=onnx.AttributeProto.INTS)
    if attr.type == onnx.AttributeProto.INT:
        return helper.make_attribute(attr.name, rng.choice(INTS))
    if attr.type == onnx.AttributeProto.FLOAT:
        return helper.make_attribute(attr.name, rng.choice(FLOATS))
    if attr.type == onnx.AttributeProto.STRING:
        return helper.make_attribute(attr.name, rng.choice(STRINGS))
    return _random_attribute(rng, attr.name)


def _random_array(rng, shape, dtype):
    nrng = np.random.default_rng(rng.getrandbits(32))
    values = nrng.normal(0, 1, size=shape)
    special = rng.random()
    if special < 0.1 and values.size:
        values.flat[nrng.integers(values.size)] = np.nan
    elif special < 0.2 and values.size:
        values.flat[nrng.integers(values.size)] = np.inf
    elif special < 0.3:
        values = values * 1e30
    elif special < 0.4:
        values = np.zeros(shape)
    elif special < 0.5:
        values = -np.abs(values)  # negative variances, scales
    with np.errstate(all="ignore"):
        if np.dtype(dtype).kind in "iub":
            values = np.nan_to_num(values, nan=0, posinf=0, neginf=0)
            values = np.clip(values * 3, -100, 100)
        return values.astype(dtype)


def _all_tensor_names(model):
    names = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer}
    for node in model.graph.node:
        names.update(node.input)
        names.update(node.output)
    return sorted(n for n in names if n)


def _pick_node(rng, graph):
    return rng.randrange(len(graph.node)) if len(graph.node) else None


def m_op_type(model, rng):
    i = _pick_node(rng, model.graph)
    if i is None:
        return "no node"
    node = model.graph.node[i]
    old = node.op_type
    node.op_type = rng.choice(SUPPORTED_OPS if rng.random() < 0.5 else SUPPORTED_OPS + OTHER_OPS)
    if rng.random() < 0.5:  # attributes the new op does not know would stop the checker at once
        del node.attribute[:]
    return f"node {i} op_type {old} -> {node.op_type}"


def m_delete_attribute(model, rng):
    nodes = [i for i, n in enumerate(model.graph.node) if n.attribute]
    if not nodes:
        return "no attribute"
    i = rng.choice(nodes)
    node = model.graph.node[i]
    j = rng.randrange(len(node.attribute))
    name = node.attribute[j].name
    del node.attribute[j]
    return f"node {i} ({node.op_type}) attribute {name} deleted"


def m_set_attribute(model, rng):
    i = _pick_node(rng, model.graph)
    if i is None:
        return "no node"
    node = model.graph.node[i]
    existing = {a.name: a for a in node.attribute}
    choice = rng.random()
    if existing and choice < 0.6:
        name = rng.choice(sorted(existing))
        attr = _perturbed_attribute(rng, existing[name])
    elif node.op_type in PLAUSIBLE_ATTRIBUTES and choice < 0.85:
        name = rng.choice(PLAUSIBLE_ATTRIBUTES[node.op_type])
        attr = _random_attribute(rng, name)
    else:
        name = rng.choice(ATTRIBUTE_NAMES)
        attr = _random_attribute(rng, name)
    for j, a in enumerate(node.attribute):
        if a.name == name:
            del node.attribute[j]
            break
    node.attribute.append(attr)
    return f"node {i} ({node.op_type}) attribute {name} = {helper.get_attribute_value(attr)!r}"[:300]


def m_initializer(model, rng):
    inits = model.graph.initializer
    if not inits:
        return "no initializer"
    j = rng.randrange(len(inits))
    t = inits[j]
    try:
        old = numpy_helper.to_array(t)
    except Exception:  # noqa: BLE001 - an earlier mutation broke it already
        old = np.zeros(3, np.float32)
    what = rng.choice(["dtype", "shape", "3d", "scalar", "empty", "values", "values", "remove", "raw_short",
                       "dims_only", "duplicate", "data_type"])
    if what == "dtype":
        dtype = rng.choice(INIT_DTYPES)
        with np.errstate(all="ignore"):
            new = _random_array(rng, old.shape, dtype) if rng.random() < 0.3 else old.astype(dtype)
        inits[j].CopyFrom(numpy_helper.from_array(new, t.name))
        return f"initializer {t.name} dtype -> {np.dtype(dtype)}"
    if what in ("shape", "3d", "scalar", "empty"):
        if what == "shape":
            shape = tuple(rng.choice([1, 2, 3, 4, 5, 6, 8, 18, 36]) for _ in range(rng.randint(1, 4)))
        elif what == "3d":
            shape = (*old.shape[:2], 2) if old.ndim >= 2 else (2, *old.shape, 2)
        elif what == "scalar":
            shape = ()
        else:
            shape = (0, *(rng.choice([0, 1, 3]) for _ in range(max(0, old.ndim - 1))))
        inits[j].CopyFrom(numpy_helper.from_array(_random_array(rng, shape, old.dtype), t.name))
        return f"initializer {t.name} shape {old.shape} -> {shape}"
    if what == "values":
        inits[j].CopyFrom(numpy_helper.from_array(_random_array(rng, old.shape, old.dtype), t.name))
        return f"initializer {t.name} new values (maybe NaN/Inf/huge/zero/negative)"
    if what == "remove":
        del inits[j]
        return f"initializer {t.name} removed"
    if what == "raw_short":  # raw data shorter than the dims say
        raw = t.raw_data or old.tobytes()
        t.ClearField("float_data")
        t.ClearField("int64_data")
        t.raw_data = raw[: rng.randrange(max(1, len(raw)))]
        return f"initializer {t.name} raw_data truncated to {len(t.raw_data)} bytes"
    if what == "dims_only":  # dims changed, data kept
        t.dims[:] = [rng.choice(DIMS) for _ in range(rng.randint(0, 4))]
        return f"initializer {t.name} dims -> {list(t.dims)} (data kept)"
    if what == "duplicate":
        inits.add().CopyFrom(numpy_helper.from_array(_random_array(rng, (3,), np.float32), t.name))
        return f"initializer {t.name} duplicated with another shape"
    t.data_type = rng.choice(ELEM_TYPES)
    return f"initializer {t.name} data_type field -> {t.data_type} (data kept)"


def m_external_data(model, rng):
    inits = model.graph.initializer
    if not inits:
        return "no initializer"
    t = inits[rng.randrange(len(inits))]
    location = rng.choice(["w.bin", "", ".", "..", "/etc/passwd", "a/../../b", "sub/\x00x", "x" * 300,
                           "/dev/zero", "model.onnx", "C:\\w.bin", "w.bin/", "~/.bashrc"])
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.ClearField("int64_data")
    t.data_location = TensorProto.EXTERNAL
    del t.external_data[:]
    entry = t.external_data.add()
    entry.key, entry.value = "location", location
    if rng.random() < 0.5:
        extra = t.external_data.add()
        extra.key = rng.choice(["offset", "length", "checksum", "bogus"])
        extra.value = rng.choice(["0", "-1", "abc", str(1 << 62), "4"])
    return f"initializer {t.name} external data at {location!r}"


def m_rename(model, rng):
    i = _pick_node(rng, model.graph)
    if i is None:
        return "no node"
    node = model.graph.node[i]
    names = _all_tensor_names(model)
    if rng.random() < 0.6 and node.input:
        k = rng.randrange(len(node.input))
        new = rng.choice(names + ["", "nowhere", node.output[0] if node.output else "y"])
        old, node.input[k] = node.input[k], new
        return f"node {i} input {k} {old!r} -> {new!r}"
    if node.output:
        k = rng.randrange(len(node.output))
        new = rng.choice(names + ["", "elsewhere"])
        old, node.output[k] = node.output[k], new
        return f"node {i} output {k} {old!r} -> {new!r}"
    return "no output"


def m_node_arity(model, rng):
    i = _pick_node(rng, model.graph)
    if i is None:
        return "no node"
    node = model.graph.node[i]
    if rng.random() < 0.5 and node.input:
        del node.input[rng.randrange(len(node.input))]
        return f"node {i} ({node.op_type}) lost an input"
    node.input.append(rng.choice(_all_tensor_names(model) + [""]))
    if rng.random() < 0.3:
        node.output.append(rng.choice(["extra", ""]))
    return f"node {i} ({node.op_type}) gained an input (and maybe an output)"


def m_nodes(model, rng):
    graph = model.graph
    if not graph.node:
        return "no node"
    what = rng.choice(["delete", "duplicate", "swap", "reverse", "domain", "name"])
    i = rng.randrange(len(graph.node))
    if what == "delete":
        del graph.node[i]
        return f"node {i} deleted"
    if what == "duplicate":
        copy = onnx.NodeProto()
        copy.CopyFrom(graph.node[i])
        graph.node.insert(rng.randrange(len(graph.node) + 1), copy)
        return f"node {i} duplicated"
    if what in ("swap", "reverse"):
        nodes = [onnx.NodeProto() for _ in graph.node]
        for copy, node in zip(nodes, graph.node):
            copy.CopyFrom(node)
        if what == "swap":
            j = rng.randrange(len(nodes))
            nodes[i], nodes[j] = nodes[j], nodes[i]
        else:
            nodes.reverse()
        del graph.node[:]
        graph.node.extend(nodes)
        return "node order reversed" if what == "reverse" else f"nodes {i} and {j} swapped"
    if what == "domain":
        graph.node[i].domain = rng.choice(["ai.onnx", "ai.onnx.ml", "com.microsoft", "custom", ""])
        return f"node {i} domain {graph.node[i].domain!r}"
    graph.node[i].name = rng.choice(["", graph.node[(i + 1) % len(graph.node)].name, "é\x00", "n" * 1000])
    return f"node {i} renamed"


def m_input_dims(model, rng):
    graph = model.graph
    if not graph.input:
        return "no input"
    value = graph.input[0]
    shape = value.type.tensor_type.shape
    what = rng.choice(["dim", "dim", "dim", "symbolic", "clear", "add", "remove", "noshape"])
    if what == "noshape":
        value.type.tensor_type.ClearField("shape")
        return "input shape removed"
    if what == "add":
        shape.dim.add().dim_value = rng.choice([1, 2, 3])
        return "input gained an axis"
    if not shape.dim:
        return "input has no dims"
    k = rng.randrange(len(shape.dim))
    if what == "remove":
        del shape.dim[k]
        return f"input axis {k} removed"
    if what == "symbolic":
        shape.dim[k].dim_param = rng.choice(["N", "H", "batch", ""])
        return f"input axis {k} symbolic {shape.dim[k].dim_param!r}"
    if what == "clear":
        shape.dim[k].Clear()
        return f"input axis {k} unknown"
    shape.dim[k].dim_value = rng.choice(DIMS)
    return f"input axis {k} = {shape.dim[k].dim_value}"


def m_elem_type(model, rng):
    graph = model.graph
    where = rng.choice(["input", "input", "output"])
    values = graph.input if where == "input" else graph.output
    if not values:
        return f"no {where}"
    value = values[rng.randrange(len(values))]
    value.type.tensor_type.elem_type = rng.choice(ELEM_TYPES)
    return f"{where} {value.name!r} elem_type -> {value.type.tensor_type.elem_type}"


def m_graph_io(model, rng):
    graph = model.graph
    what = rng.choice(["second_input", "input_is_init", "remove_outputs", "bogus_output", "remove_input",
                       "value_info", "sequence_input"])
    if what == "second_input":
        name = rng.choice(["x2", "w1", graph.input[0].name if graph.input else "x"])
        graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 3]))
        return f"second graph input {name!r}"
    if what == "input_is_init" and graph.initializer:
        t = graph.initializer[rng.randrange(len(graph.initializer))]
        graph.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
        return f"initializer {t.name!r} also a graph input"
    if what == "remove_outputs":
        del graph.output[:]
        return "graph outputs removed"
    if what == "bogus_output":
        graph.output.append(helper.make_tensor_value_info(rng.choice(["nowhere", "x"]), TensorProto.FLOAT, None))
        return "graph output of an unknown tensor"
    if what == "remove_input":
        del graph.input[:]
        return "graph inputs removed"
    if what == "value_info":
        name = rng.choice(_all_tensor_names(model) or ["x"])
        graph.value_info.append(helper.make_tensor_value_info(
            name, rng.choice(ELEM_TYPES[:6]), [rng.choice(DIMS[:9]) for _ in range(rng.randint(0, 4))]))
        return f"value_info for {name!r} with a random type"
    if graph.input:
        graph.input[0].type.CopyFrom(helper.make_sequence_type_proto(
            helper.make_tensor_type_proto(TensorProto.FLOAT, ["N", 3])))
        return "input type is a sequence"
    return "nothing"


def m_opset(model, rng):
    what = rng.choice(["version", "version", "domain", "extra", "ir", "none"])
    if not model.opset_import:
        model.opset_import.append(helper.make_opsetid("", OPSET))
    if what == "version":
        model.opset_import[0].version = rng.choice([-1, 0, 1, 5, 6, 7, 9, 10, 11, 12, 13, 18, 21, 22, 23, 24, 26,
                                                   99, 1 << 40])
        return f"opset -> {model.opset_import[0].version}"
    if what == "domain":
        model.opset_import[0].domain = rng.choice(["ai.onnx.ml", "custom", "ai.onnx"])
        return f"opset domain -> {model.opset_import[0].domain!r}"
    if what == "extra":
        model.opset_import.append(helper.make_opsetid(rng.choice(["", "ai.onnx.ml", "com.microsoft"]),
                                                      rng.choice([1, 3, 17])))
        return "extra opset import"
    if what == "ir":
        model.ir_version = rng.choice([0, 1, 3, 7, 10, 11, 12, 13, 100, 1 << 40])
        return f"ir_version -> {model.ir_version}"
    del model.opset_import[:]
    return "no opset import"


PROTO_MUTATORS = (
    (m_op_type, 3), (m_delete_attribute, 2), (m_set_attribute, 5), (m_initializer, 4), (m_external_data, 1),
    (m_rename, 2), (m_node_arity, 1), (m_nodes, 2), (m_input_dims, 3), (m_elem_type, 2),
    (m_graph_io, 2), (m_opset, 2),
)


def mutate_proto(model: onnx.ModelProto, rng, n: int | None = None) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of ``model`` with ``n`` (default 1 to 3) random structural mutations."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    funcs, weights = zip(*PROTO_MUTATORS)
    done = []
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3]) if n is None else n):
        func = rng.choices(funcs, weights)[0]
        done.append(func(out, rng))
    return out, done


# --------------------------------------------------------------------------------------------
# (b') Random architectures: valid small models that exercise the walker's rules directly.
# --------------------------------------------------------------------------------------------


class _NetBuilder:
    """A model grown node by node; shapes come from onnx shape inference after each node."""

    def __init__(self, rng, opset):
        self.rng, self.opset = rng, opset
        self.nodes, self.inits, self.tensors = [], [], []  # tensors: (name, per-sample shape)
        self.count = 0

    def name(self, prefix):
        self.count += 1
        return f"{prefix}{self.count}"

    def const(self, array, prefix="c"):
        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def weight(self, shape):
        return self.const(_random_array(self.rng, shape, np.float32) if self.rng.random() < 0.15 else
                          np.random.default_rng(self.rng.getrandbits(32)).normal(0, 0.5, shape).astype(np.float32),
                          "w")

    def model(self, input_value, output=None):
        out = output or self.tensors[-1][0]
        graph = helper.make_graph(self.nodes, "net", [input_value],
                                  [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)], producer_name="fuzz")
        model.ir_version = 8
        return model

    def try_add(self, input_value, nodes, inits_before, output=None) -> bool:
        """Keep ``nodes`` if shape inference accepts them and gives the new tensor (``output``, by
        default the last node's first output) a positive shape."""
        output = output or nodes[-1].output[0]
        self.nodes.extend(nodes)
        try:
            inferred = onnx.shape_inference.infer_shapes(self.model(input_value, output), strict_mode=True)
            value = inferred.graph.output[0]
            dims = value.type.tensor_type.shape.dim
            if not value.type.tensor_type.HasField("shape") or not dims:
                raise ValueError("no shape")
            shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in dims[1:])
            if any(s <= 0 for s in shape) or int(np.prod(shape)) > 4096:
                raise ValueError("bad shape")
        except Exception:  # noqa: BLE001 - this layer does not fit; forget it
            del self.nodes[len(self.nodes) - len(nodes):]
            del self.inits[inits_before:]
            return False
        self.tensors.append((output, shape))
        return True


def _window_attributes(rng, spatial, pool=False):
    nd = len(spatial)
    kernel = [rng.randint(1, min(3, s)) for s in spatial]
    attrs = {"kernel_shape": kernel}
    if rng.random() < 0.6:
        attrs["strides"] = [rng.choice([1, 1, 2, 3]) for _ in range(nd)]
    mode = rng.choice(["pads", "pads", "none", "SAME_UPPER", "SAME_LOWER", "VALID"])
    if mode == "pads":
        attrs["pads"] = [rng.choice([0, 0, 1, 2]) for _ in range(2 * nd)]
        attrs["pads"] = [min(p, k - 1) if pool else p for p, k in zip(attrs["pads"], kernel * 2)]
    elif mode != "none":
        attrs["auto_pad"] = mode
    if rng.random() < 0.3 and mode not in ("SAME_UPPER", "SAME_LOWER"):
        attrs["dilations"] = [rng.choice([1, 2]) for _ in range(nd)]
    return attrs


LAYER_CHOICES = ("conv", "conv", "pool", "globalpool", "bn", "act", "act", "const_op", "flatten", "reshape",
                 "transpose", "squeeze", "pad", "concat", "dense", "dense", "sum", "unsupported",
                 "softmax", "norm", "lrn", "reduce", "resize", "convtranspose", "slice", "split", "gather",
                 "tile", "concat_const", "product", "maxmin", "dense_bn", "einsum")


def random_net(rng) -> onnx.ModelProto:
    """A random small network of supported (and a few unsupported) ops, valid by onnx's shape
    inference: random Conv/pool geometry, groups, pads, layouts, residual sums, biases."""
    opset = rng.choice([13, 15, 17, 17, 17, 18, 21])
    b = _NetBuilder(rng, opset)
    if rng.random() < 0.6:
        rank = rng.choice([1, 2, 2, 2, 3])
        shape = (rng.randint(1, 4), *(rng.randint(3, 9 if rank < 3 else 5) for _ in range(rank)))
    else:
        shape = (rng.randint(2, 8),)
    batch = rng.choice(["N", "N", "N", 1, "batch"])
    input_value = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, *shape])
    b.tensors.append(("x", shape))
    for _ in range(rng.randint(1, 7)):
        for _attempt in range(6):
            if _add_layer(b, rng, input_value):
                break
    if not any(n.op_type in ("Conv", "Gemm", "MatMul", "MaxPool", "AveragePool") for n in b.nodes):
        _add_dense(b, rng, input_value)
    model = b.model(input_value)
    # the output's shape, as exporters write it; left without one where inference fails (the checker refuses it)
    with contextlib.suppress(Exception):
        model.graph.output[0].CopyFrom(onnx.shape_inference.infer_shapes(model).graph.output[0])
    return model


def _add_dense(b, rng, input_value):
    name, shape = b.tensors[-1]
    if len(shape) != 1:
        flat = b.name("flat")
        if not b.try_add(input_value, [helper.make_node("Flatten", [name], [flat], name=flat)], len(b.inits)):
            return False
        name, shape = b.tensors[-1]
    out, before = b.name("fc"), len(b.inits)
    w = b.weight((shape[0], rng.randint(1, 6)))
    return b.try_add(input_value, [helper.make_node("MatMul", [name, w], [out], name=out)], before)


def _add_layer(b, rng, input_value) -> bool:
    name, shape = b.tensors[-1]
    kind = rng.choice(LAYER_CHOICES)
    if not shape and kind in ("dense", "reshape", "concat", "pad"):
        return False
    before = len(b.inits)
    out = b.name(kind)
    spatial = shape[1:]
    node = None
    if kind == "conv" and spatial:
        c = shape[0]
        group = rng.choice([g for g in (1, 1, 2, 3, c) if c % g == 0])
        cout = group * rng.randint(1, 3)
        attrs = _window_attributes(rng, spatial)
        if rng.random() < 0.5:
            attrs["group"] = group
        else:
            group = 1
            cout = rng.randint(1, 4)
        w = b.weight((cout, c // group, *attrs["kernel_shape"]))
        inputs = [name, w] + ([b.weight((cout,))] if rng.random() < 0.5 else [])
        node = helper.make_node("Conv", inputs, [out], name=out, **attrs)
    elif kind == "pool" and spatial:
        op = rng.choice(["MaxPool", "MaxPool", "AveragePool"])
        attrs = _window_attributes(rng, spatial, pool=True)
        if op == "AveragePool":
            if b.opset < 19:  # AveragePool takes dilations from opset 19 on
                attrs.pop("dilations", None)
            if rng.random() < 0.5:
                attrs["count_include_pad"] = 1
        if rng.random() < 0.3:
            attrs["ceil_mode"] = 1
        node = helper.make_node(op, [name], [out], name=out, **attrs)
    elif kind == "globalpool" and spatial:
        node = helper.make_node(rng.choice(["GlobalMaxPool", "GlobalAveragePool"]), [name], [out], name=out)
    elif kind == "bn" and spatial:
        c = shape[0]
        params = [b.const(np.abs(np.random.default_rng(rng.getrandbits(32)).normal(1, 0.3, c)).astype(np.float32))
                  for _ in range(4)]
        node = helper.make_node("BatchNormalization", [name, *params], [out], name=out)
        if rng.random() < 0.5:  # a Conv before it gets BN fused by onnxruntime; an Add in between stops it
            mid = b.name("shift")
            nodes = [helper.make_node("Add", [name, b.const(np.float32(0.1))], [mid], name=mid),
                     helper.make_node("BatchNormalization", [mid, *params], [out], name=out)]
            return b.try_add(input_value, nodes, before)
    elif kind == "act":
        op = rng.choice(["Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "Softplus", "HardSwish", "Abs", "Neg",
                         "Dropout", "Identity", "Clip", "PRelu", "Exp", "Erf"])
        inputs = [name]
        if op == "PRelu":
            inputs.append(b.const(np.full(shape[:1] + (1,) * (len(shape) - 1), 0.1, np.float32)))
        if op == "Clip":
            inputs += [b.const(np.float32(-1)), b.const(np.float32(1))]
        node = helper.make_node(op, inputs, [out], name=out)
    elif kind == "const_op":
        op = rng.choice(["Add", "Sub", "Mul", "Div"])
        cshape = rng.choice([shape, shape[-1:], (), (1,) * len(shape), (2, *shape)])
        value = np.random.default_rng(rng.getrandbits(32)).normal(1, 0.5, cshape).astype(np.float32)
        operands = [name, b.const(value)]
        if rng.random() < 0.3 and op in ("Add", "Mul"):
            operands.reverse()
        node = helper.make_node(op, operands, [out], name=out)
    elif kind == "flatten":
        node = helper.make_node("Flatten", [name], [out], name=out, axis=rng.choice([1, 1, 1, 2, 0, -1]))
    elif kind == "reshape":
        size = int(np.prod(shape))
        factors = [f for f in range(1, size + 1) if size % f == 0]
        f = rng.choice(factors)
        target = rng.choice([[0, -1], [-1, f], [0, f, size // f], [0, size], [1, -1], [0, -1, 1], [2, -1]])
        node = helper.make_node("Reshape", [name, b.const(np.array(target, np.int64))], [out], name=out)
    elif kind == "transpose":
        axes = list(range(1, len(shape) + 1))
        rng.shuffle(axes)
        perm = [0, *axes] if rng.random() < 0.85 else rng.sample(range(len(shape) + 1), len(shape) + 1)
        node = helper.make_node("Transpose", [name], [out], name=out, perm=perm)
    elif kind == "squeeze":
        if rng.random() < 0.5:
            axis = rng.randint(-len(shape) - 1, len(shape))
            node = helper.make_node("Unsqueeze", [name, b.const(np.array([axis], np.int64))], [out], name=out)
        else:
            ones = [i + 1 for i, s in enumerate(shape) if s == 1] or [rng.randint(0, len(shape))]
            node = helper.make_node("Squeeze", [name, b.const(np.array(ones[:1], np.int64))], [out], name=out)
    elif kind == "pad":
        pads = [0] * (len(shape) + 1) * 2
        for axis in range(1, len(shape) + 1):
            pads[axis] = rng.choice([0, 1, 2])
            pads[axis + len(shape) + 1] = rng.choice([0, 1])
        mode = rng.choice(["constant", "constant", "reflect", "edge"])
        node = helper.make_node("Pad", [name, b.const(np.array(pads, np.int64))], [out], name=out, mode=mode)
    elif kind == "concat":
        other = rng.choice(b.tensors)
        axis = rng.randint(1, len(shape)) if len(shape) else 1
        node = helper.make_node("Concat", [name, other[0]], [out], name=out, axis=axis)
    elif kind == "dense":
        if len(shape) == 1 and rng.random() < 0.5:
            k = rng.randint(1, 6)
            trans = rng.random() < 0.5
            w = b.weight((k, shape[0]) if trans else (shape[0], k))
            inputs = [name, w] + ([b.weight((k,))] if rng.random() < 0.5 else [])
            node = helper.make_node("Gemm", inputs, [out], name=out, transB=int(trans),
                                    alpha=rng.choice([1.0, 0.5, -2.0]))
        else:
            node = helper.make_node("MatMul", [name, b.weight((shape[-1], rng.randint(1, 6)))], [out], name=out)
    elif kind == "sum":
        other = rng.choice(b.tensors)
        op = rng.choice(["Add", "Sub", "Sum", "Mul"])
        node = helper.make_node(op, [name, other[0]], [out], name=out)
    elif kind == "unsupported":
        op = rng.choice(["CumSum", "TopK", "ArgMax"] + (["LpPool"] if spatial else []))
        if op == "LpPool":
            node = helper.make_node(op, [name], [out], name=out, kernel_shape=[1] * len(spatial))
        elif op == "CumSum":
            node = helper.make_node(op, [name, b.const(np.array(len(shape), np.int64))], [out], name=out)
        elif op == "TopK":
            node = helper.make_node(op, [name, b.const(np.array([1], np.int64))], [out, b.name("idx")], name=out)
        else:
            node = helper.make_node(op, [name], [out], name=out, axis=len(shape))
    elif kind in NEW_LAYERS:
        nodes = NEW_LAYERS[kind](b, rng, name, shape, out)
        if not nodes:
            return False
        nodes, output = nodes if isinstance(nodes, tuple) else (nodes, None)
        return b.try_add(input_value, nodes, before, output)
    if node is None:
        return False
    return b.try_add(input_value, [node], before)


# Layers of the ops with rules added later (normalizations, reductions, resampling, selections,
# products of activations). Each builder gets the last tensor (``name``, per-sample ``shape``)
# and returns the nodes of the layer ending in ``out`` (or (nodes, output) when the layer's
# tensor is another output), or None when it does not apply to that shape. Axes are counted
# with the batch axis, which they mostly avoid; now and then they hit it, which must be refused.


def _axis(rng, shape, batch_too=0.05):
    """An axis of a (batch, *shape) tensor other than the batch's, negative half the time."""
    if not shape or rng.random() < batch_too:
        return rng.choice([0, -len(shape) - 1])
    axis = rng.randint(1, len(shape))
    return axis - len(shape) - 1 if rng.random() < 0.5 else axis


def _rand(rng, shape, mean=0.0, scale=0.5):
    return np.random.default_rng(rng.getrandbits(32)).normal(mean, scale, shape).astype(np.float32)


def _softmax(b, rng, name, shape, out):
    op = rng.choice(["Softmax", "LogSoftmax"])
    attrs = {"axis": _axis(rng, shape)} if rng.random() < 0.8 else {}  # default -1
    return [helper.make_node(op, [name], [out], name=out, **attrs)]


def _norm(b, rng, name, shape, out):
    eps = {"epsilon": rng.choice([1e-5, 1e-3, 0.5])} if rng.random() < 0.5 else {}
    if shape[1:] and rng.random() < 0.4:
        c = shape[0]
        return [helper.make_node("InstanceNormalization", [name, b.const(_rand(rng, c, 1.0)),
                                 b.const(_rand(rng, c))], [out], name=out, **eps)]
    if b.opset < 17:
        return None
    axis = _axis(rng, shape, batch_too=0.02) if rng.random() < 0.7 else -1
    normalized = shape[axis - 1 if axis > 0 else len(shape) + axis:] if axis else shape
    inputs = [name, b.const(_rand(rng, normalized, 1.0))]
    if rng.random() < 0.6:
        inputs.append(b.const(_rand(rng, normalized)))
    if rng.random() < 0.2:  # a scale broadcast over the normalized axes
        inputs[1] = b.const(_rand(rng, (1,) * len(normalized), 1.0))
    return [helper.make_node("LayerNormalization", inputs, [out], name=out, axis=axis, **eps)]


def _lrn(b, rng, name, shape, out):
    if not shape[1:] or (len(shape) != 3 and rng.random() < 0.8):  # onnxruntime runs it on 4-D tensors only
        return None
    attrs = {"size": rng.choice([1, 3, 3, 5, 5, 2])}  # onnxruntime refuses an even size
    for key, values in (("alpha", [1e-4, 0.5, 1.0]), ("beta", [0.75, 0.5, 2.0]), ("bias", [1.0, 2.0, 0.5])):
        if rng.random() < 0.5:
            attrs[key] = rng.choice(values)
    return [helper.make_node("LRN", [name], [out], name=out, **attrs)]


def _reduce(b, rng, name, shape, out):
    op = rng.choice(["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin"])
    axes = sorted({_axis(rng, shape, batch_too=0.03) % (len(shape) + 1) for _ in range(rng.randint(1, 2))})
    axes = [a - len(shape) - 1 if rng.random() < 0.3 else a for a in axes]
    attrs = {"keepdims": rng.choice([0, 1])} if rng.random() < 0.7 else {}
    axes_as_input = b.opset >= (13 if op == "ReduceSum" else 18)
    if rng.random() < 0.1:  # no axes: every axis, the batch's too, unless noop_with_empty_axes
        if axes_as_input and rng.random() < 0.5:
            attrs["noop_with_empty_axes"] = 1
        return [helper.make_node(op, [name], [out], name=out, **attrs)]
    if axes_as_input:
        return [helper.make_node(op, [name, b.const(np.array(axes, np.int64))], [out], name=out, **attrs)]
    return [helper.make_node(op, [name], [out], name=out, axes=axes, **attrs)]


def _resize(b, rng, name, shape, out):
    if not shape[1:]:
        return None
    mode = rng.choice(["nearest", "nearest", "linear"])
    attrs = {"mode": mode}
    attrs["coordinate_transformation_mode"] = rng.choice(
        ["half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel"]
        + (["half_pixel_symmetric"] if b.opset >= 19 else []))
    if mode == "nearest" and rng.random() < 0.6:
        attrs["nearest_mode"] = rng.choice(["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"])
    spatial_scales = [rng.choice([0.5, 1.0, 2.0, 1.5, 3.0]) for _ in shape[1:]]
    sizes = [max(1, int(s * f)) for s, f in zip(shape[1:], spatial_scales)]
    if b.opset >= 18 and rng.random() < 0.5:  # only the spatial axes given
        attrs["axes"] = [a - len(shape) - 1 if rng.random() < 0.3 else a for a in range(2, len(shape) + 1)]
    else:  # every axis; sizes then fix the batch (to 1, while the model is run on more samples)
        spatial_scales, sizes = [1.0, 1.0, *spatial_scales], [1, shape[0], *sizes]
    inputs = [name, ""]
    if rng.random() < 0.6:
        inputs.append(b.const(np.array(spatial_scales, np.float32)))
    else:
        inputs += ["", b.const(np.array(sizes, np.int64))]
    return [helper.make_node("Resize", inputs, [out], name=out, **attrs)]


def _convtranspose(b, rng, name, shape, out):
    spatial = shape[1:]
    if not spatial:
        return None
    c = shape[0]
    group = rng.choice([g for g in (1, 1, 2, c) if c % g == 0])
    nd = len(spatial)
    attrs = {"kernel_shape": [rng.randint(1, 3) for _ in spatial]}
    strides = [rng.choice([1, 1, 2, 3]) for _ in spatial]
    if rng.random() < 0.6:
        attrs["strides"] = strides
    else:
        strides = [1] * nd
    dilations = [rng.choice([1, 1, 2]) for _ in spatial]
    if rng.random() < 0.3:
        attrs["dilations"] = dilations
    else:
        dilations = [1] * nd
    what = rng.choice(["pads", "pads", "none", "SAME_UPPER", "SAME_LOWER", "VALID", "output_shape"])
    if what == "pads":
        attrs["pads"] = [rng.choice([0, 0, 1]) for _ in range(2 * nd)]
    elif what == "output_shape":
        attrs["output_shape"] = [(s - 1) * st + (k - 1) * d + 1 + rng.randint(0, st - 1)
                                 for s, st, k, d in zip(spatial, strides, attrs["kernel_shape"], dilations)]
    elif what != "none":
        attrs["auto_pad"] = what
    if rng.random() < 0.3:  # must stay below the stride (or the dilation)
        attrs["output_padding"] = [rng.randint(0, max(st, d) - 1) for st, d in zip(strides, dilations)]
    if group > 1:
        attrs["group"] = group
    cout = rng.randint(1, 3)
    inputs = [name, b.weight((c, cout, *attrs["kernel_shape"]))]
    if rng.random() < 0.5:
        inputs.append(b.weight((cout * group,)))
    return [helper.make_node("ConvTranspose", inputs, [out], name=out, **attrs)]


def _slice(b, rng, name, shape, out):
    if not shape:
        return None
    implicit_axes = rng.random() < 0.25  # then they are 0, 1, ...: the batch axis is sliced whole
    axes = list(range(1, rng.randint(1, len(shape)) + 1)) if implicit_axes else \
        rng.sample(range(1, len(shape) + 1), rng.randint(1, len(shape)))
    if rng.random() < 0.03:
        axes[0] = 0
    starts, ends, steps = [], [], []
    for axis in axes:
        size = shape[axis - 1] if axis else 1
        steps.append(rng.choice([1, 1, 1, 2, -1, -2]))
        starts.append(rng.randint(-size, size - 1))
        ends.append(rng.choice([rng.randint(-size - 1, size + 1), (1 << 63) - 1, -(1 << 63)]))
    if implicit_axes:
        starts, ends = [0, *starts], [(1 << 63) - 1, *ends]
        return [helper.make_node("Slice", [name, b.const(np.array(starts, np.int64)),
                                           b.const(np.array(ends, np.int64))], [out], name=out)]
    axes = [a - len(shape) - 1 if rng.random() < 0.3 else a for a in axes]
    inputs = [name, *(b.const(np.array(v, np.int64)) for v in (starts, ends, axes))]
    if any(s != 1 for s in steps) or rng.random() < 0.5:
        inputs.append(b.const(np.array(steps, np.int64)))
    return [helper.make_node("Slice", inputs, [out], name=out)]


def _split(b, rng, name, shape, out):
    if not shape:
        return None
    axis = _axis(rng, shape, batch_too=0.02)
    size = shape[axis - 1 if axis > 0 else len(shape) + axis] if axis not in (0, -len(shape) - 1) else 1
    count = rng.randint(1, min(3, size))
    outputs = [out] + [b.name("part") for _ in range(count - 1)]
    attrs = {"axis": axis} if axis != 0 or rng.random() < 0.5 else {}
    inputs = [name]
    if b.opset >= 18 and rng.random() < 0.4:
        attrs["num_outputs"] = count
    elif rng.random() < 0.7:
        cuts = sorted(rng.sample(range(1, size), count - 1)) if count > 1 else []
        sizes = [e - s for s, e in zip([0, *cuts], [*cuts, size])]
        if b.opset >= 13:
            inputs.append(b.const(np.array(sizes, np.int64)))
        else:
            attrs["split"] = sizes
    node = helper.make_node("Split", inputs, outputs, name=out, **attrs)
    return [node], rng.choice(outputs)


def _gather(b, rng, name, shape, out):
    if not shape:
        return None
    axis = _axis(rng, shape, batch_too=0.02)
    size = shape[axis - 1 if axis > 0 else len(shape) + axis] if axis not in (0, -len(shape) - 1) else 1
    index_shape = rng.choice([(), (rng.randint(1, 4),), (2, 2)])
    indices = np.random.default_rng(rng.getrandbits(32)).integers(-size, size, index_shape).astype(
        rng.choice([np.int64, np.int32]))
    return [helper.make_node("Gather", [name, b.const(indices)], [out], name=out, axis=axis)]


def _tile(b, rng, name, shape, out):
    if rng.random() < 0.5:
        repeats = [1, *(rng.choice([1, 1, 2, 3]) for _ in shape)]
        if rng.random() < 0.05:
            repeats[0] = 2
        return [helper.make_node("Tile", [name, b.const(np.array(repeats, np.int64))], [out], name=out)]
    target = [1 if rng.random() < 0.5 else -1, *(s if s != 1 else rng.choice([1, 2, 3]) for s in shape)]
    if rng.random() < 0.3:  # expanded to a higher rank: the new axes come first, the batch moves
        target = [rng.choice([1, 2]), *target]
    target = [1 if t == -1 else t for t in target]
    return [helper.make_node("Expand", [name, b.const(np.array(target, np.int64))], [out], name=out)]


def _concat_const(b, rng, name, shape, out):
    """Concat with a constant (a class token), broadcast over the batch as exporters do: Expand
    to a shape built from the activation's Shape, which the walk folds; now and then the bare
    constant of batch 1, which onnxruntime only runs on one sample."""
    if not shape:
        return None
    axis = rng.randint(1, len(shape))
    cshape = [1, *shape]
    cshape[axis] = rng.randint(1, 3)
    token, nodes = b.const(_rand(rng, cshape)), []
    if rng.random() < 0.8:
        dims, batch, target, expanded = (b.name(p) for p in ("shape", "batch", "target", "token"))
        nodes = [helper.make_node("Shape", [name], [dims], name=dims),
                 helper.make_node("Slice", [dims, b.const(np.array([0], np.int64)),
                                            b.const(np.array([1], np.int64))], [batch], name=batch),
                 helper.make_node("Concat", [batch, b.const(np.array(cshape[1:], np.int64))], [target],
                                  name=target, axis=0),
                 helper.make_node("Expand", [token, target], [expanded], name=expanded)]
        token = expanded
    operands = [name, token] if rng.random() < 0.5 else [token, name]
    return nodes + [helper.make_node("Concat", operands, [out], name=out, axis=axis)]


def _branch(b, rng, name, shape):
    """A second activation of ``name``'s shape through a layer of its own (an activation of
    ``name`` alone would carry the same neurons: refused as an edge from a neuron to itself);
    now and then (always for a scalar) that activation alone, to check the refusal."""
    mid = b.name("branch")
    if not shape or rng.random() < 0.1:
        return mid, [helper.make_node(rng.choice(["Identity", "Tanh"]), [name], [mid], name=mid)]
    dense = b.name("fc")
    layer = helper.make_node("MatMul", [name, b.weight((shape[-1], shape[-1]))], [dense], name=dense)
    op = rng.choice(["Sigmoid", "Tanh", "Relu", "Exp", "Identity"])
    return mid, [layer, helper.make_node(op, [dense], [mid], name=mid)]


def _product(b, rng, name, shape, out):
    op = rng.choice(["Mul", "Mul", "Div", "MatMul", "MatMul"])
    if op == "MatMul" and len(shape) < 2:
        return None
    other, nodes = _branch(b, rng, name, shape)
    if op == "Div":  # a denominator kept away from 0
        positive = b.name("den")
        nodes[-1] = helper.make_node("Sigmoid", nodes[-1].input, [other], name=other)
        nodes.append(helper.make_node("Add", [other, b.const(np.float32(1.5))], [positive], name=positive))
        other = positive
    if op == "MatMul":  # x · f(x)ᵀ or f(x)ᵀ · x
        perm = list(range(len(shape) + 1))
        perm[-1], perm[-2] = perm[-2], perm[-1]
        turned = b.name("turn")
        nodes.append(helper.make_node("Transpose", [other], [turned], name=turned, perm=perm))
        other = turned
    operands = [name, other] if op == "Div" or rng.random() < 0.5 else [other, name]
    return nodes + [helper.make_node(op, operands, [out], name=out)]


def _maxmin(b, rng, name, shape, out):
    op = rng.choice(["Max", "Min", "Mean"])
    operands = [name]
    nodes = []
    if rng.random() < 0.7:
        other, nodes = _branch(b, rng, name, shape)
        operands.append(other)
    if rng.random() < 0.4:
        operands.append(b.const(_rand(rng, rng.choice([(), shape[-1:], tuple(shape)]))))
    if rng.random() < 0.3:
        operands.append(rng.choice(b.tensors)[0])
    return nodes + [helper.make_node(op, operands, [out], name=out)]


def _dense_bn(b, rng, name, shape, out):
    if len(shape) != 1:
        return None
    k = rng.randint(1, 6)
    dense = b.name("fc")
    if rng.random() < 0.5:
        node = helper.make_node("Gemm", [name, b.weight((shape[0], k)), b.weight((k,))], [dense], name=dense)
    else:
        node = helper.make_node("MatMul", [name, b.weight((shape[0], k))], [dense], name=dense)
    params = [b.const(_rand(rng, k, 1.0)), b.const(_rand(rng, k)), b.const(_rand(rng, k)),
              b.const(np.abs(_rand(rng, k, 1.0)) + 0.1)]
    return [node, helper.make_node("BatchNormalization", [dense, *params], [out], name=out,
                                   epsilon=rng.choice([1e-5, 1e-3]))]


def _einsum(b, rng, name, shape, out):
    letters = "ijkl"[:len(shape)]
    if not shape or len(shape) > 3:
        return None
    what = rng.choice(["const", "const", "pair", "permute", "diagonal", "ellipsis"])
    if what == "const":
        k = rng.randint(1, 4)
        equation = f"b{letters},{letters[-1]}z->b{letters[:-1]}z"
        if rng.random() < 0.3:
            equation = equation.split("->")[0]  # implicit output: letters in alphabetical order
        return [helper.make_node("Einsum", [name, b.weight((shape[-1], k))], [out], name=out, equation=equation)]
    if what == "pair":
        other, nodes = _branch(b, rng, name, shape)
        kept = "".join(rng.sample(letters, rng.randint(0, len(letters))))
        return [*nodes, helper.make_node("Einsum", [name, other], [out], name=out,
                                       equation=f"b{letters},b{letters}->b{kept}")]
    if what == "permute":
        perm = "".join(rng.sample(letters, len(letters)))
        return [helper.make_node("Einsum", [name], [out], name=out, equation=f"b{letters}->b{perm}")]
    if what == "diagonal":
        if len(shape) < 2 or shape[0] != shape[1]:
            return None
        return [helper.make_node("Einsum", [name], [out], name=out, equation=f"bii{letters[2:]}->bi{letters[2:]}")]
    return [helper.make_node("Einsum", [name, b.weight((shape[-1], 2))], [out], name=out, equation="...i,ij->...j")]


NEW_LAYERS = {"softmax": _softmax, "norm": _norm, "lrn": _lrn, "reduce": _reduce, "resize": _resize,
              "convtranspose": _convtranspose, "slice": _slice, "split": _split, "gather": _gather,
              "tile": _tile, "concat_const": _concat_const, "product": _product, "maxmin": _maxmin,
              "dense_bn": _dense_bn, "einsum": _einsum}


# --------------------------------------------------------------------------------------------
# (c) Random input arrays.
# --------------------------------------------------------------------------------------------

INPUT_DTYPES = ("float32", "float32", "float32", "float64", "float16", "longdouble", "int64", "int32", "uint8",
                "bool", "complex64", "complex128", "object", "str", "bytes", ">f4", "datetime64[s]", "void",
                "structured")


def random_inputs(sample_shape, rng) -> tuple[np.ndarray, str]:
    """An input array for a model taking (n, *sample_shape) float32: random shape, dtype,
    memory layout and values. Returns the array and a description."""
    nrng = np.random.default_rng(rng.getrandbits(32))
    n = rng.choice([1, 2, 3, 0])
    shape_kind = rng.choice(["right", "right", "right", "rank-", "rank+", "size", "empty-sample", "scalar",
                             "no-batch"])
    sample = list(sample_shape)
    if shape_kind == "rank-" and sample:
        del sample[rng.randrange(len(sample))]
    elif shape_kind == "rank+":
        sample.insert(rng.randrange(len(sample) + 1), rng.choice([1, 2]))
    elif shape_kind == "size" and sample:
        k = rng.randrange(len(sample))
        sample[k] = rng.choice([s for s in (1, 2, 3, 5, 7, 9, 28) if s != sample[k]])
    elif shape_kind == "empty-sample" and sample:
        sample[rng.randrange(len(sample))] = 0
    shape = () if shape_kind == "scalar" else tuple(sample) if shape_kind == "no-batch" else (n, *sample)
    values = np.asarray(nrng.random(shape))
    special = rng.choice(["none", "none", "nan", "inf", "-inf", "huge", "tiny", "negative", "zeros", "max32",
                          "beyond32"])
    if values.size and special in ("nan", "inf", "-inf"):
        k = nrng.integers(values.size, size=rng.randint(1, 3))
        values.flat[k] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}[special]
    elif special == "huge":
        values = values * 1e30
    elif special == "tiny":
        values = values * 1e-44
    elif special == "negative":
        values = -values * 1e3
    elif special == "zeros":
        values = np.zeros(shape)
    elif special == "max32":
        values = np.full(shape, np.finfo(np.float32).max)
    elif special == "beyond32":  # finite in float64, infinite once cast to the model's float32
        values = values * 1e300
    dtype = rng.choice(INPUT_DTYPES)
    with np.errstate(all="ignore"):
        if dtype == "object":
            x = np.empty(shape, dtype=object)
            fill = rng.choice(["float", "none", "str", "list", "mixed"])
            for i, v in enumerate(values.flat):
                x.flat[i] = {"float": float(v), "none": None, "str": str(v), "list": [v],
                             "mixed": [float(v), None, "a", [1]][i % 4]}[fill]
        elif dtype == "structured":
            x = np.zeros(shape, dtype=[("a", "f4"), ("b", "i4")])
        elif dtype == "void":
            x = np.zeros(shape, dtype="V4")
        elif dtype in ("str", "bytes"):
            x = values.astype("U8" if dtype == "str" else "S8")
        elif dtype == "datetime64[s]":
            x = np.zeros(shape, dtype=dtype)
        elif dtype in ("int64", "int32", "uint8", "bool"):
            x = np.nan_to_num(values, nan=0, posinf=0, neginf=0).clip(-1e9, 1e9).astype(dtype)
        else:
            x = values.astype(dtype)
    x = np.asarray(x)  # arithmetic on 0-d arrays gives numpy scalars
    layout = rng.choice(["c", "c", "fortran", "strided", "readonly", "negative-strides"])
    if layout == "fortran":
        x = np.asfortranarray(x)
    elif layout == "strided" and x.ndim:
        x = np.repeat(x, 2, axis=-1)[..., ::2]
    elif layout == "readonly":
        x.flags.writeable = False
    elif layout == "negative-strides" and x.ndim:
        x = x[..., ::-1]
    return x, f"inputs of shape {shape} ({shape_kind}), dtype {x.dtype}, values {special}, layout {layout}"


# --------------------------------------------------------------------------------------------
# Running a call and judging its outcome.
# --------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    call: str  # "inspect", "analyze", "cli ..."
    kind: str  # "result", "error", "internal", "timeout", "crash"
    name: str  # "result", the exception class, or the CLI's "exit N"
    seconds: float
    message: str = ""
    trace: str = ""

    @property
    def violation(self) -> bool:
        return self.kind not in ("result", "error")

    def describe(self) -> str:
        return f"{self.call}: {self.name} in {self.seconds:.2f} s" + (f": {self.message}" if self.message else "")


def call(label: str, fn, bound: float = TIME_BOUND):
    """Run ``fn()``: its value (None on an exception) and an Outcome judged against the contract."""
    from onnxtopo.errors import OnnxtopoError

    start = time.monotonic()
    value, trace = None, ""
    try:
        value = fn()
        kind, name, message = "result", "result", ""
    except OnnxtopoError as exc:
        kind, name, message = "error", type(exc).__name__, str(exc)
        if not message.strip():  # a documented error says what was wrong
            kind, trace = "internal", traceback.format_exc()
    except Exception as exc:  # noqa: BLE001 - anything else breaks the contract
        kind, name, message = "internal", type(exc).__name__, str(exc)
        trace = traceback.format_exc()
    seconds = time.monotonic() - start
    if seconds > bound and kind in ("result", "error"):
        kind = "timeout"
    return value, Outcome(label, kind, name, seconds, message[:500], trace)


def check_model(model_path, rng, *, bound: float = TIME_BOUND) -> list[Outcome]:
    """inspect(model_path), then, if that succeeds and the plan is small enough, analyze it on
    inputs of the shape and dtype the plan declares."""
    import onnxtopo
    from onnxtopo.resources import estimate

    plan, outcome = call("inspect", lambda: onnxtopo.inspect(model_path), bound)
    if plan is None:
        return [outcome]
    need, estimated = call("estimate", lambda: estimate(plan).bytes, bound)
    if need is None:
        return [outcome, estimated]
    if need > ANALYZE_MEMORY:
        return [outcome, Outcome("analyze", "result", "skipped (plan too large)", 0.0)]
    x = valid_inputs(plan.input_shape, plan.input_dtype, rng)
    _, analyzed = call("analyze", lambda: onnxtopo.analyze(model_path, x), bound)
    return [outcome, analyzed]


def cli_label(argv, folder=None) -> str:
    """'cli ARGS', with the case folder left out of paths."""
    text = " ".join(argv)
    return "cli " + (text.replace(f"{folder}/", "") if folder else text)


#: What onnxruntime's C++ logger writes straight to file descriptor 2 (past sys.stderr).
ORT_LOG = re.compile(r"\[[VIWEF]:onnxruntime")


def judge_cli(argv, code, stdout: str, stderr: str, seconds: float, bound: float = TIME_BOUND,
              label: str | None = None) -> Outcome:
    """The CLI's outcome: a documented exit code, no traceback, no internal error, an error
    reported as one 'onnxtopo: error: ...' line (the last one), and no onnxruntime log lines
    (which are not 'one line' either). ``stderr`` must be captured at the file-descriptor
    level (pytest's capfd) for the last check to see them."""
    label = label or cli_label(argv)
    lines = [line for line in stderr.splitlines() if line.strip()]
    problems = []
    if code not in CLI_CODES:
        problems.append(f"exit code {code}")
    if "Traceback" in stderr or "Traceback" in stdout:
        problems.append("traceback printed")
    named = re.search(r"onnxtopo: internal error: (\w+)", stderr)
    if named:
        problems.append(f"internal error ({named.group(1)})")
    # Exit 5 also reports inputs skipped during a run, with the results of the others written.
    if code in (3, 4, 6, 7) or (code == 5 and "skipped" not in stderr):
        errors = [line for line in lines if line.startswith("onnxtopo: error: ")]
        if len(errors) != 1 or lines[-1] != errors[0]:
            problems.append("no single final 'onnxtopo: error: ...' line")
    noise = [line for line in lines if ORT_LOG.search(line)]
    if noise:
        problems.append(f"onnxruntime's log lines on stderr ({noise[0].strip()[:160]!r})")
    if "EP Error" in stdout:
        problems.append("onnxruntime's 'EP Error' banner on stdout")
    kind = "internal" if problems else "result" if code == 0 else "error"
    if not problems and seconds > bound:
        kind = "timeout"
    tail = "\n".join(line for line in lines[-2:])
    message = ("; ".join(problems) + ": " if problems else "") + tail
    return Outcome(label, kind, f"exit {code}", seconds, message[:600], stderr if problems else "")


def run_cli(argv: list[str], bound: float = TIME_BOUND, label: str | None = None) -> Outcome:
    """onnxtopo.cli.main(argv) in-process, its stdout and stderr captured at the file-descriptor
    level (onnxruntime's logger writes there), judged by judge_cli."""
    from onnxtopo import cli

    out, err = io.StringIO(), io.StringIO()
    with tempfile.TemporaryFile() as fd_out, tempfile.TemporaryFile() as fd_err:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(fd_out.fileno(), 1)
        os.dup2(fd_err.fileno(), 2)
        start = time.monotonic()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    code = cli.main(argv)
                except SystemExit as exc:  # argparse
                    code = exc.code if isinstance(exc.code, int) else 2
                except BaseException:  # noqa: BLE001 - main must not raise
                    traceback.print_exc()
                    code = "raised"
        finally:
            seconds = time.monotonic() - start
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        fd_out.seek(0)
        fd_err.seek(0)
        stdout = fd_out.read().decode(errors="replace") + out.getvalue()
        stderr = fd_err.read().decode(errors="replace") + err.getvalue()
    return judge_cli(argv, code, stdout, stderr, seconds, bound, label)


@contextlib.contextmanager
def address_space_cap(extra: int = 6 << 30):
    """Cap this process's address space at its current size plus ``extra`` bytes, for the
    duration of the block: an allocation a mutated model asks for (say 16 GiB for a window of
    2**31 positions) then fails at once with MemoryError instead of taking a shared machine's
    memory. The previous limit is restored afterwards."""
    try:
        import resource

        with open("/proc/self/status") as f:
            size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
        old = resource.getrlimit(resource.RLIMIT_AS)
        cap = size + extra if old[0] == resource.RLIM_INFINITY else min(old[0], size + extra)
        resource.setrlimit(resource.RLIMIT_AS, (cap, old[1]))
    except (ImportError, OSError, StopIteration, ValueError):
        yield
        return
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, old)


# --------------------------------------------------------------------------------------------
# Cases.
# --------------------------------------------------------------------------------------------


@dataclass
class Case:
    seed: object
    kind: str
    base: str = ""  # seed model name
    mutations: list = field(default_factory=list)
    model: bytes = b""
    x: np.ndarray | None = None
    input_file: bytes | None = None  # the CLI's input file, when mutated as bytes
    input_suffix: str = ".npy"
    options: list = field(default_factory=list)  # extra CLI options
    out_state: bytes | None = None  # the CLI's --out before the run (see write_case)
    outcomes: list = field(default_factory=list)

    @property
    def violations(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.violation]


CLI_OPTIONS = (
    ["--h1"], ["--threshold", "nan"], ["--threshold", "-1"], ["--threshold", "inf"], ["--threshold", "1e400"],
    ["--percentile", "50"], ["--percentile", "150"], ["--percentile", "-5"], ["--percentile", "nan"],
    ["--vertices", "inf"], ["--maxpool-rule", "argmax"], ["--batch-size", "1"], ["--chunk-edges", "1"],
    ["--memory-limit", "1k"], ["--memory-limit", "0"], ["--memory-limit", "-5"], ["--memory-limit", "infG"],
    ["--memory-limit", "1e400"], ["--memory-limit", "nanM"], ["--memory-limit", "1e30G"],
    ["--engine", "dionysus"], ["--resume"], ["--key", "x"], ["--workers", "2"],
)
OUT_STATES = (b"", b"{", b"[]", b"null", b'{"fingerprint": 3}', b"\xff\xfe", b'{"fingerprint": "x"}',
              b"DIRECTORY", b"FILE")


def make_case(kind: str, rng, seeds=SEEDS, seed=None) -> Case:
    """A case of ``kind`` built from ``rng`` alone (see the module docstring)."""
    base = rng.choice(sorted(seeds))
    case = Case(seed, kind, base)
    if kind == "bytes":
        case.model, case.mutations = mutate_bytes(seed_bytes(base), rng, seed_proto(base))
    elif kind == "proto":
        proto, case.mutations = mutate_proto(seed_proto(base), rng)
        case.model = proto.SerializeToString()
    elif kind == "inputs":
        case.model = seed_bytes(base)
        case.x, description = random_inputs(seed_input_shape(base), rng)
        case.mutations = [description]
    elif kind == "cli":
        _make_cli_case(case, rng)
    elif kind == "net":
        case.base = "random_net"
        proto = random_net(rng)
        case.mutations = [f"random net: {', '.join(n.op_type for n in proto.graph.node)}"]
        if rng.random() < 0.3:
            proto, more = mutate_proto(proto, rng, 1)
            case.mutations += more
        case.model = proto.SerializeToString()
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return case


def _make_cli_case(case: Case, rng) -> None:
    """A model (valid or mutated), an input file (valid, random or corrupted) and options."""
    base = case.base
    what = rng.choice(["model-bytes", "model-proto", "model-net", "inputs", "input-file", "options", "out-dir"])
    model, mutations, shape = seed_bytes(base), [], seed_input_shape(base)
    if what == "model-net":
        proto = random_net(rng)
        model, mutations = proto.SerializeToString(), [f"random net: {', '.join(n.op_type for n in proto.graph.node)}"]
        shape = tuple(d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim[1:])
        case.base = "random_net"
    if what == "model-bytes":
        model, mutations = mutate_bytes(model, rng, seed_proto(base))
    elif what == "model-proto":
        proto, mutations = mutate_proto(seed_proto(base), rng)
        model = proto.SerializeToString()
    x = valid_inputs(shape, np.float32, rng)
    if what == "inputs":
        x, description = random_inputs(shape, rng)
        mutations.append(description)
    if what == "input-file":
        buf = io.BytesIO()
        case.input_suffix = rng.choice([".npy", ".npz", ".npz"])
        if case.input_suffix == ".npy":
            np.save(buf, x)
        else:
            arrays = {"x": x} if rng.random() < 0.7 else {"x": x, "y": x[:1]}
            (np.savez_compressed if rng.random() < 0.5 else np.savez)(buf, **arrays)
        case.input_file, edits = mutate_bytes(buf.getvalue(), rng)
        mutations.append("input file " + "; ".join(edits))
    if what == "options":
        case.options = list(rng.choice(CLI_OPTIONS))
        mutations.append("options " + " ".join(case.options))
    if what == "out-dir":
        case.out_state = rng.choice(OUT_STATES)
        case.options = ["--resume"] if rng.random() < 0.5 else []
        mutations.append(f"--out holds run.json = {case.out_state!r} {' '.join(case.options)}")
    case.model, case.x, case.mutations = model, x, mutations


def _save_array(path: Path, x) -> None:
    try:
        np.save(path, x, allow_pickle=False)
    except ValueError:  # object arrays need pickle; the CLI must then refuse the file cleanly
        np.save(path, x, allow_pickle=True)


def write_case(case: Case, folder: Path) -> dict:
    """Write the case's files into ``folder``: model.onnx, inputs, the CLI's out dir."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"model": folder / "model.onnx"}
    paths["model"].write_bytes(case.model)
    if case.kind == "cli":
        inputs = folder / f"inputs{case.input_suffix}"
        if case.input_file is not None:
            inputs.write_bytes(case.input_file)
        else:
            _save_array(inputs, case.x)
        out = folder / "out"
        if case.out_state == b"FILE":
            out.write_bytes(b"not a directory")
        elif case.out_state is not None:
            out.mkdir(exist_ok=True)
            if case.out_state == b"DIRECTORY":
                (out / "run.json").mkdir(exist_ok=True)
            else:
                (out / "run.json").write_bytes(case.out_state)
                (out / "input-00000.npz").write_bytes(b"junk")
        paths.update(inputs=inputs, out=out)
    elif case.x is not None:
        paths["inputs"] = folder / "x.npy"
        _save_array(paths["inputs"], case.x)
    return paths


def cli_argvs(case: Case, paths: dict) -> list[list[str]]:
    model = str(paths["model"])
    return [["inspect", model],
            ["analyze", model, "--inputs", str(paths["inputs"]), "--out", str(paths["out"]), "--quiet",
             *case.options]]


def execute(case: Case, folder: Path, rng, bound: float = TIME_BOUND) -> Case:
    """Write the case's files into ``folder``, run its calls, record their outcomes on it."""
    import onnxtopo

    paths = write_case(case, folder)
    if case.kind in ("bytes", "proto", "net"):
        case.outcomes = check_model(str(paths["model"]), rng, bound=bound)
    elif case.kind == "inputs":
        _, outcome = call("analyze", lambda: onnxtopo.analyze(str(paths["model"]), case.x), bound)
        case.outcomes = [outcome]
    else:
        case.outcomes = [run_cli(argv, bound, cli_label(argv, folder)) for argv in cli_argvs(case, paths)]
    return case


def reproduction(case: Case, folder: Path, paths: dict) -> str:
    """A Python script reproducing the case's violating calls from the files in ``folder``."""
    lines = ["import numpy as np", "import onnxtopo", f"model = {str(paths['model'])!r}"]
    if case.kind == "cli":
        lines.append("from onnxtopo.cli import main")
        for argv in cli_argvs(case, paths):
            if any(o.call == cli_label(argv, folder) for o in case.violations):
                lines.append(f"print('exit', main({argv!r}))")
        return "\n".join(lines)
    calls = {o.call for o in case.violations}
    if calls & {"inspect", "estimate"}:
        lines.append("plan = onnxtopo.inspect(model)")
    if "estimate" in calls:
        lines.append("from onnxtopo.resources import estimate; estimate(plan)")
    if "analyze" in calls:
        if case.x is not None:
            lines.append(f"x = np.load({str(paths['inputs'])!r}, allow_pickle=True)")
        else:
            lines.append("plan = onnxtopo.inspect(model)")
            lines.append("x = np.random.default_rng(0).random((2, *plan.input_shape)).astype(plan.input_dtype)")
        lines.append("onnxtopo.analyze(model, x)")
    return "\n".join(lines)


def save_case(case: Case, folder: Path) -> Path:
    """Write a case that broke the contract into ``folder``: its files (model.onnx, inputs),
    ``repro.py`` and ``report.txt`` (mutations, outcomes, tracebacks)."""
    if folder.exists():
        shutil.rmtree(folder)
    paths = write_case(case, folder)
    (folder / "repro.py").write_text(reproduction(case, folder, paths) + "\n")
    report = [f"seed {case.seed}, kind {case.kind}, base model {case.base}",
              *("mutation: " + m for m in case.mutations), ""]
    for o in case.outcomes:
        report.append(o.describe())
        if o.trace:
            report.append(o.trace)
    (folder / "report.txt").write_text("\n".join(report) + "\n")
    return folder
