#!/usr/bin/env python
"""onnxtopo benchmark: stage costs and throughput on CCFF, time and peak memory on ImageNet CNNs.

    python benchmarks/bench.py [--quick] [--models ccff,alexnet,resnet18,resnet50,vgg16] [--out FILE.md]
                               [--profile DIR]

The figures of issue #11 come first, each with its ratio to its target: CCFF's whole analysis of
one input on one core against 5 ms, and each large model's exact H0 against the time numpy's
``np.sort`` takes for as many float32 keys as its graph has edges (measured in the same run;
in chunks of ``SORT_CHUNK_KEYS`` when they would not fit in memory, a lower bound on one sort).

Every scenario runs in a fresh child process (this file, ``--child NAME``): its peak RSS
(VmHWM) is its own, and no scenario warms a cache or leaves garbage for another. All scenarios
run in one invocation, so the ratios between them are meaningful even on a noisy machine. The
results are printed and written as Markdown (``--out``).

The large models (torchvision's layouts of AlexNet, ResNet-18, ResNet-50 and VGG-16, seeded
random He-scaled weights, BatchNormalization with random running statistics) are built in a
temporary directory, never in the repository.
"""

from __future__ import annotations

import argparse
import contextlib
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

TARGETS = {  # issue #11
    "ccff_whole_ms": 5.0,  # median per input, one core (H0, H1 and the subgraph)
    "ccff_throughput": 400.0,  # inputs/s, batch of 1,000, two workers
    "forest_speedup": 15.0,  # dionysus time / forest time on the same graphs
    "sort_ratio": 3.0,  # large model, exact H0 of one input: wall time / np.sort of as many float32 keys
    "large_rss_gib": 8.0,  # each large model, one input
}

# Sample counts: (full run, --quick).
#: Reductions listed one per row up to this many (AlexNet's 37); a summary line beyond.
MAX_REDUCTION_ROWS = 60
#: np.sort's reference sorts at most this many float32 keys at once (4 GiB): a larger graph's
#: keys are sorted chunk by chunk, which is faster than one sort of them all (a lower bound).
SORT_CHUNK_KEYS = 1 << 30

SIZES = {"stages": (50, 10), "dionysus": (10, 3), "throughput": (1000, 200), "act_repeats": (20, 5)}


# --------------------------------------------------------------------------------------------
# Measurement helpers (used in the children)

_PROFILER = None  # a cProfile.Profile in a child started with --child-profile


@contextlib.contextmanager
def profiled():
    """Profile the enclosed block if this child was asked to: the measured work only, not the
    imports and set-up around it."""
    if _PROFILER is None:
        yield
        return
    _PROFILER.enable()
    try:
        yield
    finally:
        _PROFILER.disable()


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


def process_tree_cpu() -> float:
    """CPU seconds of this process and of its children that have been joined (pool workers)."""
    return sum(getattr(resource.getrusage(who), field) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for field in ("ru_utime", "ru_stime"))


def stats(seconds) -> dict:
    s = np.asarray(seconds, dtype=np.float64)
    return {"median": float(np.median(s)), "p10": float(np.percentile(s, 10)),
            "p90": float(np.percentile(s, 90)), "n": int(s.size)}


def clock(fn, *args, **kwargs):
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


class StageClock:
    """Wall and CPU seconds of repeated calls to one stage.

    On a shared machine, wall time includes the moments another process had our core; the
    process's CPU time does not, so it is the steadier measure of "time on one core"."""

    def __init__(self):
        self.wall, self.cpu = [], []

    def __call__(self, fn, *args, **kwargs):
        cpu, start = time.process_time(), time.perf_counter()
        result = fn(*args, **kwargs)
        self.wall.append(time.perf_counter() - start)
        self.cpu.append(time.process_time() - cpu)
        return result

    def stats(self, per: int = 1) -> dict:
        return dict(stats(np.asarray(self.wall) / per), cpu=float(np.median(self.cpu)) / per)


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
    from onnxtopo.graph import reduced_blocks
    from onnxtopo.homology import DEFAULT_CHUNK_EDGES, forest_persistence

    x = heldout(n)
    analyzer = onnxtopo.Analyzer(CCFF, threads=1)
    plan, runner = analyzer.plan, analyzer.runner
    # The first input loads the compiled loops and builds the kept (conv) patterns: a one-off
    # cost, shown apart.
    cold, _ = clock(lambda: list(analyzer.analyze(x[:1])))

    batch, single, edges, forest, forest_h1, whole, whole_h1 = (StageClock() for _ in range(7))
    for _ in range(act_repeats):
        batch(runner.run, x)
    acts = runner.run(x)
    n_edges = []
    for i in range(n):
        single(runner.run, x[i:i + 1])
        # What Analyzer.analyze streams: the conv steps' edges written out, the dense layers'
        # blocks to be read in place (their edges are computed inside the engine's passes).
        blocks = edges(lambda i=i: [block for _, block in
                                    reduced_blocks(plan, acts, i, max_edges=DEFAULT_CHUNK_EDGES, forests=False)])
        n_edges.append(forest(forest_persistence, iter(blocks), plan.n_vertices).n_edges)
        forest_h1(lambda blocks=blocks: forest_persistence(iter(blocks), plan.n_vertices, h1=True))
        whole(lambda i=i: list(analyzer.analyze(x[i:i + 1])))
        whole_h1(lambda i=i: list(analyzer.analyze(x[i:i + 1], h1=True)))
    return {"cold_first_input": cold, "activations_batch": batch.stats(per=n), "activations_single": single.stats(),
            "edges": edges.stats(), "forest": forest.stats(), "forest_h1": forest_h1.stats(), "whole": whole.stats(),
            "whole_h1": whole_h1.stats(), "edges_per_input": stats(n_edges), "vertices": plan.n_vertices,
            "batch_size": n}


def scenario_ccff_dionysus(n: int) -> dict:
    """Both engines on the same induced graphs (onnxtopo.persistence), and their H0 compared."""
    import onnxtopo
    from onnxtopo.graph import build_graph

    x = heldout(n)
    analyzer = onnxtopo.Analyzer(CCFF, threads=1)
    acts = analyzer.runner.run(x)
    warm = build_graph(analyzer.plan, acts, 0)  # builds the cached edge patterns
    for engine in ("forest", "dionysus"):  # first calls import scipy.csgraph / dionysus
        onnxtopo.persistence(warm, engine=engine)
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
    return {"forest": stats(forest), "dionysus": stats(dio), "ratio": stats(ratio),
            "h0_equal": all(same_h0), "subgraph_equal": all(same_subgraph), "n": n}


def scenario_ccff_throughput(n: int, workers: int, batch_size: int) -> dict:
    """Wall time of Analyzer.analyze over n inputs, pool start-up included (what a user waits)."""
    import onnxtopo

    x = heldout(n)
    analyzer = onnxtopo.Analyzer(CCFF, threads=1)
    cpu = process_tree_cpu()
    start = time.perf_counter()
    first = None
    count = 0
    for _ in analyzer.analyze(x, workers=workers, batch_size=batch_size):
        first = first or time.perf_counter() - start
        count += 1
    wall = time.perf_counter() - start
    assert count == n
    return {"n": n, "workers": workers, "batch_size": batch_size, "seconds": wall, "first_result": first,
            "inputs_per_s": n / wall, "cpu_seconds": process_tree_cpu() - cpu,
            "workers_peak_rss": children_peak_rss() if workers > 1 else None}


def scenario_ccff_analyze(n: int) -> dict:
    """The whole path, input by input, after a warm-up: what the profile of CCFF looks at."""
    import onnxtopo

    x = heldout(n)
    analyzer = onnxtopo.Analyzer(CCFF, threads=1)
    list(analyzer.analyze(x[:1]))
    with profiled():
        seconds = [clock(lambda i=i: list(analyzer.analyze(x[i:i + 1])))[0] for i in range(n)]
    return {"whole": stats(seconds)}


# --------------------------------------------------------------------------------------------
# ImageNet CNNs: AlexNet, ResNet-18, ResNet-50, VGG-16


class OnnxBuilder:
    """Nodes and seeded He-normal weights of a torchvision-layout CNN, as onnx.helper builds them.

    He scaling (std = sqrt(2 / fan_in)) keeps the second moment of ReLU activations roughly
    constant through the layers, so activations neither vanish nor explode; small random biases
    are included as in the real model (they add no edges). BatchNormalization nodes carry random
    but sane running statistics (as a model exported in eval mode does): the planner folds them
    into the conv before them, scaling its edges.
    """

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.inits, self.nodes = [], []

    def tensor(self, name, array):
        from onnx import numpy_helper

        self.inits.append(numpy_helper.from_array(np.asarray(array, dtype=np.float32), name))
        return name

    def param(self, name, shape, fan_in, bias=True):
        w = self.rng.standard_normal(shape, dtype=np.float32) * np.float32(np.sqrt(2.0 / fan_in))
        names = [self.tensor(name + ".weight", w)]
        if bias:
            names.append(self.tensor(name + ".bias", self.rng.standard_normal(shape[0]) * 0.01))
        return names

    def node(self, op, inputs, name, **attrs):
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [name], name=name, **attrs))
        return name

    def conv(self, x, name, cin, cout, k, stride=1, pad=0, bn=False, relu=True):
        """Conv (no bias when a BatchNormalization follows, as in torchvision), then BN, ReLU."""
        h = self.node("Conv", [x, *self.param(name, (cout, cin, k, k), cin * k * k, bias=not bn)], name,
                      kernel_shape=[k, k], strides=[stride] * 2, pads=[pad] * 4)
        if bn:
            stats = [self.rng.uniform(0.5, 1.5, cout), self.rng.standard_normal(cout) * 0.1,
                     self.rng.standard_normal(cout) * 0.1, self.rng.uniform(0.5, 2.0, cout)]
            h = self.node("BatchNormalization", [h, *(self.tensor(f"{name}.bn.{what}", v) for what, v in
                                                      zip(("scale", "bias", "mean", "var"), stats))],
                          name + ".bn", epsilon=1e-5)
        return self.relu(h) if relu else h

    def relu(self, x):
        return self.node("Relu", [x], x + ".relu")

    def maxpool(self, x, name, k=3, stride=2, pad=0):
        return self.node("MaxPool", [x], name, kernel_shape=[k, k], strides=[stride] * 2, pads=[pad] * 4)

    def gemm(self, x, name, n_in, n_out, relu=True):
        h = self.node("Gemm", [x, *self.param(name, (n_out, n_in), n_in)], name, transB=1)
        return self.relu(h) if relu else h

    def model(self, name, output, n_out):
        from onnx import TensorProto, helper

        graph = helper.make_graph(self.nodes, name,
                                  [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 224, 224])],
                                  [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", n_out])],
                                  self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="onnxtopo-bench")


def alexnet_model(seed: int = 0):
    """torchvision's AlexNet as ONNX (N, 3, 224, 224) -> (N, 1000)."""
    b = OnnxBuilder(seed)
    h = b.maxpool(b.conv("input", "conv1", 3, 64, 11, 4, 2), "pool1")
    h = b.maxpool(b.conv(h, "conv2", 64, 192, 5, 1, 2), "pool2")
    h = b.conv(h, "conv3", 192, 384, 3, 1, 1)
    h = b.conv(h, "conv4", 384, 256, 3, 1, 1)
    h = b.maxpool(b.conv(h, "conv5", 256, 256, 3, 1, 1), "pool5")
    h = b.node("Flatten", [h], "flat", axis=1)
    h = b.gemm(b.gemm(h, "fc6", 9216, 4096), "fc7", 4096, 4096)
    return b.model("alexnet", b.gemm(h, "fc8", 4096, 1000, relu=False), 1000)


def vgg16_model(seed: int = 0):
    """torchvision's VGG-16 (no BN) as ONNX (N, 3, 224, 224) -> (N, 1000). Its adaptive
    average pool to 7×7 is the identity at 224×224 (the export drops it); dropout is too."""
    b = OnnxBuilder(seed)
    h, cin = "input", 3
    for stage, (width, convs) in enumerate(zip((64, 128, 256, 512, 512), (2, 2, 3, 3, 3)), start=1):
        for i in range(1, convs + 1):
            h, cin = b.conv(h, f"conv{stage}_{i}", cin, width, 3, 1, 1), width
        h = b.maxpool(h, f"pool{stage}", k=2, stride=2)
    h = b.node("Flatten", [h], "flat", axis=1)
    h = b.gemm(b.gemm(h, "fc6", 512 * 7 * 7, 4096), "fc7", 4096, 4096)
    return b.model("vgg16", b.gemm(h, "fc8", 4096, 1000, relu=False), 1000)


def resnet_model(depth: int, seed: int = 0):
    """torchvision's ResNet-18 (basic blocks) or ResNet-50 (bottlenecks, stride on the 3×3 conv)
    as ONNX (N, 3, 224, 224) -> (N, 1000): BN after every conv, residual Add then ReLU, a 1×1
    conv + BN shortcut where the shape changes, GlobalAveragePool, Flatten, Gemm."""
    blocks, bottleneck = {18: ((2, 2, 2, 2), False), 50: ((3, 4, 6, 3), True)}[depth]
    expansion = 4 if bottleneck else 1
    b = OnnxBuilder(seed)
    h = b.maxpool(b.conv("input", "conv1", 3, 64, 7, 2, 3, bn=True), "maxpool", pad=1)
    cin = 64
    for stage, (width, count) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
        for i in range(count):
            name, stride, cout = f"layer{stage}.{i}", 2 if stage > 1 and i == 0 else 1, width * expansion
            if bottleneck:
                y = b.conv(h, name + ".conv1", cin, width, 1, bn=True)
                y = b.conv(y, name + ".conv2", width, width, 3, stride, 1, bn=True)
                y = b.conv(y, name + ".conv3", width, cout, 1, bn=True, relu=False)
            else:
                y = b.conv(h, name + ".conv1", cin, width, 3, stride, 1, bn=True)
                y = b.conv(y, name + ".conv2", width, width, 3, 1, 1, bn=True, relu=False)
            shortcut = h if stride == 1 and cin == cout else b.conv(h, name + ".downsample", cin, cout, 1, stride,
                                                                     bn=True, relu=False)
            h, cin = b.relu(b.node("Add", [y, shortcut], name + ".add")), cout
    h = b.node("Flatten", [b.node("GlobalAveragePool", [h], "avgpool")], "flat", axis=1)
    return b.model(f"resnet{depth}", b.gemm(h, "fc", cin, 1000, relu=False), 1000)


#: The large models the static view is measured on (``--models static``).
STATIC_LARGE = ("alexnet", "resnet18")
#: The large-model scenarios: name -> (title, builder).
LARGE_MODELS = {"alexnet": ("AlexNet", alexnet_model), "resnet18": ("ResNet-18", lambda: resnet_model(18)),
                    "resnet50": ("ResNet-50", lambda: resnet_model(50)), "vgg16": ("VGG-16", vgg16_model)}


def image_input(seed: int = 1) -> np.ndarray:
    """A smooth random image in [0, 1], shape (1, 3, 224, 224): a coarse random grid, upsampled."""
    from scipy.ndimage import zoom

    coarse = np.random.default_rng(seed).random((3, 7, 7))
    return np.clip(zoom(coarse, (1, 32, 32), order=3), 0, 1).astype(np.float32)[None]


def scenario_large_build(model: str, path: str) -> dict:
    import onnx

    t, model = clock(LARGE_MODELS[model][1])
    onnx.save(model, path)
    return {"build_seconds": t, "bytes": os.path.getsize(path),
            "parameters": int(sum(np.prod(i.dims) for i in model.graph.initializer))}


def scenario_large_run(path: str, chunk_edges: int | None = None, max_blocks: int | None = None) -> dict:
    """One input through the forest engine (exact H0, no threshold; default chunk unless
    ``chunk_edges``), stage by stage, with the peak RSS after each stage. ``max_blocks`` stops
    early (for profiling)."""
    import itertools

    import onnxtopo
    from onnxtopo import graph, homology

    chunk = chunk_edges or homology.DEFAULT_CHUNK_EDGES
    rss = {}
    t_plan, plan = clock(onnxtopo.inspect, path)
    rss["plan"] = vm_status("VmHWM")
    t_session, analyzer = clock(onnxtopo.Analyzer, plan)  # onnxruntime's default threads: both cores
    rss["session"] = vm_status("VmHWM")

    # Each chunk's reduction, timed from outside (in the engine's second thread, where it runs
    # while the next chunk is produced): the engine looks the private function up at call time.
    # It takes the forest so far and the pending blocks, and returns (forest, strongest).
    reductions = []
    reduce = homology._reduce

    def timed_reduce(forest, pending, *args):
        t, out = clock(reduce, forest, pending, *args)
        reductions.append({"edges_in": int(forest[0].size + sum(part.size for part in pending)),
                           "forest": int(out[0][0].size), "seconds": t, "peak_rss": vm_status("VmHWM")})
        return out

    homology._reduce = timed_reduce
    # Per edge step: blocks, edges kept (φ > 0) and the time spent producing them. Streamed steps
    # are produced in the main thread as the engine pulls their blocks, so timing each next()
    # separates producing edges from reducing them; a large conv's forest is computed in a
    # thread of graph.reduced_blocks, timed there (wall and that thread's CPU time).
    per_step = [{"node": step.node, "blocks": 0, "edges": 0, "seconds": 0.0, "forest": None, "cpu": None,
                 "in_place": False} for step in plan.steps]
    step_forest = graph.step_forest_block
    index = {id(step): i for i, step in enumerate(plan.steps)}

    def timed_step_forest(plan_, step, h):
        wall, cpu = time.perf_counter(), time.thread_time()
        out = step_forest(plan_, step, h)
        per_step[index[id(step)]].update(seconds=time.perf_counter() - wall, cpu=time.thread_time() - cpu)
        return out

    graph.step_forest_block = timed_step_forest

    def blocks(acts):
        stream = graph.reduced_blocks(plan, acts, 0, max_edges=chunk)  # as Analyzer.analyze runs them
        for _ in itertools.repeat(None) if max_blocks is None else range(max_blocks):
            t, item = clock(next, stream, None)
            if item is None:
                return
            step, block = item
            per_step[step]["blocks"] += 1
            if isinstance(block, homology.ForestBlock):
                per_step[step]["edges"] += block.n_edges
                per_step[step]["forest"] = block.src.size
            elif hasattr(block, "n_edges"):  # read in place by the engine: its passes are the forest's time
                per_step[step].update(edges=per_step[step]["edges"] + block.n_edges, in_place=True)
                per_step[step]["seconds"] += t
            else:
                per_step[step]["edges"] += block[0].size
                per_step[step]["seconds"] += t
            yield block

    with profiled():
        t_act, acts = clock(analyzer.runner.run, image_input())
        rss["activations"] = vm_status("VmHWM")
        cpu = time.process_time()
        t_stream, result = clock(homology.forest_persistence, blocks(acts), plan.n_vertices, chunk_edges=chunk)
        cpu = time.process_time() - cpu  # both threads: on a loaded machine, what the wall time hides
        rss["edges+persistence"] = vm_status("VmHWM")
    produce = sum(s["seconds"] for s in per_step if s["forest"] is None)
    act_stats = [{"tensor": step.input_tensor, "mean": float(a.mean()), "std": float(a.std()), "max": float(a.max()),
                  "zero": float((a == 0).mean())}
                 for step in plan.steps for a in [acts[step.input_tensor]]]
    # What the plan keeps for the model's lifetime: weights as float64, and the whole edge
    # pattern of every step small enough to be built in one piece (cached on the rule).
    held = {"weights": sum(a.nbytes for step in plan.steps for a in vars(step.rule).values()
                           if isinstance(a, np.ndarray) and a.dtype == np.float64),
            "patterns": sum(a.nbytes for step in plan.steps if "pattern" in vars(step.rule)
                            for a in (step.rule.pattern.src, step.rule.pattern.dst, step.rule.pattern.weight))}
    return {"describe": [{k: r[k] for k in ("layer", "node", "op", "rule", "input_shape", "output_shape",
                                            "neurons", "edges")} for r in plan.describe()],
            "n_vertices": plan.n_vertices, "plan_seconds": t_plan, "session_seconds": t_session,
            "activations_seconds": t_act, "stream_seconds": t_stream, "stream_cpu_seconds": cpu,
            "edges_seconds": produce, "forest_seconds": t_stream - produce, "reductions": reductions, "rss": rss,
            "per_step": per_step, "activation_stats": act_stats, "partial": max_blocks is not None,
            "chunk_edges": chunk, "reducing_threads": graph.REDUCING_THREADS, "held": held,
            "estimate": package_estimate(plan, chunk),
            "blocks": sum(s["blocks"] for s in per_step), "edges": sum(s["edges"] for s in per_step),
            "h0_points": len(result.h0), "subgraph_edges": len(result.subgraph)}


def package_estimate(plan, chunk: int) -> int | None:
    """The package's own memory estimate for one input, where this version has one."""
    try:
        from onnxtopo.resources import estimate
    except ImportError:
        return None
    return estimate(plan, chunk_edges=chunk).bytes


def scenario_sort_reference(n: int, chunk: int = SORT_CHUNK_KEYS) -> dict:
    """What the issue compares the exact engine with: numpy sorting n float32 keys in place; in
    chunks of ``chunk`` keys (each sorted on its own, only the sorts timed) when n keys would
    not fit in memory beside the other work on the machine."""
    rng = np.random.default_rng(0)
    if n <= chunk:
        keys = rng.random(n, dtype=np.float32)
        t, _ = clock(keys.sort)
        return {"n": n, "seconds": t, "chunk": None}
    fresh = rng.random(chunk, dtype=np.float32)
    seconds = 0.0
    for start in range(0, n, chunk):
        keys = fresh[:min(chunk, n - start)].copy()
        seconds += clock(keys.sort)[0]
    return {"n": n, "seconds": seconds, "chunk": chunk}


def scenario_first_call() -> dict:
    """The first analysis in a fresh process: importing the compiled loops (numba) and compiling
    them, or loading them from the cache (the child's NUMBA_CACHE_DIR tells which)."""
    import onnxtopo
    from onnxtopo import InducedGraph

    graph = InducedGraph.from_edges([2, 2], [0, 0, 1], [2, 3, 3], [1.0, 2.0, 3.0])
    t_import, _ = clock(__import__, "onnxtopo._compiled")
    t_first, _ = clock(onnxtopo.persistence, graph, h1=True)
    t_second, _ = clock(onnxtopo.persistence, graph, h1=True)
    return {"import_seconds": t_import, "first_seconds": t_first, "second_seconds": t_second}


def scenario_static(model: str, path: str, repeats: int = 1, dionysus: bool = False, direct: bool = False) -> dict:
    """The static view (``static_persistence``, forest engine, layers and whole network) of a
    model file, ``repeats`` times after a first call that loads the compiled loops, alternating
    with the same computation with every step's edges streamed (``graph.STEP_FOREST_MIN_CANDIDATES``
    raised: the path before the in-place step forests), whose results must be the same bytes.
    The peak RSS is read before any streamed run: the in-place path's. With ``dionysus``, the
    dionysus engine once too; with ``direct``, the whole-network graph's persistence straight
    from one stream of all its edges, against the steps' forests the package uses."""
    import onnxtopo
    from onnxtopo import graph, static

    def streamed(plan_, **options):
        saved, graph.STEP_FOREST_MIN_CANDIDATES = graph.STEP_FOREST_MIN_CANDIDATES, 1 << 62
        try:
            return static.static_persistence(plan_, **options)
        finally:
            graph.STEP_FOREST_MIN_CANDIDATES = saved

    plan = onnxtopo.inspect(path)
    t_first, result = clock(static.static_persistence, plan)
    timer, before = StageClock(), StageClock()
    for _ in range(repeats):
        result = timer(static.static_persistence, plan)
    peak = vm_status("VmHWM")
    layers_only = StageClock()
    for _ in range(repeats):
        layers_only(static.static_persistence, plan, whole=False)
    for _ in range(repeats):  # a second round of both, alternating: the load changes over minutes
        old = before(streamed, plan)
        result = timer(static.static_persistence, plan)
    arrays, old_arrays = result.arrays(), old.arrays()
    same_bytes = result.summary() == old.summary() and arrays.keys() == old_arrays.keys() and all(
        arrays[k].dtype == old_arrays[k].dtype and arrays[k].tobytes() == old_arrays[k].tobytes() for k in arrays)
    out = {"model": model, "layers": len(result.layers), "edges": result.whole.n_edges,
           "vertices": result.whole.n_vertices, "first": t_first, "static": timer.stats(),
           "streamed": before.stats(), "streamed_equal": same_bytes, "layers_only": layers_only.stats(),
           "mean_normalized": result.mean_normalized, "estimate": static.static_estimate(plan).bytes,
           "peak_rss": peak}
    if direct:
        timed, chunk = StageClock(), onnxtopo.homology.DEFAULT_CHUNK_EDGES
        for _ in range(repeats):  # the whole graph streamed at once, as analyze streams an input's
            raw = timed(onnxtopo.homology.forest_persistence, (b[1:] for b in static._all_blocks(plan, chunk)),
                        plan.n_vertices, vertices="inf", chunk_edges=chunk)
        out["whole_direct"] = timed.stats()
        out["whole_equal"] = bool(np.array_equal(static._whole(raw, result.p).h0, result.whole.h0))
    if dionysus:
        out["dionysus"], oracle = clock(static.static_persistence, plan, engine="dionysus")
        out["dionysus_equal"] = bool(np.array_equal(oracle.whole.h0, result.whole.h0) and all(
            np.array_equal(a.h0, b.h0) for a, b in zip(oracle.layers, result.layers)))
    return out


SCENARIOS = {"ccff_stages": scenario_ccff_stages, "ccff_dionysus": scenario_ccff_dionysus,
             "ccff_throughput": scenario_ccff_throughput, "ccff_analyze": scenario_ccff_analyze,
             "large_build": scenario_large_build, "large_run": scenario_large_run,
             "sort_reference": scenario_sort_reference, "first_call": scenario_first_call,
             "static": scenario_static}


def child_main(name: str, kwargs: dict, profile: str | None) -> None:
    global _PROFILER
    if profile:
        import cProfile

        _PROFILER = cProfile.Profile()
    result = SCENARIOS[name](**kwargs)
    if profile:
        _PROFILER.dump_stats(profile)
    result["peak_rss"] = vm_status("VmHWM")
    print(RESULT_MARK + json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------------
# Parent: runs the children, collects and reports


def cpu_busy_seconds() -> float:
    """CPU time the whole machine has spent busy (every process, every core), from /proc/stat."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = (int(v) for v in f.readline().split()[1:8])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_quiet(limit: float, threshold: float = 0.25, window: float = 3.0) -> None:
    """Wait, at most ``limit`` seconds, until other processes keep fewer than ``threshold``
    cores busy over ``window`` seconds: on a shared machine, a test run next door would
    otherwise take a core from the scenario."""
    start = time.perf_counter()
    loads = []
    while True:
        busy = cpu_busy_seconds()
        time.sleep(window)
        loads.append((cpu_busy_seconds() - busy) / window)
        if loads[-1] < threshold or time.perf_counter() - start >= limit:
            break
    if len(loads) > 1:
        print(f"  waited {time.perf_counter() - start:.0f} s for a quiet machine (other processes' load "
              f"{np.mean(loads):.2f} cores on average, {loads[-1]:.2f} at the end)", file=sys.stderr, flush=True)


QUIET_WAIT = [0.0]  # --wait-quiet, seconds


def run_child(name: str, timeout: float | None = None, profile: str | None = None, env: dict | None = None,
              **kwargs) -> dict | None:
    """A scenario's result from a fresh interpreter; None (with a message) if it failed or timed out.

    Adds ``wall`` and ``other_load``: the cores other processes kept busy meanwhile on average
    (the machine is shared; a load near 1 on 2 cores halves what a parallel scenario can get).
    """
    cmd = [sys.executable, __file__, "--child", name, "--child-args", json.dumps(kwargs)]
    if profile:
        cmd += ["--child-profile", profile]
    if QUIET_WAIT[0] > 0:
        wait_quiet(QUIET_WAIT[0])
    print(f"[{time.strftime('%H:%M:%S')}] {name} {kwargs}", file=sys.stderr, flush=True)
    busy, ours, start = cpu_busy_seconds(), children_cpu_seconds(), time.perf_counter()
    try:
        done = subprocess.run(cmd, check=False, stdout=subprocess.PIPE, text=True, timeout=timeout,
                              env=None if env is None else {**os.environ, **env})
    except subprocess.TimeoutExpired:  # subprocess.run kills the child it started
        print(f"  {name}: stopped after {timeout:.0f} s", file=sys.stderr)
        return None
    wall = time.perf_counter() - start
    others = (cpu_busy_seconds() - busy) - (children_cpu_seconds() - ours)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if done.returncode or not lines:
        print(f"  {name}: failed (exit code {done.returncode})", file=sys.stderr)
        return None
    print(f"  done in {wall:.1f} s", file=sys.stderr, flush=True)
    return dict(json.loads(lines[-1][len(RESULT_MARK):]), wall=wall, other_load=max(0.0, others) / wall)


def machine_line() -> str:
    import numpy
    import onnxruntime

    cpu_lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpu_lines if line.startswith("model name")),
               platform.processor())
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GIB
    return (f"{datetime.datetime.now():%Y-%m-%d %H:%M} · {cpu} · {os.cpu_count()} cores · {ram:.1f} GiB RAM · "
            f"Python {platform.python_version()} · numpy {numpy.__version__} · onnxruntime {onnxruntime.__version__}")


def revision_line() -> str:
    """Which code was measured: the package is edited concurrently, so say so when it differs from HEAD."""
    def git(*args):
        return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True).stdout

    found = subprocess.run([sys.executable, "-c", "import onnxtopo; print(onnxtopo.__file__)"],
                           check=False, capture_output=True, text=True).stdout.strip()
    if found and not Path(found).resolve().is_relative_to(REPO):
        return f"onnxtopo imported from {Path(found).parent} (not this checkout)"
    try:
        head = git("rev-parse", "--short", "HEAD").strip()
        changed = [line[3:] for line in git("status", "--porcelain", "--", "onnxtopo").splitlines()]
    except (OSError, subprocess.CalledProcessError):
        return "onnxtopo revision unknown (not a git checkout)"
    return f"onnxtopo at commit {head}" + (f", working tree with changes to {', '.join(changed)}" if changed else "")


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
    fmt = lambda row: "| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |"
    return "\n".join([fmt(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(fmt, cells[1:])])


def verdict(ok: bool) -> str:
    return "yes" if ok else "**NO**"


def against(measured: float, target: float) -> str:
    """How a time compares with its target, as a ratio."""
    return f"{measured / target:.1f}× the target"


def report_ccff(stages, dio, throughput) -> tuple[list, list[str]]:
    """Target rows and detail sections for CCFF."""
    targets, sections = [], []
    if stages:
        for key, what in (("whole_h1", "H0, H1 and subgraph"), ("whole", "H0 and subgraph")):
            whole = stages[key]["median"]
            targets.append([f"CCFF whole analysis ({what}), median per input, 1 core",
                            f"{ms(whole)} (CPU {ms(stages[key]['cpu'])}): {against(whole * 1e3, TARGETS['ccff_whole_ms'])}",
                            f"≤ {TARGETS['ccff_whole_ms']:.0f} ms", verdict(whole * 1e3 <= TARGETS["ccff_whole_ms"])])
        timed = [(f"activations, batch of {stages['batch_size']} (per input)", "activations_batch"),
                 ("activations, batch of 1", "activations_single"),
                 ("edge blocks (reduced_blocks: conv edges written, dense layers read in place later)", "edges"),
                 ("persistence, forest engine (forest_persistence)", "forest"),
                 ("persistence with H1 (forest_persistence(h1=True))", "forest_h1"),
                 ("whole analysis (Analyzer.analyze, 1 input)", "whole"),
                 ("whole analysis with H1 (Analyzer.analyze(h1=True), 1 input)", "whole_h1")]
        rows = [[label, ms(stages[key]["median"]), ms(stages[key]["cpu"]), spread(stages[key])]
                for label, key in timed]
        rows += [["first input (loads the compiled loops, builds the conv patterns)", ms(stages["cold_first_input"]),
                  "", ""],
                 ["edges per input (φ > 0)", f"{stages['edges_per_input']['median']:,.0f}", "",
                  f"graph of {stages['vertices']:,} vertices"]]
        if dio:
            rows.append([f"persistence, dionysus engine ({dio['n']} inputs)", ms(dio["dionysus"]["median"]), "",
                         spread(dio["dionysus"])])
        sections.append("### CCFF stages, one core (Analyzer(threads=1))\n\n"
                        + table(["stage", "median (wall)", "median (CPU)", "spread (wall)"], rows))
    if dio:
        speedup = dio["dionysus"]["median"] / dio["forest"]["median"]
        targets.append([f"forest vs dionysus speed-up, CCFF ({dio['n']} inputs)", f"{speedup:.0f}×",
                        f"≥ {TARGETS['forest_speedup']:.0f}×", verdict(speedup >= TARGETS["forest_speedup"])])
        targets.append([f"forest and dionysus H0 diagrams equal ({dio['n']} inputs)",
                        "equal" if dio["h0_equal"] else "DIFFERENT", "equal", verdict(dio["h0_equal"])])
        sections.append(
            f"### Engines on the same {dio['n']} CCFF graphs (onnxtopo.persistence)\n\n" + table(
                ["engine", "median", "spread"],
                [["forest", ms(dio["forest"]["median"]), spread(dio["forest"])],
                 ["dionysus", ms(dio["dionysus"]["median"]), spread(dio["dionysus"])],
                 ["ratio dionysus/forest (per input)", f"{dio['ratio']['median']:.0f}×",
                  spread(dio["ratio"], 1, "×")],
                 ["H0 equal / subgraph equal", f"{dio['h0_equal']} / {dio['subgraph_equal']}", ""]]))
    runs = [t for t in throughput if t]
    two = next((t for t in runs if t["workers"] == 2), None)
    if two:
        targets.append([f"CCFF throughput, {two['n']:,} inputs, 2 workers", f"{two['inputs_per_s']:.0f} inputs/s",
                        f"≥ {TARGETS['ccff_throughput']:.0f} inputs/s",
                        verdict(two["inputs_per_s"] >= TARGETS["ccff_throughput"])])
    if runs:
        rows = [[t["workers"], t["batch_size"], f"{t['n']:,}", f"{t['seconds']:.1f} s", f"{t['first_result']:.2f} s",
                 f"{t['inputs_per_s']:.0f}", f"{t['cpu_seconds']:.1f} s", f"{t['other_load']:.2f}"] for t in runs]
        sections.append("### CCFF throughput (Analyzer.analyze, wall time incl. worker start-up)\n\n" + table(
            ["workers", "batch", "inputs", "wall", "first result", "inputs/s", "CPU (all processes)",
             "other processes' load (cores)"], rows))
    return targets, sections


def report_large(title: str, build, runs: list, profile_note: str, failure: str | None, sort_ref: dict | None
                 ) -> tuple[list, list[str]]:
    """Target rows and sections of one large model (``title``: AlexNet, ResNet-18, ...).
    ``runs``: one result per chunk size, the default chunk first; after a ``failure`` of the
    default run, only the partial (profiled) run, if any. ``sort_ref``: np.sort of as many
    float32 keys as the graph has edges."""
    targets, sections = [], []
    run = runs[0] if runs else None
    if build:
        sections.append(f"{title} model: {build['parameters']:,} parameters, {gib(build['bytes'])} on disk, "
                        f"built in {build['build_seconds']:.1f} s (temporary directory).")
    if failure:
        targets.append([f"{title} exact H0, one input", failure, f"≤ {TARGETS['sort_ratio']:.0f}× np.sort",
                        verdict(False)])
    if run:
        shape = lambda s: "(" + ", ".join(map(str, s)) + ")" if s else ""
        rows = [[r["layer"], r["node"], r["op"], r["rule"], shape(r["input_shape"]), shape(r["output_shape"]),
                 f"{r['neurons']:,}", f"{r['edges']:,}"] for r in run["describe"]]
        total = sum(r["edges"] for r in run["describe"])
        sections.append(f"### {title} plan (`onnxtopo inspect`)\n\n" + table(
            ["layer", "node", "op", "rule", "input shape", "output shape", "neurons", "candidate edges"], rows)
            + f"\n\ntotal: {len(run['describe'])} layers, {run['n_vertices']:,} vertices, "
              f"at most {total:,} edges per input")
        sections.append(f"### {title} activations read by the edge steps (smooth random input)\n\n" + table(
            ["tensor", "mean", "std", "max", "zero fraction"],
            [[a["tensor"], f"{a['mean']:.3f}", f"{a['std']:.3f}", f"{a['max']:.2f}", f"{a['zero']:.2f}"]
             for a in run["activation_stats"]]))
        red = run["reductions"]
        reduced = [p for p in run["per_step"] if p.get("forest") is not None]
        per_input = run["activations_seconds"] + run["stream_seconds"]
        rss = run["rss"]
        rows = [["load + check + plan (once per model)", f"{run['plan_seconds']:.1f} s", gib(rss["plan"])],
                ["onnxruntime session (once per model)", f"{run['session_seconds']:.1f} s", gib(rss["session"])],
                ["activations, 1 input", f"{run['activations_seconds']:.2f} s", gib(rss["activations"])],
                ["edges + persistence (streamed)", f"{run['stream_seconds']:.1f} s", gib(rss["edges+persistence"])],
                ["  CPU time of both threads (edges + persistence)", f"{run['stream_cpu_seconds']:.1f} s", ""],
                ["  of which producing the streamed steps' edge blocks (main thread)", f"{run['edges_seconds']:.1f} s",
                 ""],
                ["  of which the forest engine, main thread (waiting for forests, last chunk, pairing)",
                 f"{run['forest_seconds']:.1f} s", ""],
                [(f"  large conv and dense steps reduced in place ({len(reduced)}, {run['reducing_threads']} "
                  "threads): wall / CPU"),
                 f"{sum(p['seconds'] for p in reduced):.1f} s / {sum(p['cpu'] for p in reduced):.1f} s", ""],
                [f"  chunk reductions ({len(red)}, second thread, overlapping production)",
                 f"{sum(r['seconds'] for r in red):.1f} s", ""],
                ["per input (activations + edges + persistence)", f"{per_input:.1f} s", ""],
                ["edges with φ > 0 / blocks", f"{run['edges']:,} / {run['blocks']}", ""],
                ["H0 points / persistent subgraph edges", f"{run['h0_points']:,} / {run['subgraph_edges']:,}", ""],
                ["held by the plan: float64 weights / cached edge patterns",
                 f"{gib(run['held']['weights'])} / {gib(run['held']['patterns'])}", ""]]
        if run.get("estimate"):
            rows.append(["onnxtopo.resources.estimate (per input)", "", gib(run["estimate"])])
        heading = f"### {title}, one input, forest engine, chunk_edges = {run['chunk_edges']:,}"
        sections.append(heading + (" (PARTIAL run)" if run["partial"] else "") + "\n\n"
                        + table(["stage", "time", "peak RSS after stage"], rows))
        sections.append("Edges per edge step: streamed as blocks (main thread), read in place by the engine (a "
                        "dense layer below the step-forest size: the time is its blocks' set-up, the passes are "
                        "the engine's), or reduced in place to a forest (graph.reduced_blocks, in a thread: its wall "
                        "and CPU time):\n\n" + table(
                            ["node", "blocks", "edges with φ > 0", "as", "time", "CPU", "ns per edge"],
                            [[p["node"], p["blocks"], f"{p['edges']:,}",
                              ("read in place" if p.get("in_place") else "streamed") if p.get("forest") is None
                              else f"forest of {p['forest']:,}",
                              f"{p['seconds']:.2f} s", "" if p.get("cpu") is None else f"{p['cpu']:.2f} s",
                              f"{p['seconds'] / p['edges'] * 1e9:.1f}" if p["edges"] else "-"]
                             for p in run["per_step"]]))
        if len(red) <= MAX_REDUCTION_ROWS:
            sections.append("Spanning-forest reductions (edges gathered, forest kept, time, peak RSS so far):\n\n"
                            + table(["#", "edges in", "forest out", "time", "peak RSS"],
                                    [[i + 1, f"{r['edges_in']:,}", f"{r['forest']:,}", f"{r['seconds']:.2f} s",
                                      gib(r["peak_rss"])] for i, r in enumerate(red)]))
        elif red:
            seconds = np.array([r["seconds"] for r in red])
            sections.append(f"Spanning-forest reductions: {len(red)}, {seconds.sum():.1f} s in all (median "
                            f"{np.median(seconds):.2f} s, longest {seconds.max():.2f} s), at most "
                            f"{max(r['edges_in'] for r in red):,} edges in, forest of {red[-1]['forest']:,} edges "
                            f"at the end.")
        if not run["partial"] and sort_ref:
            ratio = per_input / sort_ref["seconds"]
            targets.append([f"{title} exact H0 + subgraph, one input, vs np.sort of {sort_ref['n']:,} float32 keys"
                            + (f" (chunks of {sort_ref['chunk']:,}: a lower bound)" if sort_ref["chunk"] else ""),
                            f"{per_input:.1f} s / {sort_ref['seconds']:.1f} s = {ratio:.1f}×",
                            f"≤ {TARGETS['sort_ratio']:.0f}×", verdict(ratio <= TARGETS["sort_ratio"])])
        within = run["peak_rss"] <= TARGETS["large_rss_gib"] * GIB
        targets.append([f"{title} peak RSS (load, plan, session, one input)",
                        f"≥ {gib(run['peak_rss'])} (partial run)" if run["partial"] else gib(run["peak_rss"]),
                        f"≤ {TARGETS['large_rss_gib']:.0f} GiB",
                        "unknown" if run["partial"] and within else verdict(within)])
    done = [r for r in runs if r and not r["partial"]]
    if len(done) > 1:
        sections.append(f"### {title}: chunk size trade-off (AnalysisOptions.chunk_edges)\n\n" + table(
            ["chunk_edges", "reductions", "largest reduction (edges)", "edges + persistence", "peak RSS"],
            [[f"{r['chunk_edges']:,}", len(r["reductions"]),
              f"{max((x['edges_in'] for x in r['reductions']), default=0):,}",
              f"{r['stream_seconds']:.1f} s", gib(r["peak_rss"])] for r in done]))
    if profile_note:
        sections.append(profile_note)
    return targets, sections


def report_static(runs: list) -> str:
    """The static view's costs: the whole computation with the in-place step forests and with
    every step's edges streamed (same process, alternating), the layers alone, and, where run,
    the whole-network graph straight from all its edges (what the steps' forests save)."""
    rows = []
    for r in (r for r in runs if r):
        rows.append([r["model"], f"{r['layers']}", f"{r['edges']:,}", f"{r['static']['median']:.3g} s",
                     f"{r['static']['cpu']:.3g} s", f"{r['streamed']['median']:.3g} s",
                     f"{r['streamed']['cpu']:.3g} s" + ("" if r["streamed_equal"] else " (DIFFERENT)"),
                     f"{r['layers_only']['median']:.3g} s",
                     f"{r['whole_direct']['median']:.3g} s" + ("" if r["whole_equal"] else " (DIFFERENT)")
                     if "whole_direct" in r else "-",
                     f"{r['dionysus']:.3g} s" + ("" if r["dionysus_equal"] else " (DIFFERENT)")
                     if "dionysus" in r else "-", gib(r["peak_rss"]),
                     gib(r["estimate"]), f"{r['mean_normalized']:.4f}", f"{r['static']['n']}"])
    return ("### Static view (onnxtopo.static_persistence, forest engine, no input)\n\n" + table(
        ["model", "layers", "static edges", "layers + whole (wall)", "(CPU, all threads)", "every step streamed (wall)",
         "(CPU)", "layers only", "whole graph in one stream", "dionysus engine", "peak RSS",
         "estimate", "mean normalized NP", "runs"],
        rows))


def report_first_call(compiled: dict | None, cached: dict | None) -> str:
    """The one-off cost of the compiled loops, per machine (compiling) and per process (loading)."""
    rows = [[label, f"{r['import_seconds']:.2f} s", f"{r['first_seconds']:.2f} s", ms(r["second_seconds"])]
            for label, r in (("empty cache: compiles (once per machine and source change)", compiled),
                             ("cache filled: loads the compiled code (once per process)", cached)) if r]
    return ("### First analysis in a new process (numba, compiled loops)\n\n" + table(
        ["cache", "import onnxtopo._compiled", "first persistence() call", "second call (tiny graph)"], rows))


def report_scenarios(scenarios: list) -> str:
    rows = [[label, f"{r['wall']:.1f} s", gib(r["peak_rss"]),
             gib(r["workers_peak_rss"]) if r.get("workers_peak_rss") else "-", f"{r['other_load']:.2f}"]
            for label, r in scenarios if r]
    return ("### Scenarios: each in its own process\n\n" + table(
        ["scenario", "wall", "peak RSS (VmHWM)", "largest worker (ru_maxrss)", "other processes' load (cores)"],
        rows))


def profile_summary(path: str, title: str, top: int = 15, kept: bool = True) -> str:
    """The top functions of a cProfile dump by own time, and onnxtopo's by cumulative time."""
    import io
    import pstats

    def listing(sort, *restrict):
        out = io.StringIO()
        pstats.Stats(path, stream=out).sort_stats(sort).print_stats(*restrict, top)
        body = out.getvalue()
        body = body[body.find("   ncalls"):] if "   ncalls" in body else body
        return body.replace(str(REPO) + "/", "").replace(os.path.dirname(np.__path__[0]) + "/", "").rstrip()

    where = f"`{path}`" if kept else "profile not kept"
    return (f"### Profile: {title} ({where})\n\nBy own time:\n\n```text\n{listing('tottime')}\n```\n\n"
            f"onnxtopo's functions by cumulative time:\n\n```text\n{listing('cumulative', 'onnxtopo/')}\n```")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer inputs; the large models left out unless asked")
    parser.add_argument("--models", help=f"comma-separated, of: ccff, {', '.join(LARGE_MODELS)}, static (the "
                                         "static view of CCFF, AlexNet and ResNet-18) (default: all; --quick: ccff)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results.md"), help="Markdown report")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size of the throughput runs")
    parser.add_argument("--large-timeout", type=float, default=1800,
                        help="seconds before a large model's run is stopped")
    parser.add_argument("--large-chunks", default="",
                        help="extra chunk_edges values to run each large model with (comma-separated), for the "
                             "trade-off")
    parser.add_argument("--wait-quiet", type=float, default=120, metavar="SECONDS",
                        help="before each scenario, wait up to this long for other processes to go idle "
                             "(default: %(default)s; 0: never wait)")
    parser.add_argument("--profile", metavar="DIR", help="also profile the CCFF analysis and the large models into DIR")
    parser.add_argument("--profile-blocks", type=int,
                        help="edge blocks of a profiled large-model run (default: all; 12 after a failed run)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-args", default="{}", help=argparse.SUPPRESS)
    parser.add_argument("--child-profile", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args.child, json.loads(args.child_args), args.child_profile)
        return 0

    models = (args.models or ("ccff" if args.quick else ",".join(["ccff", "static", *LARGE_MODELS]))).split(",")
    unknown = set(models) - {"ccff", "static", *LARGE_MODELS}
    if unknown:
        parser.error(f"unknown model(s): {', '.join(sorted(unknown))}")
    size = {k: v[1] if args.quick else v[0] for k, v in SIZES.items()}
    QUIET_WAIT[0] = args.wait_quiet
    header = f"{machine_line()}  \n{revision_line()}"
    print(header, file=sys.stderr)
    profile_dir = Path(args.profile) if args.profile else None
    if profile_dir:
        profile_dir.mkdir(parents=True, exist_ok=True)

    targets, sections, scenarios, notes = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="onnxtopo-bench-numba-") as cache:
        first = [run_child("first_call", env={"NUMBA_CACHE_DIR": cache}) for _ in range(2)]
    sections.append(report_first_call(*first))
    if "ccff" in models:
        stages = run_child("ccff_stages", n=size["stages"], act_repeats=size["act_repeats"])
        dio = run_child("ccff_dionysus", n=size["dionysus"])
        throughput = [run_child("ccff_throughput", n=size["throughput"], workers=w, batch_size=args.batch_size)
                      for w in (1, 2)]
        scenarios += [("CCFF stages", stages), ("CCFF both engines", dio),
                      *((f"CCFF throughput, {t['workers']} worker(s)", t) for t in throughput if t)]
        t, s = report_ccff(stages, dio, throughput)
        targets += t
        sections += s
        if profile_dir:
            path = str(profile_dir / "ccff-analyze.prof")
            if run_child("ccff_analyze", profile=path, n=size["stages"]):
                notes.append(profile_summary(path, f"CCFF, Analyzer.analyze on {size['stages']} single inputs"))

    if "static" in models:
        runs = [run_child("static", model="CCFF", path=str(CCFF), repeats=10, dionysus=True, direct=True)]
        for model in STATIC_LARGE:
            with tempfile.TemporaryDirectory(prefix="onnxtopo-bench-") as tmp:
                path = os.path.join(tmp, model + ".onnx")
                if run_child("large_build", model=model, path=path):
                    runs.append(run_child("static", timeout=args.large_timeout, model=LARGE_MODELS[model][0],
                                          path=path))
        scenarios += [(f"static view, {r['model']}", r) for r in runs if r]
        sections.append(report_static(runs))

    for model in (m for m in LARGE_MODELS if m in models):
        title = LARGE_MODELS[model][0]
        with tempfile.TemporaryDirectory(prefix="onnxtopo-bench-") as tmp:
            path = os.path.join(tmp, model + ".onnx")
            build = run_child("large_build", model=model, path=path)
            runs = []
            if build:
                chunks = [None] + [int(c) for c in args.large_chunks.split(",") if c]
                runs = [run_child("large_run", timeout=args.large_timeout, path=path, chunk_edges=c)
                        for c in chunks]
                scenarios += [(f"{title}, chunk_edges {r['chunk_edges']:,}", r) for r in runs if r]
            note, failure, sort_ref = "", None, None
            if runs and runs[0] and not runs[0]["partial"]:
                sort_ref = run_child("sort_reference", n=runs[0]["edges"])
                chunked = f" (chunks of {sort_ref['chunk']:,})" if sort_ref and sort_ref["chunk"] else ""
                scenarios.append((f"np.sort of {runs[0]['edges']:,} float32 keys{chunked}", sort_ref))
            if build and not runs[0]:
                failure = f"did not finish (stopped after {args.large_timeout:.0f} s, or failed)"
            if build and (failure or profile_dir):
                # Where the time and memory go; from a partial run when the whole one failed.
                blocks = args.profile_blocks or (12 if failure else None)
                prof = str((profile_dir or Path(tmp)) / (model + ".prof"))
                partial = run_child("large_run", profile=prof, path=path, max_blocks=blocks)
                if partial:
                    what = f"{title}, one input" + (f", first {blocks} edge blocks" if blocks else "")
                    note = profile_summary(prof, what, kept=profile_dir is not None)
                    runs = [partial] if failure else runs
            t, s = report_large(title, build, runs, note, failure, sort_ref)
            targets += t
            sections += s

    text = "\n\n".join([f"# onnxtopo benchmark{' (quick)' if args.quick else ''}", header,
                        "## Targets", table(["target", "measured", "target value", "met"], targets),
                        "## Details", *sections, report_scenarios(scenarios), *notes]) + "\n"
    print(text)
    Path(args.out).write_text(text)
    print(f"written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
