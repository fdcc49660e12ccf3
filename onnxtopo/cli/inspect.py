"""``onnxtopo inspect``: the plan of layers, rules, neurons and edges, and the memory per input."""

from __future__ import annotations

import argparse

from ..errors import ExitCode
from ..resources import H1_BYTES_PER_EDGE, estimate, format_bytes
from .options import add_model_options, add_span_options


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("inspect", help="print the plan of layers, rules, neurons and edges")
    add_model_options(p)
    add_span_options(p)
    return p


def run(args) -> int:
    from ..api import inspect

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
    numeric = (0, 6, 7)  # right-aligned columns
    for row in [header, *table]:
        print("  ".join(cell.rjust(w) if i in numeric else cell.ljust(w)
                        for i, (cell, w) in enumerate(zip(row, widths, strict=True))))
    total = sum(r["edges"] for r in rows)
    print(f"total: {len(plan.layers)} layers, {plan.n_vertices:,} vertices, at most {total:,} edges per input "
          "(edges with φ = 0 are dropped)")
    forest, oracle = estimate(plan), estimate(plan, engine="dionysus")
    print(f"memory per input: about {format_bytes(forest.bytes)} with the forest engine (default), "
          f"{format_bytes(oracle.bytes)} with dionysus; H1 adds about {format_bytes(total * H1_BYTES_PER_EDGE)}")
    if plan.ignored:
        print(f"after the last layer, not analyzed: {', '.join(plan.ignored)}")
    return ExitCode.OK


def _shape(shape) -> str:
    return "" if shape == "" else "(" + ", ".join(map(str, shape)) + ")"
