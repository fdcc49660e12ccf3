#!/usr/bin/env python
"""Neural persistence (the static view) of CCFF from initialization through training.

    /work/venv-build/bin/python benchmarks/static_training.py [--mnist DIR] [--variants ccff-relu ...]
                                                              [--init-seeds N] [--out FILE.md]

Rieck et al. (ICLR 2019) report that a network's mean normalized neural persistence grows as it
trains. This script retrains CCFF exactly as ``models/build/train_ccff.py`` does (its model,
seed, data split, optimizer and shuffling, imported from it, not copied), exports the network
to ONNX at initialization and after every epoch into a temporary folder, and prints, for every
snapshot, the held-out accuracy (images 8000..9999 of MNIST t10k) and the static view computed
by ``onnxtopo.static_persistence``: each layer's normalized neural persistence, the network's
mean, the whole-network graph's, and the largest |w| every weight is divided by. It then says
whether the retrained weights are bit-identical to the shipped ones
(``models/build/<variant>.weights.npz``), gives the shipped ``models/<variant>.onnx``'s row,
and, so that the change with training can be read against the spread of initializations,
the same architecture at ``--init-seeds`` other seeds.

Needs PyTorch (the torch build venv, /work/venv-build) and ../shared/data/mnist; onnxtopo is
imported from this checkout. The table is written as Markdown with ``--out``
(benchmarks/static_training.md holds the last run).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BUILD = REPO / "models" / "build"
sys.path[:0] = [str(REPO), str(BUILD)]

import torch
import train_ccff as ccff  # models/build/train_ccff.py: the model and its training, not a copy
from _common import load_mnist  # the build scripts' MNIST reader

import onnxtopo


def static_row(label: str, path: Path, accuracy: float | None) -> dict:
    result = onnxtopo.static_persistence(path)
    return {"snapshot": label, "accuracy": accuracy, "layers": [layer.normalized for layer in result.layers],
            "names": [layer.name for layer in result.layers], "mean": result.mean_normalized,
            "whole": result.whole.normalized, "scale": result.scale}


def markdown(rows: list[dict]) -> str:
    names = rows[0]["names"]
    header = ["snapshot", "held-out acc", *names, "mean normalized NP", "whole network", "largest abs(w)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        accuracy = "" if row["accuracy"] is None else f"{row['accuracy']:.4f}"
        cells = [row["snapshot"], accuracy, *(f"{v:.4f}" for v in row["layers"]), f"**{row['mean']:.4f}**",
                 f"{row['whole']:.4f}", f"{row['scale']:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_variant(name: str, mnist: Path, folder: Path, init_seeds: int) -> str:
    config = ccff.VARIANTS[name]
    x, y = load_mnist(mnist)
    x_tr, y_tr = torch.from_numpy(x[:ccff.N_TRAIN]), torch.from_numpy(y[:ccff.N_TRAIN])
    x_ho, y_ho = torch.from_numpy(x[ccff.N_TRAIN:]), torch.from_numpy(y[ccff.N_TRAIN:])
    snapshots = []

    def export(epoch: int, model) -> None:  # draws no random number: training is unchanged
        path = folder / f"{name}-epoch{epoch}.onnx"
        ccff.export_onnx(model, path, x_ho[:1])
        snapshots.append((f"epoch {epoch}" if epoch else "initialization", path, ccff.accuracy(model, x_ho, y_ho)))

    print(f"== {name}: training as models/build/train_ccff.py does (seed {ccff.SEED}, {config['epochs']} epochs)")
    started = time.perf_counter()
    model = ccff.train(name, config["act"], config["lr"], config["epochs"], x_tr, y_tr, x_ho, y_ho, on_epoch=export)
    print(f"trained in {time.perf_counter() - started:.0f} s")
    shipped_weights = np.load(BUILD / f"{name}.weights.npz")
    trained = model.weights()
    identical = all(np.array_equal(trained[k], shipped_weights[k]) for k in trained)

    started = time.perf_counter()
    rows = [static_row(label, path, accuracy) for label, path, accuracy in snapshots]
    rows.append(static_row(f"shipped models/{name}.onnx", REPO / "models" / f"{name}.onnx", None))
    init_rows = []
    for k in range(1, init_seeds + 1):
        torch.manual_seed(ccff.SEED + k)
        path = folder / f"{name}-init{k}.onnx"
        ccff.export_onnx(ccff.CCFF(config["act"]), path, x_ho[:1])
        init_rows.append(static_row(f"initialization, seed {ccff.SEED}+{k}", path, None))
    print(f"static view of {len(rows) + len(init_rows)} models in {time.perf_counter() - started:.0f} s")

    means = [r["mean"] for r in [rows[0], *init_rows]]
    text = [f"### {name}", "",
            (f"Normalized neural persistence (p = 2) per layer, `onnxtopo.static_persistence` defaults; "
            f"held-out accuracy on MNIST t10k images {ccff.N_TRAIN}..9999."), "",
            markdown(rows + init_rows), "",
            (f"Retrained weights bit-identical to the shipped `models/build/{name}.weights.npz`: "
            f"{'yes' if identical else 'no'}."),
            (f"Mean normalized NP over the {len(means)} initializations: {statistics.mean(means):.4f} "
            f"(standard deviation {statistics.stdev(means) if len(means) > 1 else 0.0:.4f}, "
            f"range {min(means):.4f}..{max(means):.4f}); trained: {rows[-2]['mean']:.4f}.")]
    return "\n".join(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=ccff.DEFAULT_MNIST, help="directory of t10k-*-ubyte.gz")
    parser.add_argument("--variants", nargs="+", choices=sorted(ccff.VARIANTS), default=["ccff-relu"])
    parser.add_argument("--init-seeds", type=int, default=5,
                        help="other seeds whose initialization is measured too (default: %(default)s)")
    parser.add_argument("--out", type=Path, help="write the tables as Markdown to this file")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, onnxtopo {onnxtopo.__version__}")
    with tempfile.TemporaryDirectory(prefix="onnxtopo-static-training-") as folder:
        sections = [run_variant(name, args.mnist, Path(folder), args.init_seeds) for name in args.variants]
    command = "/work/venv-build/bin/python benchmarks/static_training.py " + " ".join(sys.argv[1:])
    report = "\n\n".join([(f"# Neural persistence of CCFF through training\n\nWritten by `{command.strip()}` "
                            f"(torch {torch.__version__}); see the script's docstring."), *sections])
    print("\n" + report)
    if args.out:
        args.out.write_text(report + "\n")
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
