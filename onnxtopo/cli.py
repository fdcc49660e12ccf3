"""The ``onnxtopo`` command: a thin layer over the public API."""

from __future__ import annotations

import argparse
import sys
import traceback
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import __version__, fingerprint, zoo
from .argtypes import finite, percentile, positive_int, size
from .activations import validate_inputs
from .errors import BadInputError, OnnxtopoError
from .filtration import VERTEX_MODES
from .homology import DEFAULT_CHUNK_EDGES, ENGINES
from .resources import H1_BYTES_PER_EDGE, check, default_limit, estimate, format_bytes
from .rules.op_pool import MAXPOOL_RULES


INTERNAL_ERROR = 70


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="onnxtopo",
        description="Persistent homology of the graph a neural network exported to ONNX induces on an input.",
    )
    parser.add_argument("--version", action="version", version=f"onnxtopo {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)

    def model_options(p):
        p.add_argument("model", help="an .onnx model file")
        p.add_argument("--maxpool-rule", choices=MAXPOOL_RULES, default="window",
                       help="MaxPool edges: every input of the window (default) or the argmax only")

    def span_options(p):
        p.add_argument("--start", metavar="TENSOR",
                       help="analyze from this tensor on (layer 0) instead of the model input")
        p.add_argument("--stop", metavar="TENSOR", help="analyze up to the layer of this tensor")

    inspect = sub.add_parser("inspect", help="print the plan of layers, rules, neurons and edges")
    model_options(inspect)
    span_options(inspect)

    analyze = sub.add_parser("analyze", help="compute diagrams and persistent subgraphs for inputs")
    model_options(analyze)
    span_options(analyze)
    analyze.add_argument("--inputs", required=True, help=".npy or .npz file of shape (n, *sample shape)")
    analyze.add_argument("--key", help="which array of an .npz file holding several")
    analyze.add_argument("--out", default="onnxtopo-results", help="output directory (default: %(default)s)")
    analyze.add_argument("--h1", action="store_true", help="also compute the H1 diagram")
    analyze.add_argument("--threshold", type=finite, help="keep only edges with φ ≥ THRESHOLD")
    analyze.add_argument("--percentile", type=percentile,
                         help="per edge step, keep only edges with φ above this percentile (the reference's option)")
    analyze.add_argument("--vertices", choices=VERTEX_MODES, default="max",
                         help="vertex entry value: max incident φ (default) or +inf (all present from the start)")
    analyze.add_argument("--engine", choices=tuple(ENGINES), default="forest",
                         help="persistence engine: onnxtopo's exact spanning-forest engine (default) or dionysus")
    analyze.add_argument("--batch-size", type=positive_int, default=32, help="inputs per onnxruntime run (default: %(default)s)")
    analyze.add_argument("--chunk-edges", type=positive_int, default=DEFAULT_CHUNK_EDGES,
                         help="forest engine: edges gathered before each reduction (default: %(default)s)")
    analyze.add_argument("--memory-limit", type=size, default="auto",
                         help="refuse runs estimated to need more memory, e.g. 4G or 500M; 'auto' (default): "
                              "80%% of the memory available now; 'none': no limit")
    analyze.add_argument("--workers", type=positive_int, default=1,
                         help="processes analyzing batches in parallel (default: %(default)s; try the number of cores)")
    analyze.add_argument("--resume", action="store_true",
                         help="keep the results already in --out from the same model, inputs and options; do the rest")
    analyze.add_argument("--quiet", action="store_true", help="no progress bar and no per-input lines")
    experiment = sub.add_parser("experiment", help="the paper's table: subgraph SVM, network, recovery accuracy")
    model_options(experiment)
    labelled_inputs(experiment)
    experiment.add_argument("--adversarial", help="adversarial versions of the inputs (.npy/.npz), same order")
    experiment.add_argument("--adversarial-key", help="which array of an --adversarial .npz")
    experiment.add_argument("--attack", choices=("fgsm", "pgd"), help="compute adversarial inputs on the model")
    experiment.add_argument("--eps", type=finite, default=0.1, help="L∞ radius of --attack (default: %(default)s)")
    experiment.add_argument("--selection", choices=("all", "take", "top_k", "persistence"), default="all",
                            help="which persistent-subgraph edges are features (default: %(default)s)")
    experiment.add_argument("--take", type=positive_int, help="pieces kept with --selection take")
    experiment.add_argument("--k", type=int, help="strongest edges kept with --selection top_k")
    experiment.add_argument("--min-persistence", type=finite, help="with --selection persistence")
    experiment.add_argument("--folds", type=positive_int, default=10, help="cross-validation folds (default: 10)")
    experiment.add_argument("--seed", type=int, default=0, help="seed of the folds' shuffling and the SVM")
    experiment.add_argument("--out", default="onnxtopo-experiment",
                            help="folder for experiment.json and experiment.csv (default: %(default)s)")

    plot = sub.add_parser("plot", help="PNG figures: diagram, barcode, subgraph on the input, class similarity")
    model_options(plot)
    plot.add_argument("--inputs", required=True, help=".npy or .npz file of shape (n, *sample shape)")
    plot.add_argument("--key", help="which array of an .npz file holding several")
    plot.add_argument("--index", type=int, default=0, help="the input drawn (default: 0)")
    plot.add_argument("--labels", help="labels (.npy/.npz): adds the class similarity of the inputs' subgraphs")
    plot.add_argument("--labels-key", help="which array of a --labels .npz")
    plot.add_argument("--limit", type=positive_int, help="use only the first N inputs for the class similarity")
    plot.add_argument("--attack", choices=("fgsm", "pgd"), help="adds clean vs adversarial diagrams of the input")
    plot.add_argument("--eps", type=finite, default=0.1, help="L∞ radius of --attack (default: %(default)s)")
    plot.add_argument("--dpi", type=positive_int, default=100, help="resolution of the PNGs (default: 100)")
    plot.add_argument("--out", default="onnxtopo-plots", help="output folder (default: %(default)s)")

    fingerprint.add_parser(sub)
    zoo.add_parser(sub)
    return parser


def labelled_inputs(p):
    p.add_argument("--inputs", required=True, help=".npy or .npz file of shape (n, *sample shape)")
    p.add_argument("--key", help="which array of an --inputs .npz")
    p.add_argument("--labels", required=True, help="true classes (.npy/.npz), one per input")
    p.add_argument("--labels-key", help="which array of a --labels .npz")
    p.add_argument("--limit", type=positive_int, help="use only the first N inputs")


def _inspect(args) -> int:
    from .api import inspect

    plan = inspect(args.model, maxpool_rule=args.maxpool_rule, start=args.start, stop=args.stop)
    rows = plan.describe()
    header = ["layer", "node", "op", "rule", "input shape", "output shape", "neurons", "edges"]
    table = [[str(r["layer"]), r["node"], r["op"], r["rule"], _shape(r["input_shape"]),
              _shape(r["output_shape"]), f"{r['neurons']:,}", f"{r['edges']:,}"] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    print(f"model {args.model}: input {plan.input_name!r} (batch, {', '.join(map(str, plan.input_shape))}) "
          f"{plan.input_dtype}, {'dynamic batch' if plan.fixed_batch is None else f'batch {plan.fixed_batch}'}")
    if plan.layers[0].tensor != plan.input_name:
        print(plan.origin)
    for row in [header, *table]:
        print("  ".join(cell.rjust(w) if i in (0, 6, 7) else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))))
    total = sum(r["edges"] for r in rows)
    print(f"total: {len(plan.layers)} layers, {plan.n_vertices:,} vertices, at most {total:,} edges per input "
          "(edges with φ = 0 are dropped)")
    forest, oracle = estimate(plan), estimate(plan, engine="dionysus")
    print(f"memory per input: about {format_bytes(forest.bytes)} with the forest engine (default), "
          f"{format_bytes(oracle.bytes)} with dionysus; H1 adds about {format_bytes(total * H1_BYTES_PER_EDGE)}")
    if plan.ignored:
        print(f"after the last layer, not analyzed: {', '.join(plan.ignored)}")
    return 0


def _shape(shape) -> str:
    return "" if shape == "" else "(" + ", ".join(map(str, shape)) + ")"


def _point(p) -> str:
    return f"({p[0]:.4g}, {p[1]:.4g})"


def _analyze(args) -> int:
    from tqdm import tqdm

    from .api import Analyzer, Failure
    from .io import load_inputs, prepare_output, read_json, write_json, write_result

    analyzer = Analyzer(args.model, maxpool_rule=args.maxpool_rule, start=args.start, stop=args.stop)
    plan = analyzer.plan
    limit = {"auto": default_limit(), "none": None}.get(args.memory_limit, args.memory_limit)
    check(estimate(plan, engine=args.engine, h1=args.h1, chunk_edges=args.chunk_edges, batch_size=args.batch_size),
          limit, workers=args.workers)
    inputs = validate_inputs(plan, load_inputs(args.inputs, args.key))
    options = dict(h1=args.h1, threshold=args.threshold, percentile=args.percentile, vertices=args.vertices,
                   engine=args.engine, maxpool_rule=args.maxpool_rule)
    if args.start or args.stop:  # kept out otherwise, so that earlier runs' fingerprints still match
        options.update(start=args.start, stop=args.stop)
    out = Path(args.out)
    width = max(5, len(str(len(inputs) - 1)))
    names = [f"input-{i:0{width}d}" for i in range(len(inputs))]
    done = prepare_output(out, model=Path(args.model), inputs=inputs, options=options, names=names,
                          resume=args.resume)
    todo = np.array([i for i in range(len(inputs)) if i not in done], dtype=np.int64)
    summaries = {i: dict(read_json(out / f"{names[i]}.json"), file=f"{names[i]}.npz") for i in done}
    failures = []
    if done:
        print(f"resuming: {len(done)} of {len(inputs)} inputs already done in {out}/", file=sys.stderr)
    results = analyzer.analyze(inputs[todo], batch_size=args.batch_size, workers=args.workers, errors="skip",
                               memory_limit=None,  # checked above, before anything was read
                               chunk_edges=args.chunk_edges, **{k: v for k, v in options.items() if k not in ("maxpool_rule", "start", "stop")}) \
        if todo.size else iter(())
    with tqdm(total=len(inputs), initial=len(done), unit="input", disable=args.quiet, file=sys.stderr) as bar:
        for result in results:
            index = int(todo[result.index])
            if isinstance(result, Failure):
                failures.append(dict(index=index, error=result.error))
                bar.write(f"input {index}: skipped: {result.error}", file=sys.stderr)
                bar.update(1)
                continue
            result = replace(result, index=index)
            write_result(out, result, names[index])
            summaries[index] = dict(result.summary(), file=f"{names[index]}.npz")
            if not args.quiet:
                bar.write(_describe(result, args.h1))
            bar.update(1)
    write_json(out / "summary.json", dict(
        onnxtopo_version=__version__, model=str(args.model), inputs=str(args.inputs), key=args.key, options=options,
        layers=[dict(index=l.index, tensor=l.tensor, shape=l.shape, offset=l.offset, size=l.size,
                     node=l.node, op_type=l.op_type) for l in plan.layers],
        results=[summaries[i] for i in sorted(summaries)], failed=failures,
    ))
    print(f"wrote {len(summaries)} result(s) to {out}/ (summary.json, input-*.npz, input-*.json)"
          + (f"; {len(failures)} input(s) failed, listed in summary.json" if failures else ""))
    return BadInputError.exit_code if failures else 0


def _describe(result, h1: bool) -> str:
    """One line per input: sizes, H0 summary and its most persistent finite points."""
    summary, h0 = result.summary(), result.h0
    top = h0[np.argsort(h0[:, 1] - h0[:, 0], kind="stable")[:3]] if len(h0) else h0
    return (f"input {result.index}: {summary['vertices']:,} vertices, {summary['edges']:,} edges; "
            f"H0 {summary['h0_points']} points ({summary['h0_essential_points']} essential), "
            f"total persistence {summary['h0_total_persistence']:.4g}"
            + (f"; H1 {summary['h1_points']} points" if h1 else "")
            + f"; most persistent: {', '.join(_point(p) for p in top)}")


def _labels(args, n: int):
    from .io import load_inputs

    labels = load_inputs(args.labels, args.labels_key)
    if labels.ndim != 1 or labels.dtype.kind not in "iub":
        raise BadInputError(f"labels must be a 1-D integer array; got shape {labels.shape}, dtype {labels.dtype}")
    return labels[:n]


def _experiment(args) -> int:
    from .experiment import run_experiment
    from .features import InducedPersistence, SubgraphFeatures
    from .io import load_inputs, write_json

    x = load_inputs(args.inputs, args.key)[:args.limit]
    y = _labels(args, len(x))
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
    from .io import write_csv

    write_csv(out / "experiment.csv", [row])
    print(f"wrote {out}/experiment.json and {out}/experiment.csv")
    return 0


def _plot(args) -> int:
    from .api import Analyzer
    from .io import load_inputs
    from . import plots

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
        from .features import SubgraphFeatures

        subset = x[:args.limit]
        labels = _labels(args, len(subset))
        features = SubgraphFeatures().fit_transform(list(analyzer.analyze(subset)))
        written.append(out / "similarity.png")
        plots.plot_class_similarity(features, labels, dpi=args.dpi, path=written[-1])
    if args.attack:
        from .attacks import fgsm, pgd

        attack = fgsm if args.attack == "fgsm" else pgd
        x_adv = attack(args.model, x[args.index:args.index + 1], None, args.eps)
        adversarial = next(analyzer.analyze(x_adv))
        written.append(out / "clean-vs-adversarial.png")
        plots.plot_clean_vs_adversarial(result, adversarial, titles=("clean", f"{args.attack} eps={args.eps:g}"),
                                        dpi=args.dpi, path=written[-1])
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


COMMANDS = {"inspect": _inspect, "analyze": _analyze, "experiment": _experiment, "plot": _plot,
            "check": fingerprint.run, "zoo": zoo.run}


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except OnnxtopoError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"onnxtopo: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("onnxtopo: interrupted; results already written are complete", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug of ours: say so in one line, keep the traceback for --debug
        if args.debug:
            traceback.print_exc()
        print(f"onnxtopo: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback, "
              "and please report it)", file=sys.stderr)
        return INTERNAL_ERROR


if __name__ == "__main__":
    sys.exit(main())
