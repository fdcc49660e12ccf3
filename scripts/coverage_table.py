#!/usr/bin/env python3
"""Write the coverage table (markdown): which architectures onnxtopo plans, and their sizes.

One row per model: family, exporter and opset, op types, vertices and candidate edges (from the
plan), whether onnxtopo plans it (if not, why), and the wall time of ``onnxtopo.analyze`` on one
input, end to end (load, plan, onnxruntime, graph, persistence; only for models with fewer than
5·10^7 candidate edges). Rows:

* the shipped family models, models/families/*.onnx (described by its manifest.json, analyzed on
  the first sample of its inputs.npz);
* when torch and torchvision are importable: torchvision architectures with random weights,
  exported on the fly to a temporary folder with each exporter asked for (``--exporters``), and
  analyzed on one uniform random input when small enough (most are planned only).

onnxtopo is imported from this checkout. Run from the repository root in the build environment
of models/build/requirements-families.txt, which has torch, torchvision and onnxtopo's
dependencies (or with .venv's Python for the shipped models' rows only):

    python3.11 -m venv ../venv-build && ../venv-build/bin/pip install -r models/build/requirements-families.txt
    ../venv-build/bin/python scripts/coverage_table.py [--out benchmarks/coverage.md] [--only NAME ...]
                                                  [--exporters torchscript dynamo]

Exporting and planning the 14 torchvision architectures with both exporters takes about five
minutes on 2 cores (6 GB of memory at most); the table goes to --out (default benchmarks/coverage.md) and to stdout.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's onnxtopo, installed or not
import onnxtopo

FAMILIES = ROOT / "models" / "families"
TIMED_EDGES = 5 * 10**7
_compiled: list[Path] = []  # the model whose analysis compiled onnxtopo's numba code, once done

#: torchvision architecture -> (family, input side)
TORCHVISION = {
    "resnet18": ("ResNet", 224),
    "mobilenet_v3_small": ("MobileNetV3 (SE, hard-swish)", 224),
    "efficientnet_b0": ("EfficientNet (MBConv, SE, SiLU)", 224),
    "shufflenet_v2_x0_5": ("ShuffleNetV2", 224),
    "squeezenet1_0": ("SqueezeNet", 224),
    "densenet121": ("DenseNet", 224),
    "mnasnet0_5": ("MnasNet", 224),
    "regnet_y_400mf": ("RegNetY (SE)", 224),
    "convnext_tiny": ("ConvNeXt (LayerNorm, GELU)", 224),
    "vit_b_16": ("vision transformer", 224),
    "alexnet": ("AlexNet", 224),
    "vgg11": ("VGG", 224),
    "googlenet": ("GoogLeNet (Inception v1)", 224),
    "inception_v3": ("Inception v3", 299),
}
#: Constructor arguments for random weights without the training-only auxiliary heads.
TORCHVISION_ARGS = {"googlenet": {"aux_logits": False, "init_weights": True},
                    "inception_v3": {"aux_logits": False, "init_weights": True}}


@dataclass
class Row:
    architecture: str
    family: str
    exporter: str
    op_types: str
    vertices: int | None = None
    edges: int | None = None
    plans: str = "no"
    seconds: float | None = None

    def markdown(self) -> str:
        cells = [self.architecture, self.family, self.exporter, self.op_types,
                 "—" if self.vertices is None else f"{self.vertices:,}",
                 "—" if self.edges is None else f"{self.edges:,}",
                 self.plans, "—" if self.seconds is None else f"{self.seconds:.2f} s"]
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


HEADER = ("| architecture | family | exporter, opset | op types | vertices | candidate edges | plans | "
          "one input |\n|---|---|---|---|---:|---:|---|---:|")


def refusal(exc: Exception) -> str:
    """The reason of a refusal, without the advice and the list of supported ops that follow it."""
    text = str(exc)
    for tail in ("; to analyze the network", " Supported op types:"):
        text = text.split(tail)[0]
    return text


def measure(path: Path, architecture: str, family: str, exporter: str, x: np.ndarray | None) -> Row:
    model = onnx.load(str(path), load_external_data=False)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    ops = ", ".join(sorted({n.op_type for n in model.graph.node}))
    row = Row(architecture, family, f"{exporter}, opset {opset}", ops)
    try:
        plan = onnxtopo.inspect(path)
    except onnxtopo.OnnxtopoError as exc:
        row.plans = f"no: {refusal(exc)}"
        return row
    except Exception as exc:  # noqa: BLE001 - a bug in onnxtopo: the table says so instead of stopping
        row.plans = f"internal error: {type(exc).__name__}: {exc}"
        return row
    row.plans = "yes"
    row.vertices = plan.n_vertices
    row.edges = sum(step.candidate_edges for step in plan.steps)
    if x is not None and row.edges < TIMED_EDGES:
        try:
            if not _compiled:  # the first analysis also compiles onnxtopo's numba code: time none of it
                onnxtopo.analyze(path, x[:1])
                _compiled.append(path)
            start = time.perf_counter()
            onnxtopo.analyze(path, x[:1])
        except Exception as exc:  # noqa: BLE001 - the table says why instead of stopping
            row.plans = f"yes; analysis failed: {type(exc).__name__}: {refusal(exc)}"
        else:
            row.seconds = time.perf_counter() - start
    return row


def family_rows(only) -> list[Row]:
    manifest = json.loads((FAMILIES / "manifest.json").read_text())
    with np.load(FAMILIES / "inputs.npz", allow_pickle=False) as archive:
        samples = dict(archive)
    rows = []
    for path in sorted(FAMILIES.glob("*.onnx")):
        if only and path.stem not in only:
            continue
        info = manifest[path.stem]
        exporter = f"{info['framework']}, {info['exporter'].split(' (')[0]}"
        if "IR version 3" in info["exporter"]:
            exporter += ", IR 3"
        rows.append(measure(path, f"`{path.name}`", info["family"], exporter, samples[path.stem]))
        print(rows[-1].markdown(), flush=True)
    return rows


def torchvision_rows(only, exporters) -> list[Row]:
    import torch
    import torchvision

    sys.path.insert(0, str(ROOT / "models" / "build"))
    from build_families import export_dynamo, export_torchscript

    torch.manual_seed(0)
    rows = []
    for name, (family, side) in TORCHVISION.items():
        if only and name not in only:
            continue
        model = getattr(torchvision.models, name)(weights=None, **TORCHVISION_ARGS.get(name, {})).eval()
        example = torch.rand(2, 3, side, side)
        for exporter in exporters:
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / f"{name}.onnx"
                if exporter == "dynamo":
                    export_dynamo(model, example, path)
                    label = "dynamo exporter"
                else:
                    export_torchscript(model, example, path, 17)
                    label = "TorchScript exporter"
                row = measure(path, f"torchvision `{name}`", family,
                              f"PyTorch {torch.__version__.split('+')[0]}, {label}", example[:1].numpy())
            rows.append(row)
            print(row.markdown(), flush=True)
    return rows


def versions() -> str:
    import onnxruntime

    parts = [f"Python {platform.python_version()}", f"onnx {onnx.__version__}",
             f"onnxruntime {onnxruntime.__version__}"]
    try:
        import torch
        import torchvision
        parts += [f"torch {torch.__version__}", f"torchvision {torchvision.__version__}"]
    except ImportError:
        pass
    try:
        def git(*args):
            return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                                  check=True).stdout.strip()

        changed = " with uncommitted changes" if git("status", "--porcelain", "--", "onnxtopo") else ""
        parts.append(f"onnxtopo at commit {git('rev-parse', '--short', 'HEAD')}{changed}")
    except (OSError, subprocess.CalledProcessError):
        pass
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "coverage.md")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these models (file stems, torchvision names)")
    parser.add_argument("--exporters", nargs="+", choices=("torchscript", "dynamo"),
                        default=["torchscript", "dynamo"], help="exporters for the torchvision models")
    args = parser.parse_args()
    rows = family_rows(args.only)
    if importlib.util.find_spec("torchvision") is None:
        print("torch/torchvision not importable: shipped models only", file=sys.stderr)
    else:
        rows += torchvision_rows(args.only, args.exporters)
    planned = sum(r.plans.startswith("yes") for r in rows)
    text = "\n".join([
        "# Coverage: architectures onnxtopo plans",
        "",
        ("Generated by `scripts/coverage_table.py` (see its docstring to rerun). Vertices and candidate edges "
         "come from the plan (`onnxtopo inspect`); *one input* is the wall time of `onnxtopo.analyze` on "
         f"one input, end to end, for models with fewer than {TIMED_EDGES:,} candidate edges "
         f"(2 CPU cores). torchvision models have random weights. {versions()}."),
        "",
        f"{planned} of {len(rows)} models planned.",
        "",
        HEADER,
        *(r.markdown() for r in rows),
        "",
    ])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
