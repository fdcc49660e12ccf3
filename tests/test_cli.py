"""The command line, end to end: the shipped model, output files, and clear errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "ccff-relu.onnx"
SAMPLE = REPO / "models" / "mnist-sample.npy"


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "onnxtopo.cli", *map(str, args)],
                          check=False, capture_output=True, text=True, cwd=cwd, timeout=600)


def assert_clean_error(proc, code, *fragments):
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("onnxtopo: error: ")
    for fragment in fragments:
        assert fragment in proc.stderr, (fragment, proc.stderr)


def test_inspect_prints_the_plan():
    proc = run("inspect", MODEL)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    rows = [line.split() for line in lines if line.strip()[:1].isdigit()]
    assert [r[2] for r in rows[1:]] == ["Conv", "Conv", "MatMul", "MatMul"]
    # Neuron and candidate edge counts of CCFF, worked out from its architecture.
    assert rows[1][-2:] == ["1,728", f"{24 * 24 * 3 * 25:,}"]
    assert rows[2][-2:] == ["1,452", f"{22 * 22 * 3 * 27:,}"]
    assert rows[3][-2:] == ["256", f"{1452 * 256:,}"]
    assert rows[4][-2:] == ["10", f"{256 * 10:,}"]
    assert f"{784 + 1728 + 1452 + 256 + 10:,} vertices" in proc.stdout


def test_analyze_writes_diagrams_and_subgraphs(tmp_path):
    x = np.load(SAMPLE)[:2]
    inputs = tmp_path / "x.npz"
    np.savez(inputs, images=x)
    out = tmp_path / "out"
    proc = run("analyze", MODEL, "--inputs", inputs, "--out", out, "--h1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("input ") >= 2 and "H0" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert [layer["size"] for layer in summary["layers"]] == [784, 1728, 1452, 256, 10]
    assert len(summary["results"]) == 2
    for i, row in enumerate(summary["results"]):
        data = np.load(out / row["file"])
        h0, h1 = data["h0"], data["h1"]
        assert h0.shape[1] == 2 and h1.shape[1] == 2
        finite = np.isfinite(h0[:, 1])
        assert (h0[finite, 0] > h0[finite, 1]).all()
        assert np.isinf(h0[~finite, 1]).sum() == row["h0_essential_points"] >= 1
        assert np.isinf(h1[:, 1]).all()
        # A graph's Euler characteristic: V - E = (#components) - (#independent cycles).
        v, e = row["vertices_in_complex"], row["edges"]
        assert v - e == row["h0_essential_points"] - len(h1)
        assert len(data["subgraph_src"]) == v - row["h0_essential_points"] == row["subgraph_edges"]
        assert json.loads((out / f"input-{i:05d}.json").read_text())["edges"] == e


@pytest.fixture
def unsupported_model(tmp_path):
    w = numpy_helper.from_array(np.ones((4, 3), np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"], name="fc1"),
             helper.make_node("Hardmax", ["a"], ["s"], name="the_hardmax"),
             helper.make_node("MatMul", ["s", "w2"], ["y"], name="fc2")]
    w2 = numpy_helper.from_array(np.ones((3, 2), np.float32), "w2")
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])], [w, w2])
    path = tmp_path / "hardmax.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_unsupported_op_is_refused_by_name(unsupported_model, tmp_path):
    proc = run("inspect", unsupported_model)
    assert_clean_error(proc, 4, "'the_hardmax'", "Hardmax", "Supported op types", "Conv", "MaxPool")


@pytest.mark.parametrize(
    "array, fragments",
    [
        (np.zeros((2, 28, 28), np.float32), ["shape (2, 28, 28)", "(n, 1, 28, 28)"]),
        (np.zeros((2, 1, 28, 28), np.uint8), ["dtype uint8", "float32"]),
        (np.zeros((0, 1, 28, 28), np.float32), ["empty"]),
        (np.where(np.arange(2 * 784).reshape(2, 1, 28, 28) == 900, np.nan, 0.5).astype(np.float32),
         ["NaN", "sample 1"]),
    ],
    ids=["shape", "dtype", "empty", "nan"],
)
def test_bad_inputs_are_refused(tmp_path, array, fragments):
    path = tmp_path / "bad.npy"
    np.save(path, array)
    proc = run("analyze", MODEL, "--inputs", path, "--out", tmp_path / "out")
    assert_clean_error(proc, 5, *fragments)
    assert not (tmp_path / "out").exists()  # inputs are checked before anything is written


def test_npz_with_several_arrays_needs_a_key(tmp_path):
    path = tmp_path / "two.npz"
    np.savez(path, a=np.zeros((1, 1, 28, 28), np.float32), b=np.zeros(3))
    assert_clean_error(run("analyze", MODEL, "--inputs", path), 5, "2 arrays", "--key")
    assert_clean_error(run("analyze", MODEL, "--inputs", path, "--key", "c"), 5, "no array 'c'")


def test_bad_model_files(tmp_path):
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"this is not a protobuf at all \x00\xff")
    assert_clean_error(run("inspect", garbage), 3, "garbage.onnx")
    assert_clean_error(run("inspect", tmp_path / "missing.onnx"), 3, "does not exist")
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(MODEL.read_bytes()[:5000])
    assert_clean_error(run("inspect", truncated), 3)


def test_debug_shows_the_traceback(tmp_path):
    proc = run("--debug", "inspect", tmp_path / "missing.onnx")
    assert proc.returncode == 3 and "Traceback" in proc.stderr


def test_resume_keeps_finished_inputs_and_refuses_other_runs(tmp_path):
    inputs = tmp_path / "x.npy"
    np.save(inputs, np.load(SAMPLE)[:4])
    out = tmp_path / "out"
    assert run("analyze", MODEL, "--inputs", inputs, "--out", out, "--quiet").returncode == 0
    first = {p.name: p.read_bytes() for p in out.glob("input-*")}
    (out / "input-00002.npz").unlink()
    kept = (out / "input-00001.npz").stat().st_mtime_ns
    proc = run("analyze", MODEL, "--inputs", inputs, "--out", out, "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "3 of 4 inputs already done" in proc.stderr
    assert proc.stdout.count("input 2:") == 1 and "input 1:" not in proc.stdout
    assert (out / "input-00001.npz").stat().st_mtime_ns == kept
    assert {p.name: p.read_bytes() for p in out.glob("input-*")} == first  # byte-identical
    assert len(json.loads((out / "summary.json").read_text())["results"]) == 4
    # Other options into the same folder: refused, nothing overwritten.
    assert_clean_error(run("analyze", MODEL, "--inputs", inputs, "--out", out, "--h1"), 5, "another run")


def test_a_failing_input_is_reported_and_skipped(tmp_path):
    w = numpy_helper.from_array(np.eye(3, dtype=np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"]), helper.make_node("Exp", ["a"], ["e"]),
             helper.make_node("MatMul", ["e", "w"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [w])
    model = tmp_path / "exp.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), model)
    x = np.array([[0.1, 0.2, 0.3], [1000.0, 0.0, 0.0], [0.5, 0.5, 0.5]], dtype=np.float32)  # exp overflows
    np.save(tmp_path / "x.npy", x)
    proc = run("analyze", model, "--inputs", tmp_path / "x.npy", "--out", tmp_path / "out")
    assert proc.returncode == 5 and "Traceback" not in proc.stderr
    assert "input 1: skipped" in proc.stderr and "infinite" in proc.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [r["index"] for r in summary["results"]] == [0, 2]
    assert [f["index"] for f in summary["failed"]] == [1]
    assert not (tmp_path / "out" / "input-00001.npz").exists()


def test_readme_shows_the_real_inspect_output():
    readme = (REPO / "README.md").read_text()
    block = readme.split("$ onnxtopo inspect models/ccff-relu.onnx\n", 1)[1].split("```", 1)[0]
    proc = run("inspect", "models/ccff-relu.onnx", cwd=REPO)
    assert proc.returncode == 0
    assert proc.stdout == block


def test_results_are_byte_identical_across_engines_workers_and_batch_sizes(tmp_path):
    inputs = tmp_path / "x.npy"
    np.save(inputs, np.load(SAMPLE)[:3])
    runs = {
        "default": [],
        "dionysus-batch1": ["--engine", "dionysus", "--batch-size", "1"],
        "workers-batch2": ["--workers", "2", "--batch-size", "2", "--chunk-edges", "50000"],
    }
    files = {}
    for name, extra in runs.items():
        proc = run("analyze", MODEL, "--inputs", inputs, "--out", tmp_path / name, "--h1", "--quiet", *extra)
        assert proc.returncode == 0, proc.stderr
        files[name] = {p.name: p.read_bytes() for p in (tmp_path / name).glob("input-*")}
    assert len(files["default"]) == 6
    assert files["dionysus-batch1"] == files["default"]
    assert files["workers-batch2"] == files["default"]


HELDOUT = REPO / "models" / "mnist-heldout.npz"


def test_experiment_prints_and_writes_the_table(tmp_path):
    proc = run("experiment", MODEL, "--inputs", HELDOUT, "--key", "x", "--labels", HELDOUT, "--labels-key", "y",
               "--limit", "40", "--attack", "fgsm", "--eps", "0.1", "--folds", "4", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    for metric in ("subgraph SVM accuracy", "network accuracy", "recovery accuracy", "adversary retention"):
        assert metric in proc.stdout
    row = json.loads((tmp_path / "experiment.json").read_text())
    smallest_class = np.bincount(np.load(HELDOUT)["y"][:40]).min()  # folds never exceed it
    assert row["n_inputs"] == 40 and row["folds"] == min(4, smallest_class) and row["n_attacked"] == 40
    assert 0.5 < row["subgraph_svm_accuracy"] <= 1 and 0.5 < row["network_accuracy"] <= 1
    assert 0 < row["n_adversarial"] <= 40
    header = (tmp_path / "experiment.csv").read_text().splitlines()[0].split(",")
    assert "recovery_accuracy" in header and "subgraph_svm_accuracy" in header


def test_experiment_refuses_mismatched_labels(tmp_path):
    labels = tmp_path / "y.npy"
    np.save(labels, np.zeros(3, dtype=np.int64))
    proc = run("experiment", MODEL, "--inputs", HELDOUT, "--key", "x", "--labels", labels, "--limit", "10")
    assert_clean_error(proc, 5, "10 inputs but 3 labels")


def test_plot_writes_pngs(tmp_path):
    proc = run("plot", MODEL, "--inputs", HELDOUT, "--key", "x", "--labels", HELDOUT, "--labels-key", "y",
               "--limit", "30", "--attack", "fgsm", "--index", "2", "--dpi", "50", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    names = ["diagram.png", "barcode.png", "subgraph.png", "similarity.png", "clean-vs-adversarial.png"]
    for name in names:
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    assert_clean_error(run("plot", MODEL, "--inputs", SAMPLE, "--index", "99", "--out", tmp_path), 5, "out of range")


def test_memory_limit_refuses_with_the_estimate(tmp_path):
    proc = run("analyze", MODEL, "--inputs", SAMPLE, "--out", tmp_path / "out", "--memory-limit", "10M")
    assert_clean_error(proc, 7, "needs about", "456,676 candidate edges", "--chunk-edges", "--memory-limit")
    assert not (tmp_path / "out").exists()
    # An analysis that fits is not refused; 'none' lifts the guard.
    assert run("analyze", MODEL, "--inputs", SAMPLE, "--out", tmp_path / "ok", "--memory-limit", "none",
               "--quiet").returncode == 0


def test_a_killed_run_leaves_only_complete_files_and_resumes(tmp_path):
    import signal
    import time

    inputs = tmp_path / "x.npy"
    np.save(inputs, np.tile(np.load(SAMPLE), (8, 1, 1, 1)))  # 64 inputs: long enough to be killed
    out = tmp_path / "out"
    args = [sys.executable, "-m", "onnxtopo.cli", "analyze", str(MODEL), "--inputs", str(inputs),
            "--out", str(out), "--quiet", "--batch-size", "1"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(list(out.glob("input-*.npz"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = sorted(out.glob("input-*.npz"))
    assert 3 <= len(written) < 64
    for path in written:  # every visible result file is whole
        with np.load(path) as data:
            assert data["h0"].shape[1] == 2
    resumed = run("analyze", MODEL, "--inputs", inputs, "--out", out, "--quiet", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert len(list(out.glob("input-*.npz"))) == 64
    assert len(json.loads((out / "summary.json").read_text())["results"]) == 64


# -- the command line's structure: one dispatch, one exit-code table, argparse only in onnxtopo.cli --------------


def test_readme_lists_every_exit_code_and_nothing_else():
    from onnxtopo import errors
    from onnxtopo.distributed import ClusterError

    section = (REPO / "README.md").read_text().split("| exit code | meaning |\n| --- | --- |\n", 1)[1]
    rows = section.split("\n\n", 1)[0].splitlines()
    documented = sorted(int(row.split("|")[1]) for row in rows)
    table = sorted(v for k, v in vars(errors.ExitCode).items() if not k.startswith("_"))
    assert documented == table
    classes = [errors.OnnxtopoError, errors.BadModelError, errors.UnsupportedOpError, errors.BadInputError,
               errors.InvalidFiltrationError, errors.ResourceLimitError, ClusterError]
    codes = [c.exit_code for c in classes]
    assert codes == [1, 3, 4, 5, 6, 7, 8] and set(codes) <= set(table)


@pytest.mark.parametrize("raised, code, message", [
    (RuntimeError("boom"), 70, "onnxtopo: internal error: RuntimeError: boom (rerun with --debug"),
    (KeyboardInterrupt(), 130, "onnxtopo: interrupted; results already written are complete"),
])
def test_main_turns_a_bug_or_an_interrupt_into_its_exit_code(monkeypatch, capsys, raised, code, message):
    from onnxtopo import cli

    def run(args):
        raise raised

    monkeypatch.setattr(cli.COMMANDS["inspect"], "run", run)
    assert cli.main(["inspect", str(MODEL)]) == code
    err = capsys.readouterr().err
    assert err.startswith(message) and "Traceback" not in err


def test_the_onnxtopo_script_entry_point_is_main():
    import pkgutil

    import tomllib

    from onnxtopo.cli import main

    target = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]["onnxtopo"]
    assert pkgutil.resolve_name(target) is main


def test_argparse_is_imported_only_by_the_cli_package():
    import ast

    package = REPO / "onnxtopo"
    importers = []
    for path in sorted(package.rglob("*.py")):
        if package / "cli" in path.parents:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 0}
        if any(m and m.split(".")[0] == "argparse" for m in modules):
            importers.append(path.relative_to(REPO).as_posix())
    assert importers == []
