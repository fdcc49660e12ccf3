"""``onnxtopo check``: write a baseline fingerprint, or compare a model with one (``onnxtopo.fingerprint``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import BadInputError, ExitCode, OnnxtopoError
from ..files import json_number
from ..filtration import VERTEX_MODES
from ..fingerprint import (
    DEFAULT_N_GRID,
    Fingerprint,
    check,
    fingerprint,
    format_table,
    junit_xml,
    report_dict,
)
from ..rules.op_pool import MAXPOOL_RULES
from ..static import CHANNEL_NORMS, GRAPHS
from ..static_fingerprint import STATIC_TOLERANCES, StaticFingerprint, mean_change, static_check, static_fingerprint
from .argtypes import finite, percentile, positive_int, tolerance
from .static import norm_power


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "check", help="compare a model's topological fingerprint on a probe with a stored baseline (CI)",
        description="Compare the H0 diagrams a model induces on a probe with a baseline written earlier "
                    "(--write-baseline); with --static, the static view's diagrams (weights only, no probe: every "
                    "layer with learned weights and the whole network, and neural persistence). Exit 0: every "
                    "metric of every probe input (or diagram) is within its tolerance; 1: the model drifted; "
                    "3/4/5/7: bad model, unsupported model, bad probe or baseline, memory limit. Tolerances are "
                    "relative (see onnxtopo.fingerprint and onnxtopo.static_fingerprint).",
    )
    p.add_argument("model", help="the .onnx model to check")
    p.add_argument("--probe", help=".npy or .npz file of probe inputs, shape (n, *sample shape); "
                                   "required, except with --static")
    p.add_argument("--key", help="which array of an .npz probe holding several")
    p.add_argument("--baseline", required=True, help="baseline file (.npz) to compare with, or to write")
    p.add_argument("--write-baseline", action="store_true",
                   help="compute the fingerprint of MODEL on the probe and write it to --baseline, then exit 0")
    for name, what in (("bottleneck", "bottleneck distance / largest birth"),
                       ("wasserstein", "Wasserstein distance / q-norm of the births"),
                       ("total_persistence", "|Δ total persistence| / total persistence"),
                       ("betti", "L1 distance of Betti curves / L1 norm of the baseline's"),
                       ("neural_persistence", "--static: |Δ normalized neural persistence| / the baseline's"),
                       ("edges", "--static: |Δ number of edges (nonzero weights)| / the baseline's")):
        p.add_argument(f"--tol-{name.replace('_', '-')}", type=tolerance, default=STATIC_TOLERANCES[name],
                       metavar="X", help=f"tolerance on {what} (default: %(default)g; inf disables)")
    p.add_argument("--wasserstein-q", type=int, choices=(1, 2), default=1,
                   help="order q of the Wasserstein distance (default: %(default)s)")
    p.add_argument("--report", help="write a JSON report (per input and per metric) to this file")
    p.add_argument("--junit", help="write a JUnit XML file (one testcase per metric) to this file")
    group = p.add_argument_group("fingerprint options (with --write-baseline; a check reuses the baseline's)")
    group.add_argument("--h1", action="store_true", help="also fingerprint and check the H1 diagrams")
    group.add_argument("--n-grid", type=positive_int, default=DEFAULT_N_GRID,
                       help="φ values of the Betti-curve grid (default: %(default)s)")
    group.add_argument("--vertices", choices=VERTEX_MODES, default="max",
                       help="vertex entry value: max incident φ (default; +inf is refused: its "
                            "distances and Betti curves are not defined)")
    group.add_argument("--threshold", type=finite, help="keep only edges with φ ≥ THRESHOLD")
    group.add_argument("--percentile", type=percentile, help="per edge step, keep only edges above this percentile")
    group.add_argument("--maxpool-rule", choices=MAXPOOL_RULES, default="window",
                       help="MaxPool edges: whole window (default) or argmax only")
    static = p.add_argument_group("the static view (--static; a check reuses the baseline's options)")
    static.add_argument("--static", action="store_true",
                        help="fingerprint the static view: the weights' graphs (onnxtopo static), no probe")
    static.add_argument("--p", type=norm_power, default=2.0, help="p of neural persistence (default: %(default)s)")
    static.add_argument("--graph", choices=GRAPHS, default="unrolled",
                        help="conv layers: every neuron a vertex (default) or every channel a vertex")
    static.add_argument("--channel-norm", choices=CHANNEL_NORMS, default="l2",
                        help="--graph channel: the norm of a kernel slice (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=32, help="inputs per onnxruntime run (default: %(default)s)")
    p.add_argument("--workers", type=positive_int, default=1, help="processes analyzing batches (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="print only the verdict line")
    return p


def _induced_options(args) -> dict:
    """The induced view's fingerprint options given on the command line (None: left at its default)."""
    return {"h1": args.h1 or None, "vertices": None if args.vertices == "max" else args.vertices,
            "threshold": args.threshold, "percentile": args.percentile,
            "maxpool_rule": None if args.maxpool_rule == "window" else args.maxpool_rule}


def _static_options(args) -> dict:
    """The static view's fingerprint options given on the command line (None: left at its default)."""
    p = None if args.p == 2.0 else json_number(args.p)  # as the baseline's JSON holds it
    return {"p": p, "graph": None if args.graph == "unrolled" else args.graph,
            "channel_norm": None if args.channel_norm == "l2" else args.channel_norm}


def _option_conflicts(given: dict, baseline: Fingerprint) -> list[str]:
    """Fingerprint options given on the command line that differ from the baseline's."""
    return [f"--{k.replace('_', '-')} ({v} here, {baseline.options[k]} in the baseline)"
            for k, v in given.items() if v is not None and v != baseline.options[k]]


def _check_view_options(args) -> None:
    """--static takes no probe and none of the induced view's options; without it, --probe is required
    and the static options do not apply (exit 5, saying what to do)."""
    if args.static:
        wrong = [f"--{k.replace('_', '-')}" for k, v in _induced_options(args).items() if v is not None]
        wrong += ["--probe"] * (args.probe is not None) + ["--key"] * (args.key is not None)
        if wrong:
            raise BadInputError(f"--static fingerprints the weights alone, without a probe or the induced view's "
                                f"options: drop {', '.join(wrong)}, or drop --static")
    else:
        wrong = [f"--{k.replace('_', '-')}" for k, v in _static_options(args).items() if v is not None]
        if wrong:
            raise BadInputError(f"{', '.join(wrong)} apply to the static view only: add --static, or drop them")
        if args.probe is None:
            raise BadInputError("--probe is required: the probe inputs the fingerprint is computed on "
                                "(or --static, the static view's fingerprint, which needs no probe)")


def run(args) -> int:
    """Write a baseline, or compare with one: 0 pass, 1 drift."""
    from ..files import atomic_write, load_inputs, write_json

    started = time.perf_counter()
    _check_view_options(args)
    if args.write_baseline and args.static:
        fp = static_fingerprint(args.model, p=args.p, graph=args.graph, channel_norm=args.channel_norm,
                                n_grid=args.n_grid)
        fp.save(args.baseline)
        print(f"wrote static baseline {args.baseline}: {len(fp) - 1} layer(s) with learned weights and the whole "
              f"network, H0 diagrams, Betti curves on {len(fp.grid)} normalized weights; mean normalized neural "
              f"persistence {fp.mean_normalized:.6g}")
        return ExitCode.OK
    if args.write_baseline:
        probe = load_inputs(args.probe, args.key)
        source = {"file": Path(args.probe).name, "key": args.key}
        fp = fingerprint(args.model, probe, h1=args.h1, n_grid=args.n_grid, vertices=args.vertices,
                         threshold=args.threshold, percentile=args.percentile, maxpool_rule=args.maxpool_rule,
                         batch_size=args.batch_size, workers=args.workers, probe_source=source)
        fp.save(args.baseline)
        print(f"wrote baseline {args.baseline}: {len(fp)} probe input(s), H0{' and H1' if args.h1 else ''} "
              f"diagrams, Betti curves on {len(fp.grid)} φ values up to {fp.grid[-1]:.4g}")
        return ExitCode.OK
    tolerances = {"bottleneck": args.tol_bottleneck, "wasserstein": args.tol_wasserstein,
                  "total_persistence": args.tol_total_persistence, "betti": args.tol_betti}
    if args.static:
        tolerances.update(neural_persistence=args.tol_neural_persistence, edges=args.tol_edges)
    rows_are = "diagrams" if args.static else "inputs"
    baseline = current = None

    def write_reports(verdict, error=None):
        """The JSON report and the JUnit file, when asked for: also when the check could not run."""
        seconds = time.perf_counter() - started
        if args.report:
            Path(args.report).parent.mkdir(parents=True, exist_ok=True)
            write_json(Path(args.report), report_dict(verdict, model=args.model, baseline_path=args.baseline,
                                                      baseline=baseline, current=current, q=args.wasserstein_q,
                                                      seconds=seconds, error=error,
                                                      rows_key=rows_are))
        if args.junit:
            xml = junit_xml(verdict, model=args.model, seconds=seconds, error=error,
                            rows_are="diagrams" if args.static else "probe inputs")
            Path(args.junit).parent.mkdir(parents=True, exist_ok=True)
            atomic_write(Path(args.junit), lambda f: f.write(xml))

    try:
        probe = None if args.static else load_inputs(args.probe, args.key)
        baseline = (StaticFingerprint if args.static else Fingerprint).load(args.baseline)
        conflicts = _option_conflicts(_static_options(args) if args.static else _induced_options(args), baseline)
        if conflicts:
            raise BadInputError(
                "fingerprint options differ from the baseline's: " + "; ".join(conflicts)
                + "; a check always uses the baseline's options (rewrite it with --write-baseline to change them)"
            )
        if args.static:
            current, verdict = static_check(baseline, args.model, tolerances=tolerances, q=args.wasserstein_q)
        else:
            current, verdict = check(baseline, args.model, probe, tolerances=tolerances, q=args.wasserstein_q,
                                     batch_size=args.batch_size, workers=args.workers)
    except OnnxtopoError as exc:
        write_reports(None, exc)  # CI gets files saying the check could not run; the CLI reports the error
        raise
    write_reports(verdict)
    if not args.quiet:
        what = (f"static view: {len(baseline) - 1} layer(s) and the whole network" if args.static
                else f"{len(baseline)} probe inputs")
        print(f"check {args.model} against {args.baseline} ({what}, Wasserstein q={args.wasserstein_q}):")
        print(format_table(verdict, rows_are))
        if args.static:
            if not verdict.passed:  # the table names diagrams by index
                print("diagrams: " + ", ".join(f"{i} {d['name']}" for i, d in enumerate(baseline.diagrams)))
            print(mean_change(baseline, current))
    failed = [m["metric"] for m in verdict.metrics if not m["passed"]]
    print("verdict: pass" if verdict.passed else f"verdict: drift ({', '.join(failed)})")
    return ExitCode.OK if verdict.passed else ExitCode.FAILURE
