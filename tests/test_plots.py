"""Figures of onnxtopo's results (onnxtopo.plots), drawn from real CCFF-ReLU results."""

from __future__ import annotations

import gc
import sys
import weakref
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse

pytest.importorskip("matplotlib")
import matplotlib.image

import onnxtopo
from onnxtopo import plots
from onnxtopo.attacks import fgsm

MODELS = Path(__file__).resolve().parents[1] / "models"


@pytest.fixture(scope="module")
def ccff():
    data = np.load(MODELS / "mnist-heldout.npz")
    x, y = data["x"][:4], data["y"][:4]
    analyzer = onnxtopo.Analyzer(MODELS / "ccff-relu.onnx")
    results = list(analyzer.analyze(x, h1=True))
    x_adv = fgsm(MODELS / "ccff-relu.onnx", x[:1], y[:1], 0.1)
    adv = next(analyzer.analyze(x_adv))
    return analyzer.plan, x, y, results, adv


def _check_png(path: Path, figsize, dpi):
    assert path.is_file() and path.stat().st_size > 0
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (round(figsize[1] * dpi), round(figsize[0] * dpi))
    assert pixels.std() > 0  # something was drawn


def _edge_features(results, n_vertices):
    """Sparse 0/1 matrix: row i marks the subgraph edges of input i."""
    keys = [r.subgraph.src * n_vertices + r.subgraph.dst for r in results]
    columns, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    rows = np.repeat(np.arange(len(keys)), [len(k) for k in keys])
    return scipy.sparse.csr_matrix((np.ones(len(rows)), (rows, inverse)), shape=(len(keys), len(columns)))


def test_plot_diagram(ccff, tmp_path):
    _, _, _, results, _ = ccff
    fig = plots.plot_diagram(results[0].h0, results[0].h1, path=tmp_path / "d.png", dpi=80)
    _check_png(tmp_path / "d.png", (5, 5), 80)
    ax = fig.axes[0]
    # Points below the diagonal, essential ones on the ∞ line under every finite value.
    offsets = ax.collections[0].get_offsets()
    assert (offsets[:, 1] <= offsets[:, 0]).all()
    finite = np.isfinite(results[0].h0[:, 1])
    assert offsets[~finite, 1].max() < results[0].h0[finite].min()
    # A result passed directly gives the same picture; an empty diagram still draws.
    plots.plot_diagram(results[1], path=tmp_path / "r.png", figsize=(4, 3))
    _check_png(tmp_path / "r.png", (4, 3), 100)
    plots.plot_diagram(np.zeros((0, 2)), path=tmp_path / "empty.png")
    _check_png(tmp_path / "empty.png", (5, 5), 100)


def test_plot_barcode(ccff, tmp_path):
    _, _, _, results, _ = ccff
    plots.plot_barcode(results[0].h0, path=tmp_path / "b.png", dpi=90, figsize=(6, 4))
    _check_png(tmp_path / "b.png", (6, 4), 90)
    fig = plots.plot_barcode(results[0], max_bars=25, path=tmp_path / "b25.png")
    _check_png(tmp_path / "b25.png", (6, 4), 100)
    assert "25 of" in fig.axes[0].get_ylabel()
    assert len(fig.axes[0].collections[1].get_segments()) == 1  # the essential class is kept


def test_plot_subgraph_on_input(ccff, tmp_path):
    plan, x, _, results, _ = ccff
    weights = plots.subgraph_input_weights(results[0], plan)
    assert weights.shape == plan.layers[0].shape == x.shape[1:]
    sub = results[0].subgraph
    from_input = sub.src < plan.layers[0].size
    np.testing.assert_allclose(weights.sum(), sub.phi[from_input].sum())
    # φ = |w·h| vanishes on black pixels: only lit pixels can carry subgraph edges (this also
    # checks that ids map to pixels in row-major order).
    assert (weights > 0).any() and not (weights[x[0] == 0] > 0).any()
    strong = plots.subgraph_input_weights(results[0], plan, min_persistence=0.05)
    assert (strong <= weights + 1e-12).all() and strong.sum() < weights.sum()

    plots.plot_subgraph_on_input(results[0], plan, x[0], path=tmp_path / "s.png")
    _check_png(tmp_path / "s.png", (8, 4), 100)
    plots.plot_subgraph_on_input(results[1], plan, path=tmp_path / "s1.png", dpi=60)
    _check_png(tmp_path / "s1.png", (5, 4), 60)
    with pytest.raises(ValueError, match="shape"):
        plots.plot_subgraph_on_input(results[0], plan, x[0, 0, :10])


def test_class_similarity_values():
    features = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 0]], dtype=float)
    labels = np.array([2, 2, 5, 5, 9])
    classes, sim = plots.class_similarity(features, labels)
    assert classes.tolist() == [2, 5, 9]
    mean5 = np.array([0.5, 1, 0.5])
    np.testing.assert_allclose(sim[0, 1], mean5[0] / np.linalg.norm(mean5))
    np.testing.assert_allclose(np.diag(sim)[:2], 1)
    assert np.isnan(sim[2]).all() and np.isnan(sim[:, 2]).all()  # class 9's mean is zero
    _, sparse_sim = plots.class_similarity(scipy.sparse.csr_matrix(features), labels)
    np.testing.assert_allclose(sparse_sim, sim)


def test_plot_class_similarity(ccff, tmp_path):
    plan, _, y, results, _ = ccff
    features = _edge_features(results, plan.n_vertices)
    labels = np.array([0, 0, 1, 1]) if len(set(y.tolist())) == 4 else y
    fig = plots.plot_class_similarity(features, labels, path=tmp_path / "c.png", dpi=70)
    _check_png(tmp_path / "c.png", (6, 5), 70)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert len(texts) == len(set(labels.tolist())) ** 2 and "1.00" in texts


def test_plot_clean_vs_adversarial(ccff, tmp_path):
    _, _, _, results, adv = ccff
    fig = plots.plot_clean_vs_adversarial(results[0], adv, path=tmp_path / "ca.png", dpi=50)
    _check_png(tmp_path / "ca.png", (10, 5), 50)
    left, right = fig.axes[:2]
    assert left.get_xlim() == right.get_xlim() and left.get_ylim() == right.get_ylim()


def test_figures_are_not_kept_alive(ccff, tmp_path):
    """No pyplot: figures are never registered globally and are freed once dropped."""
    import matplotlib.pyplot as plt

    h0 = ccff[3][0].h0[:20]
    refs = []
    for i in range(21):  # pyplot would warn about more than 20 open figures
        refs.append(weakref.ref(plots.plot_diagram(h0, path=tmp_path / f"{i}.png", dpi=20)))
    assert plt.get_fignums() == []
    gc.collect()
    assert all(r() is None for r in refs)


def test_drawing_into_a_given_axes(ccff, tmp_path):
    import matplotlib.figure

    _, _, _, results, _ = ccff
    fig = matplotlib.figure.Figure(figsize=(8, 4))
    ax1, ax2 = fig.subplots(1, 2)
    assert plots.plot_diagram(results[0].h0, ax=ax1) is fig
    assert plots.plot_barcode(results[0].h0, ax=ax2, path=tmp_path / "both.png", dpi=50) is fig
    _check_png(tmp_path / "both.png", (8, 4), 50)


def test_missing_matplotlib_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ImportError, match=r"pip install 'onnxtopo\[plot\]'"):
        plots.plot_diagram(np.array([[1.0, 0.5]]))
