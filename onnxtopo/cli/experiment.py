"""``onnxtopo experiment``: the paper's table (subgraph SVM, network, recovery accuracy)."""

from __future__ import annotations

import argparse
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
    p.add_argument("--attack", choices=("fgsm", "pgd"), help="compute adversarial inputs on the model")
    p.add_argument("--eps", type=finite, default=0.1, help="L∞ radius of --attack (default: %(default)s)")
    p.add_argument("--selection", choices=("all", "take", "top_k", "persistence"), default="all",
                   help="which persistent-subgraph edges are features (default: %(default)s)")
    p.add_argument("--take", type=positive_int, help="pieces kept with --selection take")
    p.add_argument("--k", type=int, help="strongest edges kept with --selection top_k")
    p.add_argument("--min-persistence", type=finite, help="with --selection persistence")
    p.add_argument("--folds", type=positive_int, default=10, help="cross-validation folds (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of the folds' shuffling and the SVM")
    p.add_argument("--out", default="onnxtopo-experiment",
                   help="folder for experiment.json and experiment.csv (default: %(default)s)")
    return p


def run(args) -> int:
    from ..experiment import run_experiment
    from ..features import InducedPersistence, SubgraphFeatures
    from ..files import load_inputs, write_csv, write_json

    x = load_inputs(args.inputs, args.key)[:args.limit]
    y = load_labels(args, len(x))
    if len(y) != len(x):
        raise BadInputError(f"{len(x)} inputs but {len(y)} labels")
    x_adv = None
    if args.adversarial:
        if args.attack:
            raise BadInputError("give --adversarial or --attack, not both")
        x_adv = load_inputs(args.adversarial, args.adversarial_key)[:args.limit]
    features = SubgraphFeatures(selection=args.selection, take=args.take, k=args.k,
                                min_persistence=args.min_persistence)
    analysis = InducedPersistence(args.model, maxpool_rule=args.maxpool_rule)
    try:
        result = run_experiment(args.model, x, y, x_adv=x_adv, attack=args.attack, eps=args.eps, folds=args.folds,
                                seed=args.seed, features=features, analysis=analysis, progress=True)
    except ValueError as exc:  # scikit-learn's parameter validation: a bad option combination
        raise BadInputError(str(exc)) from exc
    print(f"model {args.model}, {len(x)} inputs")
    print(result.table())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    row = dict(model=str(args.model), selection=args.selection, **result.as_dict())
    write_json(out / "experiment.json", row)
    write_csv(out / "experiment.csv", [row])
    print(f"wrote {out}/experiment.json and {out}/experiment.csv")
    return ExitCode.OK
