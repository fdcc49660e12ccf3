"""Figures of onnxtopo's results: diagrams, barcodes, subgraphs on the input, class similarity.

matplotlib is an optional dependency (``pip install onnxtopo[plot]``), imported only when a
function here runs. Figures are built as ``matplotlib.figure.Figure`` objects on an Agg canvas,
never through pyplot: nothing is displayed, no global backend is switched, and a figure nobody
keeps is garbage-collected (pyplot would hold every figure until ``plt.close``). Every function
returns its Figure and, given ``path``, also writes it there (PNG unless the suffix says
otherwise) at ``dpi``, so the image is ``figsize × dpi`` pixels. Functions taking ``ax`` draw
into that Axes instead of a new figure and return the figure it belongs to.

Diagrams are those of the superlevel filtration: points (birth, death) with birth ≥ death, so
they lie below the diagonal. An essential class (death = inf, dionysus's convention) survives
past the weakest edge, so it is drawn on a dashed line *below* the finite range, labelled ∞.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse

from .diagrams import as_diagram, sort_diagram
from .subgraph import as_subgraph, selected_edges

#: Share of the finite range left between the lowest finite value and the line of essential points.
ESSENTIAL_GAP = 0.12


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "onnxtopo's plots need matplotlib, which is not installed: "
            "pip install 'onnxtopo[plot]' (or pip install matplotlib)"
        ) from exc
    return Figure, FigureCanvasAgg


def _figure(figsize, dpi, ncols=1, **subplots):
    """A new Figure on an Agg canvas, with ``ncols`` Axes side by side."""
    Figure, FigureCanvasAgg = _matplotlib()
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols, squeeze=False, **subplots)[0]
    return fig, list(axes)


def _axes(ax, figsize, dpi):
    if ax is not None:
        _matplotlib()
        return ax.figure, ax
    fig, (ax,) = _figure(figsize, dpi)
    return fig, ax


def _finish(fig, path, dpi):
    if path is not None:
        fig.savefig(path, dpi=dpi)
    return fig


# -- diagrams -----------------------------------------------------------------------------------


def _h0_of(result) -> np.ndarray:
    """The H0 diagram of an AnalysisResult, a Persistence, or the array itself."""
    return as_diagram(result, name="H0 diagram", finite_births=True)


class _Scale:
    """Where things go on a φ axis: the finite range, the line of essential points, the limits."""

    def __init__(self, *diagrams):
        values = np.concatenate([d[np.isfinite(d)] for d in diagrams] + [np.zeros(0)])
        lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
        span = hi - lo if hi > lo else max(abs(hi), 1.0)
        self.essential = lo - ESSENTIAL_GAP * span
        self.limits = (self.essential - 0.08 * span, hi + 0.06 * span)

    def deaths(self, d: np.ndarray) -> np.ndarray:
        return np.where(np.isinf(d[:, 1]), self.essential, d[:, 1])


def _essential_line(ax, value, vertical=False):
    from matplotlib.transforms import blended_transform_factory

    style = {"color": "0.5", "linestyle": "--", "linewidth": 0.8, "zorder": 0}
    if vertical:
        ax.axvline(value, **style)
        ax.text(value, 0.99, " ∞", transform=blended_transform_factory(ax.transData, ax.transAxes),
                va="top", ha="left", color="0.35")
    else:
        ax.axhline(value, **style)
        # Under the line, at the right: the one corner no point of a superlevel diagram reaches.
        ax.text(0.99, value, "death = ∞ (essential) ", transform=blended_transform_factory(ax.transAxes, ax.transData),
                va="top", ha="right", color="0.35", fontsize="small")


def _draw_diagram(ax, diagrams, scale: _Scale, title=None):
    """Scatter ``diagrams`` [(points, label, color, marker)] on one persistence-diagram Axes."""
    lo, hi = scale.limits
    ax.plot([lo, hi], [lo, hi], color="0.3", linewidth=0.8, zorder=1)
    _essential_line(ax, scale.essential)
    for points, label, color, marker in diagrams:
        n_inf = int(np.isinf(points[:, 1]).sum())
        ax.scatter(points[:, 0], scale.deaths(points), s=14, alpha=0.7, color=color, marker=marker,
                   edgecolors="none", zorder=2,
                   label=f"{label}: {len(points) - n_inf} finite, {n_inf} essential")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel("birth (φ)")
    ax.set_ylabel("death (φ)")
    ax.legend(loc="upper left", fontsize="small")
    if title:
        ax.set_title(title)


def plot_diagram(h0, h1=None, ax=None, *, title: str | None = None, figsize=(5, 5), dpi: int = 100,
                 path=None):
    """Persistence diagram of a superlevel filtration: birth on x, death on y, below the diagonal.

    ``h0`` (and ``h1``) are (n, 2) arrays of (birth, death); an AnalysisResult (or Persistence)
    passed as ``h0`` gives its H0 diagram, and its H1 diagram when it has one and ``h1`` is None.
    Essential points (death = inf) sit on the dashed "∞" line below the finite range.
    """
    if h1 is None and hasattr(h0, "h0"):
        h1 = getattr(h0, "h1", None)
    h0 = _h0_of(h0)
    diagrams = [(h0, "H0", "tab:blue", "o")]
    if h1 is not None:
        diagrams.append((as_diagram(h1, name="H1 diagram", finite_births=True), "H1", "tab:orange", "^"))
    fig, ax = _axes(ax, figsize, dpi)
    _draw_diagram(ax, diagrams, _Scale(*(d for d, *_ in diagrams)), title)
    return _finish(fig, path, dpi)


def plot_barcode(diagram, ax=None, *, title: str | None = None, max_bars: int | None = None,
                 color="tab:blue", figsize=(6, 4), dpi: int = 100, path=None):
    """Barcode of a superlevel diagram: one bar per class, from its birth to its death.

    The φ axis is reversed so the filtration runs left to right (strongest edges first); bars are
    stacked by decreasing birth. Essential classes run to the dashed "∞" line. ``max_bars`` keeps
    only that many of the most persistent classes (essential ones first). ``diagram`` may also be
    an AnalysisResult (its H0).
    """
    d = _h0_of(diagram)
    total = len(d)
    if max_bars is not None and total > max_bars:
        persistence = np.where(np.isinf(d[:, 1]), np.inf, d[:, 0] - d[:, 1])
        d = d[np.argsort(-persistence, kind="stable")[:max_bars]]
    d = sort_diagram(d)
    scale = _Scale(d)
    fig, ax = _axes(ax, figsize, dpi)
    if len(d):
        essential = np.isinf(d[:, 1])
        rows = np.arange(len(d))
        width = float(np.clip(250 / len(d), 0.4, 4))
        ax.hlines(rows[~essential], d[~essential, 1], d[~essential, 0], color=color, linewidth=width)
        ax.hlines(rows[essential], scale.essential, d[essential, 0], color="tab:red", linewidth=width,
                  label="essential (death = ∞)")
        if essential.any():
            ax.legend(loc="lower left", fontsize="small")
        ax.set_ylim(len(d) - 0.5, -0.5)
    else:
        ax.text(0.5, 0.5, "empty diagram", transform=ax.transAxes, ha="center", va="center")
    _essential_line(ax, scale.essential, vertical=True)
    ax.set_xlim(scale.limits[1], scale.limits[0])
    ax.set_yticks([])
    ax.set_xlabel("φ (filtration order →)")
    shown = f"{len(d)} of {total} classes" if len(d) < total else f"{total} classes"
    ax.set_ylabel(shown + ", by birth")
    if title:
        ax.set_title(title)
    return _finish(fig, path, dpi)


def plot_clean_vs_adversarial(result_clean, result_adv, *, titles=("clean", "adversarial"),
                              figsize=(10, 5), dpi: int = 100, path=None):
    """The H0 diagrams of a clean input and its adversarial version, side by side, same axes.

    Arguments are AnalysisResults (or Persistence objects, or H0 arrays); both panels share one
    scale, so the ∞ line and every point are comparable across them.
    """
    clean, adv = _h0_of(result_clean), _h0_of(result_adv)
    scale = _Scale(clean, adv)
    fig, axes = _figure(figsize, dpi, ncols=2, sharex=True, sharey=True)
    for ax, points, title, color in zip(axes, (clean, adv), titles, ("tab:blue", "tab:red")):
        _draw_diagram(ax, [(points, "H0", color, "o")], scale, title)
    axes[1].set_ylabel("")
    return _finish(fig, path, dpi)


# -- the persistent subgraph on the input -------------------------------------------------------


def subgraph_input_weights(result, plan, *, min_persistence: float | None = None) -> np.ndarray:
    """Per input neuron (layer 0, shaped ``plan.layers[0].shape``): the summed φ of its subgraph edges.

    ``result`` is an AnalysisResult (or its Persistence or PersistentSubgraph), ``plan`` the
    Plan it was computed with (``Analyzer.plan``, ``onnxtopo.inspect``). With
    ``min_persistence``, only edges killing a class of persistence (birth − φ) at least that
    count, as in ``onnxtopo.subgraph.subgraph_edges``. Neurons no counted edge touches weigh 0.
    """
    sub = as_subgraph(result)
    layer = plan.layers[0]
    src, dst = np.asarray(sub.src, dtype=np.int64), np.asarray(sub.dst, dtype=np.int64)
    phi = np.asarray(sub.phi, dtype=np.float64)
    if min_persistence is not None:
        keep = selected_edges(sub, "persistence", None, None, min_persistence, "anchored")
        src, dst, phi = src[keep], dst[keep], phi[keep]
    weights = np.zeros(layer.size)
    # Edges only leave the input layer, but either end is checked so any layered graph works.
    for ends in (src, dst):
        local = ends - layer.offset
        inside = (local >= 0) & (local < layer.size)
        weights += np.bincount(local[inside], weights=phi[inside], minlength=layer.size)
    return weights.reshape(layer.shape)


def _channel_axis(shape, channel_axis):
    if channel_axis is not None or len(shape) != 3:
        return channel_axis
    # ONNX image models are channels-first (N, C, H, W); channels-last only when that is clear.
    if shape[-1] in (1, 3, 4) and shape[0] not in (1, 3, 4):
        return 2
    return 0


def _as_image(values: np.ndarray, channel_axis, reduce="sum") -> np.ndarray:
    """A 2-D array to draw from one sample's values: channels reduced, 1-D made square if possible."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 1:
        side = math.isqrt(values.size)
        return values.reshape(side, side) if side * side == values.size else values.reshape(1, -1)
    if values.ndim == 2:
        return values
    if values.ndim == 3:
        axis = _channel_axis(values.shape, channel_axis)
        return values.sum(axis=axis) if reduce == "sum" else values.mean(axis=axis)
    raise ValueError(f"cannot draw an input of shape {values.shape} as an image (1-D, 2-D or 3-D with channels only)")


def _display_image(image: np.ndarray, channel_axis):
    """``image`` ready for imshow: RGB (H, W, 3) for three channels, else a 2-D gray array."""
    if image.ndim == 3:
        axis = _channel_axis(image.shape, channel_axis)
        if image.shape[axis] == 3:
            rgb = np.moveaxis(image, axis, -1).astype(np.float64)
            span = rgb.max() - rgb.min()
            return (rgb - rgb.min()) / span if span > 0 else np.zeros_like(rgb), None
    return _as_image(image, channel_axis, reduce="mean"), "gray"


def plot_subgraph_on_input(result, plan, image=None, *, min_persistence: float | None = None,
                           channel_axis: int | None = None, cmap="inferno", title: str | None = None,
                           figsize=None, dpi: int = 100, path=None):
    """The persistent subgraph drawn back onto the input: a heatmap of each pixel's summed φ.

    For each input neuron (layer 0), the sum of φ over the subgraph edges it belongs to (see
    ``subgraph_input_weights``), drawn in the input's layout; channels are summed
    (``channel_axis``: which axis they are; default channels-first unless clearly last). Given
    ``image`` (the input itself, with or without its batch axis of 1), it is shown on the left
    and the heatmap is laid over it on the right. ``figsize`` defaults to (8, 4) with an image,
    (5, 4) without.
    """
    weights = subgraph_input_weights(result, plan, min_persistence=min_persistence)
    heat = _as_image(weights, channel_axis)
    if figsize is None:
        figsize = (8, 4) if image is not None else (5, 4)
    fig, axes = _figure(figsize, dpi, ncols=1 if image is None else 2)
    if image is not None:
        image = np.asarray(image, dtype=np.float64)
        if image.ndim == weights.ndim + 1 and image.shape[0] == 1:
            image = image[0]
        if image.shape != weights.shape:
            raise ValueError(f"image has shape {image.shape}; the model's input layer has shape {weights.shape}")
        shown, gray = _display_image(image, channel_axis)
        axes[0].imshow(shown, cmap=gray, interpolation="nearest")
        axes[0].set_title("input")
        # The heatmap over a faint copy of the input: zero-weight pixels stay transparent.
        axes[1].imshow(_as_image(image, channel_axis, reduce="mean"), cmap="gray", alpha=0.35,
                       interpolation="nearest")
    masked = np.ma.masked_where(heat <= 0, heat)
    im = axes[-1].imshow(masked, cmap=cmap, interpolation="nearest", alpha=0.9 if image is not None else 1.0,
                         vmin=0, vmax=max(float(heat.max()), np.finfo(float).tiny))
    fig.colorbar(im, ax=axes[-1], shrink=0.85, label="summed φ of subgraph edges")
    n_pixels = int((weights > 0).sum())
    axes[-1].set_title(title or f"persistent subgraph on the input ({n_pixels} neurons)")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return _finish(fig, path, dpi)


# -- classes ------------------------------------------------------------------------------------


def class_similarity(features, labels) -> tuple[np.ndarray, np.ndarray]:
    """(classes, k × k matrix): cosine similarity of the classes' mean feature vectors.

    ``features`` is (n inputs × p features), a numpy array or a scipy.sparse matrix (typically
    0/1 indicators of subgraph edges), ``labels`` the n class labels. The mean vector of class c
    is the average of its inputs' rows; entry (a, b) is cos(mean_a, mean_b). A class whose mean
    is the zero vector has NaN similarities.
    """
    labels = np.asarray(labels).ravel()
    n = features.shape[0]
    if len(labels) != n:
        raise ValueError(f"{n} feature rows but {len(labels)} labels")
    if n == 0:
        raise ValueError("no inputs")
    classes, inverse = np.unique(labels, return_inverse=True)
    counts = np.bincount(inverse)
    averaging = scipy.sparse.csr_matrix((1.0 / counts[inverse], (inverse, np.arange(n))), shape=(len(classes), n))
    means = averaging @ (features.astype(np.float64) if scipy.sparse.issparse(features)
                         else np.asarray(features, dtype=np.float64))
    gram = means @ means.T
    gram = gram.toarray() if scipy.sparse.issparse(gram) else np.asarray(gram)
    norms = np.sqrt(np.clip(np.diag(gram), 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        similarity = gram / np.outer(norms, norms)
    similarity[(norms == 0)[:, None] | (norms == 0)[None, :]] = np.nan
    return classes, np.clip(similarity, -1, 1)


def plot_class_similarity(features, labels, ax=None, *, annotate: bool | None = None, fmt: str = ".2f",
                          cmap="viridis", title: str | None = "class similarity of mean subgraph features",
                          figsize=(6, 5), dpi: int = 100, path=None):
    """Annotated heatmap of ``class_similarity(features, labels)``.

    Rows are labelled with each class's number of inputs. ``annotate`` writes the value in each
    cell (default: when there are at most 20 classes).
    """
    classes, similarity = class_similarity(features, labels)
    counts = np.bincount(np.unique(np.asarray(labels).ravel(), return_inverse=True)[1])
    fig, ax = _axes(ax, figsize, dpi)
    finite = similarity[np.isfinite(similarity)]
    vmin = min(0.0, float(finite.min())) if finite.size else 0.0
    im = ax.imshow(similarity, cmap=cmap, vmin=vmin, vmax=1.0, interpolation="nearest")
    fig.colorbar(im, ax=ax, shrink=0.85, label="cosine similarity")
    k = len(classes)
    ax.set_xticks(range(k), [str(c) for c in classes])
    ax.set_yticks(range(k), [f"{c} (n={m})" for c, m in zip(classes, counts)])
    ax.set_xlabel("class")
    ax.set_ylabel("class")
    if annotate is None:
        annotate = k <= 20
    if annotate:
        mid = (vmin + 1.0) / 2
        for (i, j), value in np.ndenumerate(similarity):
            text = "–" if np.isnan(value) else format(value, fmt)
            # Dark text on the bright end of the colormap, light text on the dark end.
            color = "white" if np.isfinite(value) and value <= mid else "black"
            ax.text(j, i, text, ha="center", va="center", color=color, fontsize="small")
    if title:
        ax.set_title(title)
    return _finish(fig, path, dpi)
