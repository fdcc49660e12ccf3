#!/usr/bin/env python3
"""Rebuild CCFF-relu in JAX / Flax with the trained weights and convert it with jax2onnx.

Writes ``models/ccff-relu-jax.onnx``: the network of ``models/ccff-relu.onnx`` with
the identical weights (``build/ccff-relu.weights.npz``), written in JAX and converted
with ``jax2onnx.to_onnx``.  Nothing is trained.  Two ways of writing it:

* ``--style nnx`` (default): a Flax NNX module, as Flax models are normally written:
  NHWC (``nnx.Conv`` is channels-last), ``nnx.Conv(padding="VALID", use_bias=False)``,
  ``x.reshape(n, -1)`` (features in (h, w, c) order, so the rows of the first
  ``nnx.Linear`` kernel are permuted from PyTorch's (c, h, w) order), and
  ``nnx.Linear(use_bias=False)``.  jax2onnx's ``inputs_as_nchw=[0]`` makes the ONNX
  input NCHW (N, 1, 28, 28) like the other exports.
* ``--style lax``: a plain function, NCHW throughout: ``lax.conv_general_dilated``
  with dimension numbers ("NCHW", "OIHW", "NCHW") on the PyTorch kernels as they are,
  ``reshape(n, -1)`` in (c, h, w) order, ``x @ l1.T``.

The batch dimension is symbolic ("B"); jax2onnx traces with JAX shape polymorphism.

Environment: ``requirements-jax.txt``.

Usage (from the repository root):
    python models/build/export_ccff_jax.py [--style {nnx,lax}] [--opset N] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
from importlib.metadata import version
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
from flax import nnx
from jax import lax
from jax2onnx import to_onnx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _common as common

OPSET = 17
C, H, W = 3, 22, 22


def nnx_l1_kernel(l1: np.ndarray) -> np.ndarray:
    """(1452, 256) kernel whose rows are in (h, w, c) order (NHWC flatten)."""
    return np.ascontiguousarray(
        l1.T.reshape(C, H, W, 256).transpose(1, 2, 0, 3).reshape(C * H * W, 256))


class CCFF(nnx.Module):
    """CCFF-relu as a Flax NNX module (NHWC)."""

    def __init__(self, rngs: nnx.Rngs):
        self.c1 = nnx.Conv(1, 3, kernel_size=(5, 5), padding="VALID", use_bias=False, rngs=rngs)
        self.c2 = nnx.Conv(3, 3, kernel_size=(3, 3), padding="VALID", use_bias=False, rngs=rngs)
        self.l1 = nnx.Linear(C * H * W, 256, use_bias=False, rngs=rngs)
        self.l2 = nnx.Linear(256, 10, use_bias=False, rngs=rngs)

    def __call__(self, x):                      # x: (N, 28, 28, 1)
        x = nnx.relu(self.c1(x))
        x = nnx.relu(self.c2(x))
        x = x.reshape(x.shape[0], -1)           # (N, 1452) in (h, w, c) order
        x = nnx.relu(self.l1(x))
        return self.l2(x)


def build_nnx(w: dict[str, np.ndarray]) -> CCFF:
    model = CCFF(nnx.Rngs(0))
    model.c1.kernel.value = jnp.asarray(w["c1"].transpose(2, 3, 1, 0))   # HWIO
    model.c2.kernel.value = jnp.asarray(w["c2"].transpose(2, 3, 1, 0))
    model.l1.kernel.value = jnp.asarray(nnx_l1_kernel(w["l1"]))
    model.l2.kernel.value = jnp.asarray(w["l2"].T)
    return model


def build_lax(w: dict[str, np.ndarray]):
    c1, c2 = jnp.asarray(w["c1"]), jnp.asarray(w["c2"])
    l1t, l2t = jnp.asarray(w["l1"].T), jnp.asarray(w["l2"].T)
    dn = ("NCHW", "OIHW", "NCHW")

    def ccff(x):                                 # x: (N, 1, 28, 28)
        x = jax.nn.relu(lax.conv_general_dilated(x, c1, (1, 1), "VALID", dimension_numbers=dn))
        x = jax.nn.relu(lax.conv_general_dilated(x, c2, (1, 1), "VALID", dimension_numbers=dn))
        x = x.reshape(x.shape[0], -1)            # (N, 1452) in (c, h, w) order
        x = jax.nn.relu(x @ l1t)
        return x @ l2t
    return ccff


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--style", choices=("nnx", "lax"), default="nnx")
    ap.add_argument("--opset", type=int, default=OPSET)
    ap.add_argument("--out", type=Path, default=common.MODELS / "ccff-relu-jax.onnx")
    args = ap.parse_args()

    print(f"jax {jax.__version__}, jaxlib {version('jaxlib')}, flax {version('flax')}, "
          f"jax2onnx {version('jax2onnx')}, onnx {onnx.__version__}, "
          f"onnxruntime {ort.__version__}, numpy {np.__version__}")
    w = common.load_weights("ccff-relu")
    x_ho, y_ho = common.load_heldout()              # NCHW
    np_logits = common.numpy_ccff_relu(w, x_ho)

    if args.style == "nnx":
        fn = build_nnx(w)
        jax_logits = np.asarray(fn(jnp.asarray(x_ho.transpose(0, 2, 3, 1))))
        spec, nchw = [("B", 28, 28, 1)], [0]
    else:
        fn = build_lax(w)
        jax_logits = np.asarray(jax.jit(fn)(jnp.asarray(x_ho)))
        spec, nchw = [("B", 1, 28, 28)], None
    print(f"  JAX ({args.style}) vs float64 numpy CCFF: max |diff| "
          f"{np.abs(jax_logits - np_logits).max():.3g}")

    # return_mode="proto" and our own save: jax2onnx's return_mode="file" (standard
    # export mode) moves initializers above 1 MB (l1: 1.49 MB) to a .onnx.data file.
    proto = to_onnx(fn, spec, model_name="ccff_relu", opset=args.opset,
                    inputs_as_nchw=nchw, input_names=["input"], output_names=["logits"])
    onnx.save_model(proto, str(args.out), save_as_external_data=False)

    info = common.check_file(args.out)
    common.print_summary(args.out, info)
    common.print_nodes(args.out)
    if args.style == "nnx":
        # jax2onnx folds the HWIO -> OIHW transpose of the Flax kernels, so the
        # conv weights are stored in PyTorch's layout again.
        expected = {"c1 (OIHW)": w["c1"], "c2 (OIHW)": w["c2"],
                    "l1.T rows in (h, w, c) order": nnx_l1_kernel(w["l1"]), "l2.T": w["l2"].T}
    else:
        expected = {"c1": w["c1"], "c2": w["c2"], "l1.T": w["l1"].T, "l2.T": w["l2"].T}
    for key, name in common.check_weights_stored(args.out, expected).items():
        print(f"  trained weight {key} stored bit for bit as {name!r}")
    got = common.run(args.out, x_ho)
    print(f"  ONNX (NCHW input) vs JAX: max |diff| {np.abs(got - jax_logits).max():.3g}")
    common.compare_with_reference(args.out, x_ho, y_ho)
    common.print_heldout_accuracy(args.out)


if __name__ == "__main__":
    main()
