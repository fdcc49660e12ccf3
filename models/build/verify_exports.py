#!/usr/bin/env python3
"""Check the cross-framework exports in models/ with onnx and onnxruntime only.

For ccff-relu-dynamo.onnx, ccff-relu-keras.onnx and ccff-relu-jax.onnx: the logits
and every ReLU activation must equal those of ccff-relu.onnx (TorchScript exporter)
on the 500 images of mnist-heldout.npz to 1e-4.  For mlp-sklearn.onnx and
resnet-mini.onnx: accuracy on mnist-heldout.npz, and on all 2,000 held-out images
when the MNIST directory is available.  Every file must pass onnx.checker
(full_check) and embed its weights.

Runs in any of the build environments (needs numpy, onnx, onnxruntime).

Usage (from the repository root):
    python models/build/verify_exports.py [--mnist DIR]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _common as common

SAME_NETWORK = ["ccff-relu-dynamo.onnx", "ccff-relu-keras.onnx", "ccff-relu-jax.onnx"]
CLASSIFIERS = {"mlp-sklearn.onnx": (784, 0), "resnet-mini.onnx": (None, 0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", type=Path, default=common.DEFAULT_MNIST)
    args = ap.parse_args()
    x_ho, y_ho = common.load_heldout()
    full = None
    if (args.mnist / "t10k-images-idx3-ubyte.gz").exists():
        x, y = common.load_mnist(args.mnist)
        full = x[common.N_TRAIN:], y[common.N_TRAIN:]

    for name in SAME_NETWORK:
        path = common.MODELS / name
        info = common.check_file(path)
        common.print_summary(path, info)
        common.compare_with_reference(path, x_ho, y_ho)
        print()
    for name, (flat, out_index) in CLASSIFIERS.items():
        path = common.MODELS / name
        info = common.check_file(path)
        common.print_summary(path, info)
        prep = (lambda a, flat=flat: a.reshape(len(a), flat)) if flat else (lambda a: a)
        c, n = common.accuracy(path, prep(x_ho), y_ho, out_index)
        print(f"  mnist-heldout.npz: {c}/{n}")
        if full is not None:
            c, n = common.accuracy(path, prep(full[0]), full[1], out_index)
            print(f"  held-out accuracy (t10k 8000..9999): {c}/{n} = {c / n:.4f}")
        print()
    print("all exports verified")


if __name__ == "__main__":
    main()
