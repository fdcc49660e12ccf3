"""``onnxtopo check``: write a baseline fingerprint, or compare a model with one (``onnxtopo.fingerprint``)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import BadInputError, ExitCode, OnnxtopoError
from ..filtration import VERTEX_MODES
from ..fingerprint import (
    DEFAULT_N_GRID,
    DEFAULT_TOLERANCES,
    Fingerprint,
    check,
    fingerprint,
    format_table,
    junit_xml,
    report_dict,
)
from ..rules.op_pool import MAXPOOL_RULES
from .argtypes import finite, percentile, positive_int, tolerance


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "check", help="compare a model's topological fingerprint on a probe with a stored baseline (CI)",
        description="Compare the H0 diagrams a model induces on a probe with a baseline written earlier "
                    "(--write-baseline). Exit 0: every metric of every probe input is within its tolerance; "
                    "1: the model drifted; 3/4/5/7: bad model, unsupported model, bad probe or baseline, "
                    "memory limit. Tolerances are relative (see onnxtopo.fingerprint).",
    )
    p.add_argument("model", help="the .onnx model to check")
    p.add_argument("--probe", required=True, help=".npy or .npz file of probe inputs, shape (n, *sample shape)")
    p.add_argument("--key", help="which array of an .npz probe holding several")
    p.add_argument("--baseline", required=True, help="baseline file (.npz) to compare with, or to write")
    p.add_argument("--write-baseline", action="store_true",
                   help="compute the fingerprint of MODEL on the probe and write it to --baseline, then exit 0")
    for name, what in (("bottleneck", "bottleneck distance / largest birth"),
                       ("wasserstein", "Wasserstein distance / q-norm of the births"),
                       ("total_persistence", "|Δ total persistence| / total persistence"),
                       ("betti", "L1 distance of Betti curves / L1 norm of the baseline's")):
        p.add_argument(f"--tol-{name.replace('_', '-')}", type=tolerance, default=DEFAULT_TOLERANCES[name],
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
    p.add_argument("--batch-size", type=positive_int, default=32, help="inputs per onnxruntime run (default: %(default)s)")
    p.add_argument("--workers", type=positive_int, default=1, help="processes analyzing batches (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="print only the verdict line")
    return p


def _option_conflicts(args, baseline: Fingerprint) -> list[str]:
    """Fingerprint options given on the command line that differ from the baseline's."""
    given = {"h1": args.h1 or None, "vertices": None if args.vertices == "max" else args.vertices,
             "threshold": args.threshold, "percentile": args.percentile,
             "maxpool_rule": None if args.maxpool_rule == "window" else args.maxpool_rule}
    return [f"--{k.replace('_', '-')} ({v} here, {baseline.options[k]} in the baseline)"
            for k, v in given.items() if v is not None and v != baseline.options[k]]


def run(args) -> int:
    """Write a baseline, or compare with one: 0 pass, 1 drift."""
    from ..files import atomic_write, load_inputs, write_json

    started = time.perf_counter()
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
    baseline = current = None

    def write_reports(verdict, error=None):
        """The JSON report and the JUnit file, when asked for: also when the check could not run."""
        seconds = time.perf_counter() - started
        if args.report:
            Path(args.report).parent.mkdir(parents=True, exist_ok=True)
            write_json(Path(args.report), report_dict(verdict, model=args.model, baseline_path=args.baseline,
                                                      baseline=baseline, current=current, q=args.wasserstein_q,
                                                      seconds=seconds, error=error))
        if args.junit:
            xml = junit_xml(verdict, model=args.model, seconds=seconds, error=error)
            Path(args.junit).parent.mkdir(parents=True, exist_ok=True)
            atomic_write(Path(args.junit), lambda f: f.write(xml))

    try:
        probe = load_inputs(args.probe, args.key)
        baseline = Fingerprint.load(args.baseline)
        conflicts = _option_conflicts(args, baseline)
        if conflicts:
            raise BadInputError(
                "fingerprint options differ from the baseline's: " + "; ".join(conflicts)
                + "; a check always uses the baseline's options (rewrite it with --write-baseline to change them)"
            )
        current, verdict = check(baseline, args.model, probe, tolerances=tolerances, q=args.wasserstein_q,
                                 batch_size=args.batch_size, workers=args.workers)
    except OnnxtopoError as exc:
        write_reports(None, exc)  # CI gets files saying the check could not run; the CLI reports the error
        raise
    write_reports(verdict)
    if not args.quiet:
        print(f"check {args.model} against {args.baseline} ({len(baseline)} probe inputs, "
              f"Wasserstein q={args.wasserstein_q}):")
        print(format_table(verdict))
    failed = [m["metric"] for m in verdict.metrics if not m["passed"]]
    print("verdict: pass" if verdict.passed else f"verdict: drift ({', '.join(failed)})")
    return ExitCode.OK if verdict.passed else ExitCode.FAILURE
