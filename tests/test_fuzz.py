"""Fuzzing: files nobody here wrote must give a result or a documented error, never anything else.

The contract (issue "Reliability and security"): every outcome of ``onnxtopo.inspect(model)``,
``onnxtopo.analyze(model, x)`` and the CLI is a result or an ``OnnxtopoError`` (the CLI: one
``onnxtopo: error: ...`` line and a documented exit code, never a traceback, never exit 70),
within a time bound. ValueError & co. are bugs here: every argument these tests pass is a valid
Python argument; only the files and arrays are hostile.

The generators live in ``tests/fuzzing.py`` (``scripts/fuzz.py`` runs them for thousands of cases
outside pytest, see its docstring); hypothesis drives them through ``st.randoms()``, so a failing case
shrinks and is replayed from ``.hypothesis/`` until fixed. Each call must end within
``TIME_BOUND`` seconds (measured, no signals); each example runs under an address-space cap so
that a model asking for gigabytes fails fast instead of exhausting the machine.
"""

from __future__ import annotations

import hashlib
import random
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from onnx import helper

import onnxtopo

import fuzzing as fuzz

TIME_BOUND = 20.0  # seconds per call (inspect, analyze, one CLI run)

FUZZ = settings(
    # The same cases on every run, so that CI is reproducible; scripts/fuzz.py explores new seeds.
    derandomize=True,
    deadline=10_000,  # ms per example
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                           HealthCheck.data_too_large],
)
RANDOMS = st.randoms(use_true_random=False)


class Seed(random.Random):
    """An explicit example: the case ``make_case(kind, random.Random(n))`` builds (scripts/fuzz.py
    builds its cases the same way). Each one below broke the contract when these tests were
    written, as the comment beside it says."""

    def __init__(self, n: int):
        super().__init__(n)
        self.n = n

    def __repr__(self):
        return f"Seed({self.n})"


def _fresh(rng):
    """A Seed restarted (should hypothesis run an explicit example twice); any other rng as is."""
    if isinstance(rng, Seed):
        rng.seed(rng.n)
    return rng


seed = Seed
SAVE = Path(tempfile.gettempdir()) / "onnxtopo-fuzz"


def run_case(kind: str, rng):
    """Build a case of ``kind`` from ``rng``, run it in a fresh folder, return it with outcomes."""
    case = fuzz.make_case(kind, _fresh(rng), fuzz.SEEDS)
    with tempfile.TemporaryDirectory(prefix="onnxtopo-fuzz-") as folder, fuzz.address_space_cap():
        fuzz.execute(case, Path(folder), rng, bound=TIME_BOUND)
    return case


def assert_contract(case):
    bad = case.violations
    if bad:  # keep the case's files for a reproduction outside pytest
        digest = hashlib.sha1(case.model + repr(case.mutations).encode()).hexdigest()[:10]
        saved = f"saved: {fuzz.save_case(case, SAVE / f'pytest-{case.kind}-{digest}')}/ (model.onnx, repro.py)"
    assert not bad, "\n".join(
        [f"{case.kind} case on the {case.base} model broke the contract; {saved}",
         *("mutation: " + m for m in case.mutations)]
        + [f"{o.describe()}\n{o.trace}" for o in bad]
    )


# (a) Mutated model bytes: flips, insertions, deletions, truncations of a small model's protobuf.
@settings(FUZZ, max_examples=600)
@given(rng=RANDOMS)
@example(rng=seed(2146))  # Pad's pads initializer flipped to a huge value: MemoryError in op_layout.pad
def test_mutated_model_bytes(rng):
    assert_contract(run_case("bytes", rng))


# (b) Structure-aware mutations: op types, attributes, initializers, names, input dims and type,
# graph inputs/outputs, opsets, external data locations.
@settings(FUZZ, max_examples=1000)
@given(rng=RANDOMS)
@example(rng=seed(73))  # external data location longer than NAME_MAX: OSError in model._check_location
@example(rng=seed(111))  # external data location holding a NUL byte: ValueError in model._check_location
@example(rng=seed(968))  # input axis of 2**31: MemoryError in plan.build_plan (fresh), no ResourceLimitError
@example(rng=seed(57))  # Conv left with a 1-D tensor as kernel: ValueError in op_conv (unpacking its shape)
def test_mutated_protos(rng):
    assert_contract(run_case("proto", rng))


# (b') Random small architectures valid by onnx's shape inference: the walker's rules on
# geometries, layouts and attributes no exporter here produced, sometimes mutated once more.
@settings(FUZZ, max_examples=600)
@given(rng=RANDOMS)
@example(rng=seed(1500))  # Squeeze of the (dynamic) batch axis: ValueError in op_layout.squeeze
@example(rng=seed(2539))  # residual Add of shapes that do not broadcast: ValueError in plan._check_distinct_operands
@example(rng=seed(663))  # Concat with axis -2**40 (onnxruntime accepts it): ValueError in op_layout.concat
@example(rng=seed(2648))  # input axis of 2**63 - 1: ValueError in plan.build_plan (fresh)
@example(rng=seed(10919))  # Sum of (3, 1) and (3,) operands: broadcast check ignored the batch axis
def test_random_architectures(rng):
    assert_contract(run_case("net", rng))


def test_flatten_negative_axis():
    """Found by the random architectures (seed 70120 once Flatten met an Einsum): Flatten with
    axis -1 was planned as axis r, an extra axis of 1, and the next layer refused a shape
    onnxruntime does not give. Axis -1 of a rank-2 tensor keeps its rows: samples stay apart."""
    nodes = [helper.make_node("Flatten", ["x"], ["f"], axis=-1),
             helper.make_node("MatMul", ["f", "w"], ["y"])]
    model = fuzz._model(nodes, [fuzz._vi("x", ["N", 5])], [fuzz._vi("y", ["N", 2])], [fuzz._init("w", (5, 2), 1)])
    assert [layer.shape for layer in onnxtopo.inspect(model).layers] == [(5,), (2,)]
    (result,) = onnxtopo.analyze(model, np.random.default_rng(0).random((1, 5)).astype(np.float32))
    assert result.n_edges == 10


# (c) Random input arrays for valid models: shapes, dtypes (object arrays too), NaN/Inf, 1e30.
@settings(FUZZ, max_examples=400)
@given(rng=RANDOMS)
def test_random_inputs(rng):
    assert_contract(run_case("inputs", rng))


# (d) The CLI in-process: mutated models, input files and --out folders, odd options. Output is
# captured with capfd rather than capsys: onnxruntime's C++ logger writes to file descriptor 2
# directly, and those lines are part of what a user sees.
@settings(FUZZ, max_examples=250)
@given(rng=RANDOMS)
@example(rng=seed(68))  # --memory-limit infG: OverflowError escapes argparse, traceback
@example(rng=seed(33))  # --percentile nan: ValueError, exit 70 instead of exit 2
@example(rng=seed(23))  # --out holding an empty run.json: JSONDecodeError, exit 70
@example(rng=seed(24))  # --out holding run.json = []: AttributeError, exit 70
@example(rng=seed(17))  # --out holding a run.json that is not UTF-8: UnicodeDecodeError, exit 70
@example(rng=seed(11))  # --out/run.json is a directory: IsADirectoryError, exit 70
@example(rng=seed(19))  # --out is a file: FileExistsError, exit 70
@example(rng=seed(400))  # .npy header corrupted: tokenize.TokenError, exit 70
@example(rng=seed(30))  # .npz member corrupted: zlib.error, exit 70
@example(rng=seed(1131))  # .npy truncated to nothing: EOFError, exit 70
@example(rng=seed(261))  # node name that is not UTF-8 (bytes in Python): TypeError, exit 70
@example(rng=seed(234))  # onnxruntime fails at run time: its own log lines on stderr besides ours
def test_cli(rng, capfd):
    from onnxtopo import cli

    case = fuzz.make_case("cli", _fresh(rng), fuzz.SEEDS)
    with tempfile.TemporaryDirectory(prefix="onnxtopo-fuzz-") as folder, fuzz.address_space_cap():
        paths = fuzz.write_case(case, Path(folder))
        for argv in fuzz.cli_argvs(case, paths):
            capfd.readouterr()
            start = time.monotonic()
            try:
                code = cli.main(argv)
            except SystemExit as exc:  # argparse refusing the command line
                code = exc.code if isinstance(exc.code, int) else 2
            except BaseException:  # noqa: BLE001 - main must not raise; judged below
                traceback.print_exc()
                code = "raised"
            seconds = time.monotonic() - start
            captured = capfd.readouterr()
            case.outcomes.append(fuzz.judge_cli(argv, code, captured.out, captured.err, seconds, TIME_BOUND,
                                                fuzz.cli_label(argv, folder)))
    assert_contract(case)
