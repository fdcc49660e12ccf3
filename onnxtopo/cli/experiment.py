"""``onnxtopo experiment``: the paper's table (subgraph SVM, network, recovery accuracy)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..errors import BadInputError, ExitCode
from .argtypes import finite, positive_int
from .options import add_labelled_inputs, add_model_options, load_labels


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("experiment", help="the paper's table: subgraph SVM, network, recovery accuracy")
    add_model_options(p)
    add_labelled_inputs(p)
    p.add_argument("--adversarial", help="adversarial versions of the inputs (.npy/.npz), same order")
    p.add_argument("--adversarial-key", help="which array of an --adversarial .npz")
    p.add_argument("--protocol", choices=("onnxtopo", "seed"), default="onnxtopo",
                   help="how each figure is computed (onnxtopo.experiment.Protocol; default: %(default)s); "
                        "the options below override its fields")
    p.add_argument("--attack", choices=("fgsm", "pgd", "pgd-min", "none"),
                   help="compute adversarial inputs on the model (default: the protocol's: none for onnxtopo, "
                        "pgd-min for seed)")
    p.add_argument("--eps", type=finite, help="L∞ radius of --attack, where pgd-min's search starts "
                                              "(default: the protocol's, 0.1 / 0.3)")
    p.add_argument("--n-attack", type=positive_int, help="attack the first N inputs only (default: all)")
    p.add_argument("--selection", choices=("all", "take", "top_k", "persistence"),
                   help="which persistent-subgraph edges are the onnxtopo protocol's features (default: all); "
                        "the seed protocol's features are piece lifetimes: refused there")
    p.add_argument("--take", type=positive_int, help="pieces kept with --selection take")
    p.add_argument("--k", type=int, help="strongest edges kept with --selection top_k")
    p.add_argument("--min-persistence", type=finite, help="with --selection persistence")
    p.add_argument("--folds", type=positive_int, help="cross-validation folds (default: 10)")
    p.add_argument("--seed", type=int, help="seed of the folds' shuffling and the SVM (default: 0)")
    p.add_argument("--recovery-fit", choices=("cross", "same"),
                   help="recovery SVMs fitted on the other folds (cross) or on every clean input (same) "
                        "(default: the protocol's, cross / same)")
    p.add_argument("--count-factor", type=finite,
                   help="factor on the adversarial inputs' recovery features (default: the protocol's, 1 / 10)")
    p.add_argument("--percentile", type=finite,
                   help="seed protocol: the graph thresholds' percentile (default: 90 for ReLU, 95 for Sigmoid)")
    p.add_argument("--out", default="onnxtopo-experiment",
                   help="folder for experiment.json and experiment.csv (default: %(default)s)")
    return p


def run(args) -> int:
    from ..experiment import PROTOCOLS, run_experiment
    from ..features import InducedPersistence, SubgraphFeatures
    from ..files import load_inputs, write_csv, write_json

    x = load_inputs(args.inputs, args.key)[:args.limit]
    y = load_labels(args, len(x))
    if len(y) != len(x):
        raise BadInputError(f"{len(x)} inputs but {len(y)} labels")
    x_adv = None
    if args.adversarial:
        x_adv = load_inputs(args.adversarial, args.adversarial_key)[:args.limit]
    chosen = (args.selection, args.take, args.k, args.min_persistence)
    features = None
    if any(v is not None for v in chosen):
        features = SubgraphFeatures(selection=args.selection or "all", take=args.take, k=args.k,
                                    min_persistence=args.min_persistence)
    analysis = InducedPersistence(args.model, maxpool_rule=args.maxpool_rule)
    overrides = {"folds": args.folds, "seed": args.seed, "eps": args.eps, "n_attack": args.n_attack,
                 "recovery_fit": args.recovery_fit, "count_factor": args.count_factor, "percentile": args.percentile}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.attack is not None:
        overrides["attack"] = None if args.attack == "none" else args.attack.replace("-", "_")
    if x_adv is not None:
        if overrides.get("attack"):
            raise BadInputError("give --adversarial or --attack, not both")
        overrides["attack"] = None
    try:
        protocol = dataclasses.replace(PROTOCOLS[args.protocol], **overrides)
        result = run_experiment(args.model, x, y, protocol=protocol, x_adv=x_adv, features=features,
                                analysis=analysis, progress=True)
    except ValueError as exc:  # the protocol's or scikit-learn's validation: a bad option combination
        raise BadInputError(str(exc)) from exc
    print(f"model {args.model}, {len(x)} inputs, protocol {result.protocol}")
    print(result.table())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    selection = (args.selection or "all") if protocol.features == "indicators" else None
    row = {"model": str(args.model), "selection": selection, **result.as_dict()}
    write_json(out / "experiment.json", row)
    write_csv(out / "experiment.csv", [row])
    print(f"wrote {out}/experiment.json and {out}/experiment.csv")
    return ExitCode.OK
