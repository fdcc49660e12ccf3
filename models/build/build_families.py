#!/usr/bin/env python3
"""Build the small architecture-family models of ``models/families/`` (random, seeded weights).

Each file is a tiny member of a family of networks onnxtopo must plan, exported the way such a
network usually reaches users, so that the ops, attributes and graph patterns are the real
exporters' (class token Concat, channel shuffle, decomposed LayerNorm, Resize, pre-IR-4
initializers, ...). Nothing is trained and nothing is downloaded: every weight comes from
``torch.manual_seed``. Files written (stem: family, exporter):

    se-cnn-torchscript   squeeze-excitation CNN, SE pool = AdaptiveAvgPool2d(1); TorchScript, opset 17
    se-cnn-dynamo        the same architecture, SE pool = x.mean(dim=(2, 3)); dynamo exporter
    vit-tiny             2-block vision transformer, explicit MatMul/Softmax attention; TorchScript, opset 17
    vit-tiny-dynamo      the same with F.scaled_dot_product_attention; dynamo exporter
    shufflenet-mini      ShuffleNetV2-style units (chunk/slice split, channel shuffle, Concat); dynamo
    layernorm-mlp        MLP with LayerNorm; TorchScript, opset 14 (LayerNorm decomposed into primitives)
    embedding-conv       token ids -> nn.Embedding -> Conv1d -> mean -> Linear; TorchScript, opset 17
    unet-mini            U-Net: MaxPool down, Upsample nearest/bilinear and ConvTranspose up, skip Concat;
                         TorchScript, opset 17
    alexnet-tiny-opset9  "classic zoo" AlexNet-like CNN with LRN and MaxPool; TorchScript, opset 9, then
                         rewritten to IR version 3 with every initializer also a graph input

plus ``inputs.npz`` (key = file stem): a few sample inputs per model, and ``manifest.json``: each
file's family, framework and exporter (read by scripts/coverage.py); both are updated in place, so
the entries of ``vit-tiny-jax`` (from build_family_jax.py, JAX) are kept. Every export is checked
(onnx.checker with full_check, onnxruntime against PyTorch on the samples, size < 1 MB).

Environment: ``requirements-families.txt`` (torch 2.14.1, onnxscript for the dynamo exporter).
Usage (from the repository root):

    ../venv-build/bin/python models/build/build_families.py [--out DIR] [--only STEM ...]
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import onnxscript
import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE.parent / "families"
SEED = 20240611
N_SAMPLES = 3
MAX_BYTES = 1 << 20
VOCAB, SEQ_LEN = 50, 12


def randomize_statistics(model: nn.Module) -> nn.Module:
    """Give normalization layers non-trivial affine parameters and running statistics.

    Freshly initialized ones are identities (γ = 1, β = 0, mean 0, var 1), which would hide
    whether a consumer of the export applies them.
    """
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.2)
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return model.eval()


# --------------------------------------------------------------------------
# Architectures
# --------------------------------------------------------------------------

class SqueezeExcitation(nn.Module):
    """Hu et al.'s SE gate: global average → FC → ReLU → FC → sigmoid, multiplied into the map."""

    def __init__(self, channels: int, reduced: int, pool: str):
        super().__init__()
        self.pool = pool
        self.fc1, self.fc2 = nn.Linear(channels, reduced), nn.Linear(reduced, channels)

    def forward(self, x):
        if self.pool == "adaptive":
            s = F.adaptive_avg_pool2d(x, 1).flatten(1)
        else:
            s = x.mean(dim=(2, 3))
        gate = torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))
        return x * gate[:, :, None, None]


class SECNN(nn.Module):
    def __init__(self, pool: str):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.se1 = SqueezeExcitation(8, 4, pool)
        self.down = nn.Sequential(nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16),
                                  nn.ReLU())
        self.se2 = SqueezeExcitation(16, 4, pool)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.se2(self.down(self.se1(self.stem(x))))
        return self.head(x.mean(dim=(2, 3)))


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, fused: bool):
        super().__init__()
        self.heads, self.fused = heads, fused
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, t, c = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if self.fused:
            y = F.scaled_dot_product_attention(q, k, v)
        else:
            attn = (q @ k.transpose(-2, -1)) * (c // self.heads) ** -0.5
            y = attn.softmax(dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, fused: bool):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, fused)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class ViT(nn.Module):
    """16×16 RGB input, 4×4 patches (16 tokens + class token), width 16, 2 heads, 2 blocks."""

    def __init__(self, fused: bool, dim: int = 16, patch: int = 4, image: int = 16):
        super().__init__()
        self.patch = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls = nn.Parameter(0.02 * torch.randn(1, 1, dim))
        self.pos = nn.Parameter(0.02 * torch.randn(1, (image // patch) ** 2 + 1, dim))
        self.blocks = nn.Sequential(Block(dim, 2, fused), Block(dim, 2, fused))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


def channel_shuffle(x, groups: int):
    b, c, h, w = x.shape
    return x.reshape(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def pointwise(cin: int, cout: int):
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


def depthwise(channels: int, stride: int):
    return nn.Sequential(nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=False),
                         nn.BatchNorm2d(channels))


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit. Stride 1: half the channels pass through, split by ``torch.chunk``
    (exported as Split) or by slicing (Slice); stride 2: both halves are convolved."""

    def __init__(self, cin: int, cout: int, stride: int, split: str = "chunk"):
        super().__init__()
        self.stride, self.split = stride, split
        half = cout // 2
        branch_in = cin if stride == 2 else cin // 2
        self.branch = nn.Sequential(pointwise(branch_in, half), depthwise(half, stride), pointwise(half, half))
        if stride == 2:
            self.shortcut = nn.Sequential(depthwise(cin, 2), pointwise(cin, half))

    def forward(self, x):
        if self.stride == 2:
            y = torch.cat([self.shortcut(x), self.branch(x)], dim=1)
        else:
            if self.split == "chunk":
                keep, work = x.chunk(2, dim=1)
            else:
                half = x.shape[1] // 2
                keep, work = x[:, :half], x[:, half:]
            y = torch.cat([keep, self.branch(work)], dim=1)
        return channel_shuffle(y, 2)


class ShuffleNetMini(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.units = nn.Sequential(ShuffleUnit(16, 16, 1, "chunk"), ShuffleUnit(16, 32, 2),
                                   ShuffleUnit(32, 32, 1, "slice"))
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.units(self.stem(x)).mean(dim=(2, 3)))


class LayerNormMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(32, 24), nn.LayerNorm(24), nn.ReLU(),
                                 nn.Linear(24, 16), nn.LayerNorm(16), nn.GELU(), nn.Linear(16, 5))

    def forward(self, x):
        return self.net(x)


class EmbeddingConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 16)
        self.conv = nn.Conv1d(16, 16, 3, padding=1)
        self.head = nn.Linear(16, 4)

    def forward(self, tokens):
        x = torch.relu(self.conv(self.embed(tokens).transpose(1, 2)))
        return self.head(x.mean(dim=2))


class UNetMini(nn.Module):
    """Encoder 8×8 → 4×4 → 2×2; decoder: nearest Upsample, bilinear Upsample (align_corners), and a
    ConvTranspose, each followed by a skip Concat; a final bilinear interpolation to 16×16."""

    def __init__(self):
        super().__init__()

        def conv(cin, cout):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU())

        self.enc1, self.enc2, self.bottom = conv(3, 8), conv(8, 12), conv(12, 12)
        self.pool = nn.MaxPool2d(2)
        self.up_nearest = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec2 = conv(24, 8)
        self.up_transposed = nn.ConvTranspose2d(8, 8, 2, stride=2)
        self.dec1 = conv(16, 8)
        self.up_bilinear = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.out = nn.Conv2d(8 + 3, 2, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        d2 = self.dec2(torch.cat([self.up_nearest(self.bottom(self.pool(e2))), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up_transposed(d2), e1], dim=1))
        d0 = torch.cat([self.up_bilinear(d1), F.interpolate(x, scale_factor=2, mode="bilinear")], dim=1)
        return self.out(d0)


class _LRN(torch.autograd.Function):
    """torch's local_response_norm, exported as one ONNX LRN node as in Caffe-converted zoo models
    (the TorchScript exporter would decompose it into Pow/Pad/AveragePool/Div)."""

    @staticmethod
    def forward(ctx, x, size, alpha, beta, k):
        return F.local_response_norm(x, size, alpha, beta, k)

    @staticmethod
    def symbolic(g, x, size, alpha, beta, k):
        return g.op("LRN", x, size_i=size, alpha_f=alpha, beta_f=beta, bias_f=k)


class LRN(nn.Module):
    def __init__(self, size=5, alpha=1e-4, beta=0.75, k=2.0):
        super().__init__()
        self.args = (size, alpha, beta, k)

    def forward(self, x):
        return _LRN.apply(x, *self.args)


class AlexNetTiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 5, stride=2, padding=2), nn.ReLU(), LRN(), nn.MaxPool2d(3, 2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), LRN(), nn.MaxPool2d(3, 2),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2))
        self.classifier = nn.Sequential(nn.Dropout(), nn.Linear(16, 32), nn.ReLU(), nn.Dropout(),
                                        nn.Linear(32, 10))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


# --------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------

def export_torchscript(model: nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    """The legacy TorchScript exporter, dynamic batch axis, constant folding on (its default)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=opset,
                          input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})


def export_dynamo(model: nn.Module, example: torch.Tensor, path: Path, opset: int | None = None) -> None:
    """torch.export + onnxscript, the exporter's default opset and optimizer, dynamic batch axis."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (example,), dynamo=True, opset_version=opset,
                                    input_names=["input"], output_names=["output"],
                                    dynamic_shapes=({0: torch.export.Dim("batch")},),
                                    optimize=True, external_data=False, verbose=False)
    program.save(str(path), external_data=False)


def rewrite_as_ir3(path: Path) -> None:
    """Make a model look like one written before IR version 4: IR version 3, and every
    initializer also declared in graph.input (then required; constants a user could override)."""
    model = onnx.load(str(path))
    model.ir_version = 3
    declared = {i.name for i in model.graph.input}
    for init in model.graph.initializer:
        if init.name not in declared:
            model.graph.input.append(onnx.helper.make_tensor_value_info(init.name, init.data_type, init.dims))
    onnx.save(model, str(path))


EXPORTERS = {"torchscript": "TorchScript exporter (torch.onnx.export, dynamo=False)",
             "dynamo": "dynamo exporter (torch.onnx.export, dynamo=True; torch.export + onnxscript)"}


@dataclass(frozen=True)
class Family:
    stem: str
    family: str
    make: Callable[[], nn.Module]
    sample_shape: tuple[int, ...]
    exporter: str  # a key of EXPORTERS
    opset: int | None = None  # None: the exporter's default
    ir3: bool = False  # rewrite as a pre-IR-4 model
    integer_input: bool = False

    def export(self, model: nn.Module, example: torch.Tensor, path: Path) -> None:
        if self.exporter == "dynamo":
            export_dynamo(model, example, path, self.opset)
        else:
            export_torchscript(model, example, path, self.opset)
        if self.ir3:
            rewrite_as_ir3(path)

    def manifest(self) -> dict:
        """What scripts/coverage.py and models/README.md say about the file."""
        exporter = EXPORTERS[self.exporter]
        if self.exporter == "dynamo":
            exporter += f", onnxscript {onnxscript.__version__}"
        if self.ir3:
            exporter += "; rewritten to IR version 3, initializers listed in graph.input"
        return {"family": self.family, "framework": f"PyTorch {torch.__version__.split('+')[0]}", "exporter": exporter}


FAMILIES = [
    Family("se-cnn-torchscript", "squeeze-excitation CNN (SE pool: GlobalAveragePool)", lambda: SECNN("adaptive"),
           (3, 16, 16), "torchscript", 17),
    Family("se-cnn-dynamo", "squeeze-excitation CNN (SE pool: ReduceMean)", lambda: SECNN("mean"), (3, 16, 16),
           "dynamo"),
    Family("vit-tiny", "vision transformer, 2 blocks (MatMul/Softmax attention)", lambda: ViT(fused=False),
           (3, 16, 16), "torchscript", 17),
    Family("vit-tiny-dynamo", "vision transformer, 2 blocks (scaled_dot_product_attention)",
           lambda: ViT(fused=True), (3, 16, 16), "dynamo"),
    Family("shufflenet-mini", "ShuffleNetV2-style channel split and shuffle", ShuffleNetMini, (3, 16, 16),
           "dynamo"),
    Family("layernorm-mlp", "MLP with LayerNorm (decomposed at opset 14)", LayerNormMLP, (32,), "torchscript", 14),
    Family("embedding-conv", "token embedding, Conv1d, mean (integer input)", EmbeddingConv, (SEQ_LEN,),
           "torchscript", 17, integer_input=True),
    Family("unet-mini", "U-Net (Resize nearest/bilinear, ConvTranspose, skip Concat)", UNetMini, (3, 8, 8),
           "torchscript", 17),
    Family("alexnet-tiny-opset9", "classic zoo CNN: AlexNet-like with LRN, IR version 3", AlexNetTiny, (3, 32, 32),
           "torchscript", 9, ir3=True),
]


def sample_inputs(family: Family, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if family.integer_input:
        return rng.integers(0, VOCAB, size=(N_SAMPLES, *family.sample_shape), dtype=np.int64)
    return rng.random((N_SAMPLES, *family.sample_shape), dtype=np.float32)


def check_export(path: Path, model: nn.Module, x: np.ndarray) -> dict:
    """onnx.checker (full), size, and onnxruntime against PyTorch on the samples."""
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    size = path.stat().st_size
    if size >= MAX_BYTES:
        raise SystemExit(f"{path.name}: {size} bytes, more than the 1 MB budget")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    diff = float(np.abs(got - want).max())
    if diff > 1e-4 * max(1.0, float(np.abs(want).max())):
        raise SystemExit(f"{path.name}: onnxruntime and PyTorch differ by {diff}")
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    return {"bytes": size, "ir": proto.ir_version, "opset": opset, "diff": diff,
            "ops": sorted({n.op_type for n in proto.graph.node})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument("--only", nargs="+", metavar="STEM", help="build only these models")
    args = parser.parse_args()
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    inputs_path, manifest_path = args.out / "inputs.npz", args.out / "manifest.json"
    inputs = dict(np.load(inputs_path)) if inputs_path.exists() else {}
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    chosen = [f for f in FAMILIES if not args.only or f.stem in args.only]
    for index, family in enumerate(FAMILIES):
        if family not in chosen:
            continue
        torch.manual_seed(SEED + index)
        model = randomize_statistics(family.make())
        x = sample_inputs(family, SEED + index)
        path = args.out / f"{family.stem}.onnx"
        family.export(model, torch.from_numpy(x), path)
        info = check_export(path, model, x)
        inputs[family.stem] = x
        manifest[family.stem] = family.manifest()
        print(f"{path.name}: {info['bytes']:,} bytes, IR {info['ir']}, opset {info['opset']}, "
              f"max |ort - torch| {info['diff']:.1e}, ops {' '.join(info['ops'])}")
    np.savez_compressed(inputs_path, **dict(sorted(inputs.items())))
    manifest_path.write_text(json.dumps(dict(sorted(manifest.items())), indent=1) + "\n")


if __name__ == "__main__":
    main()
