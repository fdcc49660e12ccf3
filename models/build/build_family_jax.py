#!/usr/bin/env python3
"""Build ``models/families/vit-tiny-jax.onnx``: the tiny vision transformer family in JAX / Flax.

The same architecture as build_families.py's ``vit-tiny`` (16×16 RGB input, 4×4 patches, class
token, position embedding, 2 pre-norm blocks of width 16 with 2 heads, GELU MLP, class-token head),
written as Flax NNX models are (channels-last input [N, 16, 16, 3], ``nnx.MultiHeadAttention``,
``nnx.LayerNorm``) with random weights from ``nnx.Rngs(SEED)``, and converted with
``jax2onnx.to_onnx`` (batch axis symbolic). Nothing is trained or downloaded. Adds the model's
samples to ``inputs.npz`` and its entry to ``manifest.json`` (see build_families.py) and checks the
export (onnx.checker with full_check, onnxruntime against JAX, size < 1 MB).

Environment: ``requirements-jax.txt``. Usage (from the repository root):

    ../venv-jax/bin/python models/build/build_family_jax.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
from importlib.metadata import version
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import onnx
import onnxruntime as ort
from flax import nnx
from jax2onnx import to_onnx

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent / "families"
STEM = "vit-tiny-jax"
SEED = 20240611
N_SAMPLES = 3
OPSET = 17
MAX_BYTES = 1 << 20


class Block(nnx.Module):
    def __init__(self, dim: int, heads: int, rngs: nnx.Rngs):
        self.ln1, self.ln2 = nnx.LayerNorm(dim, rngs=rngs), nnx.LayerNorm(dim, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(num_heads=heads, in_features=dim, decode=False, rngs=rngs)
        self.fc1, self.fc2 = nnx.Linear(dim, 2 * dim, rngs=rngs), nnx.Linear(2 * dim, dim, rngs=rngs)

    def __call__(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(nnx.gelu(self.fc1(self.ln2(x)), approximate=False))


class ViT(nnx.Module):
    def __init__(self, rngs: nnx.Rngs, dim: int = 16, patch: int = 4, image: int = 16):
        self.patch = nnx.Conv(3, dim, kernel_size=(patch, patch), strides=(patch, patch), padding="VALID",
                              rngs=rngs)
        self.cls = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, 1, dim)))
        self.pos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (1, (image // patch) ** 2 + 1, dim)))
        self.blocks = nnx.List([Block(dim, 2, rngs), Block(dim, 2, rngs)])
        self.norm = nnx.LayerNorm(dim, rngs=rngs)
        self.head = nnx.Linear(dim, 10, rngs=rngs)

    def __call__(self, x):
        x = self.patch(x)
        n, dim = x.shape[0], x.shape[-1]
        x = x.reshape(n, -1, dim)
        x = jnp.concatenate([jnp.broadcast_to(self.cls[...], (n, 1, dim)), x], axis=1) + self.pos[...]
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x)[:, 0])


def randomize_norms(model: ViT) -> None:
    """Non-trivial LayerNorm scales and offsets (fresh ones are 1 and 0), as build_families.py does."""
    key = jax.random.key(SEED + 1)
    for _, norm in nnx.iter_graph(model):
        if isinstance(norm, nnx.LayerNorm):
            key, k1, k2 = jax.random.split(key, 3)
            norm.scale[...] = jax.random.uniform(k1, norm.scale.shape, minval=0.5, maxval=1.5)
            norm.bias[...] = jax.random.uniform(k2, norm.bias.shape, minval=-0.2, maxval=0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    args = parser.parse_args()
    model = ViT(nnx.Rngs(SEED))
    randomize_norms(model)
    x = np.random.default_rng(SEED).random((N_SAMPLES, 16, 16, 3), dtype=np.float32)
    proto = to_onnx(model, [("batch", 16, 16, 3)], opset=OPSET)
    path = args.out / f"{STEM}.onnx"
    onnx.save(proto, str(path))

    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    if path.stat().st_size >= MAX_BYTES:
        raise SystemExit(f"{path.name}: more than the 1 MB budget")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    want = np.asarray(model(jnp.asarray(x)))
    diff = float(np.abs(got - want).max())
    if diff > 1e-4 * max(1.0, float(np.abs(want).max())):
        raise SystemExit(f"{path.name}: onnxruntime and JAX differ by {diff}")

    inputs_path, manifest_path = args.out / "inputs.npz", args.out / "manifest.json"
    inputs = dict(np.load(inputs_path)) if inputs_path.exists() else {}
    inputs[STEM] = x
    np.savez_compressed(inputs_path, **dict(sorted(inputs.items())))
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest[STEM] = {"family": "vision transformer, 2 blocks (Flax NNX MultiHeadAttention, NHWC input)",
                      "framework": f"JAX {jax.__version__} / Flax {version('flax')}",
                      "exporter": f"jax2onnx {version('jax2onnx')} (to_onnx)"}
    manifest_path.write_text(json.dumps(dict(sorted(manifest.items())), indent=1) + "\n")
    print(f"{path.name}: {path.stat().st_size:,} bytes, IR {proto.ir_version}, opset {OPSET}, "
          f"max |ort - jax| {diff:.1e}, ops {' '.join(sorted({n.op_type for n in proto.graph.node}))}")


if __name__ == "__main__":
    main()
