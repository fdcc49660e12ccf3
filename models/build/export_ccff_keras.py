#!/usr/bin/env python3
"""Rebuild CCFF-relu in Keras with the trained weights and convert it with tf2onnx.

Writes ``models/ccff-relu-keras.onnx``: the network of ``models/ccff-relu.onnx`` with
the identical weights (``build/ccff-relu.weights.npz``), written as an ordinary
Keras model and converted with tf2onnx.  Nothing is trained.

TensorFlow's CPU kernels only run Conv2D in NHWC ("channels_last"), so the Keras
model is NHWC, as Keras models normally are:

    Input (28, 28, 1) -> Conv2D(3, 5, relu, no bias) -> Conv2D(3, 3, relu, no bias)
    -> Flatten -> Dense(256, relu, no bias) -> Dense(10, no bias, name "logits")

and tf2onnx's ``inputs_as_nchw`` option makes the ONNX input NCHW (N, 1, 28, 28)
like the other exports.  Weight layouts:

* Conv2D kernel (kh, kw, in, out) = PyTorch (out, in, kh, kw).transpose(2, 3, 1, 0)
* Dense kernel (in, out) = PyTorch weight.T
* Flatten: an NHWC Flatten orders the 1452 features (h, w, c), PyTorch's NCHW
  Flatten orders them (c, h, w).  ``--flatten permute-weights`` (default) keeps
  the plain Keras model and permutes the rows of the first Dense kernel to (h, w, c)
  order; ``--flatten permute-layer`` instead puts ``Permute((3, 1, 2))`` (NHWC ->
  NCHW) before Flatten and uses l1.T unchanged.

Environment: ``requirements-tf.txt``.

Usage (from the repository root):
    python models/build/export_ccff_keras.py [--flatten {permute-weights,permute-layer}]
        [--opset N] [--out FILE]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# oneDNN may reorder float sums; the comparison tolerance (1e-4) absorbs that, but
# keep the TF-side numbers (used only for the Keras-vs-numpy check) reproducible.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import keras
import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf
import tf2onnx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _common as common

OPSET = 17
C, H, W = 3, 22, 22


def keras_weights(flatten: str) -> dict[str, np.ndarray]:
    w = common.load_weights("ccff-relu")
    l1t = w["l1"].T                                   # (1452, 256), rows in (c, h, w) order
    if flatten == "permute-weights":
        # row (h, w, c) of the Keras kernel = row (c, h, w) of l1.T
        l1t = l1t.reshape(C, H, W, 256).transpose(1, 2, 0, 3).reshape(C * H * W, 256)
    return {
        "c1": np.ascontiguousarray(w["c1"].transpose(2, 3, 1, 0)),   # (5, 5, 1, 3)
        "c2": np.ascontiguousarray(w["c2"].transpose(2, 3, 1, 0)),   # (3, 3, 3, 3)
        "l1": np.ascontiguousarray(l1t),                             # (1452, 256)
        "l2": np.ascontiguousarray(w["l2"].T),                       # (256, 10)
    }


def build_model(flatten: str) -> keras.Model:
    inp = keras.Input(shape=(28, 28, 1), name="input")
    x = keras.layers.Conv2D(3, 5, activation="relu", use_bias=False, name="c1")(inp)
    x = keras.layers.Conv2D(3, 3, activation="relu", use_bias=False, name="c2")(x)
    if flatten == "permute-layer":
        x = keras.layers.Permute((3, 1, 2), name="to_chw")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(256, activation="relu", use_bias=False, name="l1")(x)
    out = keras.layers.Dense(10, use_bias=False, name="logits")(x)
    model = keras.Model(inp, out, name="ccff_relu")
    kw = keras_weights(flatten)
    for name in ("c1", "c2", "l1"):
        model.get_layer(name).set_weights([kw[name]])
    model.get_layer("logits").set_weights([kw["l2"]])
    return model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flatten", choices=("permute-weights", "permute-layer"),
                    default="permute-weights")
    ap.add_argument("--opset", type=int, default=OPSET)
    ap.add_argument("--out", type=Path, default=common.MODELS / "ccff-relu-keras.onnx")
    args = ap.parse_args()

    tf.config.threading.set_intra_op_parallelism_threads(2)
    print(f"tensorflow {tf.__version__}, keras {keras.__version__}, tf2onnx {tf2onnx.__version__}, "
          f"onnx {onnx.__version__}, onnxruntime {ort.__version__}, numpy {np.__version__}")
    model = build_model(args.flatten)
    model.summary(print_fn=lambda s, **_: print("   ", s))

    x_ho, y_ho = common.load_heldout()                   # NCHW
    x_nhwc = np.ascontiguousarray(x_ho.transpose(0, 2, 3, 1))
    keras_logits = model.predict(x_nhwc, verbose=0)
    np_logits = common.numpy_ccff_relu(common.load_weights("ccff-relu"), x_ho)
    print(f"  Keras (NHWC input) vs float64 numpy CCFF: max |diff| "
          f"{np.abs(keras_logits - np_logits).max():.3g}")

    # tf2onnx traces the model as a tf.function with this signature (batch
    # dimension None, i.e. dynamic), freezes the variables into constants and
    # converts the TF graph; inputs_as_nchw adds the NCHW -> NHWC transpose at the
    # input, which its optimizer then pushes through the graph.
    spec = (tf.TensorSpec((None, 28, 28, 1), tf.float32, name="input"),)
    proto, _ = tf2onnx.convert.from_keras(
        model, input_signature=spec, opset=args.opset,
        inputs_as_nchw=["input"], output_path=None)
    onnx.save_model(proto, str(args.out), save_as_external_data=False)

    info = common.check_file(args.out)
    common.print_summary(args.out, info)
    common.print_nodes(args.out)
    w = common.load_weights("ccff-relu")
    expected = {"c1 (OIHW)": w["c1"], "c2 (OIHW)": w["c2"],
                "l2.T": w["l2"].T, "l1.T rows in Keras flatten order": keras_weights(args.flatten)["l1"]}
    for key, name in common.check_weights_stored(args.out, expected).items():
        print(f"  trained weight {key} stored bit for bit as initializer {name!r}")
    got = common.run(args.out, x_ho)
    print(f"  ONNX (NCHW input) vs Keras (NHWC input): max |diff| "
          f"{np.abs(got - keras_logits).max():.3g}")
    common.compare_with_reference(args.out, x_ho, y_ho)
    common.print_heldout_accuracy(args.out)


if __name__ == "__main__":
    main()
