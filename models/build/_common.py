"""Helpers shared by the cross-framework export scripts in this directory.

Needs only numpy, onnx and onnxruntime, so every build environment
(requirements-*.txt) can import it; no deep-learning framework is imported.

    load_mnist(dir)        t10k images/labels as float32 (N,1,28,28) in [0,1], int64
    load_weights(name)     trained CCFF weights (PyTorch layout) from <name>.weights.npz
    load_heldout()         the 500 images of ../mnist-heldout.npz
    check_file(path)       onnx.checker(full_check), no external data, summary dict
    compare_with_reference(path, ...)
                           run a new export and ../ccff-relu.onnx through onnxruntime on
                           the same inputs; compare logits and every activation
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

HERE = Path(__file__).resolve().parent          # models/build
MODELS = HERE.parent                            # models
DEFAULT_MNIST = HERE.parents[2] / "shared" / "data" / "mnist"
REFERENCE = MODELS / "ccff-relu.onnx"

N_TRAIN = 8000
N_TOTAL = 10000

IDX_MD5 = {
    "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
}


# --------------------------------------------------------------------------
# Data and weights
# --------------------------------------------------------------------------

def read_idx(path: Path) -> np.ndarray:
    """Parse a gzip-compressed unsigned-byte IDX file (same checks as train_ccff.py)."""
    raw = gzip.decompress(Path(path).read_bytes())
    expected = IDX_MD5.get(Path(path).name)
    if expected is not None and hashlib.md5(raw).hexdigest() != expected:
        raise ValueError(f"{path}: md5 mismatch")
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: size does not match header {dims}")
    return data.reshape(dims)


def load_mnist(mnist_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(x, y): float32 (10000,1,28,28) = pixel/255, int64 (10000,)."""
    mnist_dir = Path(mnist_dir or DEFAULT_MNIST)
    images = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    if images.shape != (N_TOTAL, 28, 28) or labels.shape != (N_TOTAL,):
        raise ValueError(f"unexpected MNIST shapes {images.shape}, {labels.shape}")
    x = (images.astype(np.float32) / np.float32(255.0))[:, None, :, :]
    return x, labels.astype(np.int64)


def load_weights(name: str = "ccff-relu") -> dict[str, np.ndarray]:
    """c1 (3,1,5,5), c2 (3,3,3,3), l1 (256,1452), l2 (10,256); float32, PyTorch layout."""
    with np.load(HERE / f"{name}.weights.npz") as z:
        w = {k: z[k].astype(np.float32, copy=False) for k in ("c1", "c2", "l1", "l2")}
    assert w["c1"].shape == (3, 1, 5, 5) and w["c2"].shape == (3, 3, 3, 3)
    assert w["l1"].shape == (256, 1452) and w["l2"].shape == (10, 256)
    return w


def load_heldout() -> tuple[np.ndarray, np.ndarray]:
    with np.load(MODELS / "mnist-heldout.npz") as z:
        return z["x"].copy(), z["y"].copy()


def numpy_ccff_relu(w: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Plain-numpy CCFF-relu forward pass (float64), an independent cross-check."""
    def conv(a, k):  # valid cross-correlation, NCHW / OIHW
        n, _, h, wd = a.shape
        o, _, kh, kw = k.shape
        out = np.zeros((n, o, h - kh + 1, wd - kw + 1))
        for i in range(kh):
            for j in range(kw):
                out += np.einsum("nchw,oc->nohw", a[:, :, i:i + h - kh + 1, j:j + wd - kw + 1],
                                 k[:, :, i, j])
        return out
    relu = lambda a: np.maximum(a, 0.0)
    a = relu(conv(x.astype(np.float64), w["c1"].astype(np.float64)))
    a = relu(conv(a, w["c2"].astype(np.float64)))
    a = a.reshape(len(a), -1)
    a = relu(a @ w["l1"].T.astype(np.float64))
    return a @ w["l2"].T.astype(np.float64)


# --------------------------------------------------------------------------
# ONNX checks
# --------------------------------------------------------------------------

def _dims(v: onnx.ValueInfoProto) -> list:
    return [d.dim_param or (d.dim_value if d.HasField("dim_value") else "?")
            for d in v.type.tensor_type.shape.dim]


def describe_value(v: onnx.ValueInfoProto) -> str:
    t = v.type.tensor_type
    return f"{v.name}: {onnx.TensorProto.DataType.Name(t.elem_type)} {_dims(v)}"


def check_file(path: Path) -> dict:
    """Full onnx check, embedded weights only, and a summary of the graph."""
    path = Path(path)
    proto = onnx.load(str(path), load_external_data=False)
    for init in proto.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise RuntimeError(f"{path}: initializer {init.name} uses external data")
    onnx.checker.check_model(proto, full_check=True)
    return {
        "size": path.stat().st_size,
        "producer": f"{proto.producer_name} {proto.producer_version}",
        "ir_version": proto.ir_version,
        "opset": [(o.domain or "ai.onnx", o.version) for o in proto.opset_import],
        "inputs": [describe_value(v) for v in proto.graph.input],
        "outputs": [describe_value(v) for v in proto.graph.output],
        "ops": [n.op_type for n in proto.graph.node],
        "n_initializers": len(proto.graph.initializer),
        "functions": [f"{f.domain}::{f.name}" for f in proto.functions],
    }


def print_summary(path: Path, info: dict) -> None:
    print(f"{path}: {info['size']} bytes, producer {info['producer']}, IR {info['ir_version']}, "
          f"opset {info['opset']}")
    print(f"  inputs  {info['inputs']}")
    print(f"  outputs {info['outputs']}")
    print(f"  ops ({len(info['ops'])}) {info['ops']}")
    print(f"  initializers {info['n_initializers']}, local functions {info['functions']}")


def session(path_or_proto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    if isinstance(path_or_proto, (str, Path)):
        src = str(path_or_proto)
    else:
        src = path_or_proto.SerializeToString()
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def run(path: Path, x: np.ndarray) -> np.ndarray:
    sess = session(Path(path))
    (inp,) = sess.get_inputs()
    return sess.run(None, {inp.name: x})[0]


def _with_activation_outputs(path: Path, act_op: str = "Relu") -> tuple[onnx.ModelProto, list[str]]:
    """A copy of the model whose every `act_op` output is also a graph output."""
    proto = onnx.load(str(path))
    names = [n.output[0] for n in proto.graph.node if n.op_type == act_op]
    existing = {o.name for o in proto.graph.output}
    for name in names:
        if name not in existing:
            proto.graph.output.append(onnx.ValueInfoProto(name=name))
    return proto, names


def activations(path: Path, x: np.ndarray, act_op: str = "Relu") -> list[np.ndarray]:
    proto, names = _with_activation_outputs(Path(path), act_op)
    sess = session(proto)
    (inp,) = sess.get_inputs()
    return sess.run(names, {inp.name: x})


def compare_with_reference(path: Path, x: np.ndarray, y: np.ndarray | None = None,
                           tol: float = 1e-4, reference: Path = REFERENCE) -> dict:
    """Compare an export against models/ccff-relu.onnx on the same NCHW inputs.

    Checks the logits element-wise (max abs diff < tol), the argmax, and every
    ReLU activation: the k-th Relu output of the new model must equal the
    k-th Relu output of the reference (an NHWC tensor is compared after
    transposing it to NCHW; a flattened (H,W,C) vector after permuting it to
    (C,H,W) order is not needed, since the activations of the dense layers
    come after the matrix product).
    """
    ref = run(reference, x)
    got = run(path, x)
    if got.shape != ref.shape:
        raise RuntimeError(f"{path}: output shape {got.shape}, reference {ref.shape}")
    max_diff = float(np.abs(got - ref).max())
    rel = max_diff / float(np.abs(ref).max())
    same_argmax = bool((got.argmax(1) == ref.argmax(1)).all())
    result = {"max_abs_diff": max_diff, "max_rel_diff": rel, "same_argmax": same_argmax}

    ref_acts = activations(reference, x)
    new_acts = activations(path, x)
    act_diffs = []
    if len(new_acts) != len(ref_acts):
        result["activation_note"] = (f"{len(new_acts)} Relu nodes vs {len(ref_acts)} in the "
                                     f"reference")
    for a_new, a_ref in zip(new_acts, ref_acts):
        if a_new.shape != a_ref.shape and a_new.ndim == 4 and \
                a_new.transpose(0, 3, 1, 2).shape == a_ref.shape:
            a_new = a_new.transpose(0, 3, 1, 2)          # NHWC -> NCHW
        if a_new.shape != a_ref.shape:
            raise RuntimeError(f"{path}: activation shape {a_new.shape} vs {a_ref.shape}")
        act_diffs.append((tuple(a_ref.shape), float(np.abs(a_new - a_ref).max())))
    result["activation_diffs"] = act_diffs
    if y is not None:
        result["correct"] = int((got.argmax(1) == y).sum())
        result["reference_correct"] = int((ref.argmax(1) == y).sum())
    ok = max_diff < tol and same_argmax and all(d < tol for _, d in act_diffs) \
        and len(new_acts) == len(ref_acts)
    result["ok"] = ok
    print(f"  vs {reference.name} on {len(x)} held-out images: max |diff| logits {max_diff:.3g} "
          f"(relative {rel:.3g}), same argmax: {same_argmax}")
    for shape, d in act_diffs:
        print(f"    Relu activation {shape}: max |diff| {d:.3g}")
    if y is not None:
        print(f"    correct: {result['correct']}/{len(y)} (reference "
              f"{result['reference_correct']}/{len(y)})")
    if not ok:
        raise RuntimeError(f"{path}: does not match the reference: {result}")
    return result


def accuracy(path: Path, x: np.ndarray, y: np.ndarray, output_index: int = 0) -> tuple[int, int]:
    """Held-out accuracy of an ONNX classifier whose output `output_index` is scores
    (N, 10) or labels (N,)."""
    sess = session(Path(path))
    (inp,) = sess.get_inputs()
    out = sess.run(None, {inp.name: x})[output_index]
    pred = out.argmax(1) if out.ndim == 2 else out
    return int((pred == y).sum()), len(y)


def print_heldout_accuracy(path: Path) -> None:
    """Print an exported CCFF's accuracy on all 2,000 held-out images (t10k 8000..9999)."""
    x, y = load_mnist()
    c, n = accuracy(path, x[N_TRAIN:], y[N_TRAIN:])
    print(f"  held-out accuracy (t10k 8000..9999): {c}/{n} = {c / n:.4f}")


def node_table(path: Path, max_init_values: int = 8) -> list[str]:
    """One line per node: op, attributes, inputs (initializers with shape, and small
    ones with their values), outputs."""
    proto = onnx.load(str(path))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    lines = []
    for i, node in enumerate(proto.graph.node, 1):
        attrs = []
        for a in node.attribute:
            v = onnx.helper.get_attribute_value(a)
            if isinstance(v, bytes):
                v = v.decode()
            if isinstance(v, onnx.TensorProto):
                v = onnx.numpy_helper.to_array(v).tolist()
            attrs.append(f"{a.name}={v}")
        ins = []
        for name in node.input:
            if name in inits:
                a = inits[name]
                ins.append(f"{name}{list(a.shape)}" + (f"={a.ravel().tolist()}" if
                                                       a.size <= max_init_values else ""))
            else:
                ins.append(name)
        dom = f"{node.domain}::" if node.domain else ""
        lines.append(f"{i:3d} {dom}{node.op_type}({', '.join(attrs)}) "
                     f"[{', '.join(ins)}] -> [{', '.join(node.output)}]")
    return lines


def print_nodes(path: Path) -> None:
    for line in node_table(path):
        print("   ", line)


def check_weights_stored(path: Path, expected: dict[str, np.ndarray]) -> dict[str, str]:
    """Each expected array must be stored bit for bit as one initializer (or as a
    Constant node's value).  Returns {expected key: initializer name}; raises if one
    is missing."""
    proto = onnx.load(str(path))
    stored = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    stored[node.output[0]] = onnx.numpy_helper.to_array(a.t)
    found = {}
    for key, arr in expected.items():
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        hits = [n for n, s in stored.items() if s.shape == arr.shape and s.dtype == arr.dtype
                and s.tobytes() == arr.tobytes()]
        if not hits:
            raise RuntimeError(f"{path}: weight {key} {arr.shape} is not stored unchanged")
        found[key] = hits[0]
    return found
