#!/usr/bin/env python3
"""Train a one-hidden-layer MLP with scikit-learn and convert it with skl2onnx.

Writes ``models/mlp-sklearn.onnx``: ``MLPClassifier(hidden_layer_sizes=(128,),
activation="relu")`` (otherwise scikit-learn defaults: adam, alpha=1e-4, batch 200,
lr 1e-3, max_iter 200, tol 1e-4) trained on MNIST t10k images 0..7999 flattened
to 784 pixels / 255, converted with skl2onnx (ai.onnx opset 17) with ZipMap
disabled, so the outputs are plain tensors: ``label`` int64 (N,) and
``probabilities`` float32 (N, 10).

Environment: ``requirements-skl.txt``.

Usage (from the repository root):
    python models/build/train_mlp_sklearn.py [--mnist DIR] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import skl2onnx
import sklearn
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _common as common

SEED = 20240601
OPSET = 17


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", type=Path, default=common.DEFAULT_MNIST)
    ap.add_argument("--out", type=Path, default=common.MODELS / "mlp-sklearn.onnx")
    args = ap.parse_args()

    print(f"scikit-learn {sklearn.__version__}, skl2onnx {skl2onnx.__version__}, "
          f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}")
    x, y = common.load_mnist(args.mnist)
    x = x.reshape(len(x), 784)                       # row-major: pixel (r, c) -> r*28 + c
    x_tr, y_tr = x[:common.N_TRAIN], y[:common.N_TRAIN]
    x_ho, y_ho = x[common.N_TRAIN:], y[common.N_TRAIN:]

    clf = MLPClassifier(hidden_layer_sizes=(128,), activation="relu", random_state=SEED)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(x_tr, y_tr)
    for w in caught:
        print(f"  warning: {w.message}")
    print(f"trained in {time.perf_counter() - t0:.1f}s, {clf.n_iter_} epochs, "
          f"final loss {clf.loss_:.4g}")
    sk_correct = int((clf.predict(x_ho) == y_ho).sum())
    print(f"  scikit-learn held-out accuracy (t10k 8000..9999): {sk_correct}/{len(y_ho)} = "
          f"{sk_correct / len(y_ho):.4f}; train accuracy {clf.score(x_tr, y_tr):.4f}")

    proto = convert_sklearn(
        clf,
        name="mlp_sklearn",
        initial_types=[("input", FloatTensorType([None, 784]))],
        target_opset=OPSET,
        options={id(clf): {"zipmap": False}},
    )
    emitted = {o.domain or "ai.onnx": o.version for o in proto.opset_import}
    print(f"skl2onnx emitted opsets {emitted} for target_opset={OPSET}")
    if emitted["ai.onnx"] != OPSET:
        # skl2onnx declares the lowest opset that covers the ops it used (16 here).
        # Raise the declared default-domain opset to 17 when no op of the graph
        # has a new definition between the two versions, so the graph means the
        # same under both.  (onnx.version_converter would do the same but also
        # runs shape inference, which renames the outputs' batch dimensions
        # to "unk__0"/"unk__1".)
        from onnx import defs
        for node in proto.graph.node:
            if node.domain in ("", "ai.onnx"):
                old = defs.get_schema(node.op_type, emitted["ai.onnx"]).since_version
                new = defs.get_schema(node.op_type, OPSET).since_version
                if old != new:
                    raise RuntimeError(f"{node.op_type} changed between opsets ({old}, {new})")
        for o in proto.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = OPSET
        print(f"  declared ai.onnx opset raised to {OPSET} (no op in the graph changed "
              f"between {emitted['ai.onnx']} and {OPSET})")
    args.out.write_bytes(proto.SerializeToString())

    info = common.check_file(args.out)
    common.print_summary(args.out, info)
    common.print_nodes(args.out)

    sess = common.session(args.out)
    print(f"  onnxruntime outputs: {[(o.name, o.type, o.shape) for o in sess.get_outputs()]}")
    label, proba = sess.run(["label", "probabilities"], {"input": x_ho})
    onnx_correct = int((label == y_ho).sum())
    diff = float(np.abs(proba - clf.predict_proba(x_ho)).max())
    agree = int((label == clf.predict(x_ho)).sum())
    print(f"  onnxruntime held-out accuracy: {onnx_correct}/{len(y_ho)} = "
          f"{onnx_correct / len(y_ho):.4f}; labels agree with scikit-learn on "
          f"{agree}/{len(y_ho)}; max |proba diff| {diff:.3g} (float32 vs float64)")
    xs, ys = common.load_heldout()
    c, n = common.accuracy(args.out, xs.reshape(len(xs), 784), ys)
    print(f"  on mnist-heldout.npz: {c}/{n}")
    if onnx_correct != sk_correct or diff > 1e-4:
        raise RuntimeError("ONNX model disagrees with scikit-learn")


if __name__ == "__main__":
    main()
