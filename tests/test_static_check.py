"""``onnxtopo check --static``: the static view's fingerprint (weights only, no probe), its baseline
file, its verdicts, and the refusals that keep it apart from the induced view's check."""

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from onnxtopo.errors import BadInputError
from onnxtopo.static import static_persistence
from onnxtopo.static_fingerprint import StaticFingerprint, static_fingerprint

from test_check import cli, prune

MODELS = Path(__file__).resolve().parents[1] / "models"
CCFF = MODELS / "ccff-relu.onnx"


def perturb_last_layer(path: Path, relative: float) -> None:
    """CCFF with the last MatMul's weights (256 x 10, largest |w| 0.258, below the network's 0.390 in
    the first Conv) multiplied by 1 + relative * N(0, 1): the network's scale is unchanged."""
    model = onnx.load(CCFF)
    for init in model.graph.initializer:
        w = numpy_helper.to_array(init)
        if w.shape == (256, 10):
            noise = np.random.default_rng(0).standard_normal(w.shape)
            init.CopyFrom(numpy_helper.from_array((w * (1 + relative * noise)).astype(np.float32), init.name))
    onnx.save(model, path)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    path = tmp_path_factory.mktemp("static-check") / "static.npz"
    assert cli("check", CCFF, "--static", "--baseline", path, "--write-baseline") == 0
    return path


@pytest.mark.parametrize("model", ["ccff-relu.onnx", "ccff-relu-keras.onnx"])
def test_the_same_weights_pass(baseline, model, tmp_path, capsys):
    # The Keras re-export names its nodes otherwise; the layers are paired by position.
    report = tmp_path / "report.json"
    code = cli("check", MODELS / model, "--static", "--baseline", baseline, "--report", report)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "verdict: pass" in out and "max over diagrams" in out and "mean normalized neural persistence" in out
    data = json.loads(report.read_text())
    assert data["verdict"] == "pass" and [row["name"] for row in data["diagrams"]] == [
        "/c1/Conv", "/c2/Conv", "/l1/MatMul", "/l2/MatMul", "whole network"]
    assert all(row["h0_bottleneck"] == 0 and row["normalized_neural_persistence"] == 0 for row in data["diagrams"])
    assert data["tolerances"]["neural_persistence"] == 1e-4


def test_perturbed_weights_drift_in_their_layer_and_the_whole_network(baseline, tmp_path, capsys):
    perturbed = tmp_path / "perturbed.onnx"
    perturb_last_layer(perturbed, 0.01)
    report, junit = tmp_path / "report.json", tmp_path / "junit.xml"
    code = cli("check", perturbed, "--static", "--baseline", baseline, "--report", report, "--junit", junit)
    out = capsys.readouterr().out
    assert code == 1, out
    assert "verdict: drift" in out and "worst: diagram 3" in out
    assert "diagrams: 0 /c1/Conv, 1 /c2/Conv, 2 /l1/MatMul, 3 /l2/MatMul, 4 whole network" in out
    rows = json.loads(report.read_text())["diagrams"]
    gated = ("h0_bottleneck", "h0_wasserstein", "h0_total_persistence", "normalized_neural_persistence")
    for row in rows[:3]:  # the other layers keep their weights and the network its scale
        assert all(row[m] == 0 for m in gated), row
    last, whole = rows[3:]
    assert last["h0_bottleneck"] > 1e-3 and last["normalized_neural_persistence"] > 1e-4, last
    # 266 of the whole network's 4,230 vertices: its NP moves less, its diagram's points as much
    assert whole["h0_bottleneck"] > 1e-3 and 0 < whole["normalized_neural_persistence"] < 1e-4, whole
    failure = ET.parse(junit).getroot().find(".//testcase[@name='h0_bottleneck']/failure")
    assert "on 2 of 5 diagrams" in failure.get("message")


def test_pruning_the_smallest_weights_is_caught_by_the_edge_count_alone(baseline, tmp_path, capsys):
    # Zeroing the big dense layer's smaller half removes edges that its maximum spanning forest never
    # used: every diagram and NP stay exactly the same, the number of edges halves.
    pruned = tmp_path / "pruned.onnx"
    prune(pruned)
    report = tmp_path / "report.json"
    assert cli("check", pruned, "--static", "--baseline", baseline, "--report", report) == 1
    assert "verdict: drift (edges)" in capsys.readouterr().out
    rows = json.loads(report.read_text())["diagrams"]
    assert all(row["h0_bottleneck"] == 0 and row["normalized_neural_persistence"] == 0 for row in rows)
    assert [row["edges_delta"] for row in rows] == [0, 0, -185_856, 0, -185_856]
    assert rows[2]["edges"] == 0.5


def test_a_baseline_of_the_induced_view_is_refused_by_static_and_the_other_way_round(baseline, tmp_path, capsys):
    probe = tmp_path / "probe.npy"
    np.save(probe, np.load(MODELS / "mnist-sample.npy")[:2])
    induced = tmp_path / "induced.npz"
    assert cli("check", CCFF, "--probe", probe, "--baseline", induced, "--write-baseline") == 0
    capsys.readouterr()
    assert cli("check", CCFF, "--static", "--baseline", induced) == 5
    assert "induced view's fingerprint on a probe" in capsys.readouterr().err
    assert cli("check", CCFF, "--probe", probe, "--baseline", baseline) == 5
    assert "static fingerprint (written by check --static" in capsys.readouterr().err


def test_options_that_belong_to_the_other_view_are_refused(baseline, capsys):
    sample = MODELS / "mnist-sample.npy"
    for argv, message in (
        (["--static", "--probe", sample], "drop --probe"),
        (["--static", "--h1"], "drop --h1"),
        (["--graph", "channel", "--probe", sample], "--graph apply to the static view only"),
        ([], "--probe is required"),
        (["--static", "--graph", "channel"], "fingerprint options differ from the baseline's: --graph"),
    ):
        assert cli("check", CCFF, "--baseline", baseline, *argv) == 5, argv
        assert message in capsys.readouterr().err, argv


def test_a_baseline_keeps_its_options_and_checks_with_them(tmp_path, capsys):
    path = tmp_path / "channel.npz"
    assert cli("check", CCFF, "--static", "--graph", "channel", "--p", "inf", "--baseline", path,
               "--write-baseline") == 0
    fingerprint = StaticFingerprint.load(path)
    assert fingerprint.options == {"p": "inf", "graph": "channel", "channel_norm": "l2"}
    expected = static_persistence(CCFF, p=np.inf, graph="channel")
    assert fingerprint.mean_normalized == pytest.approx(expected.mean_normalized)
    for diagram, layer in zip(fingerprint.h0, expected.layers, strict=False):
        np.testing.assert_array_equal(diagram, layer.h0)
    np.testing.assert_array_equal(fingerprint.h0[-1], expected.whole.h0)
    capsys.readouterr()
    assert cli("check", CCFF, "--static", "--baseline", path) == 0  # with the baseline's graph and p
    assert cli("check", CCFF, "--static", "--graph", "channel", "--p", "inf", "--baseline", path) == 0
    assert cli("check", CCFF, "--static", "--graph", "channel", "--p", "3", "--baseline", path) == 5
    assert "--p (3.0 here, inf in the baseline)" in capsys.readouterr().err


def test_another_architecture_is_refused_not_compared(baseline, capsys):
    assert cli("check", MODELS / "resnet-mini.onnx", "--static", "--baseline", baseline) == 5
    err = capsys.readouterr().err
    assert "not the same architecture" in err and "/l2/MatMul" in err


def test_the_file_round_trips_and_a_damaged_one_is_refused(tmp_path):
    fingerprint = static_fingerprint(CCFF, n_grid=8)
    path = tmp_path / "fp.npz"
    fingerprint.save(path)
    again = StaticFingerprint.load(path)
    assert again.meta == fingerprint.meta
    np.testing.assert_array_equal(again.grid, np.arange(1, 9) / 8)
    for a, b in zip(again.h0, fingerprint.h0, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(again.betti0, fingerprint.betti0)
    arrays = fingerprint.arrays()
    future = dict(arrays, meta=np.frombuffer(json.dumps({**fingerprint.meta, "format_version": 2}).encode(), np.uint8))
    np.savez(tmp_path / "future.npz", **future)
    with pytest.raises(BadInputError, match="version 2 is not supported"):
        StaticFingerprint.load(tmp_path / "future.npz")
    del arrays["h0_00002"]
    np.savez(tmp_path / "damaged.npz", **arrays)
    with pytest.raises(BadInputError, match="damaged static baseline"):
        StaticFingerprint.load(tmp_path / "damaged.npz")
