"""Reproduce the seed's MNIST rows (design notes §6) with the shipped CCFF models.

For CCFF-ReLU and CCFF-Sigmoid, on held-out MNIST images (t10k indices 8000 onwards, never seen
in training), prints and writes: subgraph SVM accuracy (10-fold CV), network accuracy, and the
recovery accuracy and adversary retention under an FGSM attack computed on the ONNX model,
beside the seed's figures. Needs the MNIST files (../shared/data/mnist on the project's
machines); takes a few minutes per model on 2 cores.

    .venv/bin/python benchmarks/reproduce_table.py [--mnist DIR] [--n 2000] [--eps 0.1]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "models" / "build"))
from _common import load_mnist

from onnxtopo.experiment import run_experiment

SEED_ROWS = {"ccff-relu": (89.3, 97.6, 70.3), "ccff-sigmoid": (89.1, 88.8, 83.4)}
FIRST_HELDOUT = 8000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=REPO.parent / "shared" / "data" / "mnist")
    parser.add_argument("--n", type=int, default=2000, help="held-out images used (at most 2000)")
    parser.add_argument("--eps", type=float, default=0.1, help="FGSM radius (L∞, pixels in [0, 1])")
    parser.add_argument("--attack", choices=("fgsm", "pgd"), default="fgsm")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "table.json")
    args = parser.parse_args()

    x, y = load_mnist(args.mnist)
    x, y = x[FIRST_HELDOUT:FIRST_HELDOUT + args.n], y[FIRST_HELDOUT:FIRST_HELDOUT + args.n]
    rows = {}
    for name in SEED_ROWS:
        start = time.perf_counter()
        result = run_experiment(REPO / "models" / f"{name}.onnx", x, y, attack=args.attack, eps=args.eps,
                                progress=True)
        rows[name] = dict(result.as_dict(), seconds=round(time.perf_counter() - start, 1))
        print(f"\n{name}\n{result.table()}\n", flush=True)

    lines = [(f"MNIST held-out images {FIRST_HELDOUT}..{FIRST_HELDOUT + len(y) - 1} ({len(y)}), "
              f"{args.attack.upper()} eps={args.eps:g}, features: all persistent-subgraph edges"),
             "",
             ("| network | subgraph SVM (ours / seed) | network (ours / seed) | recovery (ours / seed) "
              "| adversary retention | attack success |"),
             "| --- | --- | --- | --- | --- | --- |"]
    for name, (svm, net, recovery) in SEED_ROWS.items():
        r = rows[name]
        lines.append(f"| {name} | {100 * r['subgraph_svm_accuracy']:.1f} % / {svm} % "
                     f"| {100 * r['network_accuracy']:.1f} % / {net} % "
                     f"| {100 * r['recovery_accuracy']:.1f} % / {recovery} % "
                     f"| {100 * r['adversary_retention']:.1f} % | {100 * r['attack_success_rate']:.1f} % "
                     f"({r['n_adversarial']} of {r['n_attacked']} fooled) |")
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "table": "\n".join(lines)}, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
