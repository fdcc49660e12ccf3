"""``onnxtopo zoo``: one table row per model of a collection (``onnxtopo.zoo`` does the work)."""

from __future__ import annotations

import argparse

from ..errors import ExitCode
from ..zoo import PROBE_SIZE, run_zoo
from .argtypes import positive_int


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "zoo", help="inspect and analyze many models into one table (CSV or Parquet)",
        description="Inspect and analyze every *.onnx under DIR (or each model of a LIST file) and write one "
                    "row per model. A failing model gets a row saying why; exit 1 if any failed.",
    )
    p.add_argument("source", metavar="DIR|LIST", help="directory searched recursively, or a text file of model paths")
    p.add_argument("--out", required=True, help="output table: FILE.csv, or FILE.parquet (needs pyarrow)")
    p.add_argument("--inputs", help=".npy/.npz inputs, used for every model whose input shape they fit "
                                    f"(others get {PROBE_SIZE} seeded uniform [0, 1) samples)")
    p.add_argument("--key", help="which array of an .npz --inputs holding several")
    p.add_argument("--max-inputs", type=positive_int, help="analyze only the first N of --inputs")
    p.add_argument("--batch-size", type=positive_int, default=32,
                   help="inputs per task and onnxruntime run (default: %(default)s)")
    p.add_argument("--resume", action="store_true",
                   help="keep the rows of models already in --out (same path, SHA-256 and inputs)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=positive_int, default=1, help="local processes (default: %(default)s)")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="run on a Dask cluster, e.g. tcp://10.0.0.1:8786 (needs onnxtopo[dask])")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def run(args) -> int:
    """0 when every model is ok, 1 when some failed."""
    from ..files import load_inputs

    inputs = load_inputs(args.inputs, args.key) if args.inputs else None
    rows = run_zoo(args.source, args.out, inputs=inputs, max_inputs=args.max_inputs, batch_size=args.batch_size,
                   resume=args.resume, workers=args.workers, scheduler=args.scheduler, progress=not args.quiet)
    failed = [r for r in rows if r["status"] != "ok"]
    print(f"wrote {args.out}: {len(rows)} model(s), {len(rows) - len(failed)} ok, {len(failed)} failed")
    return ExitCode.FAILURE if failed else ExitCode.OK
