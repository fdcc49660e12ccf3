"""Adversarial attacks run on the ONNX model through onnxruntime (onnxtopo.attacks)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

from onnxtopo.attacks import AttackStats, OnnxClassifier, attack_stats, attack_success_rate, fgsm, pgd
from onnxtopo.errors import BadInputError

from conftest import make_model

MODELS = Path(__file__).resolve().parents[1] / "models"
EPS = 0.1


# -- a tiny model whose gradient is known in closed form --------------------------------------

SAMPLE = (2, 3)  # flattened to 6 features
CLASSES = 4


def _weights(seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1.5, size=(6, CLASSES)).astype(np.float32), rng.normal(0, 0.5, CLASSES).astype(np.float32)


def _linear_model(head=None):
    """x (N, 2, 3) -> Flatten -> MatMul W -> Add b -> logits, optionally followed by ``head`` nodes."""
    w, b = _weights()
    nodes = [helper.make_node("Flatten", ["x"], ["f"]),
             helper.make_node("MatMul", ["f", "W"], ["z"]),
             helper.make_node("Add", ["z", "b"], ["y" if head is None else "logits"])]
    inits = {"W": w, "b": b}
    if head == "softmax":
        nodes.append(helper.make_node("Softmax", ["logits"], ["y"], axis=1))
    elif head == "manual-softmax":  # probabilities no Softmax node announces
        nodes += [helper.make_node("Exp", ["logits"], ["e"]),
                  helper.make_node("ReduceSum", ["e", "axes"], ["s"], keepdims=1),
                  helper.make_node("Div", ["e", "s"], ["y"])]
        inits["axes"] = np.array([1], dtype=np.int64)
    return make_model(nodes, SAMPLE, inits)


def _analytic_gradient(x, y):
    """∂/∂x of −log softmax(xW + b)[y] = W (softmax(z) − onehot(y)), per input."""
    w, b = (a.astype(np.float64) for a in _weights())
    z = x.reshape(len(x), -1).astype(np.float64) @ w + b
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y] -= 1
    return (p @ w.T).reshape(x.shape)


def _tiny_inputs(n=7, seed=1):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, size=(n, *SAMPLE)).astype(np.float32), rng.integers(0, CLASSES, n)


@pytest.mark.parametrize("batch_size", [2, 5, 2048])
def test_finite_difference_gradient_matches_the_analytic_one(batch_size):
    x, y = _tiny_inputs()
    clf = OnnxClassifier(_linear_model(), batch_size=batch_size)
    assert clf.output_kind == "logits"
    grad = clf.loss_gradient(x, y)
    assert grad.shape == x.shape
    # float32 logits with h = 1e-3: rounding error ~1e-4 per coordinate, truncation far below.
    np.testing.assert_allclose(grad, _analytic_gradient(x, y), rtol=1e-3, atol=5e-4)


def test_probability_outputs_are_recognized_and_give_the_same_gradient():
    x, y = _tiny_inputs()
    expected = _analytic_gradient(x, y)
    softmax = OnnxClassifier(_linear_model("softmax"))
    assert softmax.output_kind == "probabilities"  # from the Softmax node, silently
    np.testing.assert_allclose(softmax.loss_gradient(x, y), expected, rtol=1e-3, atol=5e-4)
    with pytest.warns(UserWarning, match="looks like probabilities"):
        manual = OnnxClassifier(_linear_model("manual-softmax"))
    assert manual.output_kind == "probabilities"
    np.testing.assert_allclose(manual.loss_gradient(x, y), expected, rtol=1e-3, atol=5e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        forced = OnnxClassifier(_linear_model("manual-softmax"), output_kind="probabilities")
    np.testing.assert_allclose(forced.loss(x, y), OnnxClassifier(_linear_model()).loss(x, y), rtol=1e-5)


def test_progress_and_input_checks():
    x, y = _tiny_inputs(3)
    clf = OnnxClassifier(_linear_model(), batch_size=4)
    calls = []
    clf.loss_gradient(x, y, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1] == (18, 18) and len(calls) == 9  # 18 coordinates, 2 per run of 4 rows
    with pytest.raises(BadInputError, match="shape"):
        clf.loss_gradient(x[:, :1], y)
    with pytest.raises(BadInputError, match="labels"):
        clf.loss_gradient(x, np.array([0, 1, CLASSES]))
    with pytest.raises(BadInputError, match="dtype"):
        clf.predict((x * 255).astype(np.uint8))


def test_attack_stats_definition():
    x = np.random.default_rng(3).normal(0, 3, size=(6, *SAMPLE)).astype(np.float32)
    clf = OnnxClassifier(_linear_model())
    pred = clf.predict(x)
    assert len(set(pred.tolist())) > 1
    other = (pred + 1) % CLASSES
    y = np.where(np.arange(6) < 4, pred, other)  # inputs 0-3 correct when clean, 4-5 wrong
    # "Adversarial" inputs: inputs 0, 1 and 4 swapped for ones classified differently.
    x_adv = x.copy()
    for i in (0, 1, 4):
        j = next(j for j in range(6) if pred[j] != pred[i])
        x_adv[i] = x[j]
    stats = attack_stats(clf, x, x_adv, y)
    adv = clf.predict(x_adv)
    flipped = int(((pred == y) & (adv != y)).sum())
    assert stats == AttackStats(6, 4, int((adv == y).sum()), flipped)
    assert stats.success_rate == flipped / 4 and stats.clean_accuracy == 4 / 6
    assert np.isnan(attack_stats(clf, x[4:], x_adv[4:], y[4:]).success_rate)
    assert attack_success_rate is attack_stats  # the name the README gave it before still imports


# -- the shipped CCFF-ReLU model ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ccff():
    data = np.load(MODELS / "mnist-heldout.npz")
    x, y = data["x"][:20], data["y"][:20]
    clf = OnnxClassifier(MODELS / "ccff-relu.onnx")
    x_fgsm = fgsm(clf, x, y, EPS)
    x_pgd = pgd(clf, x, y, EPS, steps=10, seed=0)
    return clf, x, y, x_fgsm, x_pgd


def test_attacks_raise_the_loss_and_change_predictions(ccff):
    clf, x, y, x_fgsm, x_pgd = ccff
    assert clf.output_kind == "logits"
    clean_loss = clf.loss(x, y)
    for x_adv in (x_fgsm, x_pgd):
        assert clf.loss(x_adv, y).mean() > clean_loss.mean()
        assert (clf.predict(x_adv) != clf.predict(x)).any()
    stats_fgsm = attack_stats(clf, x, x_fgsm, y)
    stats_pgd = attack_stats(clf, x, x_pgd, y)
    assert stats_fgsm.clean_accuracy >= 0.8
    assert stats_fgsm.success_rate > 0 and stats_fgsm.adversarial_accuracy < stats_fgsm.clean_accuracy
    assert stats_pgd.success_rate >= stats_fgsm.success_rate
    assert clf.loss(x_pgd, y).mean() > clean_loss.mean()


def test_adversarial_inputs_stay_in_the_ball_and_the_range(ccff):
    _, x, _, x_fgsm, x_pgd = ccff
    for x_adv in (x_fgsm, x_pgd):
        assert x_adv.dtype == np.float32 and x_adv.shape == x.shape
        assert np.abs(x_adv.astype(np.float64) - x.astype(np.float64)).max() <= EPS
        assert x_adv.min() >= 0 and x_adv.max() <= 1
    # FGSM moves every coordinate with a non-zero gradient by eps, unless the range stops it.
    moved = np.abs(x_fgsm - x) > EPS / 2
    at_edge = (x_fgsm == 0) | (x_fgsm == 1)
    assert (moved | at_edge).mean() > 0.9


def test_pgd_is_deterministic_given_a_seed(ccff):
    clf, x, y, *_ = ccff
    x, y = x[:3], y[:3]
    a = pgd(clf, x, y, EPS, steps=2, seed=7)
    b = pgd(clf, x, y, EPS, steps=2, seed=7)
    c = pgd(clf, x, y, EPS, steps=2, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # Without a random start there is nothing random at all.
    np.testing.assert_array_equal(pgd(clf, x, y, EPS, steps=1, random_start=False, seed=1),
                                  pgd(clf, x, y, EPS, steps=1, random_start=False, seed=2))
    # fgsm equals one PGD step of size eps from x.
    np.testing.assert_array_equal(fgsm(clf, x, y, EPS),
                                  pgd(clf, x, y, EPS, step=EPS, steps=1, random_start=False))


def test_a_converter_model_with_a_label_output_first():
    """skl2onnx's MLP outputs an int64 label, then probabilities: the scores are the latter."""
    data = np.load(MODELS / "mnist-heldout.npz")
    x, y = data["x"][:3].reshape(3, -1), data["y"][:3]
    with pytest.warns(UserWarning, match="looks like probabilities"):
        clf = OnnxClassifier(MODELS / "mlp-sklearn.onnx")
    assert (clf.output_name, clf.output_kind) == ("probabilities", "probabilities")
    x_adv = fgsm(clf, x, y, EPS)
    assert (clf.loss(x_adv, y) > clf.loss(x, y)).all()


# -- the minimal-radius search (pgd_min) --------------------------------------------------------

def _two_class_model(w, b):
    """x (N, 2, 3) -> logits (m, -m) with m = x·w + b: the smallest L∞ perturbation that flips the
    prediction is |m| / ‖w‖₁ (every coordinate moved by ε against sign(w) changes m by ε‖w‖₁),
    and the loss gradient's sign is ±sign(w) whatever the point."""
    nodes = [helper.make_node("Flatten", ["x"], ["f"]),
             helper.make_node("MatMul", ["f", "W"], ["z"]),
             helper.make_node("Add", ["z", "b"], ["y"])]
    weights = np.stack([w, -w], axis=1).astype(np.float32)
    return make_model(nodes, SAMPLE, {"W": weights, "b": np.array([b, -b], np.float32)})


def test_pgd_min_finds_the_smallest_radius_of_a_linear_model():
    from onnxtopo.attacks import pgd_min

    w = np.array([0.5, -1.0, 2.0, 0.25, -0.75, 1.5], np.float32)  # ‖w‖₁ = 6
    model = _two_class_model(w, 0.0)
    rng = np.random.default_rng(3)
    x = (0.5 + rng.uniform(-0.05, 0.05, size=(6, *SAMPLE))).astype(np.float32)
    # Margins chosen so that the smallest flipping radius is below, near and above the first
    # try's 0.3 (above: the search must grow the radius first, 0.3 → 0.45).
    targets = np.array([0.05, 0.12, 0.2, 0.29, 0.33, 0.4])
    flat = x.reshape(len(x), -1).astype(np.float64)
    shift = (targets * 6.0 - np.abs(flat @ w)) / np.abs(w).sum()
    flat = flat + np.sign(flat @ w)[:, None] * shift[:, None] * np.sign(w)  # |m| = target · ‖w‖₁
    x = flat.reshape(x.shape).astype(np.float32)
    margins = x.reshape(len(x), -1).astype(np.float64) @ w.astype(np.float64)
    expected = np.abs(margins) / np.abs(w).sum()
    y = (margins < 0).astype(np.int64)  # class 0 when m > 0: every input correct when clean

    found = pgd_min(model, x, y, clip=(0.0, 1.0))
    assert found.found.all()
    clf = OnnxClassifier(model)
    assert (clf.predict(found.x_adv) != y).all()
    # No perturbation smaller than the true radius flips the prediction; a radius-0.3 try moves
    # 0.01 per step, so the kept (least-squares) iterate is within a step of it.
    perturbation = np.abs(found.x_adv.astype(np.float64) - x).reshape(len(x), -1).max(axis=1)
    assert (perturbation >= expected - 1e-6).all() and (perturbation <= expected + 0.0151).all()
    # 20 bisections of a bracket ≤ 0.45 pin the radius to within 0.45 / 2^20 above the true one
    # (plus float32 rounding of the logits).
    np.testing.assert_allclose(found.eps, expected, atol=2e-5)
    assert (found.eps >= expected - 2e-5).all()


def test_pgd_min_beats_fixed_radius_pgd_and_keeps_misclassified_inputs(ccff):
    from onnxtopo.attacks import pgd_min

    clf, x, y = ccff[:3]
    x, y = x[:3], y[:3].copy()
    y[0] = (clf.predict(x[:1])[0] + 1) % 10  # an input the model already gets wrong
    # Coarse steps keep the test short: each try reaches its ball's surface in 4 steps.
    found = pgd_min(clf, x, y, searches=4, steps=8, relative_step=1 / 4)
    assert found.eps[0] == 0 and np.array_equal(found.x_adv[0], x[0])
    fixed = pgd(clf, x, y, 0.3, step=0.3 / 4, steps=8, random_start=False)
    fooled = clf.predict(fixed[1:]) != y[1:]
    assert fooled.any() and found.found[1:][fooled].all()
    linf_fixed = np.abs(fixed.astype(np.float64) - x).reshape(len(x), -1).max(axis=1)[1:]
    linf_min = np.abs(found.x_adv.astype(np.float64) - x).reshape(len(x), -1).max(axis=1)[1:]
    assert (found.eps[1:][fooled] < 0.3).all() and (linf_min[fooled] < linf_fixed[fooled]).all()
    assert (clf.predict(found.x_adv[1:][fooled]) != y[1:][fooled]).all()


def test_pgd_min_reports_inputs_it_cannot_fool():
    from onnxtopo.attacks import pgd_min

    w = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0], np.float32)
    model = _two_class_model(w, 10.0)  # m = Σx + 10 ≥ 10 on [0, 1]: class 0 whatever the input
    x = np.full((2, *SAMPLE), 0.5, np.float32)
    found = pgd_min(model, x, np.zeros(2, np.int64), searches=4, steps=5)
    assert not found.found.any() and np.isnan(found.eps).all()
    assert np.array_equal(found.x_adv, x)
    with pytest.raises(ValueError, match="growth"):
        pgd_min(model, x, None, growth=1.0)
