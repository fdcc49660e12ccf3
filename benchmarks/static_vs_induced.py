#!/usr/bin/env python
"""The static and the induced view of one model, layer by layer (the README's side-by-side table).

    python benchmarks/static_vs_induced.py [MODEL] [--inputs FILE.npy]

defaults: models/ccff-relu.onnx and the shipped sample, models/mnist-sample.npy (8 digits).
For every layer with learned weights it prints, as Markdown:

* static: the layer's normalized neural persistence (``onnxtopo.static_persistence``, Rieck et
  al.: edges |w| divided by the largest |w| of the network's layers) and its forest edges;
* induced, Rieck's construction on each input's own graph: the same normalized neural
  persistence, computed on the layer's edges φ = |w·h| of ``onnxtopo.induced_graph`` (divided
  by the largest φ over the learned layers of that input; every vertex present from the start,
  ``onnxtopo.persistence(..., vertices="inf")``), mean and range over the inputs;
* induced, ``onnxtopo analyze``'s own diagram (default options): the share of each input's H0
  total persistence carried by the classes the layer's edges kill (the death edge of a point is
  its persistent-subgraph edge), and that layer's count of such points, means over the inputs.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

import onnxtopo

REPO = Path(__file__).resolve().parents[1]


def induced_neural_persistence(graph, targets: list[int], target_of_step: np.ndarray) -> list[float]:
    """Normalized neural persistence of each target layer's induced edges (one global scale)."""
    layer_of_edge = target_of_step[graph.step]
    learned = np.isin(layer_of_edge, targets)
    scale = float(graph.phi[learned].max())
    values = []
    for target in targets:
        keep = layer_of_edge == target
        part = dataclasses.replace(graph, src=graph.src[keep], dst=graph.dst[keep], phi=graph.phi[keep],
                                   step=graph.step[keep])
        h0 = onnxtopo.persistence(part, vertices="inf").h0
        deaths = h0[np.isfinite(h0[:, 1]), 1] / scale  # one per forest edge: births are +inf here
        values.append(float(np.linalg.norm(1.0 - deaths)) / np.sqrt(deaths.size) if deaths.size else 0.0)
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", default=str(REPO / "models" / "ccff-relu.onnx"))
    parser.add_argument("--inputs", default=str(REPO / "models" / "mnist-sample.npy"))
    args = parser.parse_args()
    inputs = np.load(args.inputs)
    plan = onnxtopo.inspect(args.model)
    static = onnxtopo.static_persistence(args.model, whole=False)
    targets = [layer.layer for layer in static.layers]
    target_of_step = np.array([step.target for step in plan.steps])
    offsets = np.array([layer.offset for layer in plan.layers])

    rieck = np.array([induced_neural_persistence(onnxtopo.induced_graph(args.model, x), targets, target_of_step)
                      for x in inputs])  # (inputs, layers)
    share, points = [], []
    for result in onnxtopo.analyze(args.model, inputs):
        sub = result.subgraph
        layer = np.searchsorted(offsets, sub.dst, side="right") - 1  # the layer its death edge enters
        persistence = sub.birth - sub.phi
        total = persistence.sum()
        share.append([persistence[layer == t].sum() / total for t in targets])
        points.append([int(((layer == t) & (persistence > 0)).sum()) for t in targets])
    share, points = np.array(share), np.array(points)

    print(f"{Path(args.model).name}, {len(inputs)} inputs from {Path(args.inputs).name}\n")
    print("| layer | static: normalized NP | static: forest edges | induced: normalized NP, mean (range) "
          "| analyze: share of H0 total persistence | analyze: H0 points killed |")
    print("|---|---|---|---|---|---|")
    for i, layer in enumerate(static.layers):
        forest = layer.n_vertices - layer.n_components
        print(f"| {layer.layer} `{layer.name}` | {layer.normalized:.4f} | {forest:,} | {rieck[:, i].mean():.4f} "
              f"({rieck[:, i].min():.4f}–{rieck[:, i].max():.4f}) | {share[:, i].mean():.1%} | "
              f"{points[:, i].mean():,.0f} |")
    print(f"| mean | {static.mean_normalized:.4f} | | {rieck.mean(axis=1).mean():.4f} | | |")


if __name__ == "__main__":
    main()
