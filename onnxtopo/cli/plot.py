"""``onnxtopo plot``: PNG figures of one input, and optionally class similarity and an attack."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import BadInputError, ExitCode
from ..runtime import validate_inputs
from .argtypes import finite, positive_int
from .options import add_model_options, load_labels


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("plot", help="PNG figures: diagram, barcode, subgraph on the input, class similarity")
    add_model_options(p)
    p.add_argument("--inputs", required=True, help=".npy or .npz file of shape (n, *sample shape)")
    p.add_argument("--key", help="which array of an .npz file holding several")
    p.add_argument("--index", type=int, default=0, help="the input drawn (default: 0)")
    p.add_argument("--labels", help="labels (.npy/.npz): adds the class similarity of the inputs' subgraphs")
    p.add_argument("--labels-key", help="which array of a --labels .npz")
    p.add_argument("--limit", type=positive_int, help="use only the first N inputs for the class similarity")
    p.add_argument("--attack", choices=("fgsm", "pgd"), help="adds clean vs adversarial diagrams of the input")
    p.add_argument("--eps", type=finite, default=0.1, help="L∞ radius of --attack (default: %(default)s)")
    p.add_argument("--dpi", type=positive_int, default=100, help="resolution of the PNGs (default: 100)")
    p.add_argument("--out", default="onnxtopo-plots", help="output folder (default: %(default)s)")
    return p


def run(args) -> int:
    from .. import plots
    from ..api import Analyzer
    from ..files import load_inputs

    analyzer = Analyzer(args.model, maxpool_rule=args.maxpool_rule)
    x = validate_inputs(analyzer.plan, load_inputs(args.inputs, args.key))
    if not 0 <= args.index < len(x):
        raise BadInputError(f"--index {args.index} is out of range: the inputs hold {len(x)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = next(analyzer.analyze(x[args.index:args.index + 1], h1=True))
    written = [out / "diagram.png", out / "barcode.png", out / "subgraph.png"]
    plots.plot_diagram(result.h0, result.h1, title=f"input {args.index}", dpi=args.dpi, path=written[0])
    plots.plot_barcode(result.h0, title=f"H0, input {args.index}", max_bars=200, dpi=args.dpi, path=written[1])
    plots.plot_subgraph_on_input(result, analyzer.plan, x[args.index], dpi=args.dpi, path=written[2])
    if args.labels:
        from ..features import SubgraphFeatures

        subset = x[:args.limit]
        labels = load_labels(args, len(subset))
        features = SubgraphFeatures().fit_transform(list(analyzer.analyze(subset)))
        written.append(out / "similarity.png")
        plots.plot_class_similarity(features, labels, dpi=args.dpi, path=written[-1])
    if args.attack:
        from ..attacks import fgsm, pgd

        attack = fgsm if args.attack == "fgsm" else pgd
        x_adv = attack(args.model, x[args.index:args.index + 1], None, args.eps)
        adversarial = next(analyzer.analyze(x_adv))
        written.append(out / "clean-vs-adversarial.png")
        plots.plot_clean_vs_adversarial(result, adversarial, titles=("clean", f"{args.attack} eps={args.eps:g}"),
                                        dpi=args.dpi, path=written[-1])
    print("wrote " + ", ".join(str(p) for p in written))
    return ExitCode.OK
