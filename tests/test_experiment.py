"""The experiment's protocols (onnxtopo.experiment): each step of the seed's protocol against a
small hand-made case, and the onnxtopo protocol's figures against scikit-learn run directly.

* the seed's graph thresholds: a tiny conv+conv+dense+dense network, its edges and thresholds
  computed here by loops over every weight from onnxruntime's activations;
* pieces and lifetimes: a graph worked out by hand, and random graphs with ties against their
  H0 diagrams from the dionysus engine;
* the cosine kernel: symmetric positive semi-definite, equal to scipy's 1 − cosine distance;
* recovery: the ×10 count factor and cross-fitting (no adversarial input classified by an SVM
  fitted on its clean version) observed on the classifiers' actual fitting sets.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from onnx import helper
from scipy.spatial.distance import cosine
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.svm import SVC, LinearSVC

import onnxtopo
from onnxtopo import InducedGraph, persistence
from onnxtopo import experiment as ex
from onnxtopo.api import Analyzer
from onnxtopo.experiment import ONNXTOPO, SEED, Protocol, run_experiment
from onnxtopo.features import InducedPersistence, SubgraphFeatures

from conftest import assert_same_edges, edges_as_dict, make_model, ort_outputs

ROOT = Path(__file__).resolve().parents[1]
MODEL = str(ROOT / "models" / "ccff-relu.onnx")
HELDOUT = np.load(ROOT / "models" / "mnist-heldout.npz")


# ----------------------------------------------------------------------------------------------
# The seed's graph thresholds

def tiny_ccff(activation: str, rng):
    """x (1, 5, 5) → Conv 2×2 (2 ch) → act → Conv 2×2 (2 ch) → act → Flatten → MatMul 18×4 → act → MatMul 4×3."""
    w = {"w1": rng.normal(size=(2, 1, 2, 2)), "w2": rng.normal(size=(2, 2, 2, 2)), "w3": rng.normal(size=(18, 4)),
         "w4": rng.normal(size=(4, 3))}
    w = {k: v.astype(np.float32) for k, v in w.items()}
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"]), helper.make_node(activation, ["c1"], ["h1"]),
             helper.make_node("Conv", ["h1", "w2"], ["c2"]), helper.make_node(activation, ["c2"], ["h2"]),
             helper.make_node("Flatten", ["h2"], ["f2"]), helper.make_node("MatMul", ["f2", "w3"], ["d3"]),
             helper.make_node(activation, ["d3"], ["h3"]), helper.make_node("MatMul", ["h3", "w4"], ["y"])]
    return make_model(nodes, (1, 5, 5), w), {k: v.astype(np.float64) for k, v in w.items()}


def brute_seed_graph(model, w, x, percentile, conv_thresholds):
    """{(src, dst): φ} of the seed's graph of input x, by a loop over every weight."""
    h = {k: v[0].astype(np.float64) for k, v in ort_outputs(model, x[None], ("h1", "h2", "h3")).items()}
    plan = onnxtopo.inspect(model)
    off = [layer.offset for layer in plan.layers]  # x, c1 (2,4,4), c2 (2,3,3), d3 (4), y (3)
    edges = {}
    # Conv 2 (the seed's l = 1): cut at 1/2 × the P-th percentile of |h2| (0 without conv thresholds).
    cut = np.percentile(np.abs(h["h2"]), percentile) / 2 if conv_thresholds else 0.0
    for o, c, i, j, a, b in np.ndindex(2, 2, 3, 3, 2, 2):
        phi = abs(w["w2"][o, c, a, b] * h["h1"][c, i + a, j + b])
        if phi > cut:
            edges[(off[1] + np.ravel_multi_index((c, i + a, j + b), (2, 4, 4)),
                   off[2] + np.ravel_multi_index((o, i, j), (2, 3, 3)))] = phi
    # Dense steps: the P-th percentile of every |h_u w_uv|.
    for source, weight, lo, hi in ((h["h2"].ravel(), w["w3"], off[2], off[3]), (h["h3"], w["w4"], off[3], off[4])):
        products = np.abs(source[:, None] * weight)
        cut = np.percentile(products, percentile)
        for u, v in zip(*np.nonzero(products > cut)):
            edges[(lo + int(u), hi + int(v))] = products[u, v]
    return edges  # no edge from the input layer


@pytest.mark.parametrize("activation", ["Relu", "Sigmoid"])
def test_seed_graph_against_brute_force(activation):
    rng = np.random.default_rng(3)
    model, w = tiny_ccff(activation, rng)
    plan = onnxtopo.inspect(model)
    percentile, conv = ex.seed_settings(plan, SEED)
    assert (percentile, conv) == ((90.0, True) if activation == "Relu" else (95.0, False))
    analyzer = Analyzer(plan)
    x = rng.uniform(0, 1, size=(3, 1, 5, 5)).astype(np.float32)
    activations = analyzer.runner.run(x)
    for sample in range(len(x)):
        for p in (percentile, 50.0):
            g = ex.seed_graph(plan, activations, sample, p, conv)
            expected = brute_seed_graph(model, w, x[sample], p, conv)
            assert expected, "the case must keep some edges"
            assert_same_edges(edges_as_dict(g.src, g.dst, g.phi), expected,
                              what=f"{activation} sample {sample} P={p}")
    # The analyses are the persistence of those graphs.
    results = ex.seed_analyses(analyzer, x, SEED)
    g = ex.seed_graph(plan, activations, 2, percentile, conv)
    assert results[2].n_edges == g.n_edges
    np.testing.assert_array_equal(results[2].h0, persistence(g).h0)


def test_seed_graph_refuses_networks_it_does_not_define():
    model = make_model([helper.make_node("MatMul", ["x", "w"], ["y"])], (3,), {"w": np.ones((3, 2), np.float32)})
    with pytest.raises(onnxtopo.errors.BadInputError, match="ReLU or with Sigmoid"):
        ex.seed_settings(onnxtopo.inspect(model), SEED)
    assert ex.seed_settings(onnxtopo.inspect(model), dataclasses.replace(SEED, percentile=80,
                                                                         conv_thresholds=False)) == (80.0, False)


# ----------------------------------------------------------------------------------------------
# Pieces and lifetimes

def hand_graph() -> InducedGraph:
    """tests/test_subgraph.py's hand graph: anchored pieces P0 P1 P0 P0 P2 P2 P0 P1 P3, anchored at
    vertices 0, 1, 3, 9, whose classes are (20, inf), (18, 14), (12, 9), (2, inf): lifetimes 20, 4, 3, 2."""
    edges = [(0, 4, 20), (1, 5, 18), (2, 4, 16), (2, 5, 14), (3, 6, 12), (6, 7, 10), (5, 7, 9),
             (1, 8, 6), (0, 5, 4), (9, 10, 2)]
    src, dst, phi = zip(*edges)
    return InducedGraph.from_edges([[11]], src, dst, phi)


@pytest.mark.parametrize("engine", ["forest", "dionysus"])
def test_piece_lifetimes_by_hand(engine):
    p = persistence(hand_graph(), engine=engine)
    piece, lifetime = ex.piece_lifetimes(p)
    assert piece.tolist() == [0, 1, 0, 0, 2, 2, 0, 1, 3]
    assert lifetime.tolist() == [20, 4, 3, 2]
    # The seed's vector: each edge carries its piece's lifetime over the largest (20).
    features = ex.lifetime_features([onnxtopo.AnalysisResult(0, 11, p.n_edges, p)]).toarray()
    assert sorted(features[0].tolist()) == sorted([1, 0.2, 1, 1, 0.15, 0.15, 1, 0.2, 0.1])


def test_piece_lifetime_when_the_anchor_joins_an_older_tie():
    # Values 0: 5, 1: 5, 2: 5. (1, 2) first: 1 elder (id), new piece P0 anchored at 1. Then
    # (0, 2): lone 0 (value 5, id 0) is elder than {1, 2} (oldest 1): new piece P1 anchored at 0,
    # and 1's class dies at once. Lifetimes: P0 5 − 5 = 0, P1 essential: 5.
    p = persistence(InducedGraph.from_edges([[3]], [1, 0], [2, 2], [5.0, 5.0]))
    piece, lifetime = ex.piece_lifetimes(p)
    assert piece.tolist() == [0, 1] and lifetime.tolist() == [0, 5]


def test_piece_lifetimes_are_points_of_the_diagram():
    rng = np.random.default_rng(0)
    for _ in range(40):
        n = int(rng.integers(3, 15))
        pairs = {tuple(sorted(rng.choice(n, 2, replace=False).tolist())) for _ in range(int(rng.integers(1, 25)))}
        src, dst = zip(*sorted(pairs))
        phi = rng.integers(1, 5, size=len(src)).astype(float)  # many ties
        g = InducedGraph.from_edges([[n]], src, dst, phi)
        p = persistence(g, engine="dionysus")
        piece, lifetime = ex.piece_lifetimes(p)
        birth = np.asarray(p.subgraph.phi)[np.unique(piece, return_index=True)[1]]
        essential = set(p.h0[np.isinf(p.h0[:, 1]), 0].tolist())
        points = Counter(map(tuple, p.h0.tolist()))
        # Each piece is one class: (birth, birth − lifetime), or an essential class of that birth;
        # the diagram leaves out the classes that die as they are born (lifetime 0).
        for b, life in zip(birth.tolist(), lifetime.tolist()):
            key = (b, b - life)
            if life == 0:
                continue
            if points[key] > 0:
                points[key] -= 1
            else:
                assert b == life and b in essential and points[(b, np.inf)] > 0, (b, life, p.h0)
                points[(b, np.inf)] -= 1


# ----------------------------------------------------------------------------------------------
# The cosine kernel

def test_cosine_kernel_is_symmetric_psd_and_scipy_s():
    analyses = InducedPersistence(MODEL).fit_transform(HELDOUT["x"][:25])
    x = ex.lifetime_features(analyses)
    k = ex.cosine_kernel(x, x)
    np.testing.assert_allclose(k, k.T, atol=1e-12)
    assert np.linalg.eigvalsh(k).min() > -1e-9
    dense = x.toarray()
    for i, j in [(0, 1), (3, 17), (24, 5), (7, 7)]:
        assert k[i, j] == pytest.approx(1 - cosine(dense[i], dense[j]), abs=1e-12)


# ----------------------------------------------------------------------------------------------
# The protocols end to end

def test_onnxtopo_accuracy_is_scikit_learn_s_cross_validation():
    x, y = HELDOUT["x"][:60], HELDOUT["y"][:60]
    result = run_experiment(MODEL, x, y, protocol=dataclasses.replace(ONNXTOPO, folds=4))
    clean = SubgraphFeatures().fit_transform(InducedPersistence(MODEL).fit_transform(x))
    scores = cross_val_score(LinearSVC(max_iter=20000, random_state=0), clean, y,
                             cv=StratifiedKFold(4, shuffle=True, random_state=0))
    assert result.subgraph_svm_accuracy == scores.mean() and result.subgraph_svm_accuracy_std == scores.std()
    assert result.protocol == "onnxtopo (folds=4)"


def _dense(matrix) -> np.ndarray:
    return matrix.toarray() if hasattr(matrix, "toarray") else np.asarray(matrix)  # grams are dense already


class RecordingFits:
    """Wraps experiment._fit_predict: records each call's training and predicted matrices."""

    def __init__(self, monkeypatch):
        self.calls = []
        original = ex._fit_predict

        def record(kernel, protocol, train, y_train, tests):
            self.calls.append((kernel, _dense(train), [_dense(t) for t in tests]))
            return original(kernel, protocol, train, y_train, tests)
        monkeypatch.setattr(ex, "_fit_predict", record)


@pytest.mark.parametrize("fit", ["cross", "same"])
def test_cross_fitting_never_classifies_an_input_seen_clean(monkeypatch, fit):
    # With x_adv = x, an adversarial input's features are its clean features: cross-fitted, none
    # may be a row the classifier was fitted on; fitted on the same images, all are.
    x, y = HELDOUT["x"][:40], HELDOUT["y"][:40]
    fits = RecordingFits(monkeypatch)
    protocol = dataclasses.replace(ONNXTOPO, folds=3, recovery_fit=fit, recovery_features="counts", n_attack=30)
    result = run_experiment(MODEL, x, y, x_adv=x.copy(), protocol=protocol)
    recovery_calls = [(train, tests[-1]) for kernel, train, tests in fits.calls if len(tests) == 2 or fit == "same"]
    if fit == "same":
        recovery_calls = recovery_calls[-1:]  # after the accuracy's fold fits
    attacked = sum(len(adv) for _, adv in recovery_calls)
    assert attacked == 30 and result.n_attacked == 30
    for train, adv in recovery_calls:
        assert len({r.tobytes() for r in train}) == len(train), "the case needs distinct clean rows"
        seen = {r.tobytes() for r in train}
        hits = [r.tobytes() in seen for r in adv]
        assert (not any(hits)) if fit == "cross" else all(hits)


def test_count_factor_multiplies_the_adversarial_counts(monkeypatch):
    x, y = HELDOUT["x"][:40], HELDOUT["y"][:40]
    adversarial = HELDOUT["x"][40:80]  # other images stand in for the attacks
    counts = SubgraphFeatures(selection="take", take=3)
    analyzer = Analyzer(MODEL)  # the seed's graph
    clean = counts.fit_transform(ex.seed_analyses(analyzer, x, SEED)).toarray()
    adv = counts.transform(ex.seed_analyses(analyzer, adversarial, SEED)).toarray()
    for factor in (1.0, 10.0):
        fits = RecordingFits(monkeypatch)
        protocol = dataclasses.replace(SEED, attack=None, folds=3, count_factor=factor)
        result = run_experiment(MODEL, x, y, x_adv=adversarial, protocol=protocol)
        kernel, train, tests = fits.calls[-1]
        assert kernel == "linear"
        np.testing.assert_array_equal(train, clean)
        np.testing.assert_array_equal(tests[0], factor * adv)
        expected = SVC(kernel="linear", decision_function_shape="ovo").fit(clean, y).predict(factor * adv)
        assert result.recovery_accuracy_all == pytest.approx((expected == y).mean())
    assert result.protocol.startswith("seed (") and "count_factor" not in result.protocol


def test_protocol_validates_its_fields():
    with pytest.raises(ValueError, match="kernel"):
        Protocol("x", kernel="rbf")
    with pytest.raises(ValueError, match="lifetime features need"):
        Protocol("x", features="lifetimes", pieces="components", recovery_features="counts")
    with pytest.raises(ValueError, match="set the seed's graph"):
        dataclasses.replace(ONNXTOPO, percentile=90)
    with pytest.raises(ValueError, match="count_factor"):
        dataclasses.replace(SEED, count_factor=0)
    assert dataclasses.replace(SEED, count_factor=1).describe().count("count_factor") == 1


def test_cli_runs_the_seed_protocol_with_overrides(tmp_path):
    heldout = ROOT / "models" / "mnist-heldout.npz"
    common = ["experiment", MODEL, "--inputs", heldout, "--key", "x", "--labels", heldout, "--labels-key", "y",
              "--limit", "30", "--folds", "3"]
    proc = subprocess.run([sys.executable, "-m", "onnxtopo.cli", *map(str, common), "--protocol", "seed",
                           "--adversarial", heldout, "--adversarial-key", "x", "--count-factor", "1",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    row = json.loads((tmp_path / "experiment.json").read_text())
    assert row["protocol"] == "seed (folds=3, attack=None, count_factor=1.0)"
    assert row["n_attacked"] == 30 and row["attack"] == "inputs given" and row["selection"] is None
    # The seed's features are piece lifetimes: a subgraph edge selection is refused, not ignored.
    proc = subprocess.run([sys.executable, "-m", "onnxtopo.cli", *map(str, common), "--protocol", "seed",
                           "--attack", "none", "--selection", "take", "--take", "2", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "piece lifetimes" in proc.stderr
    with pytest.raises(ValueError, match="piece lifetimes"):
        run_experiment(MODEL, HELDOUT["x"][:10], HELDOUT["y"][:10], protocol=SEED, features=SubgraphFeatures())
    # --percentile sets the seed's graph only: refused with the onnxtopo protocol, as a clean error.
    proc = subprocess.run([sys.executable, "-m", "onnxtopo.cli", *map(str, common), "--percentile", "80"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "set the seed's graph" in proc.stderr


def test_seed_accuracy_is_a_precomputed_cosine_svm_on_unshuffled_folds():
    from scipy.spatial.distance import cdist

    x, y = HELDOUT["x"][:40], HELDOUT["y"][:40]
    result = run_experiment(MODEL, x, y, protocol=dataclasses.replace(SEED, attack=None, folds=3))
    lifetimes = ex.lifetime_features(ex.seed_analyses(Analyzer(MODEL), x, SEED)).toarray()
    gram = 1 - cdist(lifetimes, lifetimes, "cosine")
    scores = cross_val_score(SVC(kernel="precomputed", decision_function_shape="ovo"), gram, y,
                             cv=StratifiedKFold(3))
    assert result.subgraph_svm_accuracy == pytest.approx(scores.mean())
    assert result.subgraph_svm_accuracy_std == pytest.approx(scores.std())
