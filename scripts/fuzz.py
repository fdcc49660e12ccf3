#!/usr/bin/env python
"""Fuzz onnxtopo: mutated models, mutated inputs and the CLI, checked against the contract.

The contract ("Reliability and security"): every outcome of ``onnxtopo.inspect(model)``,
``onnxtopo.analyze(model, x)`` and the CLI is either a result or a documented error (an
``OnnxtopoError`` subclass; for the CLI one line ``onnxtopo: error: ...`` and its documented
exit code, never a traceback, never exit 70), within a time bound; never a crash, never a hang.

This is the stand-alone command line over the generators of ``tests/fuzzing.py`` (which
``tests/test_fuzz.py`` drives with hypothesis). Every generator takes a ``random.Random``-like
``rng`` and nothing else random, so a case is fully determined by its seed::

    python scripts/fuzz.py                     # 3000 cases, a summary at the end
    python scripts/fuzz.py --cases 500 --kinds proto,bytes --start 10000
    python scripts/fuzz.py --replay 1234       # rerun one case in-process, with its traceback

Outside pytest each case runs in a worker subprocess (restarted when it dies) under a memory
limit, so a crash of the interpreter or a hang is recorded with its seed instead of ending the
run. Each kind of contract violation is saved under ``--save`` (default /tmp/onnxtopo-fuzz/) as
the mutated model, the inputs, a ``report.txt`` with the traceback and a ``repro.py``.

Case kinds (seed ``s`` is of kind ``kinds[s % len(kinds)]``; its case is built from
``random.Random(s)``):

* ``bytes``:  a small model's serialized bytes with random flips/insertions/deletions/truncation;
* ``proto``:  structure-aware mutations of a small model (op types, attributes, initializers,
  tensor names, input dims and dtype, graph inputs/outputs, opsets, external data);
* ``inputs``: a valid model with random input arrays (shapes, dtypes, NaN/Inf, huge values);
* ``cli``:    ``onnxtopo.cli.main`` in-process on mutated models, input files and options;
* ``net``:    a random small architecture valid by onnx's shape inference (Conv/ConvTranspose/pool
  geometry, groups, pads, layouts, residual sums, normalizations, softmaxes, reductions, resizes,
  selections, products of two activations, Einsum, a few unsupported ops), sometimes mutated once more.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from fuzzing import KINDS, SCRIPT_SEEDS, TIME_BOUND, Case, Outcome, execute, make_case, save_case

# --------------------------------------------------------------------------------------------
# The stand-alone fuzzer: worker subprocesses, summary, saved reproductions.
# --------------------------------------------------------------------------------------------


def kind_of(seed: int, kinds=KINDS) -> str:
    return kinds[seed % len(kinds)]


def build_seed(seed: int, kinds=KINDS) -> tuple[Case, random.Random]:
    rng = random.Random(seed)
    return make_case(kind_of(seed, kinds), rng, SCRIPT_SEEDS, seed), rng


def run_seed(seed: int, kinds=KINDS, workdir: Path | None = None, bound: float = TIME_BOUND) -> Case:
    case, rng = build_seed(seed, kinds)
    tmp = Path(tempfile.mkdtemp(prefix=f"case-{seed}-", dir=workdir))
    try:
        return execute(case, tmp, rng, bound)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _worker(conn, kinds, memory_limit, workdir):
    """Worker process: receive seeds, send back (outcomes, mutations, base)."""
    if memory_limit:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    while True:
        seed = conn.recv()
        if seed is None:
            return
        try:
            case = run_seed(seed, kinds, Path(workdir))
            conn.send(([o.__dict__ for o in case.outcomes], case.mutations, case.base))
        except Exception as exc:  # noqa: BLE001 - a bug of the fuzzer itself, not of onnxtopo
            bug = Outcome("fuzzer", "harness", type(exc).__name__, 0.0, str(exc)[:300], traceback.format_exc())
            conn.send(([bug.__dict__], [], ""))


class Worker:
    """A worker subprocess; a case that kills it or hangs is recorded as such, and a new one
    starts for the next case."""

    def __init__(self, kinds, memory_limit, workdir, hang_after):
        import multiprocessing

        self.ctx = multiprocessing.get_context("spawn")
        self.args = (kinds, memory_limit, workdir)
        self.hang_after = hang_after
        self.proc = self.conn = None

    def _start(self):
        self.conn, child = self.ctx.Pipe()
        self.proc = self.ctx.Process(target=_worker, args=(child, *self.args))
        self.proc.start()

    def run(self, seed: int):
        if self.proc is None or not self.proc.is_alive():
            self._start()
        self.conn.send(seed)
        start = time.monotonic()
        try:
            while not self.conn.poll(1.0):
                if not self.proc.is_alive():
                    raise EOFError
                if time.monotonic() - start > self.hang_after:
                    self.stop()
                    return [Outcome("worker", "timeout", "hang", time.monotonic() - start,
                                    f"no answer after {self.hang_after:.0f} s; worker killed")], [], ""
            outcomes, mutations, base = self.conn.recv()
            return [Outcome(**o) for o in outcomes], mutations, base
        except (EOFError, OSError):
            self.proc.join(5)
            code = self.proc.exitcode
            self.stop()
            return [Outcome("worker", "crash", f"exit {code}", time.monotonic() - start,
                            f"the interpreter died (exit code {code})")], [], ""

    def stop(self):
        if self.proc is not None and self.proc.is_alive():
            self.proc.kill()  # our own worker, by its handle
            self.proc.join(5)
        self.proc = None

    def close(self):
        if self.proc is not None and self.proc.is_alive():
            self.conn.send(None)
            self.proc.join(10)
        self.stop()


def save_violation(seed: int, kinds, save: Path, outcomes) -> Path:
    """Rebuild the case (deterministic from its seed) and save it under ``save``."""
    case, _ = build_seed(seed, kinds)
    case.outcomes = outcomes
    return save_case(case, save / f"seed-{seed}-{case.kind}")


def _where(outcome: Outcome) -> str:
    """Where a violation comes from: the innermost onnxtopo frame of its traceback, or for the
    CLI the exception its internal error names (or its first complaint)."""
    frames = [line.strip() for line in outcome.trace.splitlines() if line.strip().startswith("File ")]
    ours = [f for f in frames if "/onnxtopo/" in f]
    if outcome.call.startswith("cli") and not ours:
        named = re.search(r"onnxtopo: internal error: (\w+)", outcome.message)
        if named:
            return named.group(1)
        return re.sub(r" \(.*", "", outcome.message.split(";")[0].split(":")[0])
    if ours or frames:
        return re.sub(r"^File \"[^\"]*/(onnxtopo/[^\"]*)\"", r"\1", (ours or frames)[-1])
    return outcome.message.split(":")[0]


def summarize(results, elapsed, save, kinds):
    counts: dict[str, int] = {}
    slowest = (-1.0, None, None)
    groups: dict[str, list] = {}
    for seed, outcomes, mutations, base in results:
        for o in outcomes:
            call_name = o.call.split()[0]
            if o.kind == "error":
                label = o.name
            elif o.kind == "result":
                label = "exit 0" if call_name == "cli" else "result" if o.name == "result" else f"result, {o.name}"
            else:
                label = f"{o.kind.upper()} {o.name}"
            key = f"{call_name:8s} {label}"
            counts[key] = counts.get(key, 0) + 1
            if o.seconds > slowest[0]:
                slowest = (o.seconds, seed, o)
        bad = [o for o in outcomes if o.violation]
        if bad:
            o = bad[0]
            key = f"{o.call.split()[0]}: {o.kind} {o.name} at {_where(o)}"
            groups.setdefault(key, []).append((seed, bad, mutations, base))
    n_bad = sum(len(items) for items in groups.values())
    print(f"\n=== {len(results)} cases in {elapsed:.0f} s (kinds: {', '.join(kinds)}) ===")
    print("outcomes by call and class:")
    for key in sorted(counts):
        print(f"  {key:70s} {counts[key]:6d}")
    if slowest[1] is not None:
        print(f"slowest call: seed {slowest[1]}: {slowest[2].describe()[:300]}")
    print(f"contract violations: {n_bad} case(s) in {len(groups)} group(s)")
    for key, items in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        seed, bad, mutations, base = min(items, key=lambda item: (len(item[2]), item[0]))
        try:
            folder = save_violation(seed, kinds, save, bad)
        except Exception as exc:  # noqa: BLE001 - e.g. a fuzzer bug: report it, go on
            folder = f"(not saved: {type(exc).__name__}: {exc})"
        print(f"\n[{len(items)} case(s)] {key}")
        print(f"  seeds: {', '.join(str(s) for s, *_ in items[:15])}{' ...' if len(items) > 15 else ''}")
        print(f"  smallest: seed {seed} (base {base}): {'; '.join(mutations)[:300]}")
        for o in bad:
            print(f"    {o.describe()[:400]}")
        print(f"  saved: {folder}/ (model.onnx, repro.py, report.txt); rerun: python scripts/fuzz.py --replay {seed}")
    return n_bad


def replay(seed: int, kinds, save: Path) -> Case:
    case, rng = build_seed(seed, kinds)
    folder = save / f"seed-{seed}-{case.kind}"
    if folder.exists():
        shutil.rmtree(folder)
    execute(case, folder, rng)
    print(f"seed {seed}, kind {case.kind}, base model {case.base}; files in {folder}")
    for m in case.mutations:
        print("  mutation:", m)
    for o in case.outcomes:
        print(("VIOLATION " if o.violation else "ok        ") + o.describe()[:1000])
        if o.trace:
            print(o.trace)
    return case


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=3000, help="number of cases (default: %(default)s)")
    parser.add_argument("--start", type=int, default=0, help="first seed (default: %(default)s)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated case kinds (default: all)")
    parser.add_argument("--save", type=Path, default=Path("/tmp/onnxtopo-fuzz"),
                        help="where violations are saved (default: %(default)s)")
    parser.add_argument("--memory-limit", type=float, default=4.0,
                        help="address-space limit of the worker, GiB (0: none; default: %(default)s)")
    parser.add_argument("--hang-after", type=float, default=120.0,
                        help="seconds after which a case counts as a hang and its worker is killed")
    parser.add_argument("--replay", type=int, metavar="SEED", help="run one seed in this process, with tracebacks")
    args = parser.parse_args(argv)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    if not kinds or any(k not in KINDS for k in kinds):
        parser.error(f"kinds must be among {KINDS}")
    args.save.mkdir(parents=True, exist_ok=True)
    if args.replay is not None:
        return 1 if replay(args.replay, kinds, args.save).violations else 0

    workdir = tempfile.mkdtemp(prefix="onnxtopo-fuzz-work-")
    worker = Worker(kinds, int(args.memory_limit * (1 << 30)), workdir, args.hang_after)
    results = []
    start = time.monotonic()
    try:
        for i, seed in enumerate(range(args.start, args.start + args.cases)):
            outcomes, mutations, base = worker.run(seed)
            results.append((seed, outcomes, mutations, base))
            for o in outcomes:
                if o.violation:
                    print(f"seed {seed}: VIOLATION {o.describe()[:200]!r}", flush=True)
            if (i + 1) % 500 == 0:
                print(f"... {i + 1} cases, {time.monotonic() - start:.0f} s", flush=True)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        worker.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if summarize(results, time.monotonic() - start, args.save, kinds) else 0


if __name__ == "__main__":
    sys.exit(main())
