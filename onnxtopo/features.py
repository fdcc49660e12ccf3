"""Features for machine learning from the persistence of induced graphs (scikit-learn transformers).

Analysis and vectorization are separate steps, as in giotto-tda:

* ``InducedPersistence`` analyzes inputs with a model: it holds the analysis parameters, plans
  the model once in ``fit``, and ``transform`` turns inputs into their analyses
  (``AnalysisResult`` objects);
* ``SubgraphFeatures`` turns analyses into 0/1 indicators of which stable edge ids
  (source vertex, target vertex) their selected persistent subgraph holds (``subgraph_edges``):
  the features of the paper's "subgraph SVM" (§6);
* ``BettiCurve`` and ``PersistenceImage`` vectorize superlevel diagrams such as
  ``AnalysisResult.h0`` (an analysis stands for its H0 diagram), and the static view's
  (``onnxtopo.static_persistence``): a list of ``StaticPersistence`` results gives one row per
  model (its whole-network diagram), one ``StaticPersistence`` one row per layer.

``make_pipeline(InducedPersistence(model), SubgraphFeatures(), LinearSVC())`` analyzes raw
inputs; with ``Pipeline(memory=...)``, or by analyzing once and passing the list of analyses to
the vectorizers, each input is analyzed once however many folds or parameters are tried.

Global vertex ids are stable across the inputs of one model (``InducedGraph.locate`` maps an id to
(layer, tensor, neuron)), so the pair (src, dst) identifies an edge as (layer, source neuron,
target neuron) would. All transformers follow scikit-learn's conventions: ``__init__`` only stores
its parameters, they are validated in ``fit``, fitted attributes end with "_", and the objects
work with ``clone``, ``get_params``/``set_params``, pipelines and model selection.

scikit-learn is needed by this module only (``import onnxtopo`` does not import it).
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse
from scipy.special import ndtr
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted, check_scalar

from .api import AnalysisResult, Analyzer
from .diagrams import as_diagram, betti_curve
from .errors import BadInputError
from .filtration import VERTEX_MODES
from .homology import ENGINES, Persistence, PersistentSubgraph
from .rules.op_pool import MAXPOOL_RULES
from .static import StaticPersistence
from .subgraph import (
    PIECE_RULES,
    SELECTIONS,
    check_choice,
    check_selection,
    subgraph_edges,
    subgraph_pieces,
)

# subgraph_edges and subgraph_pieces live in onnxtopo.subgraph; they stay importable from here.
__all__ = [
    "PIECE_RULES",
    "SELECTIONS",
    "BettiCurve",
    "InducedPersistence",
    "PersistenceImage",
    "SubgraphFeatures",
    "subgraph_edges",
    "subgraph_pieces",
]

_ANALYSES = (AnalysisResult, Persistence, PersistentSubgraph)


# ----------------------------------------------------------------------------------------------
# Analysis

class _NonTabularTransformer(TransformerMixin, BaseEstimator):
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # X is a batch of model inputs, a list of analyses or of variable-length diagrams, not a
        # 2-D array: scikit-learn's generic checks, which generate 2-D numeric data, do not apply
        # (tests/test_features.py runs the relevant ones on data these transformers take).
        tags.input_tags.two_d_array = False
        return tags


class InducedPersistence(_NonTabularTransformer):
    """Inputs → their analyses: the persistence of the graph each input induces in ``model``.

    ``fit`` checks the parameters and plans the model (``plan_``); ``transform`` runs the inputs
    through it and returns a list of ``AnalysisResult`` objects (H0 diagram, H1 with ``h1``, the
    persistent subgraph), one per input, in order: what ``SubgraphFeatures``, ``BettiCurve`` and
    ``PersistenceImage`` take. The onnxruntime session is made by ``fit`` and reused by every
    ``transform``; it is not pickled (an unpickled transformer makes a new one when it first
    transforms), so a fitted transformer can be cached by ``Pipeline(memory=...)``.

    Parameters
    ----------
    model : str, path, bytes or onnx.ModelProto
        The ONNX model.
    h1 : bool, default=False
        Also compute the H1 diagrams.
    vertices : {"max", "inf"}, default="max"
        Vertex entry values of the filtration (see ``onnxtopo.analyze``).
    threshold : float, default=None
        Keep only edges with φ ≥ threshold in the induced graphs.
    percentile : float, default=None
        The reference's per-step percentile filter (see ``onnxtopo.analyze``).
    engine : {"forest", "dionysus"}, default="forest"
        Persistence engine (same results; "forest" is much faster).
    maxpool_rule : {"window", "argmax"}, default="window"
        MaxPool edge rule of the model's plan.
    batch_size : int, default=32
        Inputs run through onnxruntime at once.
    workers : int, default=1
        Processes analyzing batches (see ``Analyzer.analyze``).

    Attributes
    ----------
    plan_ : onnxtopo.Plan
        The planned model.
    """

    def __init__(self, model=None, *, h1=False, vertices="max", threshold=None, percentile=None, engine="forest",
                 maxpool_rule="window", batch_size=32, workers=1):
        self.model = model
        self.h1 = h1
        self.vertices = vertices
        self.threshold = threshold
        self.percentile = percentile
        self.engine = engine
        self.maxpool_rule = maxpool_rule
        self.batch_size = batch_size
        self.workers = workers

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True  # model inputs of any rank
        return tags

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_analyzer", None)  # an onnxruntime session does not pickle
        return state

    def _check_params(self):
        name = type(self).__name__
        if self.model is None:
            raise ValueError(f"{name} needs `model` (a path to an .onnx model, its bytes or an onnx.ModelProto).")
        if not isinstance(self.h1, (bool, np.bool_)):
            raise TypeError(f"The 'h1' parameter of {name} must be a bool. Got {self.h1!r} instead.")
        check_choice(self.vertices, "vertices", VERTEX_MODES, name)
        check_choice(self.engine, "engine", ENGINES, name)
        check_choice(self.maxpool_rule, "maxpool_rule", MAXPOOL_RULES, name)
        check_scalar(self.batch_size, "batch_size", numbers.Integral, min_val=1)
        check_scalar(self.workers, "workers", numbers.Integral, min_val=1)
        if self.threshold is not None:
            check_scalar(self.threshold, "threshold", numbers.Real)
        if self.percentile is not None:
            check_scalar(self.percentile, "percentile", numbers.Real, min_val=0, max_val=100)

    def fit(self, X, y=None):
        """Check the parameters and plan the model; X and y are ignored."""
        self._check_params()
        self._analyzer = Analyzer(self.model, maxpool_rule=self.maxpool_rule)
        self.plan_ = self._analyzer.plan
        return self

    @property
    def analyzer_(self) -> Analyzer:
        """The fitted ``Analyzer`` (plan and onnxruntime session), remade after unpickling."""
        check_is_fitted(self, "plan_")
        if getattr(self, "_analyzer", None) is None:
            self._analyzer = Analyzer(self.plan_)
        return self._analyzer

    def transform(self, X) -> list[AnalysisResult]:
        """The analysis of each input of X, an array of shape (n_inputs, *sample shape)."""
        check_is_fitted(self, "plan_")
        if isinstance(X, (list, tuple)) and len(X) == 0:
            raise ValueError("X is empty (0 inputs); at least one input is required.")
        if isinstance(X, _ANALYSES) or (isinstance(X, (list, tuple)) and isinstance(X[0], _ANALYSES)):
            raise TypeError(f"{type(self).__name__} analyzes model inputs; X already holds analyses, which "
                            "SubgraphFeatures, BettiCurve and PersistenceImage take as they are.")
        x = np.asarray(X)
        if x.dtype == object:
            raise TypeError("X must be a numeric array of model inputs (n_inputs, *sample shape)")
        try:
            return list(self.analyzer_.analyze(x, batch_size=self.batch_size, workers=self.workers, h1=self.h1,
                                               vertices=self.vertices, engine=self.engine,
                                               threshold=self.threshold, percentile=self.percentile))
        except BadInputError as exc:
            raise ValueError(f"{type(self).__name__}: {exc}") from exc


# ----------------------------------------------------------------------------------------------
# Subgraph features

def _analyses(X, owner: str) -> list:
    """X as a list of analyses (AnalysisResult, Persistence or PersistentSubgraph objects)."""
    if isinstance(X, _ANALYSES):
        raise TypeError("X must hold several inputs: wrap a single analysis in a list")
    items = None
    if isinstance(X, (list, tuple)):
        items = list(X)
    elif isinstance(X, np.ndarray) and X.dtype == object:
        items = list(X.ravel())
    if items is not None and len(items) == 0:
        raise ValueError("X is empty (0 inputs); at least one input is required.")
    if items is None or not all(isinstance(x, _ANALYSES) for x in items):
        raise TypeError(f"{owner} takes analyses (AnalysisResult, Persistence or PersistentSubgraph objects, "
                        "e.g. from onnxtopo.analyze); analyze model inputs first with InducedPersistence: "
                        f"make_pipeline(InducedPersistence(model), {owner}(...)).")
    return items


class SubgraphFeatures(_NonTabularTransformer):
    """0/1 indicators of the persistent-subgraph edges of each analysis (the "subgraph SVM" features).

    Each analysis's persistent subgraph is cut down by ``subgraph_edges`` (``selection``,
    ``take``, ``k``, ``min_persistence``, ``pieces``), and the input is described by which
    stable edge ids (src, dst) (global vertex ids of the model) it holds. ``fit`` learns the
    vocabulary, every edge seen in a training subgraph; ``transform`` gives an
    (n_inputs, n_features) CSR matrix of 0/1 (float64), ignoring edges outside the vocabulary.

    Parameters
    ----------
    selection : {"all", "take", "top_k", "persistence"}, default="all"
        Which subgraph edges describe an input (see ``subgraph_edges``).
    take : int, default=None
        Number of pieces kept with ``selection="take"``.
    k : int, default=None
        Number of strongest edges kept with ``selection="top_k"``.
    min_persistence : float, default=None
        Smallest persistence of the classes whose death edges are kept with
        ``selection="persistence"``.
    pieces : {"anchored", "components"}, default="anchored"
        How ``selection="take"`` groups edges into pieces (see ``subgraph_pieces``).

    Attributes
    ----------
    vocabulary_ : ndarray of shape (n_features, 2), int64
        The (src, dst) edge of each feature column, sorted lexicographically.

    Notes
    -----
    X is a list of analyses of inputs of one model: AnalysisResult, Persistence or
    PersistentSubgraph objects, from ``InducedPersistence`` (in a pipeline),
    ``onnxtopo.analyze`` or computed elsewhere. Raw model inputs go through
    ``InducedPersistence(model)`` first.
    """

    def __init__(self, *, selection="all", take=None, k=None, min_persistence=None, pieces="anchored"):
        self.selection = selection
        self.take = take
        self.k = k
        self.min_persistence = min_persistence
        self.pieces = pieces

    def _check_params(self):
        check_selection(self.selection, self.take, self.k, self.min_persistence, self.pieces, type(self).__name__)

    def _edge_lists(self, X) -> list[np.ndarray]:
        return [subgraph_edges(a, selection=self.selection, take=self.take, k=self.k,
                               min_persistence=self.min_persistence, pieces=self.pieces)
                for a in _analyses(X, type(self).__name__)]

    # -- vocabulary and matrix ----------------------------------------------------------------
    def _learn(self, edges: list[np.ndarray]) -> None:
        pairs = np.concatenate(edges) if edges else np.empty((0, 2), dtype=np.int64)
        self.vocabulary_ = np.unique(pairs, axis=0).astype(np.int64).reshape(-1, 2)

    def _matrix(self, edges: list[np.ndarray]) -> scipy.sparse.csr_matrix:
        vocab = self.vocabulary_
        n_features = len(vocab)
        pairs = np.concatenate(edges) if edges else np.empty((0, 2), dtype=np.int64)
        rows = np.repeat(np.arange(len(edges)), [len(e) for e in edges])
        if n_features and pairs.size:
            # One int64 key per (src, dst) with ids below the vocabulary's largest id + 1; other
            # edges cannot be in the vocabulary.
            base = int(vocab.max()) + 1
            inside = (pairs >= 0).all(axis=1) & (pairs < base).all(axis=1)
            keys = pairs[inside, 0] * base + pairs[inside, 1]
            vocab_keys = vocab[:, 0] * base + vocab[:, 1]  # sorted, as vocab is
            col = np.minimum(np.searchsorted(vocab_keys, keys), n_features - 1)
            found = vocab_keys[col] == keys
            rows, cols = rows[inside][found], col[found]
        else:
            rows, cols = rows[:0], np.empty(0, dtype=np.int64)
        matrix = scipy.sparse.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(len(edges), n_features))
        matrix.sum_duplicates()
        matrix.data[:] = 1.0  # indicators, even if an edge were listed twice
        return matrix

    # -- scikit-learn API -------------------------------------------------------------------
    def fit(self, X, y=None):
        """Learn the vocabulary of edge ids from the training inputs' subgraphs.

        X: model inputs (n_inputs, *sample shape), or a list of precomputed analyses. y: ignored.
        """
        self._check_params()
        self._learn(self._edge_lists(X))
        return self

    def fit_transform(self, X, y=None):
        """``fit(X).transform(X)``, analyzing each input once."""
        self._check_params()
        edges = self._edge_lists(X)
        self._learn(edges)
        return self._matrix(edges)

    def transform(self, X):
        """(n_inputs, n_features) CSR matrix: 1 where the input's subgraph holds the column's edge."""
        check_is_fitted(self, "vocabulary_")
        self._check_params()
        return self._matrix(self._edge_lists(X))

    def get_feature_names_out(self, input_features=None):
        """Feature names "e{src}_{dst}", one per vocabulary edge."""
        check_is_fitted(self, "vocabulary_")
        return np.array([f"e{s}_{d}" for s, d in self.vocabulary_.tolist()], dtype=object)


# ----------------------------------------------------------------------------------------------
# Diagram vectorizations

def _diagrams(X, owner: str) -> list[np.ndarray]:
    """X as a list of validated superlevel diagrams (``diagrams.as_diagram``).

    X is a sequence of diagrams: arrays of shape (n_points, 2) of (birth, death), birth ≥ death,
    death = +inf for essential classes; an AnalysisResult or Persistence stands for its H0
    diagram, and so does the static view's LayerPersistence; a StaticPersistence in the sequence
    stands for its whole-network diagram (one row per model: training snapshots, say), while a
    single StaticPersistence as X stands for its layers' diagrams (one row per layer). A 3-D
    array (n_diagrams, n_points, 2) works too.
    """
    if isinstance(X, StaticPersistence):
        X = X.layers
    if isinstance(X, np.ndarray) and X.dtype != object and X.ndim != 3:
        raise ValueError(f"{owner} expects a list of diagrams (arrays of shape (n_points, 2)); got an array of "
                         f"shape {X.shape}. Wrap a single diagram in a list: [diagram].")
    if isinstance(X, (str, bytes)) or not hasattr(X, "__len__"):
        raise TypeError(f"{owner} expects a list of diagrams (arrays of shape (n_points, 2)), "
                        f"got {type(X).__name__}")
    if len(X) == 0:
        raise ValueError(f"{owner}: found 0 diagrams, while a minimum of 1 is required.")
    return [as_diagram(d, name=f"{owner}: diagram {i}") for i, d in enumerate(X)]


def _points(diagrams: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(every point (P, 2), the index of the diagram each belongs to (P,))."""
    return np.concatenate(diagrams), np.repeat(np.arange(len(diagrams)), [len(d) for d in diagrams])

def _check_range(value, name: str, owner: str):
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"The {name!r} parameter of {owner} must be None or a pair (low, high); "
                         f"got {value!r}.") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
        raise ValueError(f"The {name!r} parameter of {owner} must be finite with low <= high; got {value!r}.")
    return lo, hi


class BettiCurve(_NonTabularTransformer):
    """Betti curves of superlevel diagrams on a fixed grid: classes alive at each grid value.

    In a superlevel filtration a point (birth b, death d), b ≥ d, is alive at t when
    d < t ≤ b (its class appears when t comes down to b and is gone once t reaches d); an
    essential point (d = +inf) is alive at every t ≤ b. The grid is ``n_bins`` values evenly
    spaced over ``sample_range`` (low and high included) or, by default, over the range of the
    finite births and deaths of the training diagrams.

    Parameters
    ----------
    n_bins : int, default=100
    sample_range : (float, float), default=None

    Attributes
    ----------
    grid_ : ndarray of shape (n_bins,), increasing
        The values t the curves are sampled at: ``transform(X)[i, j]`` counts the classes of
        diagram i alive at ``grid_[j]``.
    """

    def __init__(self, n_bins=100, *, sample_range=None):
        self.n_bins = n_bins
        self.sample_range = sample_range

    def fit(self, X, y=None):
        """Learn the grid from the training diagrams (unless ``sample_range`` is given)."""
        name = type(self).__name__
        check_scalar(self.n_bins, "n_bins", numbers.Integral, min_val=1)
        points, _ = _points(_diagrams(X, name))
        if self.sample_range is not None:
            lo, hi = _check_range(self.sample_range, "sample_range", name)
        else:
            finite = points[np.isfinite(points)]
            if finite.size == 0:
                raise ValueError(f"{name} cannot learn its grid: the training diagrams hold no finite value; "
                                 "give sample_range.")
            lo, hi = float(finite.min()), float(finite.max())
        self.grid_ = np.linspace(lo, hi, self.n_bins)
        return self

    def transform(self, X):
        """(n_diagrams, n_bins) float64 array of Betti numbers at ``grid_``."""
        check_is_fitted(self, "grid_")
        diagrams = _diagrams(X, type(self).__name__)
        return np.stack([betti_curve(d, self.grid_) for d in diagrams]).astype(np.float64)

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "grid_")
        return np.array([f"betti{j}" for j in range(self.grid_.size)], dtype=object)


class PersistenceImage(_NonTabularTransformer):
    """Persistence images of superlevel diagrams (Adams et al., 2017), finite points only.

    Each finite point (birth b, death d) of a diagram becomes the point (d, b − d) in
    (death, persistence) coordinates, carrying a Gaussian of standard deviation ``sigma`` times
    a weight. The image is that surface integrated over each pixel of a fixed grid:
    pixel (i, j) = Σ_points w · [Φ((x_{i+1} − d)/σ) − Φ((x_i − d)/σ)] ·
    [Φ((y_{j+1} − p)/σ) − Φ((y_j − p)/σ)], Φ the standard normal CDF, x the death edges and y the
    persistence edges of the pixels. Mass falling outside the grid is lost. Points with an
    infinite coordinate (essential classes) are left out.

    Parameters
    ----------
    resolution : (int, int), default=(20, 20)
        Pixels along death and along persistence.
    sigma : float, default=None
        Kernel standard deviation in φ units; None: the larger side of a pixel.
    weight : "linear", "constant" or callable, default="linear"
        "linear": w = min(p / p_max, 1), p the persistence and p_max the top of the persistence
        range (Adams et al.'s piecewise-linear weight, so that points near the diagonal fade);
        "constant": w = 1; a callable maps an array of persistences to an array of weights.
    death_range, persistence_range : (float, float), default=None
        The grid's extent; by default the training diagrams' finite deaths span the death
        range and the persistence range is [0, largest finite persistence]. An empty span is
        widened by 0.5 on each side (the top of the persistence range becomes 1 if it is 0).

    Attributes
    ----------
    death_edges_ : ndarray of shape (resolution[0] + 1,)
    persistence_edges_ : ndarray of shape (resolution[1] + 1,)
    sigma_ : float
        The kernel width used.

    ``transform`` returns an (n_diagrams, resolution[0] * resolution[1]) float64 array, pixel
    (i, j) (i-th death bin, j-th persistence bin) in column ``i * resolution[1] + j``.
    """

    def __init__(self, resolution=(20, 20), *, sigma=None, weight="linear", death_range=None,
                 persistence_range=None):
        self.resolution = resolution
        self.sigma = sigma
        self.weight = weight
        self.death_range = death_range
        self.persistence_range = persistence_range

    def _check_params(self):
        name = type(self).__name__
        try:
            nx, ny = self.resolution
        except (TypeError, ValueError):
            raise ValueError(f"The 'resolution' parameter of {name} must be a pair of ints; "
                             f"got {self.resolution!r}.") from None
        check_scalar(nx, "resolution[0]", numbers.Integral, min_val=1)
        check_scalar(ny, "resolution[1]", numbers.Integral, min_val=1)
        if self.sigma is not None:
            check_scalar(self.sigma, "sigma", numbers.Real, min_val=0, include_boundaries="neither")
            if not np.isfinite(self.sigma):
                raise ValueError(f"sigma must be finite, got {self.sigma}.")
        if not callable(self.weight):
            check_choice(self.weight, "weight", ("linear", "constant"), name)
        return int(nx), int(ny)

    def fit(self, X, y=None):
        """Learn the grid (and default sigma) from the training diagrams' finite points."""
        name = type(self).__name__
        nx, ny = self._check_params()
        points, _ = _points(_diagrams(X, name))
        finite = np.isfinite(points).all(axis=1)
        death, pers = points[finite, 1], points[finite, 0] - points[finite, 1]
        if (self.death_range is None or self.persistence_range is None) and not finite.any():
            raise ValueError(f"{name} cannot learn its grid: the training diagrams hold no finite point; give "
                             "death_range and persistence_range.")
        if self.death_range is not None:
            d_lo, d_hi = _check_range(self.death_range, "death_range", name)
        else:
            d_lo, d_hi = float(death.min()), float(death.max())
        if self.persistence_range is not None:
            p_lo, p_hi = _check_range(self.persistence_range, "persistence_range", name)
        else:
            p_lo, p_hi = 0.0, float(pers.max())
        if d_lo == d_hi:
            d_lo, d_hi = d_lo - 0.5, d_hi + 0.5
        if p_lo == p_hi:
            p_lo, p_hi = (0.0, 1.0) if p_hi == 0 else (p_lo - 0.5, p_hi + 0.5)
        self.death_edges_ = np.linspace(d_lo, d_hi, nx + 1)
        self.persistence_edges_ = np.linspace(p_lo, p_hi, ny + 1)
        self.sigma_ = float(self.sigma) if self.sigma is not None else max((d_hi - d_lo) / nx, (p_hi - p_lo) / ny)
        return self

    def _weights(self, pers: np.ndarray) -> np.ndarray:
        if callable(self.weight):
            w = np.asarray(self.weight(pers), dtype=np.float64)
            if w.shape != pers.shape:
                raise ValueError(f"the weight callable returned shape {w.shape} for {pers.shape} persistences")
            return w
        if self.weight == "constant":
            return np.ones_like(pers)
        top = self.persistence_edges_[-1]
        return np.clip(pers / top, 0.0, 1.0) if top > 0 else np.ones_like(pers)

    def transform(self, X):
        """(n_diagrams, resolution[0] * resolution[1]) float64 array of pixel values."""
        check_is_fitted(self, "sigma_")
        diagrams = _diagrams(X, type(self).__name__)
        points, owner = _points(diagrams)
        n = len(diagrams)
        finite = np.isfinite(points).all(axis=1)
        points, owner = points[finite], owner[finite]
        death, pers = points[:, 1], points[:, 0] - points[:, 1]
        s = self.sigma_
        along_death = np.diff(ndtr((self.death_edges_[None, :] - death[:, None]) / s), axis=1)
        along_pers = np.diff(ndtr((self.persistence_edges_[None, :] - pers[:, None]) / s), axis=1)
        along_death *= self._weights(pers)[:, None]
        nx, ny = along_death.shape[1], along_pers.shape[1]
        images = np.zeros((n, nx, ny))
        # Points are grouped by diagram (in order): one matrix product per diagram.
        bounds = np.searchsorted(owner, np.arange(n + 1))
        for i in np.flatnonzero(np.diff(bounds)):
            lo, hi = bounds[i], bounds[i + 1]
            images[i] = along_death[lo:hi].T @ along_pers[lo:hi]
        return images.reshape(n, nx * ny)

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "sigma_")
        nx, ny = self.death_edges_.size - 1, self.persistence_edges_.size - 1
        return np.array([f"pixel{i}_{j}" for i in range(nx) for j in range(ny)], dtype=object)
