#!/usr/bin/env python3
"""Train the CCFF network (Gebhart & Schrater) on MNIST and export it to ONNX.

This is the build script for the model files shipped in ``models/``.  It is
*not* part of the onnxtopo package: it needs PyTorch, which the package itself
does not.  Running it writes, into the output directory (default: ``models/``):

    ccff-relu.onnx, ccff-sigmoid.onnx      the two exported networks
    mnist-heldout.npz                      500 held-out images + labels
    mnist-sample.npy                       the first 8 of those images
    build/ccff-relu.weights.npz            raw trained weights (PyTorch layout)
    build/ccff-sigmoid.weights.npz

Data split (MNIST t10k set, 10,000 images, the only split available offline):
images 0..7999 are used for training, 8000..9999 are held out for evaluation.

Network (input 1x28x28 float32 in [0, 1], i.e. pixel / 255, no normalisation):

    Conv2d(1 -> 3, 5x5, no bias) -> act      # 3 x 24 x 24
    Conv2d(3 -> 3, 3x3, no bias) -> act      # 3 x 22 x 22
    Flatten                                  # 1452
    Linear(1452 -> 256, no bias) -> act
    Linear(256 -> 10, no bias)               # logits

with act = ReLU ("ccff-relu") or act = Sigmoid ("ccff-sigmoid").

Training is deterministic for a given seed: every random draw (weight init,
shuffling) comes from seeded torch generators and deterministic algorithms are
enforced.  The number of intra-op threads is pinned too, because float
reductions may be summed in a different order with a different thread count.

Usage:
    python models/build/train_ccff.py [--mnist DIR] [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from _common import load_mnist  # the MNIST reader shared by the build scripts
from onnx import numpy_helper
from torch import nn

HERE = Path(__file__).resolve().parent

# Defaults relative to this script: models/build/ -> repo root -> ../shared.
DEFAULT_MNIST = HERE.parents[2] / "shared" / "data" / "mnist"
DEFAULT_OUT = HERE.parent

# Split of the 10,000 t10k images.
N_TRAIN = 8000          # images 0..7999 train
N_TOTAL = 10000         # images 8000..9999 held out
N_HELDOUT_SHIPPED = 500  # images 8000..8499 go into mnist-heldout.npz
N_SAMPLE = 8            # first 8 of those go into mnist-sample.npy

SEED = 20240601
NUM_THREADS = 2
OPSET = 17

# Per-variant hyper-parameters.  Sigmoid networks train more slowly (small
# gradients through saturating units), so that variant gets a larger
# learning rate and more epochs.
VARIANTS = {
    "ccff-relu": {"act": nn.ReLU, "lr": 1e-3, "epochs": 8},
    "ccff-sigmoid": {"act": nn.Sigmoid, "lr": 5e-3, "epochs": 12},
}
BATCH_SIZE = 64


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------

# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------

class CCFF(nn.Module):
    """Conv-Conv-FullyConnected-FullyConnected network, no biases."""

    def __init__(self, act: type[nn.Module]):
        super().__init__()
        self.c1 = nn.Conv2d(1, 3, kernel_size=5, bias=False)
        self.c2 = nn.Conv2d(3, 3, kernel_size=3, bias=False)
        self.l1 = nn.Linear(3 * 22 * 22, 256, bias=False)
        self.l2 = nn.Linear(256, 10, bias=False)
        self.act = act()            # stateless, so one instance serves all layers
        self.flatten = nn.Flatten()  # (N, 3, 22, 22) -> (N, 1452), row-major (C, H, W)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.c1(x))
        x = self.act(self.c2(x))
        x = self.flatten(x)
        x = self.act(self.l1(x))
        return self.l2(x)

    def weights(self) -> dict[str, np.ndarray]:
        """Weights as plain float32 numpy arrays in PyTorch layout.

        c1 (3,1,5,5), c2 (3,3,3,3): (out_ch, in_ch, kh, kw);
        l1 (256,1452), l2 (10,256): (out_features, in_features), y = x @ W.T.
        """
        return {
            name: getattr(self, name).weight.detach().cpu().numpy().copy()
            for name in ("c1", "c2", "l1", "l2")
        }


# --------------------------------------------------------------------------
# Training / evaluation
# --------------------------------------------------------------------------

def set_determinism(seed: int) -> None:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(NUM_THREADS)


@torch.no_grad()
def n_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    """Number of correctly classified images (exact integer, no float rounding)."""
    model.eval()
    return int((model(x).argmax(dim=1) == y).sum())


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return n_correct(model, x, y) / len(y)


def train(name: str, act: type[nn.Module], lr: float, epochs: int,
          x_tr: torch.Tensor, y_tr: torch.Tensor,
          x_ho: torch.Tensor, y_ho: torch.Tensor, on_epoch=None) -> CCFF:
    """Train one variant from a freshly seeded state.

    ``on_epoch(epoch, model)``, if given, sees the network at initialization (epoch 0) and after
    each epoch (benchmarks/static_training.py exports these snapshots); it must not draw from
    torch's random generators, so that training stays the same.
    """
    # Reseed per variant so each one is reproducible on its own, regardless
    # of which variants were trained before it.
    set_determinism(SEED)
    model = CCFF(act)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    shuffle_gen = torch.Generator().manual_seed(SEED + 1)

    n = x_tr.shape[0]
    if on_epoch is not None:
        on_epoch(0, model)
    for epoch in range(1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=shuffle_gen)
        total_loss = 0.0
        for start in range(0, n, BATCH_SIZE):
            idx = order[start:start + BATCH_SIZE]
            opt.zero_grad()
            loss = loss_fn(model(x_tr[idx]), y_tr[idx])
            loss.backward()
            opt.step()
            total_loss += loss.item() * idx.numel()
        print(f"  [{name}] epoch {epoch:2d}/{epochs}  loss {total_loss / n:.4f}  "
              f"train acc {accuracy(model, x_tr, y_tr):.4f}  "
              f"held-out acc {accuracy(model, x_ho, y_ho):.4f}  "
              f"({time.perf_counter() - t0:.1f}s)")
        if on_epoch is not None:
            on_epoch(epoch, model)
    model.eval()
    return model


# --------------------------------------------------------------------------
# Export / verification
# --------------------------------------------------------------------------

def export_onnx(model: CCFF, path: Path, example: torch.Tensor) -> None:
    """Export with the TorchScript-based exporter, weights embedded in the file."""
    model.eval()
    # The legacy exporter is chosen on purpose (dynamo=False); silence the
    # deprecation warning it emits so real problems stand out in the log.
    warnings.filterwarnings("ignore", category=DeprecationWarning,
                            message=".*legacy TorchScript-based ONNX export.*")
    torch.onnx.export(
        model, (example,), str(path),
        dynamo=False,
        opset_version=OPSET,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )


def describe_value(v: onnx.ValueInfoProto) -> str:
    t = v.type.tensor_type
    dims = [d.dim_param or d.dim_value for d in t.shape.dim]
    return f"{v.name}: {onnx.TensorProto.DataType.Name(t.elem_type)} {dims}"


def verify_onnx(model: CCFF, path: Path, x_ho: torch.Tensor, y_ho: torch.Tensor,
                torch_correct: int) -> dict:
    """Check the exported file and compare onnxruntime with torch."""
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)

    # Weights must be embedded, not stored as external data.
    for init in proto.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            raise RuntimeError(f"{path}: initializer {init.name} uses external data")

    # The initializers must be exactly the trained weights.  The exporter
    # turns bias-free Linear layers into MatMul with a pre-transposed
    # (in_features, out_features) initializer, so compare up to transpose.
    inits = sorted(numpy_helper.to_array(t).tobytes() for t in proto.graph.initializer)
    w = model.weights()
    expected = sorted(np.ascontiguousarray(a).tobytes()
                      for a in (w["c1"], w["c2"], w["l1"].T, w["l2"].T))
    if inits != expected:
        raise RuntimeError(f"{path}: initializers differ from the trained weights")

    ops = [node.op_type for node in proto.graph.node]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (inp_name,) = [i.name for i in sess.get_inputs()]

    # Element-wise agreement on 100 held-out images.
    with torch.no_grad():
        ref = model(x_ho[:100]).numpy()
    got = sess.run(None, {inp_name: x_ho[:100].numpy()})[0]
    max_diff = float(np.abs(ref - got).max())
    if max_diff >= 1e-4:
        raise RuntimeError(f"{path}: onnxruntime vs torch max abs diff {max_diff}")

    # Same accuracy on all held-out images.
    logits = sess.run(None, {inp_name: x_ho.numpy()})[0]
    ort_correct = int((logits.argmax(axis=1) == y_ho.numpy()).sum())
    if ort_correct != torch_correct:
        raise RuntimeError(f"{path}: onnxruntime gets {ort_correct} held-out images right, "
                           f"torch gets {torch_correct}")

    return {
        "ops": ops,
        "inputs": [describe_value(v) for v in proto.graph.input],
        "outputs": [describe_value(v) for v in proto.graph.output],
        "max_diff": max_diff,
        "ort_acc": ort_correct / len(y_ho),
        "opset": [(o.domain or "ai.onnx", o.version) for o in proto.opset_import],
        "producer": f"{proto.producer_name} {proto.producer_version}",
        "ir_version": proto.ir_version,
    }


def shape_subgraph_note(ops: list[str]) -> str:
    if "Flatten" in ops:
        return "flatten exported as Flatten"
    if "Reshape" in ops and any(op in ops for op in ("Shape", "Gather", "Concat")):
        return "NOTE: flatten exported as Reshape fed by a Shape/Gather/Concat subgraph"
    if "Reshape" in ops:
        return "NOTE: flatten exported as Reshape with a constant shape"
    return "NOTE: no Flatten/Reshape node found"


# --------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mnist_pos", nargs="?", type=Path, default=None, metavar="MNIST_DIR",
                    help="MNIST directory (same as --mnist)")
    ap.add_argument("--mnist", type=Path, default=None,
                    help=f"directory holding t10k-*-ubyte.gz (default: {DEFAULT_MNIST})")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT,
                    help=f"output directory (default: {DEFAULT_OUT})")
    ap.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS),
                    help="which variants to build (default: all)")
    args = ap.parse_args()
    if args.mnist and args.mnist_pos and args.mnist.resolve() != args.mnist_pos.resolve():
        ap.error("MNIST directory given both positionally and with --mnist")
    mnist_dir = args.mnist or args.mnist_pos or DEFAULT_MNIST
    out = args.out
    weights_dir = out / "build"
    weights_dir.mkdir(parents=True, exist_ok=True)

    print(f"torch {torch.__version__}, onnx {onnx.__version__}, onnxruntime {ort.__version__}, "
          f"numpy {np.__version__}")
    x, y = load_mnist(mnist_dir)
    print(f"MNIST t10k from {mnist_dir.resolve()}: {x.shape[0]} images; "
          f"train 0..{N_TRAIN - 1}, held out {N_TRAIN}..{N_TOTAL - 1}")

    # Held-out sample files shipped with the project.
    x_ship = x[N_TRAIN:N_TRAIN + N_HELDOUT_SHIPPED].copy()
    y_ship = y[N_TRAIN:N_TRAIN + N_HELDOUT_SHIPPED].copy()
    np.savez_compressed(out / "mnist-heldout.npz", x=x_ship, y=y_ship)
    np.save(out / "mnist-sample.npy", x_ship[:N_SAMPLE])
    print(f"wrote {out / 'mnist-heldout.npz'} (x {x_ship.shape} {x_ship.dtype}, "
          f"y {y_ship.shape} {y_ship.dtype}) and {out / 'mnist-sample.npy'}")

    x_tr, y_tr = torch.from_numpy(x[:N_TRAIN]), torch.from_numpy(y[:N_TRAIN])
    x_ho, y_ho = torch.from_numpy(x[N_TRAIN:]), torch.from_numpy(y[N_TRAIN:])

    summary = []
    for name in args.variants:
        cfg = VARIANTS[name]
        print(f"\n== {name}: act={cfg['act'].__name__} lr={cfg['lr']} epochs={cfg['epochs']} "
              f"batch={BATCH_SIZE} seed={SEED}")
        t0 = time.perf_counter()
        model = train(name, cfg["act"], cfg["lr"], cfg["epochs"], x_tr, y_tr, x_ho, y_ho)
        train_s = time.perf_counter() - t0
        torch_correct = n_correct(model, x_ho, y_ho)
        torch_acc = torch_correct / len(y_ho)

        # Raw weights for re-exporting from other frameworks.
        w = model.weights()
        np.savez_compressed(weights_dir / f"{name}.weights.npz", **w)
        digest = hashlib.sha256(b"".join(w[k].tobytes() for k in sorted(w))).hexdigest()

        onnx_path = out / f"{name}.onnx"
        export_onnx(model, onnx_path, x_ho[:1])
        info = verify_onnx(model, onnx_path, x_ho, y_ho, torch_correct)

        print(f"  trained in {train_s:.1f}s; held-out accuracy (2000 images): "
              f"torch {torch_acc:.4f}, onnxruntime {info['ort_acc']:.4f}")
        print(f"  weights sha256 {digest}")
        print(f"  {onnx_path}: {onnx_path.stat().st_size} bytes, {info['producer']}, "
              f"IR {info['ir_version']}, opset {info['opset']}")
        print(f"  inputs  {info['inputs']}")
        print(f"  outputs {info['outputs']}")
        print(f"  ops     {info['ops']}")
        print(f"  {shape_subgraph_note(info['ops'])}")
        print(f"  onnxruntime vs torch max abs diff (100 images): {info['max_diff']:.3g}")
        summary.append((name, torch_acc))

    print("\nSummary (held-out accuracy on images 8000..9999):")
    for name, acc in summary:
        print(f"  {name:14s} {acc:.4f}")


if __name__ == "__main__":
    main()
