"""Features for machine learning from the persistence of induced graphs (scikit-learn transformers).

* ``subgraph_edges`` selects edges of one input's persistent subgraph (design notes, induced-graph.md §5):
  all of them, the first ``take`` *pieces*, the ``k`` strongest, or those that kill a class of
  at least a given persistence.
* ``SubgraphFeatures`` turns inputs (or their precomputed analyses) into 0/1 indicators of which
  stable edge ids (source vertex, target vertex) their selected subgraph holds: the features of
  the paper's "subgraph SVM" (§6), e.g. ``Pipeline([SubgraphFeatures(model=...), LinearSVC()])``.
* ``BettiCurve`` and ``PersistenceImage`` vectorize superlevel diagrams such as
  ``AnalysisResult.h0``.

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
from .errors import BadInputError
from .homology import ENGINES, Persistence, PersistentSubgraph

__all__ = [
    "PIECE_RULES",
    "SELECTIONS",
    "BettiCurve",
    "PersistenceImage",
    "SubgraphFeatures",
    "subgraph_edges",
    "subgraph_pieces",
]

SELECTIONS = ("all", "take", "top_k", "persistence")
PIECE_RULES = ("anchored", "components")
MAXPOOL_RULES = ("window", "argmax")


# ----------------------------------------------------------------------------------------------
# Validation helpers (messages in scikit-learn's style)

def _check_option(value, name: str, options, owner: str) -> None:
    if not isinstance(value, str) or value not in options:
        choices = ", ".join(repr(o) for o in options)
        raise ValueError(f"The {name!r} parameter of {owner} must be a str among {{{choices}}}. "
                         f"Got {value!r} instead.")


def _check_selection(selection, take, k, min_persistence, pieces, owner: str) -> None:
    """The parameters of a subgraph selection; only the one the selection uses must be set."""
    _check_option(selection, "selection", SELECTIONS, owner)
    _check_option(pieces, "pieces", PIECE_RULES, owner)
    needed = {"take": ("take", take), "top_k": ("k", k), "persistence": ("min_persistence", min_persistence)}
    if selection in needed:
        name, value = needed[selection]
        if value is None:
            raise ValueError(f"selection={selection!r} needs the {name!r} parameter of {owner}; it is None.")
    if selection == "take":
        check_scalar(take, "take", numbers.Integral, min_val=1)
    elif selection == "top_k":
        check_scalar(k, "k", numbers.Integral, min_val=0)
    elif selection == "persistence":
        check_scalar(min_persistence, "min_persistence", numbers.Real, min_val=0)
        if np.isnan(min_persistence):
            raise ValueError("min_persistence is NaN; it must be a number >= 0.")


def _as_subgraph(obj) -> PersistentSubgraph:
    if isinstance(obj, AnalysisResult):
        return obj.persistence.subgraph
    if isinstance(obj, Persistence):
        return obj.subgraph
    if isinstance(obj, PersistentSubgraph):
        return obj
    raise TypeError("expected an AnalysisResult, a Persistence or a PersistentSubgraph, "
                    f"got {type(obj).__name__}")


# ----------------------------------------------------------------------------------------------
# Pieces and edge selection

def _vertex_entry_keys(sub: PersistentSubgraph):
    """Per vertex id: (value, id) entry keys of the filtration the subgraph comes from.

    With ``vertices="max"`` (the default) a vertex enters with its strongest edge, and that edge
    is a death edge (when it enters, the vertex is still isolated), so the value is the largest φ
    of the vertex's death edges. With ``vertices="inf"`` every class is born at +inf, which the
    births show. Vertices enter by decreasing value, then increasing id.
    """
    src, dst = np.asarray(sub.src, dtype=np.int64), np.asarray(sub.dst, dtype=np.int64)
    n = int(max(src.max(), dst.max())) + 1
    if np.isinf(sub.birth).any():
        return np.full(n, np.inf)
    value = np.zeros(n)
    np.maximum.at(value, src, sub.phi)
    np.maximum.at(value, dst, sub.phi)
    return value


def _anchored_pieces(sub: PersistentSubgraph) -> np.ndarray:
    """Piece index of each death edge by the anchored rule (see ``subgraph_pieces``)."""
    src, dst = np.asarray(sub.src, dtype=np.int64), np.asarray(sub.dst, dtype=np.int64)
    value = _vertex_entry_keys(sub)
    n = value.size
    # Entry rank of each vertex: decreasing value, then increasing id (the filtration's order).
    ids = np.arange(n)
    rank = np.empty(n, dtype=np.int64)
    rank[np.lexsort((ids, -value))] = ids
    rank_l = rank.tolist()
    # A union-find over the forest, in entry order. Each step depends on the previous ones, so
    # this is a plain loop over the death edges (as in homology.forest_persistence): per step a
    # few list operations, about a microsecond each; lists beat numpy arrays for single elements.
    parent = list(range(n))
    oldest = list(range(n))  # per root: the component's earliest vertex (its surviving class)
    first_piece = [-1] * n  # per vertex: the earliest piece holding it, -1 if none
    piece, killed = [], []
    n_pieces = 0

    def find(v):
        while parent[v] != v:
            parent[v] = parent[parent[v]]
            v = parent[v]
        return v

    for a, b in zip(src.tolist(), dst.tolist()):
        ra, rb = find(a), find(b)
        if ra == rb:
            raise ValueError("the subgraph is not a forest: not the death edges of a persistence")
        if rank_l[oldest[rb]] < rank_l[oldest[ra]]:  # b's side holds the elder class
            a, b, ra, rb = b, a, rb, ra
        killed.append(oldest[rb])
        p = first_piece[a]
        if p < 0:
            p, n_pieces = n_pieces, n_pieces + 1
            first_piece[a] = p
        if first_piece[b] < 0 or first_piece[b] > p:
            first_piece[b] = p
        piece.append(p)
        parent[rb] = ra
    # The class each edge kills is the younger side's earliest vertex: its value must be the
    # recorded birth, or the vertex values were not those of vertices="max" or "inf".
    if not np.array_equal(value[np.array(killed, dtype=np.int64)], np.asarray(sub.birth, dtype=np.float64)):
        raise ValueError("cannot group this subgraph into pieces: its births do not match vertex values "
                         'of vertices="max" or "inf" (a custom vertex-value array was used)')
    return np.array(piece, dtype=np.int64)


def _component_pieces(sub: PersistentSubgraph) -> np.ndarray:
    """Piece index of each death edge by the components rule (see ``subgraph_pieces``)."""
    from scipy.sparse.csgraph import connected_components

    src, dst = np.asarray(sub.src, dtype=np.int64), np.asarray(sub.dst, dtype=np.int64)
    n = int(max(src.max(), dst.max())) + 1
    links = scipy.sparse.coo_matrix((np.ones(src.size), (src, dst)), shape=(n, n))
    _, label = connected_components(links, directed=False)
    # Number the components by their first edge in entry order.
    _, first, component = np.unique(label[src], return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first)).astype(np.int64)[component.ravel()]


def subgraph_pieces(result_or_persistence, *, rule: str = "anchored") -> np.ndarray:
    """The piece of each persistent-subgraph edge: an int64 array aligned with the subgraph.

    Pieces are numbered 0, 1, … in the entry order of their first (strongest) edge; each piece
    is connected. Two rules:

    ``"anchored"`` (default; the grouping of Gebhart & Schrater's reference ``pt_activation``):
    walk the death edges in entry order, with a union-find over the forest built so far. A death
    edge joins two components; its *anchor* is its endpoint in the component holding the elder
    class (the one that survives, by the elder rule; the other endpoint lies on the side of the
    class the edge kills). If the anchor already lies in a piece, the edge joins the earliest
    created piece holding the anchor; otherwise (the anchor is a lone vertex) the edge starts a
    new piece. Pieces never merge.

    A piece therefore starts at the first edge of a vertex whose class survives that edge, at
    φ = the class's birth: piece j belongs to the j-th H0 class by decreasing birth (ties by
    entry order), and without φ ties there is exactly one piece per point of the H0 diagram,
    essential classes included. ``take=t`` keeps the edges grown from the t earliest-born
    classes. The pieces start at the same edges as the reference's (tests/test_features.py
    checks this against the reference's loop over dionysus's reduced matrix). Their contents
    differ where the reference is at fault: it anchors on the first vertex of the *reduced*
    boundary chain of the edge, which after a reduction need not be an endpoint of the edge,
    records that chain (possibly not an edge of the graph) instead of the edge, and looks up
    the piece the anchor started before the earliest piece holding it.

    ``"components"``: a piece is a connected component of the whole subgraph (equivalently of
    the induced graph, whose maximum spanning forest the death edges are). A network's induced
    graph is usually connected, and then there is a single piece.

    Needs the subgraph of a filtration with ``vertices="max"`` (default) or ``"inf"``: the vertex
    entry order is recovered from the subgraph itself and checked against the recorded births
    (ValueError otherwise). The anchored rule walks the death edges in a Python loop (a
    union-find: each step depends on the previous ones), a few milliseconds per 3,000 edges.
    """
    sub = _as_subgraph(result_or_persistence)
    _check_option(rule, "rule", PIECE_RULES, "subgraph_pieces")
    if len(sub) == 0:
        return np.empty(0, dtype=np.int64)
    return _anchored_pieces(sub) if rule == "anchored" else _component_pieces(sub)


def _select(sub: PersistentSubgraph, selection, take, k, min_persistence, pieces) -> np.ndarray:
    """Indices (in entry order) of the selected subgraph edges; parameters already checked."""
    m = len(sub)
    if selection == "all" or m == 0:
        return np.arange(m)
    if selection == "take":
        piece = _anchored_pieces(sub) if pieces == "anchored" else _component_pieces(sub)
        return np.flatnonzero(piece < take)
    if selection == "top_k":
        # Highest φ first, ties in entry order (a stable sort); the subgraph is in entry order,
        # i.e. by decreasing φ, so these are its first k edges.
        return np.sort(np.argsort(-np.asarray(sub.phi), kind="stable")[:k])
    persistence = np.asarray(sub.birth, dtype=np.float64) - np.asarray(sub.phi, dtype=np.float64)
    return np.flatnonzero(persistence >= min_persistence)


def subgraph_edges(result_or_persistence, *, selection: str = "all", take: int | None = None,
                   k: int | None = None, min_persistence: float | None = None,
                   pieces: str = "anchored") -> np.ndarray:
    """Selected edges of an input's persistent subgraph, as an (m, 2) int64 array of (src, dst).

    ``result_or_persistence`` is an AnalysisResult, a Persistence or a PersistentSubgraph. Its
    persistent subgraph is the death edges of H0 in entry order (a maximum spanning forest,
    zero-persistence deaths included); rows are global vertex ids, stable across the inputs of
    one model, and come in that entry order. ``selection``:

    * ``"all"``: every death edge;
    * ``"take"``: the edges of the first ``take`` pieces (``subgraph_pieces`` with rule
      ``pieces``, "anchored" by default);
    * ``"top_k"``: the ``k`` strongest edges (highest φ, ties in entry order), all if fewer;
    * ``"persistence"``: the edges that kill a class of persistence birth − death ≥
      ``min_persistence`` (zero-persistence deaths are kept by ``min_persistence=0`` only).

    Only the parameter the selection uses is read; the others are ignored.
    """
    _check_selection(selection, take, k, min_persistence, pieces, "subgraph_edges")
    sub = _as_subgraph(result_or_persistence)
    keep = _select(sub, selection, take, k, min_persistence, pieces)
    return np.stack([np.asarray(sub.src, dtype=np.int64)[keep], np.asarray(sub.dst, dtype=np.int64)[keep]],
                    axis=1).reshape(-1, 2)


# ----------------------------------------------------------------------------------------------
# Subgraph features

def _precomputed(X):
    """X as a list of analyses if it is a sequence of them, None if it holds no analysis at all."""
    if isinstance(X, (AnalysisResult, Persistence, PersistentSubgraph)):
        raise TypeError("X must hold several inputs: wrap a single analysis in a list")
    if isinstance(X, (list, tuple)) or (isinstance(X, np.ndarray) and X.dtype == object):
        items = list(X.ravel()) if isinstance(X, np.ndarray) else list(X)
        kinds = [isinstance(x, (AnalysisResult, Persistence, PersistentSubgraph)) for x in items]
        if items and all(kinds):
            return items
        if any(kinds):
            raise TypeError("X mixes analyses (AnalysisResult, Persistence) with other objects; "
                            "give either model inputs or precomputed analyses")
    return None


class SubgraphFeatures(TransformerMixin, BaseEstimator):
    """0/1 indicators of the persistent-subgraph edges of each input (the "subgraph SVM" features).

    Each input's induced graph in ``model`` is analyzed (H0 persistence), its persistent
    subgraph is cut down by ``subgraph_edges`` (``selection``, ``take``, ``k``,
    ``min_persistence``, ``pieces``), and the input is described by which stable edge ids
    (src, dst) (global vertex ids of ``model``) it holds. ``fit`` learns the vocabulary, every
    edge seen in a training subgraph; ``transform`` gives an (n_inputs, n_features) CSR matrix
    of 0/1 (float64), ignoring edges outside the vocabulary.

    Parameters
    ----------
    model : str or path, default=None
        The ONNX model (a path, bytes or onnx.ModelProto) that analyzes raw inputs. Not needed
        when X holds precomputed analyses.
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
    engine : {"forest", "dionysus"}, default="forest"
        Persistence engine (same results; "forest" is much faster).
    batch_size : int, default=32
        Inputs run through onnxruntime at once.
    maxpool_rule : {"window", "argmax"}, default="window"
        MaxPool edge rule of the model's plan.
    threshold : float, default=None
        Keep only edges with φ ≥ threshold in the induced graphs.
    percentile : float, default=None
        The reference's per-step percentile filter (see ``onnxtopo.analyze``).

    Attributes
    ----------
    vocabulary_ : ndarray of shape (n_features, 2), int64
        The (src, dst) edge of each feature column, sorted lexicographically.

    Notes
    -----
    X is either the model's inputs, an array of shape (n_inputs, *sample shape) (it is analyzed
    with the model), or a list of precomputed analyses (AnalysisResult, Persistence or
    PersistentSubgraph objects, e.g. from ``onnxtopo.analyze`` or of adversarial inputs computed
    elsewhere), which are used as they are: ``model`` and the analysis parameters (engine,
    batch_size, maxpool_rule, threshold, percentile) are then not used. Both kinds can be mixed
    across ``fit`` and ``transform`` (analyses of the same model are assumed).
    """

    def __init__(self, model=None, *, selection="all", take=None, k=None, min_persistence=None,
                 pieces="anchored", engine="forest", batch_size=32, maxpool_rule="window",
                 threshold=None, percentile=None):
        self.model = model
        self.selection = selection
        self.take = take
        self.k = k
        self.min_persistence = min_persistence
        self.pieces = pieces
        self.engine = engine
        self.batch_size = batch_size
        self.maxpool_rule = maxpool_rule
        self.threshold = threshold
        self.percentile = percentile

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # X is a batch of model inputs of any rank, or a list of analyses: scikit-learn's generic
        # checks, which generate 2-D numeric data, do not apply (tests/test_features.py runs the
        # relevant ones on real inputs).
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        return tags

    # -- analysis ---------------------------------------------------------------------------
    def _check_params(self):
        name = type(self).__name__
        _check_selection(self.selection, self.take, self.k, self.min_persistence, self.pieces, name)

    def _check_analysis_params(self):
        name = type(self).__name__
        _check_option(self.engine, "engine", ENGINES, name)
        _check_option(self.maxpool_rule, "maxpool_rule", MAXPOOL_RULES, name)
        check_scalar(self.batch_size, "batch_size", numbers.Integral, min_val=1)
        if self.threshold is not None:
            check_scalar(self.threshold, "threshold", numbers.Real)
        if self.percentile is not None:
            check_scalar(self.percentile, "percentile", numbers.Real, min_val=0, max_val=100)
        if self.model is None:
            raise ValueError(f"{name} needs `model` (a path to an .onnx model) to analyze raw inputs; "
                             "or pass X as a list of precomputed AnalysisResult / Persistence objects")

    def _analyses(self, X):
        """Each input's analysis: precomputed ones as given (a list), raw inputs run through the
        model (an iterator: results stream batch by batch, the inputs validated first)."""
        items = _precomputed(X)
        if items is not None:
            return items
        if isinstance(X, (list, tuple)) and len(X) == 0:
            raise ValueError("X is empty (0 inputs); at least one input is required.")
        self._check_analysis_params()
        x = np.asarray(X)
        if x.dtype == object:
            raise TypeError("X must be a numeric array of model inputs (n_inputs, *sample shape) or a list "
                            "of AnalysisResult / Persistence objects")
        try:
            analyzer = Analyzer(self.model, maxpool_rule=self.maxpool_rule)
            return analyzer.analyze(x, batch_size=self.batch_size, engine=self.engine,
                                    threshold=self.threshold, percentile=self.percentile)
        except BadInputError as exc:
            raise ValueError(f"{type(self).__name__}: {exc}") from exc

    def _edge_lists(self, X) -> list[np.ndarray]:
        edges = [subgraph_edges(a, selection=self.selection, take=self.take, k=self.k,
                                min_persistence=self.min_persistence, pieces=self.pieces)
                 for a in self._analyses(X)]
        if not edges:
            raise ValueError("X is empty (0 inputs); at least one input is required.")
        return edges

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

def _diagrams(X, owner: str):
    """(points (P, 2) float64, diagram index of each point (P,), number of diagrams) of X.

    X is a sequence of superlevel diagrams: arrays of shape (n_points, 2) of (birth, death),
    birth ≥ death, death = +inf for essential classes; an AnalysisResult or Persistence stands
    for its H0 diagram. A 3-D array (n_diagrams, n_points, 2) works too.
    """
    if isinstance(X, np.ndarray) and X.dtype != object and X.ndim != 3:
        raise ValueError(f"{owner} expects a list of diagrams (arrays of shape (n_points, 2)); got an array of "
                         f"shape {X.shape}. Wrap a single diagram in a list: [diagram].")
    if isinstance(X, (str, bytes)) or not hasattr(X, "__len__"):
        raise TypeError(f"{owner} expects a list of diagrams (arrays of shape (n_points, 2)), "
                        f"got {type(X).__name__}")
    if len(X) == 0:
        raise ValueError(f"{owner}: found 0 diagrams, while a minimum of 1 is required.")
    arrays = []
    for i, d in enumerate(X):
        if isinstance(d, (AnalysisResult, Persistence)):
            d = d.h0
        try:
            a = np.asarray(d, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{owner}: diagram {i} is not numeric ({exc})") from exc
        if a.size == 0:
            a = a.reshape(0, 2)
        if a.ndim != 2 or a.shape[1] != 2:
            raise ValueError(f"{owner}: diagram {i} has shape {a.shape}; diagrams are arrays of shape "
                             "(n_points, 2) of (birth, death)")
        arrays.append(a)
    points = np.concatenate(arrays)
    owner_ids = np.repeat(np.arange(len(arrays)), [len(a) for a in arrays])
    birth, death = points[:, 0], points[:, 1]
    if np.isnan(points).any():
        i = owner_ids[np.isnan(points).any(axis=1)][0]
        raise ValueError(f"{owner}: diagram {i} holds NaN.")
    if (points == -np.inf).any():
        i = owner_ids[(points == -np.inf).any(axis=1)][0]
        raise ValueError(f"{owner}: diagram {i} holds -inf; essential classes die at +inf.")
    bad = (birth < death) & np.isfinite(death)
    if bad.any():
        i = owner_ids[bad][0]
        raise ValueError(f"{owner}: diagram {i} has a point with birth < death; superlevel diagrams "
                         "have birth >= death (pass (birth, death) with birth = the larger value).")
    return points, owner_ids, len(arrays)


def _check_range(value, name: str, owner: str):
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"The {name!r} parameter of {owner} must be None or a pair (low, high); "
                         f"got {value!r}.") from None
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
        raise ValueError(f"The {name!r} parameter of {owner} must be finite with low <= high; got {value!r}.")
    return lo, hi


class _DiagramTransformer(TransformerMixin, BaseEstimator):
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # X is a list of variable-length diagrams, not a 2-D array: scikit-learn's generic checks
        # do not apply (tests/test_features.py runs the relevant ones on diagrams).
        tags.input_tags.two_d_array = False
        return tags


class BettiCurve(_DiagramTransformer):
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
        points, _, _ = _diagrams(X, name)
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
        points, owner, n = _diagrams(X, type(self).__name__)
        grid = self.grid_
        birth, death = points[:, 0], np.where(np.isinf(points[:, 1]), -np.inf, points[:, 1])
        # Alive at grid_[j] for first <= j < stop: t <= b for j < stop, t <= d (dead) for j < first.
        first = np.searchsorted(grid, death, side="right")
        stop = np.searchsorted(grid, birth, side="right")
        width = grid.size + 1
        delta = (np.bincount(owner * width + first, minlength=n * width)
                 - np.bincount(owner * width + stop, minlength=n * width))
        return np.cumsum(delta.reshape(n, width), axis=1)[:, :-1].astype(np.float64)

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "grid_")
        return np.array([f"betti{j}" for j in range(self.grid_.size)], dtype=object)


class PersistenceImage(_DiagramTransformer):
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
            _check_option(self.weight, "weight", ("linear", "constant"), name)
        return int(nx), int(ny)

    def fit(self, X, y=None):
        """Learn the grid (and default sigma) from the training diagrams' finite points."""
        name = type(self).__name__
        nx, ny = self._check_params()
        points, _, _ = _diagrams(X, name)
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
        points, owner, n = _diagrams(X, type(self).__name__)
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
