"""Reproduce the seed's MNIST rows (design notes §6) by both protocols with the shipped CCFF models.

For CCFF-ReLU and CCFF-Sigmoid, on held-out MNIST images (t10k indices 8000 onwards, never seen
in training), runs ``run_experiment`` by the ``onnxtopo`` protocol (FGSM at ``--eps``; recovery
cross-fitted) and by the ``seed`` protocol (the seed's graph thresholds, lifetime vectors and
cosine kernel, the minimal-ε PGD search on the first ``--n-attack`` images, recovery fitted on
the same images, ×10 counts), and prints and writes a table beside the seed's figures with the
number of inputs behind each. Needs the MNIST files (../shared/data/mnist on the project's
machines).

pgd_min gets each gradient by finite differences (1,568 model runs per image on MNIST) and runs
up to 40 tries of 40 steps, hence ``--n-attack``: with the default 10, one network took about 17
minutes (6.5 for the onnxtopo protocol, about 9 for the attack) on the project's 2-core machine
while it was shared with other work.

    .venv/bin/python benchmarks/reproduce_table.py [--mnist DIR] [--n 2000] [--eps 0.1] [--n-attack 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "models" / "build"))
from _common import load_mnist

from onnxtopo.experiment import ONNXTOPO, SEED, run_experiment

# The seed's table: subgraph SVM accuracy, network accuracy, recovery accuracy (%).
SEED_ROWS = {"ccff-relu": (89.3, 97.6, 70.3), "ccff-sigmoid": (89.1, 88.8, 83.4)}
FIRST_HELDOUT = 8000


def pct(value) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.1f} %"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist", type=Path, default=REPO.parent / "shared" / "data" / "mnist")
    parser.add_argument("--n", type=int, default=2000, help="held-out images used (at most 2000)")
    parser.add_argument("--eps", type=float, default=0.1, help="the onnxtopo protocol's FGSM radius (L∞)")
    parser.add_argument("--n-attack", type=int, default=10,
                        help="images the seed protocol attacks with pgd_min (the first ones; default: %(default)s)")
    parser.add_argument("--models", nargs="+", default=list(SEED_ROWS), choices=list(SEED_ROWS))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "table.json")
    args = parser.parse_args()

    x, y = load_mnist(args.mnist)
    x, y = x[FIRST_HELDOUT:FIRST_HELDOUT + args.n], y[FIRST_HELDOUT:FIRST_HELDOUT + args.n]
    protocols = {"onnxtopo": dataclasses.replace(ONNXTOPO, attack="fgsm", eps=args.eps),
                 "seed": dataclasses.replace(SEED, n_attack=args.n_attack)}
    rows = {}
    for name in args.models:
        for label, protocol in protocols.items():
            start = time.perf_counter()
            result = run_experiment(REPO / "models" / f"{name}.onnx", x, y, protocol=protocol, progress=True)
            rows[f"{name} {label}"] = {**result.as_dict(), "seconds": round(time.perf_counter() - start, 1)}
            print(f"\n{name}, protocol {result.protocol}\n{result.table()}\n", flush=True)

    lines = [f"MNIST held-out images {FIRST_HELDOUT}..{FIRST_HELDOUT + len(y) - 1} ({len(y)})", "",
             ("| network | protocol | subgraph SVM | network | recovery (all attacked) | recovery (fooled) "
              "| adversary retention | attack | seconds |"),
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in args.models:
        svm, net, recovery = SEED_ROWS[name]
        lines.append(f"| {name} | seed's table | {svm} % | {net} % | {recovery} % | | | PGD, not stated | |")
        for label in protocols:
            r = rows[f"{name} {label}"]
            lines.append(
                f"| {name} | {label} | {pct(r['subgraph_svm_accuracy'])} ({r['n_inputs']}) "
                f"| {pct(r['network_accuracy'])} ({r['n_inputs']}) "
                f"| {pct(r['recovery_accuracy_all'])} ({r['n_attacked']}) "
                f"| {pct(r['recovery_accuracy'])} ({r['n_adversarial']}) "
                f"| {pct(r['adversary_retention'])} ({r['n_adversarial']}) "
                f"| {r['attack']}: {r['n_adversarial']} of {r['n_attacked']} fooled | {r['seconds']} |")
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "table": "\n".join(lines)}, indent=2) + "\n")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
