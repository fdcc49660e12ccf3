#!/usr/bin/env python
"""onnxtopo benchmark: stage costs and throughput on CCFF, peak memory, and an AlexNet-sized model.

    python benchmarks/bench.py [--quick] [--models ccff,alexnet] [--out FILE.md] [--profile DIR]

Every scenario runs in a fresh child process (this file, ``--child NAME``): its peak RSS
(VmHWM) is its own, and no scenario warms a cache or leaves garbage for another. All scenarios
run in one invocation, so the ratios between them are meaningful even on a noisy machine. The
results are printed and written as Markdown (``--out``).

The AlexNet model (torchvision's layout, seeded random He-scaled weights, ~240 MB) is built in a
temporary directory, never in the repository.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CCFF = REPO / "models" / "ccff-relu.onnx"
HELDOUT = REPO / "models" / "mnist-heldout.npz"
RESULT_MARK = "@@bench-result "  # prefix of the one stdout line a child reports on
GIB = 1 << 30

TARGETS = dict(
    ccff_whole_ms=25.0,  # median per input, one core
    ccff_throughput=60.0,  # inputs/s, batch of 1,000, two workers
    forest_speedup=15.0,  # dionysus time / forest time on the same graphs
    alexnet_seconds=300.0,  # one input, exact H0
    alexnet_rss_gib=6.0,
)

# Sample counts: (full run, --quick).
SIZES = dict(stages=(50, 10), dionysus=(10, 3), throughput=(1000, 200), act_repeats=(20, 5))


# --------------------------------------------------------------------------------------------
# Measurement helpers (used in the children)


def vm_status(field: str) -> int:
    """A /proc/self/status memory field (VmHWM = peak RSS, VmRSS = current) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def children_peak_rss() -> int:
    """Peak RSS of the largest waited-for descendant (e.g. a pool worker), in bytes."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


def stats(seconds) -> dict:
    s = np.asarray(seconds, dtype=np.float64)
    return dict(median=float(np.median(s)), p10=float(np.percentile(s, 10)),
                p90=float(np.percentile(s, 90)), n=int(s.size))


def clock(fn, *args, **kwargs):
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def timed_stream(blocks, spent: list):
    """Pass ``blocks`` through, adding the time spent producing them to ``spent[0]``.

    The forest engine pulls edge blocks lazily, so this separates producing edges from reducing
    them without holding the whole graph.
    """
    iterator = iter(blocks)
    while True:
        start = time.perf_counter()
        try:
            block = next(iterator)
        except StopIteration:
            spent[0] += time.perf_counter() - start
            return
        spent[0] += time.perf_counter() - start
        yield block


def heldout(n: int) -> np.ndarray:
    """n held-out MNIST inputs, the 500 shipped ones tiled as often as needed."""
    x = np.load(HELDOUT)["x"]
    return np.tile(x, (-(-n // len(x)), 1, 1, 1))[:n]


# --------------------------------------------------------------------------------------------
# CCFF scenarios


def scenario_ccff_stages(n: int, act_repeats: int) -> dict:
    """Per-input cost of each stage on one core, stages interleaved input by input so that
    machine noise hits them alike."""
    import onnxtopo
    from onnxtopo.graph import edge_blocks
    from onnxtopo.homology import DEFAULT_CHUNK_EDGES, forest_persistence

    x = heldout(n)
    analyzer = onnxtopo.Analyzer(CCFF, threads=1)
    plan, runner = analyzer.plan, analyzer.runner
    # The first input builds and caches each rule's edge pattern: a one-off cost, shown apart.
    cold, _ = clock(lambda: list(analyzer.analyze(x[:1])))

    batch = [clock(runner.run, x)[0] / n for _ in range(act_repeats)]
    acts = runner.run(x)
    single, edges, forest, whole, n_edges = [], [], [], [], []
    for i in range(n):
        single.append(clock(runner.run, x[i:i + 1])[0])
        t, blocks = clock(lambda: [(s, d, p) for _, s, d, p in
                                   edge_blocks(plan, acts, i, max_edges=DEFAULT_CHUNK_EDGES)])
        edges.append(t)
        n_edges.append(sum(b[0].size for b in blocks))
        forest.append(clock(forest_persistence, iter(blocks), plan.n_vertices)[0])
        whole.append(clock(lambda: list(analyzer.analyze(x[i:i + 1])))[0])
    return dict(cold_first_input=cold, activations_batch=stats(batch), activations_single=stats(single),
                edges=stats(edges), forest=stats(forest), whole=stats(whole),
                edges_per_input=stats(n_edges), vertices=plan.n_vertices, batch_size=n)


def scenario_ccff_dionysus(n: int) -> dict:
    """Both engines on the same induced graphs (onnxtopo.persistence), and their H0 compared."""
    import onnxtopo
    from onnxtopo.graph import build_graph

    x = heldout(n)
    analyzer = onnxtopo.Analyzer(CCFF, threads=1)
    acts = analyzer.runner.run(x)
    build_graph(analyzer.plan, acts, 0)  # builds the cached edge patterns
    forest, dio, ratio, same_h0, same_subgraph = [], [], [], [], []
    for i in range(n):
        graph = build_graph(analyzer.plan, acts, i)
        tf, fast = clock(onnxtopo.persistence, graph, engine="forest")
        td, slow = clock(onnxtopo.persistence, graph, engine="dionysus")
        forest.append(tf)
        dio.append(td)
        ratio.append(td / tf)
        same_h0.append(bool(np.array_equal(fast.h0, slow.h0)))
        same_subgraph.append(all(np.array_equal(getattr(fast.subgraph, f), getattr(slow.subgraph, f))
                                 for f in ("src", "dst", "phi", "birth", "edge")))
        print(f"  dionysus {i + 1}/{n}: {td:.2f} s, forest {tf * 1e3:.1f} ms, H0 equal: {same_h0[-1]}",
              file=sys.stderr, flush=True)
    return dict(forest=stats(forest), dionysus=stats(dio), ratio=stats(ratio),
                h0_equal=all(same_h0), subgraph_equal=all(same_subgraph), n=n)


def scenario_ccff_throughput(n: int, workers: int, batch_size: int) -> dict:
    """Wall time of Analyzer.analyze over n inputs, pool start-up included (what a user waits)."""
    import onnxtopo

    x = heldout(n)
    analyzer = onnxtopo.Analyzer(CCFF, threads=1)
    start = time.perf_counter()
    first = None
    count = 0
    for _ in analyzer.analyze(x, workers=workers, batch_size=batch_size):
        first = first or time.perf_counter() - start
        count += 1
    wall = time.perf_counter() - start
    assert count == n
    return dict(n=n, workers=workers, batch_size=batch_size, seconds=wall, first_result=first,
                inputs_per_s=n / wall, workers_peak_rss=children_peak_rss() if workers > 1 else None)


# --------------------------------------------------------------------------------------------
# AlexNet


def alexnet_model(seed: int = 0):
    """torchvision's AlexNet as ONNX (N, 3, 224, 224) -> (N, 1000), seeded He-normal weights.

    He scaling (std = sqrt(2 / fan_in)) keeps the second moment of ReLU activations roughly
    constant through the layers, so activations neither vanish nor explode; small random biases
    are included as in the real model (they add no edges).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits, nodes = [], []

    def param(name, shape, fan_in):
        w = rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        b = rng.standard_normal(shape[0], dtype=np.float32) * np.float32(0.01)
        inits.extend([numpy_helper.from_array(w, name + ".weight"), numpy_helper.from_array(b, name + ".bias")])
        return [name + ".weight", name + ".bias"]

    def conv(x, name, cin, cout, k, stride, pad):
        nodes.append(helper.make_node("Conv", [x, *param(name, (cout, cin, k, k), cin * k * k)], [name],
                                      name=name, kernel_shape=[k, k], strides=[stride] * 2, pads=[pad] * 4))
        return relu(name)

    def gemm(x, name, n_in, n_out, activation=True):
        nodes.append(helper.make_node("Gemm", [x, *param(name, (n_out, n_in), n_in)], [name], name=name, transB=1))
        return relu(name) if activation else name

    def relu(x):
        nodes.append(helper.make_node("Relu", [x], [x + ".relu"], name=x + ".relu"))
        return x + ".relu"

    def pool(x, name):
        nodes.append(helper.make_node("MaxPool", [x], [name], name=name, kernel_shape=[3, 3], strides=[2, 2]))
        return name

    h = pool(conv("input", "conv1", 3, 64, 11, 4, 2), "pool1")
    h = pool(conv(h, "conv2", 64, 192, 5, 1, 2), "pool2")
    h = conv(h, "conv3", 192, 384, 3, 1, 1)
    h = conv(h, "conv4", 384, 256, 3, 1, 1)
    h = pool(conv(h, "conv5", 256, 256, 3, 1, 1), "pool5")
    nodes.append(helper.make_node("Flatten", [h], ["flat"], name="flatten", axis=1))
    h = gemm(gemm("flat", "fc6", 9216, 4096), "fc7", 4096, 4096)
    gemm(h, "fc8", 4096, 1000, activation=False)
    graph = helper.make_graph(nodes, "alexnet",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
                              [helper.make_tensor_value_info("fc8", TensorProto.FLOAT, ["N", 1000])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="onnxtopo-bench")


def alexnet_input(seed: int = 1) -> np.ndarray:
    """A smooth random image in [0, 1], shape (1, 3, 224, 224): a coarse random grid, upsampled."""
    from scipy.ndimage import zoom

    coarse = np.random.default_rng(seed).random((3, 7, 7))
    return np.clip(zoom(coarse, (1, 32, 32), order=3), 0, 1).astype(np.float32)[None]


def scenario_alexnet_build(path: str) -> dict:
    import onnx

    t, model = clock(alexnet_model)
    onnx.save(model, path)
    return dict(build_seconds=t, bytes=os.path.getsize(path),
                parameters=int(sum(np.prod(i.dims) for i in model.graph.initializer)))


def scenario_alexnet_run(path: str, max_blocks: int | None = None) -> dict:
    """One input through the forest engine (default chunk, exact H0, no threshold), stage by
    stage, with the peak RSS after each stage. ``max_blocks`` stops early (for profiling)."""
    import itertools

    import onnxtopo
    from onnxtopo import homology
    from onnxtopo.graph import edge_blocks

    rss = {}
    t_plan, plan = clock(onnxtopo.inspect, path)
    rss["plan"] = vm_status("VmHWM")
    t_session, analyzer = clock(onnxtopo.Analyzer, plan, threads=None)
    rss["session"] = vm_status("VmHWM")
    x = alexnet_input()
    t_act, acts = clock(analyzer.runner.run, x)
    rss["activations"] = vm_status("VmHWM")
    act_stats = [dict(tensor=step.input_tensor, mean=float(a.mean()), std=float(a.std()), max=float(a.max()),
                      zero=float((a == 0).mean()))
                 for step in plan.steps for a in [acts[step.input_tensor]]]

    # Each spanning-forest reduction, timed from outside (the function is looked up at call time).
    reductions = []
    reduce = homology._spanning_forest

    def timed_reduce(src, *rest):
        t, out = clock(reduce, src, *rest)
        reductions.append(dict(edges_in=int(src.size), forest=int(out[0].size), seconds=t))
        return out

    homology._spanning_forest = timed_reduce
    produce = [0.0]
    counts = dict(blocks=0, edges=0)

    def blocks():
        stream = edge_blocks(plan, acts, 0, max_edges=homology.DEFAULT_CHUNK_EDGES)
        for _, src, dst, phi in itertools.islice(stream, max_blocks):
            counts["blocks"] += 1
            counts["edges"] += src.size
            yield src, dst, phi

    t_stream, result = clock(homology.forest_persistence, timed_stream(blocks(), produce), plan.n_vertices)
    rss["edges+persistence"] = vm_status("VmHWM")
    return dict(describe=[{k: r[k] for k in ("layer", "node", "op", "rule", "input_shape", "output_shape",
                                             "neurons", "edges")} for r in plan.describe()],
                n_vertices=plan.n_vertices, plan_seconds=t_plan, session_seconds=t_session,
                activations_seconds=t_act, stream_seconds=t_stream, edges_seconds=produce[0],
                forest_seconds=t_stream - produce[0], reductions=reductions, rss=rss,
                activation_stats=act_stats, partial=max_blocks is not None, **counts,
                h0_points=len(result.h0), subgraph_edges=len(result.subgraph))


SCENARIOS = dict(ccff_stages=scenario_ccff_stages, ccff_dionysus=scenario_ccff_dionysus,
                 ccff_throughput=scenario_ccff_throughput, alexnet_build=scenario_alexnet_build,
                 alexnet_run=scenario_alexnet_run)


def child_main(name: str, kwargs: dict, profile: str | None) -> None:
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        result = profiler.runcall(SCENARIOS[name], **kwargs)
        profiler.dump_stats(profile)
    else:
        result = SCENARIOS[name](**kwargs)
    result["peak_rss"] = vm_status("VmHWM")
    print(RESULT_MARK + json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------
# Parent: runs the children, collects and reports


def run_child(name: str, timeout: float | None = None, profile: str | None = None, **kwargs) -> dict | None:
    """A scenario's result from a fresh interpreter; None (with a message) if it failed or timed out."""
    cmd = [sys.executable, __file__, "--child", name, "--child-args", json.dumps(kwargs)]
    if profile:
        cmd += ["--child-profile", profile]
    print(f"[{time.strftime('%H:%M:%S')}] {name} {kwargs}", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:  # subprocess.run kills the child it started
        print(f"  {name}: stopped after {timeout:.0f} s", file=sys.stderr)
        return None
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode or not lines:
        print(f"  {name}: failed (exit code {done.returncode})", file=sys.stderr)
        return None
    print(f"  done in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return json.loads(lines[-1][len(RESULT_MARK):])


def machine_line() -> str:
    import numpy
    import onnxruntime

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    return (f"{datetime.datetime.now():%Y-%m-%d %H:%M} · {cpu} · {os.cpu_count()} cores · {ram:.1f} GiB RAM · "
            f"Python {platform.python_version()} · numpy {numpy.__version__} · onnxruntime {onnxruntime.__version__}")


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def gib(n_bytes: float) -> str:
    return f"{n_bytes / GIB:.2f} GiB" if n_bytes >= GIB / 4 else f"{n_bytes / (1 << 20):.0f} MiB"


def spread(s: dict, scale=1e3, unit="ms") -> str:
    return f"p10 {s['p10'] * scale:.2f}, p90 {s['p90'] * scale:.2f} {unit}, n={s['n']}"


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table, padded so that it reads as well in a terminal."""
    cells = [[str(c) for c in row] for row in [header, *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    fmt = lambda row: "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"  # noqa: E731
    return "\n".join([fmt(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(fmt, cells[1:])])


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**NO**")


def report_ccff(stages, dio, throughput) -> tuple[list, list[str]]:
    """Target rows and detail sections for CCFF."""
    targets, sections = [], []
    if stages:
        whole = stages["whole"]["median"]
        targets.append(["CCFF whole analysis, median per input, 1 core", ms(whole),
                        f"≤ {TARGETS['ccff_whole_ms']:.0f} ms", verdict(whole * 1e3 <= TARGETS["ccff_whole_ms"])])
        rows = [[f"activations, batch of {stages['batch_size']} (per input)",
                 ms(stages["activations_batch"]["median"]), spread(stages["activations_batch"])],
                ["activations, batch of 1", ms(stages["activations_single"]["median"]),
                 spread(stages["activations_single"])],
                ["edges (edge_blocks, one sample)", ms(stages["edges"]["median"]), spread(stages["edges"])],
                ["persistence, forest engine", ms(stages["forest"]["median"]), spread(stages["forest"])],
                ["whole analysis (Analyzer.analyze, 1 input)", ms(whole), spread(stages["whole"])],
                ["first input (builds the cached edge patterns)", ms(stages["cold_first_input"]), ""],
                ["edges per input (φ > 0)", f"{stages['edges_per_input']['median']:,.0f}",
                 f"of {stages['vertices']:,} vertices' graph"],
                ["peak RSS of this scenario", gib(stages["peak_rss"]), ""]]
        if dio:
            rows.append([f"persistence, dionysus engine ({dio['n']} inputs)", ms(dio["dionysus"]["median"]),
                         spread(dio["dionysus"])])
        sections.append("### CCFF stages, one core (Analyzer(threads=1))\n\n"
                        + table(["stage", "median", "spread"], rows))
    if dio:
        speedup = dio["dionysus"]["median"] / dio["forest"]["median"]
        targets.append([f"forest vs dionysus speed-up, CCFF ({dio['n']} inputs)", f"{speedup:.0f}×",
                        f"≥ {TARGETS['forest_speedup']:.0f}×", verdict(speedup >= TARGETS["forest_speedup"])])
        targets.append(["forest and dionysus H0 diagrams equal", "yes" if dio["h0_equal"] else "NO",
                        "equal", verdict(dio["h0_equal"])])
        sections.append(
            f"### Engines on the same {dio['n']} CCFF graphs (onnxtopo.persistence)\n\n" + table(
                ["engine", "median", "spread"],
                [["forest", ms(dio["forest"]["median"]), spread(dio["forest"])],
                 ["dionysus", ms(dio["dionysus"]["median"]), spread(dio["dionysus"])],
                 ["ratio dionysus/forest (per input)", f"{dio['ratio']['median']:.0f}×",
                  spread(dio["ratio"], 1, "×")],
                 ["H0 equal / subgraph equal", f"{dio['h0_equal']} / {dio['subgraph_equal']}", ""],
                 ["peak RSS of this scenario", gib(dio["peak_rss"]), ""]]))
    runs = [t for t in throughput if t]
    two = next((t for t in runs if t["workers"] == 2), None)
    if two:
        targets.append([f"CCFF throughput, {two['n']:,} inputs, 2 workers", f"{two['inputs_per_s']:.0f} inputs/s",
                        f"≥ {TARGETS['ccff_throughput']:.0f} inputs/s",
                        verdict(two["inputs_per_s"] >= TARGETS["ccff_throughput"])])
    if runs:
        rows = [[t["workers"], t["batch_size"], f"{t['n']:,}", f"{t['seconds']:.1f} s", f"{t['first_result']:.2f} s",
                 f"{t['inputs_per_s']:.0f}", gib(t["peak_rss"]),
                 gib(t["workers_peak_rss"]) if t["workers_peak_rss"] else "-"] for t in runs]
        sections.append("### CCFF throughput (Analyzer.analyze, wall time incl. worker start-up)\n\n" + table(
            ["workers", "batch", "inputs", "wall", "first result", "inputs/s", "peak RSS (main)",
             "peak RSS (largest worker)"], rows))
    return targets, sections


def report_alexnet(build, run, profile_note: str) -> tuple[list, list[str]]:
    targets, sections = [], []
    if build:
        sections.append(f"AlexNet model: {build['parameters']:,} parameters, {gib(build['bytes'])} on disk, "
                        f"built in {build['build_seconds']:.1f} s (temporary directory).")
    if not run or run["partial"]:
        targets.append(["AlexNet exact H0, one input", "did not finish" if not run else "partial run only",
                        f"≤ {TARGETS['alexnet_seconds'] / 60:.0f} min", verdict(False)])
    if run:
        shape = lambda s: "(" + ", ".join(map(str, s)) + ")" if s else ""  # noqa: E731
        rows = [[r["layer"], r["node"], r["op"], r["rule"], shape(r["input_shape"]), shape(r["output_shape"]),
                 f"{r['neurons']:,}", f"{r['edges']:,}"] for r in run["describe"]]
        total = sum(r["edges"] for r in run["describe"])
        sections.append("### AlexNet plan (`onnxtopo inspect`)\n\n" + table(
            ["layer", "node", "op", "rule", "input shape", "output shape", "neurons", "candidate edges"], rows)
            + f"\n\ntotal: {len(run['describe'])} layers, {run['n_vertices']:,} vertices, "
              f"at most {total:,} edges per input")
        sections.append("### AlexNet activations read by the edge steps (smooth random input)\n\n" + table(
            ["tensor", "mean", "std", "max", "zero fraction"],
            [[a["tensor"], f"{a['mean']:.3f}", f"{a['std']:.3f}", f"{a['max']:.2f}", f"{a['zero']:.2f}"]
             for a in run["activation_stats"]]))
        red = run["reductions"]
        per_input = run["activations_seconds"] + run["stream_seconds"]
        rss = run["rss"]
        rows = [["load + check + plan (once per model)", f"{run['plan_seconds']:.1f} s", gib(rss["plan"])],
                ["onnxruntime session (once per model)", f"{run['session_seconds']:.1f} s", gib(rss["session"])],
                ["activations, 1 input", f"{run['activations_seconds']:.2f} s", gib(rss["activations"])],
                ["edges + persistence (streamed)", f"{run['stream_seconds']:.1f} s", gib(rss["edges+persistence"])],
                ["  of which producing edge blocks", f"{run['edges_seconds']:.1f} s", ""],
                ["  of which forest engine", f"{run['forest_seconds']:.1f} s", ""],
                [f"    spanning-forest reductions ({len(red)})", f"{sum(r['seconds'] for r in red):.1f} s",
                 "edges in: " + ", ".join(f"{r['edges_in'] / 1e6:.1f}M" for r in red)],
                ["per input (activations + edges + persistence)", f"{per_input:.1f} s", ""],
                ["edges with φ > 0 / blocks", f"{run['edges']:,} / {run['blocks']}", ""],
                ["H0 points / persistent subgraph edges", f"{run['h0_points']:,} / {run['subgraph_edges']:,}", ""]]
        title = "### AlexNet, one input, forest engine" + (" (PARTIAL run)" if run["partial"] else "")
        sections.append(title + "\n\n" + table(["stage", "time", "peak RSS after stage"], rows))
        if not run["partial"]:
            targets.append(["AlexNet exact H0, one input (activations + edges + persistence)",
                            f"{per_input:.0f} s", f"≤ {TARGETS['alexnet_seconds']:.0f} s",
                            verdict(per_input <= TARGETS["alexnet_seconds"])])
        targets.append(["AlexNet peak RSS (load, plan, session, one input)", gib(run["peak_rss"]),
                        f"≤ {TARGETS['alexnet_rss_gib']:.0f} GiB",
                        verdict(not run["partial"] and run["peak_rss"] <= TARGETS["alexnet_rss_gib"] * GIB)])
    if profile_note:
        sections.append(profile_note)
    return targets, sections


def profile_summary(path: str, title: str, top: int = 15) -> str:
    """The top functions of a cProfile dump by own time, as a fenced block."""
    import io
    import pstats

    out = io.StringIO()
    pstats.Stats(path, stream=out).strip_dirs().sort_stats("tottime").print_stats(top)
    body = out.getvalue()
    body = body[body.find("   ncalls"):] if "   ncalls" in body else body
    return f"### Profile: {title} (`{path}`, by own time)\n\n```text\n{body.rstrip()}\n```"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer inputs; AlexNet left out unless asked")
    parser.add_argument("--models", help="comma-separated: ccff, alexnet (default: both; --quick: ccff)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results.md"), help="Markdown report")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size of the throughput runs")
    parser.add_argument("--alexnet-timeout", type=float, default=900, help="seconds before the AlexNet run is stopped")
    parser.add_argument("--profile", metavar="DIR", help="also profile the CCFF forest path and AlexNet into DIR")
    parser.add_argument("--profile-blocks", type=int, default=40,
                        help="edge blocks of the profiled (or fallback) partial AlexNet run")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-args", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--child-profile", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args.child, json.loads(args.child_args), args.child_profile)
        return 0

    models = set((args.models or ("ccff" if args.quick else "ccff,alexnet")).split(","))
    unknown = models - {"ccff", "alexnet"}
    if unknown:
        parser.error(f"unknown model(s): {', '.join(sorted(unknown))}")
    size = {k: v[1] if args.quick else v[0] for k, v in SIZES.items()}
    header = machine_line()
    print(header, file=sys.stderr)
    profile_dir = Path(args.profile) if args.profile else None
    if profile_dir:
        profile_dir.mkdir(parents=True, exist_ok=True)

    targets, sections, notes = [], [], []
    if "ccff" in models:
        stages = run_child("ccff_stages", n=size["stages"], act_repeats=size["act_repeats"])
        dio = run_child("ccff_dionysus", n=size["dionysus"])
        throughput = [run_child("ccff_throughput", n=size["throughput"], workers=w, batch_size=args.batch_size)
                      for w in (1, 2)]
        t, s = report_ccff(stages, dio, throughput)
        targets += t
        sections += s
        if profile_dir:
            path = str(profile_dir / "ccff-stages.prof")
            run_child("ccff_stages", profile=path, n=size["stages"], act_repeats=1)
            notes.append(profile_summary(path, "CCFF stages scenario"))

    if "alexnet" in models:
        with tempfile.TemporaryDirectory(prefix="onnxtopo-bench-") as tmp:
            path = os.path.join(tmp, "alexnet.onnx")
            build = run_child("alexnet_build", path=path)
            run = run_child("alexnet_run", timeout=args.alexnet_timeout, path=path) if build else None
            note = ""
            if build and (run is None or profile_dir):
                # Where the time and memory go, from a partial run when the whole one failed.
                prof = str((profile_dir or Path(tmp)) / "alexnet-partial.prof")
                partial = run_child("alexnet_run", profile=prof, path=path, max_blocks=args.profile_blocks)
                if partial:
                    note = profile_summary(prof, f"AlexNet, first {args.profile_blocks} edge blocks")
                    run = run or partial
            t, s = report_alexnet(build, run, note)
            targets += t
            sections += s

    targets_table = table(["target", "measured", "target value", "met"], targets)
    text = "\n\n".join([f"# onnxtopo benchmark{' (quick)' if args.quick else ''}", header,
                        "## Targets", targets_table, "## Details", *sections, *notes]) + "\n"
    print(text)
    Path(args.out).write_text(text)
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
