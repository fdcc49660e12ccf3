"""``onnxtopo check``: a baseline written from the shipped CCFF, re-exports that pass, real changes
that fail; the baseline format and the reports (the distances behind them: tests/test_diagrams.py)."""

import json
import zipfile
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

import onnxtopo
from onnxtopo import fingerprint as fp
from onnxtopo.cli import main

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "models"
HELDOUT = np.load(MODELS / "mnist-heldout.npz")


def cli(*argv) -> int:
    """The exit code of ``onnxtopo ...`` run in-process through the real entry point."""
    return main([str(a) for a in argv])


# ---------------------------------------------------------------------------------------------
# Variants of ccff-relu.onnx built here


def _edit_initializers(path, edit) -> None:
    model = onnx.load(MODELS / "ccff-relu.onnx")
    for init in model.graph.initializer:
        new = edit(init.name, numpy_helper.to_array(init))
        if new is not None:
            init.CopyFrom(numpy_helper.from_array(np.asarray(new, dtype=np.float32), init.name))
    onnx.save(model, path)


def _big_matmul(name, w):
    return w.size > 100_000  # the 1452 × 256 weight of the first Linear layer


def prune(path):
    """Zero the 50 % smallest-magnitude weights of the big MatMul initializer."""
    def edit(name, w):
        if _big_matmul(name, w):
            return np.where(np.abs(w) < np.median(np.abs(w)), 0, w)
    _edit_initializers(path, edit)


def train_more(path, steps=20, lr=0.05):
    """Stands in for more training: full-batch gradient descent on the last layer (softmax
    cross-entropy, analytic gradient) over held-out images 8..499, none of them in the probe."""
    model = onnx.load(MODELS / "ccff-relu.onnx")
    last = [n for n in model.graph.node if n.op_type == "MatMul"][-1]
    features, weight_name = last.input
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    exposed.graph.output.append(onnx.helper.make_tensor_value_info(features, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(exposed.SerializeToString(), providers=["CPUExecutionProvider"])
    h = session.run([features], {"input": HELDOUT["x"][8:]})[0].astype(np.float64)
    y = HELDOUT["y"][8:]
    w = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == weight_name)).astype(np.float64)

    def loss_and_gradient(w):
        z = h @ w
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.log(p[np.arange(len(y)), y]).mean()
        p[np.arange(len(y)), y] -= 1
        return loss, h.T @ p / len(y)

    before, _ = loss_and_gradient(w)
    for _ in range(steps):
        w -= lr * loss_and_gradient(w)[1]
    after, _ = loss_and_gradient(w)
    assert after < 0.7 * before  # it did learn
    _edit_initializers(path, lambda name, old: w if name == weight_name else None)


def swap_first_kernel(path):
    """Replace the first Conv kernel with another random kernel of the same shape and scale."""
    def edit(name, w):
        if w.shape == (3, 1, 5, 5):
            return np.random.default_rng(2).standard_normal(w.shape) * w.std()
    _edit_initializers(path, edit)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("check")
    probe = folder / "probe.npy"
    np.save(probe, HELDOUT["x"][:8])
    baseline = folder / "baseline.npz"
    assert cli("check", MODELS / "ccff-relu.onnx", "--probe", probe, "--baseline", baseline, "--write-baseline") == 0
    variants = {"ccff-sigmoid": MODELS / "ccff-sigmoid.onnx"}
    for name, build in (("pruned", prune), ("more-training", train_more), ("swapped-conv", swap_first_kernel)):
        variants[name] = folder / f"{name}.onnx"
        build(variants[name])
    return {"folder": folder, "probe": probe, "baseline": baseline, "variants": variants}


# ---------------------------------------------------------------------------------------------
# End to end


@pytest.mark.parametrize("model", ["ccff-relu.onnx", "ccff-relu-dynamo.onnx", "ccff-relu-keras.onnx",
                                   "ccff-relu-jax.onnx"])
def test_the_same_function_passes(setup, model, tmp_path, capsys):
    report, junit = tmp_path / "report.json", tmp_path / "junit.xml"
    code = cli("check", MODELS / model, "--probe", setup["probe"], "--baseline", setup["baseline"],
               "--report", report, "--junit", junit)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "verdict: pass" in out and "FAIL" not in out
    data = json.loads(report.read_text())
    assert data["verdict"] == "pass" and len(data["inputs"]) == 8
    assert data["same_model_file"] == (model == "ccff-relu.onnx")
    for row in data["inputs"]:  # float32 rounding at most
        assert row["h0_bottleneck"] < 1e-6 and row["h0_wasserstein"] < 1e-6 and row["h0_betti"] == 0
        assert row["h0_points_delta"] == 0 and row["h0_essential_delta"] == 0
    suite = ET.parse(junit).getroot()
    assert suite.tag == "testsuites" and suite.get("failures") == "0" and suite.get("tests") == "4"


@pytest.mark.parametrize("variant", ["ccff-sigmoid", "pruned", "more-training", "swapped-conv"])
def test_a_changed_network_fails(setup, variant, tmp_path, capsys):
    report, junit = tmp_path / "report.json", tmp_path / "junit.xml"
    code = cli("check", setup["variants"][variant], "--probe", setup["probe"], "--baseline", setup["baseline"],
               "--report", report, "--junit", junit)
    out = capsys.readouterr().out
    assert code == 1, out
    assert "verdict: drift" in out and "FAIL" in out
    data = json.loads(report.read_text())
    assert data["verdict"] == "drift"
    failed = {m["metric"] for m in data["metrics"] if not m["passed"]}
    # Every change moves the diagrams far beyond the tolerances, on every probe input.
    assert {"h0_bottleneck", "h0_wasserstein", "h0_total_persistence"} <= failed
    for metric in data["metrics"]:
        if metric["metric"] in ("h0_bottleneck", "h0_wasserstein", "h0_total_persistence"):
            assert metric["failing_inputs"] == list(range(8)) and metric["max"] > 10 * metric["tolerance"]
    root = ET.parse(junit).getroot()
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert set(cases) == {"h0_bottleneck", "h0_wasserstein", "h0_total_persistence", "h0_betti"}
    assert {name for name, c in cases.items() if c.find("failure") is not None} == failed
    assert root.get("failures") == str(len(failed)) and root.get("errors") == "0"
    message = cases["h0_bottleneck"].find("failure").get("message")
    assert "exceeds the tolerance" in message and "of 8 probe inputs" in message


def test_loose_tolerances_let_a_change_pass(setup, capsys):
    code = cli("check", setup["variants"]["more-training"], "--probe", setup["probe"], "--baseline",
               setup["baseline"], "--tol-bottleneck", "inf", "--tol-wasserstein", "1", "--tol-total-persistence", "1",
               "--tol-betti", "1", "--wasserstein-q", "2")
    assert code == 0, capsys.readouterr().out


def test_a_different_probe_is_refused(setup, tmp_path, capsys):
    other = tmp_path / "other.npz"
    np.savez(other, x=HELDOUT["x"][8:16], y=HELDOUT["y"][8:16])
    report, junit = tmp_path / "report.json", tmp_path / "junit.xml"
    code = cli("check", MODELS / "ccff-relu.onnx", "--probe", other, "--key", "x", "--baseline", setup["baseline"],
               "--report", report, "--junit", junit)
    err = capsys.readouterr().err
    assert code == 5 and "probe differs from the baseline's" in err and "SHA-256" in err
    # CI still gets its files: the report and a JUnit <error> say the check could not run.
    data = json.loads(report.read_text())
    assert data["verdict"] == "error" and data["exit_code"] == 5
    case = ET.parse(junit).getroot().find("testsuite/testcase")
    assert case.find("error") is not None and "probe differs" in case.find("error").get("message")


def test_vertices_inf_is_refused_before_a_baseline_is_written(setup, tmp_path, capsys):
    """With +inf births the Betti-curve grid and the distances are undefined: such a baseline could
    never be compared (it used to be written, then refused as damaged), so it is not written."""
    baseline = tmp_path / "inf.npz"
    code = cli("check", MODELS / "ccff-relu.onnx", "--probe", setup["probe"], "--baseline", baseline,
               "--write-baseline", "--vertices", "inf")
    err = capsys.readouterr().err
    assert code == 5 and 'vertices="max"' in err and not baseline.exists()
    with pytest.raises(onnxtopo.BadInputError, match=r"\+inf"):
        fp.fingerprint(MODELS / "ccff-relu.onnx", HELDOUT["x"][:2], vertices="inf")


def test_bad_models_and_baselines_give_their_exit_codes(setup, tmp_path, capsys):
    probe, baseline = setup["probe"], setup["baseline"]
    assert cli("check", tmp_path / "missing.onnx", "--probe", probe, "--baseline", baseline) == 3
    assert cli("check", MODELS / "ccff-relu.onnx", "--probe", probe, "--baseline", tmp_path / "none.npz") == 5
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(baseline.read_bytes()[:500])
    assert cli("check", MODELS / "ccff-relu.onnx", "--probe", probe, "--baseline", corrupt) == 5
    not_npz = tmp_path / "text.npz"
    not_npz.write_text("hello")
    assert cli("check", MODELS / "ccff-relu.onnx", "--probe", probe, "--baseline", not_npz) == 5
    # A future format version is refused, not misread.
    with np.load(baseline, allow_pickle=False) as archive:
        arrays = {k: archive[k] for k in archive.files}
    meta = json.loads(arrays["meta"].tobytes())
    arrays["meta"] = np.frombuffer(json.dumps(dict(meta, format_version=2)).encode(), dtype=np.uint8)
    future = tmp_path / "future.npz"
    np.savez(future, **arrays)
    assert cli("check", MODELS / "ccff-relu.onnx", "--probe", probe, "--baseline", future) == 5
    # The sklearn MLP takes (N, 784): the probe does not fit it.
    assert cli("check", MODELS / "mlp-sklearn.onnx", "--probe", probe, "--baseline", baseline) == 5
    # Fingerprint options come from the baseline; asking for others is an error, not silently ignored.
    assert cli("check", MODELS / "ccff-relu.onnx", "--probe", probe, "--baseline", baseline, "--h1") == 5
    err = capsys.readouterr().err
    assert "format version 2 is not supported" in err and "--h1" in err
    assert all(line.startswith("onnxtopo: error: ") for line in err.strip().splitlines())


def test_h1_is_checked_too(tmp_path, capsys):
    probe = tmp_path / "probe.npy"
    np.save(probe, HELDOUT["x"][:2])
    baseline = tmp_path / "h1.npz"
    assert cli("check", MODELS / "ccff-relu.onnx", "--probe", probe, "--baseline", baseline,
               "--write-baseline", "--h1", "--n-grid", "16") == 0
    report = tmp_path / "report.json"
    assert cli("check", MODELS / "ccff-relu-keras.onnx", "--probe", probe, "--baseline", baseline,
               "--report", report) == 0
    metrics = {m["metric"] for m in json.loads(report.read_text())["metrics"]}
    assert {"h1_bottleneck", "h1_wasserstein", "h1_betti"} <= metrics
    assert "h1_bottleneck" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# The baseline format


def test_baseline_format_is_documented_npz_without_pickle(setup):
    with np.load(setup["baseline"], allow_pickle=False) as archive:
        names = set(archive.files)
        meta = json.loads(archive["meta"].tobytes().decode("utf-8"))
        grid, betti0, h0 = archive["grid"], archive["betti0"], archive["h0_00000"]
    assert names == {"meta", "grid", "betti0", *(f"h0_{i:05d}" for i in range(8))}
    assert meta["format"] == "onnxtopo-fingerprint" and meta["format_version"] == 1
    assert meta["model"]["producer_name"] == "pytorch" and meta["model"]["opset"] == {"ai.onnx": 17}
    assert meta["model"]["sha256"] == "4d04a1142fe0b5f2d106b05abea74d257b1f83a9e8b9e7f141b09d08d816ed40"
    assert meta["probe"]["shape"] == [8, 1, 28, 28] and len(meta["probe"]["sha256"]) == 64
    assert meta["options"] == {"h1": False, "threshold": None, "percentile": None, "vertices": "max",
                               "maxpool_rule": "window"}
    assert len(meta["inputs"]) == 8 and meta["inputs"][0]["h0_essential_points"] == 1
    assert grid.shape == (64,) and np.all(np.diff(grid) > 0) and grid[-1] == max(
        np.load(setup["baseline"])[f"h0_{i:05d}"][:, 0].max() for i in range(8))
    assert betti0.shape == (8, 64) and betti0.dtype == np.int64
    finite = np.isfinite(h0[:, 1])
    assert h0.dtype == np.float64 and h0.shape[1] == 2 and np.all(h0[finite, 0] > h0[finite, 1])
    assert (~finite).sum() == 1  # the essential class: death = inf
    # Nothing in it needs pickle, and identical content gives identical bytes.
    with zipfile.ZipFile(setup["baseline"]) as z:
        assert sorted(z.namelist()) == sorted(f"{n}.npy" for n in names)
    loaded = fp.Fingerprint.load(setup["baseline"])
    copy = setup["folder"] / "copy.npz"
    loaded.save(copy)
    assert copy.read_bytes() == setup["baseline"].read_bytes()


def test_fingerprint_api_matches_analyze(setup):
    import onnxtopo

    x = HELDOUT["x"][:3]
    f = fp.fingerprint(MODELS / "ccff-relu.onnx", x, n_grid=8)
    results = onnxtopo.analyze(MODELS / "ccff-relu.onnx", x)
    for d, r in zip(f.h0, results):
        np.testing.assert_array_equal(d, r.h0)
    assert f.betti0.shape == (3, 8) and f.h1 is None
    # The same model as bytes and as a ModelProto: the same fingerprint, the same probe digest.
    raw = (MODELS / "ccff-relu.onnx").read_bytes()
    for model in (raw, onnx.load_from_string(raw)):
        g = fp.fingerprint(model, x, grid=f.grid)
        assert g.probe_sha256 == f.probe_sha256 and g.meta["model"]["sha256"] == f.meta["model"]["sha256"]
        assert all(r["h0_bottleneck"] == 0 and r["h0_wasserstein"] == 0 for r in fp.compare(f, g))
