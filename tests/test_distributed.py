"""Dask: the zoo and analyze on a LocalCluster give what the local runs give."""

import csv
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import onnxtopo
from onnxtopo import zoo
from onnxtopo.distributed import ClusterError, analyze_on_dask
from onnxtopo.errors import BadInputError

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
SAMPLE = MODELS / "mnist-sample.npy"


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.ERROR) as cluster:
        yield cluster


def read_rows(path):
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k != "time_s"} for row in csv.DictReader(f)]


def test_zoo_on_the_cluster_gives_the_local_table(cluster, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(MODELS, models, ignore=shutil.ignore_patterns("build", "families", "*.md", "*.npz", "*.npy"))
    (models / "broken.onnx").write_bytes(b"not a model")
    local, remote = tmp_path / "local.csv", tmp_path / "remote.csv"
    options = {"inputs": np.load(SAMPLE), "max_inputs": 5, "batch_size": 2, "progress": False}
    zoo.run_zoo(models, local, **options)
    rows = zoo.run_zoo(models, remote, scheduler=cluster.scheduler_address, **options)
    assert read_rows(remote) == read_rows(local)
    assert len(rows) == 8 and sum(r["status"] == "ok" for r in rows) == 7
    assert next(r for r in rows if r["path"] == "broken.onnx")["error_class"] == "BadModelError"
    # The CLI path, with --resume: nothing is left to do.
    from onnxtopo.cli import main

    assert main(["zoo", str(models), "--out", str(remote), "--inputs", str(SAMPLE), "--max-inputs", "5",
                 "--batch-size", "2", "--scheduler", cluster.scheduler_address, "--resume", "--quiet"]) == 1  # broken model
    assert read_rows(remote) == read_rows(local)


def test_analyze_on_dask_gives_the_local_diagrams(cluster):
    x = np.load(SAMPLE)
    local = onnxtopo.analyze(MODELS / "ccff-relu.onnx", x, h1=True)
    model = (MODELS / "ccff-relu.onnx").read_bytes()  # bytes: the workers need no access to the file
    remote = analyze_on_dask(model, x, cluster.scheduler_address, batch_size=3, h1=True)
    assert [r.index for r in remote] == list(range(len(x)))
    for a, b in zip(local, remote):
        np.testing.assert_array_equal(a.h0, b.h0)
        np.testing.assert_array_equal(a.h1, b.h1)
        np.testing.assert_array_equal(a.subgraph.src, b.subgraph.src)
        np.testing.assert_array_equal(a.subgraph.phi, b.subgraph.phi)
        assert a.summary() == b.summary()
    # A client works as well as an address, and a path as well as bytes.
    with distributed.Client(cluster.scheduler_address) as client:
        again = analyze_on_dask(MODELS / "ccff-relu.onnx", x[:2], client, vertices="inf")
    for a, b in zip(onnxtopo.analyze(MODELS / "ccff-relu.onnx", x[:2], vertices="inf"), again):
        np.testing.assert_array_equal(a.h0, b.h0)


def test_errors_are_onnxtopo_errors(cluster, monkeypatch):
    with pytest.raises(BadInputError):  # validated before anything is sent
        analyze_on_dask(MODELS / "ccff-relu.onnx", np.zeros((2, 3)), cluster.scheduler_address)
    x = np.load(SAMPLE)[:2].copy()
    with pytest.raises(ValueError):
        analyze_on_dask(MODELS / "ccff-relu.onnx", x, cluster.scheduler_address, engine="nope")
    monkeypatch.setattr("onnxtopo.executors.CONNECT_TIMEOUT", 1)
    with pytest.raises(ClusterError, match="cannot reach the Dask scheduler"):
        analyze_on_dask(MODELS / "ccff-relu.onnx", x, "tcp://127.0.0.1:9")
    assert ClusterError.exit_code == 8


def test_errors_in_workers_come_back_as_themselves(cluster):
    x = np.load(SAMPLE)[:4].copy()
    x[2] = 3e38  # finite, but the activations overflow to inf in the worker
    with pytest.raises(BadInputError, match="NaN or infinite"):
        analyze_on_dask(MODELS / "ccff-relu.onnx", x, cluster.scheduler_address, batch_size=2)
    results = analyze_on_dask(MODELS / "ccff-relu.onnx", x, cluster.scheduler_address, batch_size=2, errors="skip")
    assert [type(r).__name__ for r in results] == ["AnalysisResult", "AnalysisResult", "Failure", "AnalysisResult"]
    assert results[2].index == 2 and results[2].exit_code == 5
