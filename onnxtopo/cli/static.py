"""``onnxtopo static``: neural persistence of a model's weights (no input), written to a folder."""

from __future__ import annotations

import argparse
import math

from ..errors import ExitCode
from ..homology import DEFAULT_CHUNK_EDGES, ENGINES
from .argtypes import positive_int, size
from .options import add_span_options


def norm_power(text: str) -> float:
    """p of a p-norm: a positive number or inf."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r} (use e.g. 1, 2 or inf)") from None
    if math.isnan(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"p must be positive (or inf), got {text!r}")
    return value


def add_parser(subparsers) -> argparse.ArgumentParser:
    from ..static import CHANNEL_NORMS, GRAPHS

    p = subparsers.add_parser("static", help="neural persistence of the model's weights, no input (Rieck et al.)")
    p.add_argument("model", help="an .onnx model file")
    add_span_options(p)
    p.add_argument("--out", default="onnxtopo-static", help="output directory (default: %(default)s)")
    p.add_argument("--p", type=norm_power, default=2.0, help="the p of the diagrams' p-norm (default: %(default)s)")
    p.add_argument("--graph", choices=GRAPHS, default="unrolled",
                   help="conv layers: every neuron a vertex (default) or every channel a vertex")
    p.add_argument("--channel-norm", choices=CHANNEL_NORMS, default="l2",
                   help="--graph channel: the norm of a kernel slice that weighs an edge (default: %(default)s)")
    p.add_argument("--engine", choices=tuple(ENGINES), default="forest",
                   help="persistence engine: onnxtopo's exact spanning-forest engine (default) or dionysus")
    p.add_argument("--no-whole", dest="whole", action="store_false",
                   help="skip the whole-network static graph (the layers only)")
    p.add_argument("--chunk-edges", type=positive_int, default=DEFAULT_CHUNK_EDGES,
                   help="forest engine: edges gathered before each reduction (default: %(default)s)")
    p.add_argument("--memory-limit", type=size, default="auto",
                   help="refuse a model whose static graph is estimated to need more memory, e.g. 4G; "
                        "'auto' (default): 80%% of the memory available now; 'none': no limit")
    return p


def run(args) -> int:
    from ..static import static_persistence

    limit = {"auto": "auto", "none": None}.get(args.memory_limit, args.memory_limit)
    result = static_persistence(args.model, p=args.p, graph=args.graph, channel_norm=args.channel_norm,
                                engine=args.engine, whole=args.whole, memory_limit=limit, start=args.start,
                                stop=args.stop, chunk_edges=args.chunk_edges)
    result.save(args.out)
    _print_table(result)
    print(f"wrote {args.out}/static.json and {args.out}/static.npz")
    return ExitCode.OK


def _print_table(result) -> None:
    header = ["layer", "node", "op", "graph", "vertices", "components", "edges", "NP", "normalized NP"]
    table = [[str(layer.layer), layer.name, layer.op_type, layer.graph, f"{layer.n_vertices:,}",
              f"{layer.n_components:,}", f"{layer.n_edges:,}", f"{layer.neural_persistence:.4f}",
              f"{layer.normalized:.4f}"] for layer in result.layers]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(header)]
    print(f"model {result.model}: static graphs, weights divided by the largest |w| = {result.scale:.6g}, p = {result.p:g}")
    for row in [header, *table]:
        print("  ".join(cell.ljust(w) if i in (1, 2, 3) else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths, strict=True))))
    print(f"mean normalized neural persistence: {result.mean_normalized:.4f} over {len(result.layers)} layer(s)")
    whole = result.whole
    if whole is not None:
        print(f"whole network: {whole.n_vertices:,} vertices, {whole.n_components:,} component(s), {whole.n_edges:,} "
              f"edges, largest weight {whole.scale:.6g}; NP {whole.neural_persistence:.4f}, normalized "
              f"{whole.normalized:.4f}")
