"""``onnxtopo analyze``: diagrams and persistent subgraphs of inputs, written to an output folder."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import BadInputError, ExitCode
from ..filtration import VERTEX_MODES
from ..homology import DEFAULT_CHUNK_EDGES, ENGINES
from ..resources import default_limit, estimate, require_memory
from ..runtime import validate_inputs
from .argtypes import finite, percentile, positive_int, size
from .options import add_model_options, add_span_options


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("analyze", help="compute diagrams and persistent subgraphs for inputs")
    add_model_options(p)
    add_span_options(p)
    p.add_argument("--inputs", required=True, help=".npy or .npz file of shape (n, *sample shape)")
    p.add_argument("--key", help="which array of an .npz file holding several")
    p.add_argument("--out", default="onnxtopo-results", help="output directory (default: %(default)s)")
    p.add_argument("--h1", action="store_true", help="also compute the H1 diagram")
    p.add_argument("--threshold", type=finite, help="keep only edges with φ ≥ THRESHOLD")
    p.add_argument("--percentile", type=percentile,
                   help="per edge step, keep only edges with φ above this percentile (the reference's option)")
    p.add_argument("--vertices", choices=VERTEX_MODES, default="max",
                   help="vertex entry value: max incident φ (default) or +inf (all present from the start)")
    p.add_argument("--engine", choices=tuple(ENGINES), default="forest",
                   help="persistence engine: onnxtopo's exact spanning-forest engine (default) or dionysus")
    p.add_argument("--batch-size", type=positive_int, default=32, help="inputs per onnxruntime run (default: %(default)s)")
    p.add_argument("--chunk-edges", type=positive_int, default=DEFAULT_CHUNK_EDGES,
                   help="forest engine: edges gathered before each reduction (default: %(default)s)")
    p.add_argument("--memory-limit", type=size, default="auto",
                   help="refuse runs estimated to need more memory, e.g. 4G or 500M; 'auto' (default): "
                        "80%% of the memory available now; 'none': no limit")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="processes analyzing batches in parallel (default: %(default)s; try the number of cores)")
    p.add_argument("--resume", action="store_true",
                   help="keep the results already in --out from the same model, inputs and options; do the rest")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no per-input lines")
    return p


def run(args) -> int:
    """0, or 5 when some inputs failed (each reported, listed in summary.json and skipped)."""
    from tqdm import tqdm

    from ..api import Analyzer, Failure
    from ..files import load_inputs, prepare_output, read_json, write_json, write_result

    analyzer = Analyzer(args.model, maxpool_rule=args.maxpool_rule, start=args.start, stop=args.stop)
    plan = analyzer.plan
    limit = {"auto": default_limit(), "none": None}.get(args.memory_limit, args.memory_limit)
    require_memory(estimate(plan, engine=args.engine, h1=args.h1, chunk_edges=args.chunk_edges,
                            batch_size=args.batch_size), limit, workers=args.workers)
    inputs = validate_inputs(plan, load_inputs(args.inputs, args.key))
    options = {"h1": args.h1, "threshold": args.threshold, "percentile": args.percentile, "vertices": args.vertices,
               "engine": args.engine, "maxpool_rule": args.maxpool_rule}
    if args.start or args.stop:  # kept out otherwise, so that earlier runs' digests still match
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
    analysis = {k: v for k, v in options.items() if k not in ("maxpool_rule", "start", "stop")}
    results = analyzer.analyze(inputs[todo], batch_size=args.batch_size, workers=args.workers, errors="skip",
                               memory_limit=None,  # checked above, before anything was read
                               chunk_edges=args.chunk_edges, **analysis) if todo.size else iter(())
    with tqdm(total=len(inputs), initial=len(done), unit="input", disable=args.quiet, file=sys.stderr) as bar:
        for result in results:
            index = int(todo[result.index])
            if isinstance(result, Failure):
                failures.append({"index": index, "error": result.error})
                bar.write(f"input {index}: skipped: {result.error}", file=sys.stderr)
                bar.update(1)
                continue
            result = replace(result, index=index)
            write_result(out, result, names[index])
            summaries[index] = dict(result.summary(), file=f"{names[index]}.npz")
            if not args.quiet:
                bar.write(_describe(result, args.h1))
            bar.update(1)
    write_json(out / "summary.json", {
        "onnxtopo_version": __version__, "model": str(args.model), "inputs": str(args.inputs), "key": args.key,
        "options": options,
        "layers": [{"index": layer.index, "tensor": layer.tensor, "shape": layer.shape, "offset": layer.offset,
                    "size": layer.size, "node": layer.node, "op_type": layer.op_type} for layer in plan.layers],
        "results": [summaries[i] for i in sorted(summaries)], "failed": failures,
    })
    print(f"wrote {len(summaries)} result(s) to {out}/ (summary.json, input-*.npz, input-*.json)"
          + (f"; {len(failures)} input(s) failed, listed in summary.json" if failures else ""))
    return BadInputError.exit_code if failures else ExitCode.OK


def _describe(result, h1: bool) -> str:
    """One line per input: sizes, H0 summary and its most persistent finite points."""
    summary, h0 = result.summary(), result.h0
    top = h0[np.argsort(h0[:, 1] - h0[:, 0], kind="stable")[:3]] if len(h0) else h0
    return (f"input {result.index}: {summary['vertices']:,} vertices, {summary['edges']:,} edges; "
            f"H0 {summary['h0_points']} points ({summary['h0_essential_points']} essential), "
            f"total persistence {summary['h0_total_persistence']:.4g}"
            + (f"; H1 {summary['h1_points']} points" if h1 else "")
            + f"; most persistent: {', '.join(_point(p) for p in top)}")


def _point(p) -> str:
    return f"({p[0]:.4g}, {p[1]:.4g})"
