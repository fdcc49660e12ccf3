"""The executor layer: where tasks run, values shared once per worker, the per-process analyzer cache."""

import dataclasses
import hashlib
import operator
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

import onnxtopo
from onnxtopo import executors
from onnxtopo.api import AnalysisOptions
from onnxtopo.executors import ProcessExecutor, SerialExecutor, Shared

from conftest import assert_same_persistence, make_model

MODELS = Path(__file__).resolve().parents[1] / "models"


@pytest.fixture(autouse=True)
def empty_cache():
    executors.clear_analyzers()
    yield
    executors.clear_analyzers()


def test_the_cache_builds_once_per_key_and_keeps_the_most_recent_few():
    built = []

    def build(name):
        return lambda: built.append(name) or object()

    first = executors.cached_analyzer(("a",), build("a"))
    assert executors.cached_analyzer(("a",), build("a")) is first and built == ["a"]
    for name in "bcd"[:executors.ANALYZER_CACHE_SIZE]:
        executors.cached_analyzer((name,), build(name))
    assert executors.cached_analyzer(("a",), build("a")) is not first  # evicted: the least recently used
    assert built == ["a", *"bcd"[:executors.ANALYZER_CACHE_SIZE], "a"]
    executors.clear_analyzers()
    executors.cached_analyzer(("a",), build("a"))
    assert built[-2:] == ["a", "a"]


def test_a_normalized_model_is_planned_once_per_process_and_plan_options():
    plan = onnxtopo.inspect(MODELS / "resnet-mini.onnx")
    data = plan.model.SerializeToString()
    digest = hashlib.sha256(data).hexdigest()
    window = executors.normalized_analyzer(data, digest, plan.options)
    assert executors.normalized_analyzer(b"not read on a hit", digest, plan.options) is window
    rule = dataclasses.replace(plan.options, maxpool_rule="argmax")
    argmax = executors.normalized_analyzer(data, digest, rule)
    assert argmax is not window and argmax.plan.options == rule


def test_file_analyzers_follow_the_file_content(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes((MODELS / "ccff-relu.onnx").read_bytes())
    first = executors.file_analyzer(str(path), "digest-1", None)
    assert executors.file_analyzer(str(path), "digest-1", None) is first
    assert executors.file_analyzer(str(path), "digest-2", None) is not first


def test_the_serial_executor_runs_tasks_in_order_when_asked():
    calls = []
    with SerialExecutor() as executor:
        assert executor.share(b"big") == b"big"
        futures = [executor.submit(lambda k: calls.append(k) or k * k, k) for k in range(3)]
        assert calls == []  # nothing runs before a result is waited for
        done = [executor.wait_first(set(futures)) for _ in futures]
    assert calls == [0, 1, 2] and [f.result() for [f] in done] == [0, 1, 4]


def test_local_processes_receive_shared_values_once_and_keep_task_order():
    with pytest.raises(ValueError, match="workers must be at least 1"):
        ProcessExecutor(0)
    with ProcessExecutor(2) as executor:
        handle = executor.share(b"model bytes")
        assert isinstance(handle, Shared)
        futures = [executor.submit(executors.shared, handle) for _ in range(3)]
        futures += [executor.submit(operator.mul, k, k) for k in range(5)]
        with pytest.raises(RuntimeError, match="before the first submit"):
            executor.share(b"late")
        assert [f.result() for f in futures] == [b"model bytes"] * 3 + [0, 1, 4, 9, 16]
        assert executor.wait_first(set(futures)) == set(futures)


def test_a_batch_task_gives_what_the_analyzer_gives():
    x = np.load(MODELS / "mnist-sample.npy")[:3]
    analyzer = onnxtopo.Analyzer(MODELS / "ccff-relu.onnx")
    data = analyzer.plan.model.SerializeToString()
    opts = AnalysisOptions(h1=True)
    task = executors.analyze_batch_task(data, hashlib.sha256(data).hexdigest(), analyzer.plan.options, x, 7, opts,
                                        False)
    direct = analyzer.analyze_batch(x, 7, opts)
    assert [r.index for r in task] == [7, 8, 9]
    for a, b in zip(direct, task, strict=True):
        assert a.summary() == b.summary()
        np.testing.assert_array_equal(a.h1, b.h1)


def test_worker_processes_skip_failing_inputs_in_place():
    """errors="skip" across processes: the Failure stands at its input's index, as in a serial run."""
    node = helper.make_node("LayerNormalization", ["x", "scale"], ["y"], epsilon=0.0, name="the_op")
    model = make_model([node], (3, 4), {"scale": np.ones(4, np.float32)})
    x = np.random.default_rng(44).normal(size=(5, 3, 4)).astype(np.float32)
    x[3, 0] = 0.5  # a constant row: no variance, an undefined derivative
    analyzer = onnxtopo.Analyzer(model)
    serial = list(analyzer.analyze(x, batch_size=2, errors="skip"))
    parallel = list(analyzer.analyze(x, batch_size=2, workers=2, errors="skip"))
    assert [type(r).__name__ for r in parallel] == ["AnalysisResult"] * 3 + ["Failure", "AnalysisResult"]
    assert [r.index for r in parallel] == list(range(5))
    assert parallel[3] == serial[3] and "'the_op'" in parallel[3].error
    for a, b in zip(serial, parallel, strict=True):
        if isinstance(a, onnxtopo.AnalysisResult):
            np.testing.assert_array_equal(a.h0, b.h0)
    with pytest.raises(onnxtopo.BadInputError, match="'the_op'"):
        list(analyzer.analyze(x, batch_size=2, workers=2))


@pytest.mark.skipif(not ProcessExecutor.FORK, reason="forked workers on Linux only")
def test_forked_processes_inherit_shared_values_without_pickling_them():
    def made_here():  # a local function: pickle refuses it
        return "made in the parent"

    with ProcessExecutor(2, fork=True) as executor:
        handle = executor.share(made_here)
        futures = [executor.submit(_call_shared, handle) for _ in range(3)]
        assert [f.result() for f in futures] == ["made in the parent"] * 3


def _call_shared(handle):
    return executors.shared(handle)()


def test_a_forked_worker_keeps_its_parents_cached_analyzers_out_of_its_cache():
    parent_analyzer = executors.cached_analyzer(("parent",), object)
    executors._receive_forked({})
    try:
        assert executors._INHERITED == [parent_analyzer]  # referenced: never destroyed in the child
        assert executors.cached_analyzer(("parent",), lambda: "built anew") == "built anew"
    finally:
        executors._INHERITED.clear()


def test_a_batch_task_given_the_plan_itself_opens_its_own_session():
    x = np.load(MODELS / "mnist-sample.npy")[:2]
    analyzer = onnxtopo.Analyzer(MODELS / "ccff-relu.onnx")
    opts = AnalysisOptions(h1=True)
    task = executors.analyze_batch_task(analyzer.plan, "digest", analyzer.plan.options, x, 0, opts, False)
    worker = executors.normalized_analyzer(b"not read on a hit", "digest", analyzer.plan.options)
    assert worker.plan is analyzer.plan and worker.runner.session is not analyzer.runner.session
    for a, b in zip(analyzer.analyze_batch(x, 0, opts), task, strict=True):
        assert a.summary() == b.summary()
        np.testing.assert_array_equal(a.h1, b.h1)


@pytest.mark.parametrize("fork", [False, True])
def test_parallel_analysis_with_spawned_or_forked_workers_gives_the_serial_results(monkeypatch, fork):
    monkeypatch.setattr(ProcessExecutor, "FORK", fork and ProcessExecutor.FORK)
    x = np.load(MODELS / "mnist-sample.npy")[:7]
    analyzer = onnxtopo.Analyzer(MODELS / "ccff-relu.onnx")
    serial = list(analyzer.analyze(x, batch_size=3, h1=True))
    for batch_size in (1, 3):
        parallel = list(analyzer.analyze(x, batch_size=batch_size, workers=2, h1=True))
        assert [r.index for r in parallel] == list(range(7))
        for a, b in zip(serial, parallel, strict=True):
            assert_same_persistence(a.persistence, b.persistence)
