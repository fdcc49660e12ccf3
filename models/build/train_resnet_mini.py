#!/usr/bin/env python3
"""Train a small ResNet-style CNN on MNIST and export it with the TorchScript exporter.

Writes ``models/resnet-mini.onnx``.  Network (input (N, 1, 28, 28) float32 in [0, 1]):

    stem:   Conv(1->8, 3x3, pad 1, no bias) -> BN -> ReLU                    (N, 8, 28, 28)
    block1: Conv(8->8, 3x3, pad 1) -> BN -> ReLU -> Conv(8->8, 3x3, pad 1) -> BN,
            + identity, ReLU                                                (N, 8, 28, 28)
    MaxPool 2x2                                                             (N, 8, 14, 14)
    block2: Conv(8->16, 3x3, stride 2, pad 1) -> BN -> ReLU -> Conv(16->16, 3x3, pad 1)
            -> BN, + [Conv(8->16, 1x1, stride 2) -> BN] shortcut, ReLU       (N, 16, 7, 7)
    AdaptiveAvgPool2d(1) -> Flatten -> Linear(16 -> 10, with bias)          (N, 10) logits

Convolutions have no bias (each is followed by BatchNorm).  Training: MNIST t10k
images 0..7999, seed 20240601, deterministic algorithms, 2 intra-op threads, Adam
(lr 3e-3), cross-entropy, batch 64, 3 epochs.  Export: ``model.eval()`` (BatchNorm
uses its running statistics), ``torch.onnx.export(..., dynamo=False, opset_version=17,
do_constant_folding=True)`` with a dynamic batch axis; the exporter folds each
BatchNorm into the preceding Conv's weight and bias.

Environment: ``requirements.txt`` (the same one train_ccff.py uses).

Usage (from the repository root):
    python models/build/train_resnet_mini.py [--mnist DIR] [--epochs N] [--out FILE]
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
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _common as common

SEED = 20240601
NUM_THREADS = 2
OPSET = 17
BATCH_SIZE = 64
LR = 3e-3
EPOCHS = 3


def conv_bn(cin: int, cout: int, k: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False),
                         nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.a = conv_bn(cin, cout, 3, stride)
        self.b = conv_bn(cout, cout, 3, 1)
        self.shortcut = (conv_bn(cin, cout, 1, stride) if (stride != 1 or cin != cout)
                         else nn.Identity())
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b(self.relu(self.a(x)))
        return self.relu(y + self.shortcut(x))


class ResNetMini(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(8), nn.ReLU())
        self.block1 = BasicBlock(8, 8)
        self.pool = nn.MaxPool2d(2)
        self.block2 = BasicBlock(8, 16, stride=2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block1(self.stem(x))
        x = self.block2(self.pool(x))
        return self.fc(self.flatten(self.gap(x)))


@torch.no_grad()
def n_correct(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    model.eval()
    return int((model(x).argmax(1) == y).sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mnist", type=Path, default=common.DEFAULT_MNIST)
    ap.add_argument("--epochs", type=int, default=EPOCHS)
    ap.add_argument("--out", type=Path, default=common.MODELS / "resnet-mini.onnx")
    args = ap.parse_args()

    print(f"torch {torch.__version__}, onnx {onnx.__version__}, onnxruntime {ort.__version__}, "
          f"numpy {np.__version__}")
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(NUM_THREADS)

    x, y = common.load_mnist(args.mnist)
    x_tr, y_tr = torch.from_numpy(x[:common.N_TRAIN]), torch.from_numpy(y[:common.N_TRAIN])
    x_ho, y_ho = torch.from_numpy(x[common.N_TRAIN:]), torch.from_numpy(y[common.N_TRAIN:])

    model = ResNetMini()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"ResNetMini: {n_params} parameters")
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(SEED + 1)
    n = len(x_tr)
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for start in range(0, n, BATCH_SIZE):
            idx = order[start:start + BATCH_SIZE]
            opt.zero_grad()
            loss = loss_fn(model(x_tr[idx]), y_tr[idx])
            loss.backward()
            opt.step()
            total += loss.item() * idx.numel()
        print(f"  epoch {epoch}/{args.epochs}  loss {total / n:.4f}  held-out acc "
              f"{n_correct(model, x_ho, y_ho) / len(y_ho):.4f}  ({time.perf_counter() - t0:.1f}s)")

    model.eval()
    torch_correct = n_correct(model, x_ho, y_ho)
    print(f"torch held-out accuracy (t10k 8000..9999): {torch_correct}/{len(y_ho)} = "
          f"{torch_correct / len(y_ho):.4f}")

    warnings.filterwarnings("ignore", category=DeprecationWarning,
                            message=".*legacy TorchScript-based ONNX export.*")
    torch.onnx.export(
        model, (x_ho[:1],), str(args.out),
        dynamo=False,
        opset_version=OPSET,
        do_constant_folding=True,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )

    info = common.check_file(args.out)
    common.print_summary(args.out, info)
    common.print_nodes(args.out)
    if info["size"] >= 1_000_000:
        raise RuntimeError(f"{args.out} is {info['size']} bytes, expected < 1 MB")

    with torch.no_grad():
        ref = model(x_ho).numpy()
    got = common.run(args.out, x_ho.numpy())
    max_diff = float(np.abs(got - ref).max())
    onnx_correct = int((got.argmax(1) == y_ho.numpy()).sum())
    print(f"  onnxruntime vs torch (2000 held-out images): max |diff| {max_diff:.3g}; "
          f"onnxruntime accuracy {onnx_correct}/{len(y_ho)} = {onnx_correct / len(y_ho):.4f}")
    xs, ys = common.load_heldout()
    c, m = common.accuracy(args.out, xs, ys)
    print(f"  on mnist-heldout.npz: {c}/{m}")
    if max_diff >= 1e-4 or onnx_correct != torch_correct:
        raise RuntimeError("ONNX export disagrees with torch")


if __name__ == "__main__":
    main()
