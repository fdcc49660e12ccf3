"""``onnxtopo zoo``: one row per model, bad models recorded not fatal, atomic and resumable tables."""

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxtopo
from onnxtopo import zoo
from onnxtopo.cli import main

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
SAMPLE = MODELS / "mnist-sample.npy"


def cli(*argv) -> int:
    """The exit code of ``onnxtopo ...`` run in-process through the real entry point."""
    return main([str(a) for a in argv])


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def unsupported_model():
    """MatMul -> Hardmax -> MatMul: a Hardmax (piecewise constant: no derivative) feeding a layer."""
    inits = [numpy_helper.from_array(np.ones((4, 3), np.float32), "w1"),
             numpy_helper.from_array(np.ones((3, 2), np.float32), "w2")]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Hardmax", ["h"], ["s"]),
             helper.make_node("MatMul", ["s", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


@pytest.fixture
def collection(tmp_path):
    """A small zoo: two good models in sub-folders, a truncated file and an unsupported model."""
    root = tmp_path / "zoo"
    (root / "torch").mkdir(parents=True)
    (root / "sklearn").mkdir()
    shutil.copy(MODELS / "ccff-relu.onnx", root / "torch" / "ccff.onnx")
    shutil.copy(MODELS / "mlp-sklearn.onnx", root / "sklearn" / "mlp.onnx")
    (root / "broken.onnx").write_bytes((MODELS / "ccff-relu.onnx").read_bytes()[:1000])
    (root / "hardmax.onnx").write_bytes(unsupported_model())
    (root / "notes.txt").write_text("not a model")
    return root


def test_a_zoo_gives_one_row_per_model(collection, tmp_path, capsys):
    out = tmp_path / "zoo.csv"
    code = cli("zoo", collection, "--out", out, "--inputs", SAMPLE, "--max-inputs", "2")
    captured = capsys.readouterr()
    assert code == 1  # some models failed
    assert "4 model(s), 2 ok, 2 failed" in captured.out
    assert "model" in captured.err  # the progress bar, on stderr
    rows = read_rows(out)
    assert list(rows[0]) == list(zoo.COLUMNS)
    assert [r["path"] for r in rows] == ["broken.onnx", "hardmax.onnx", "sklearn/mlp.onnx", "torch/ccff.onnx"]
    by = {r["path"]: r for r in rows}
    assert by["broken.onnx"]["status"] == "error" and by["broken.onnx"]["error_class"] == "BadModelError"
    assert by["broken.onnx"]["exit_code"] == "3" and by["broken.onnx"]["error_message"]
    assert by["hardmax.onnx"]["error_class"] == "UnsupportedOpError" and by["hardmax.onnx"]["exit_code"] == "4"
    assert "Hardmax" in by["hardmax.onnx"]["error_message"] and by["hardmax.onnx"]["op_types"] == "Hardmax;MatMul"
    ccff = by["torch/ccff.onnx"]
    assert ccff["status"] == "ok" and ccff["error_class"] == "" and ccff["exit_code"] == "0"
    assert (ccff["producer"], ccff["producer_version"], ccff["opset"]) == ("pytorch", "2.13.0", "17")
    assert ccff["op_types"] == "Conv;Flatten;MatMul;Relu"
    assert (ccff["layers"], ccff["vertices"], ccff["candidate_edges"]) == ("5", "4230", "456676")
    assert ccff["sha256"] == "4d04a1142fe0b5f2d106b05abea74d257b1f83a9e8b9e7f141b09d08d816ed40"
    assert (ccff["inputs"], ccff["input_source"]) == ("2", "inputs")
    results = onnxtopo.analyze(MODELS / "ccff-relu.onnx", np.load(SAMPLE)[:2])
    assert float(ccff["edges"]) == np.mean([r.n_edges for r in results])
    assert float(ccff["h0_points"]) == np.mean([len(r.h0) for r in results])
    assert float(ccff["h0_essential"]) == 1
    assert float(ccff["h0_total_persistence"]) == pytest.approx(
        np.mean([r.persistence.total_persistence for r in results]), rel=1e-12)
    # The MLP takes (N, 784): the MNIST images do not fit, so it gets the seeded probe.
    mlp = by["sklearn/mlp.onnx"]
    assert (mlp["status"], mlp["inputs"], mlp["input_source"], mlp["producer"]) == ("ok", "2", "probe", "skl2onnx")
    assert "ai.onnx.ml.ArrayFeatureExtractor" in mlp["op_types"].split(";")
    probe = zoo.probe_inputs((784,), np.float32)
    assert probe.shape == (2, 784) and 0 <= probe.min() and probe.max() < 1
    expected = onnxtopo.analyze(MODELS / "mlp-sklearn.onnx", probe)
    assert float(mlp["h0_points"]) == np.mean([len(r.h0) for r in expected])
    assert float(mlp["time_s"]) > 0


def test_a_list_file_names_models_relative_to_its_folder(collection, tmp_path):
    listing = collection / "list.txt"
    listing.write_text("# the good ones\ntorch/ccff.onnx\n\nsklearn/mlp.onnx\n")
    out = tmp_path / "list.csv"
    assert cli("zoo", listing, "--out", out, "--quiet") == 0  # all ok
    rows = read_rows(out)
    assert [r["path"] for r in rows] == ["torch/ccff.onnx", "sklearn/mlp.onnx"]
    assert all(r["input_source"] == "probe" and r["inputs"] == "2" for r in rows)


def test_resume_skips_finished_models_and_a_kill_loses_only_the_current_one(collection, tmp_path, monkeypatch):
    for bad in ("broken.onnx", "hardmax.onnx"):
        (collection / bad).unlink()
    shutil.copy(MODELS / "ccff-sigmoid.onnx", collection / "torch" / "sigmoid.onnx")
    out = tmp_path / "zoo.csv"
    calls = []
    real = zoo.inspect_task

    def killed_at_third(path, *args):
        calls.append(Path(path).name)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as if the run were killed while the third model runs
        return real(path, *args)

    monkeypatch.setattr(zoo, "inspect_task", killed_at_third)
    with pytest.raises(KeyboardInterrupt):
        zoo.run_zoo(collection, out, progress=False)
    assert [r["path"] for r in read_rows(out)] == ["sklearn/mlp.onnx", "torch/ccff.onnx"]  # complete rows
    assert not list(tmp_path.glob(".zoo.csv.*"))  # no temporary file left behind

    calls.clear()
    monkeypatch.setattr(zoo, "inspect_task", lambda path, *args: calls.append(Path(path).name) or real(path, *args))
    rows = zoo.run_zoo(collection, out, resume=True, progress=False)
    assert calls == ["sigmoid.onnx"]
    assert [r["path"] for r in rows] == ["sklearn/mlp.onnx", "torch/ccff.onnx", "torch/sigmoid.onnx"]
    first = read_rows(out)

    # Nothing left to do; then a changed file, or other inputs, are computed again.
    calls.clear()
    zoo.run_zoo(collection, out, resume=True, progress=False)
    assert calls == [] and read_rows(out) == first
    shutil.copy(MODELS / "ccff-relu-dynamo.onnx", collection / "torch" / "ccff.onnx")
    zoo.run_zoo(collection, out, resume=True, progress=False)
    assert calls == ["ccff.onnx"]
    calls.clear()
    zoo.run_zoo(collection, out, resume=True, inputs=np.load(SAMPLE)[:1], progress=False)
    assert sorted(calls) == ["ccff.onnx", "mlp.onnx", "sigmoid.onnx"]
    # Without --resume, everything is computed afresh.
    calls.clear()
    zoo.run_zoo(collection, out, progress=False)
    assert len(calls) == 3


def test_unexpected_exceptions_are_recorded_as_internal_errors(collection, tmp_path, monkeypatch):
    real = zoo.file_analyzer

    def flaky(path, *args):
        if path.endswith("ccff.onnx"):
            raise RuntimeError("boom")
        return real(path, *args)

    monkeypatch.setattr(zoo, "file_analyzer", flaky)
    rows = zoo.run_zoo(collection, tmp_path / "zoo.csv", progress=False)
    row = next(r for r in rows if r["path"] == "torch/ccff.onnx")
    assert (row["status"], row["error_class"], row["exit_code"]) == ("error", "internal error", 70)
    assert row["error_message"] == "RuntimeError: boom"
    assert next(r for r in rows if r["path"] == "sklearn/mlp.onnx")["status"] == "ok"


def test_local_workers_give_the_same_table(collection, tmp_path):
    serial, parallel = tmp_path / "serial.csv", tmp_path / "parallel.csv"
    args = ("--inputs", SAMPLE, "--max-inputs", "3", "--batch-size", "2", "--quiet")
    assert cli("zoo", collection, "--out", serial, *args) == 1
    assert cli("zoo", collection, "--out", parallel, "--workers", "2", *args) == 1
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time_s"} for r in rows]
    assert strip(read_rows(serial)) == strip(read_rows(parallel))


def test_bad_arguments(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("zoo", empty, "--out", tmp_path / "t.csv") == 5
    assert cli("zoo", tmp_path / "nowhere", "--out", tmp_path / "t.csv") == 5
    assert cli("zoo", MODELS, "--out", tmp_path / "t.txt") == 5
    assert cli("zoo", MODELS, "--out", tmp_path / "t.csv", "--inputs", tmp_path / "missing.npy") == 5
    listing = tmp_path / "list.txt"
    listing.write_text("# nothing\n")
    assert cli("zoo", listing, "--out", tmp_path / "t.csv") == 5
    (tmp_path / "t.csv").write_text("garbage\n\x00\x01")
    assert cli("zoo", MODELS, "--out", tmp_path / "t.csv", "--resume") == 5
    with pytest.raises(SystemExit):  # argparse: local workers or a cluster, not both
        cli("zoo", MODELS, "--out", tmp_path / "t.csv", "--workers", "2", "--scheduler", "tcp://x:1")
    lines = capsys.readouterr().err.splitlines()
    assert all(line.startswith("onnxtopo: error: ") for line in lines[:6])  # one line per error
    assert "not allowed with argument" in lines[-1]


def test_parquet_output(collection, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "zoo.parquet"
    assert cli("zoo", collection, "--out", out, "--quiet") == 1
    table = pq.read_table(out)
    assert table.column_names == list(zoo.COLUMNS)
    assert table.column("vertices").to_pylist()[-1] == 4230
    calls = zoo.run_zoo(collection, out, resume=True, progress=False)
    assert [r["path"] for r in calls] == table.column("path").to_pylist()


def test_a_local_run_never_imports_dask(tmp_path):
    script = (f"import sys; from onnxtopo import zoo; "
              f"zoo.run_zoo({str(MODELS)!r}, {str(tmp_path / 't.csv')!r}, progress=False); "
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    proc = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
    assert len(read_rows(tmp_path / "t.csv")) == len(list(MODELS.rglob("*.onnx")))  # sub-folders too
