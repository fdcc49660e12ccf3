"""Features for scikit-learn (onnxtopo.features): subgraph selection, SubgraphFeatures, diagram vectorizers.

Sections:
  A. Subgraph selection on hand-built graphs: pieces (anchored, components), take, top_k,
     persistence, computed by hand; pieces against a re-implementation of the reference's grouping.
  B. SubgraphFeatures on hand-built analyses: vocabulary, unseen edges, errors.
  C. SubgraphFeatures on the shipped CCFF model and held-out MNIST inputs: raw inputs and
     precomputed analyses agree, a Pipeline with LinearSVC, cross-validation.
  D. BettiCurve and PersistenceImage on tiny hand-made diagrams.
  E. scikit-learn conventions: the library's own checks where they apply, and the same contracts
     checked on data these estimators accept.
"""

from __future__ import annotations

import math
import pickle
from copy import deepcopy
from pathlib import Path

import joblib
import numpy as np
import pytest
import scipy.sparse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC
from sklearn.utils import estimator_checks as checks
from sklearn.utils.validation import check_is_fitted

import onnxtopo
from onnxtopo import InducedGraph, persistence
from onnxtopo.features import (
    BettiCurve,
    PersistenceImage,
    SubgraphFeatures,
    subgraph_edges,
    subgraph_pieces,
)

ROOT = Path(__file__).resolve().parents[1]
MODEL = str(ROOT / "models" / "ccff-relu.onnx")
INF = np.inf
ENGINES = ("forest", "dionysus")


def edges_of(array) -> list[tuple[int, int]]:
    return [tuple(row) for row in np.asarray(array).tolist()]


# ----------------------------------------------------------------------------------------------
# A. Subgraph selection on hand-built graphs

def hand_graph() -> InducedGraph:
    """Eleven vertices (one layer: layers play no part in persistence), ten edges.

    Vertex values (vertices="max": the largest φ of a vertex's edges): 0:20 4:20 1:18 5:18 2:16
    3:12 6:12 7:10 8:6 9:2 10:2. Walking the edges by decreasing φ (the entry order), with the
    anchor = the endpoint on the side of the surviving (elder) class:

      edge     φ   components before                   kills (b, d)  anchor  piece
      (0,4)   20   0, 4 lone; 0 elder (same value, id)  4 (20, 20)    0       new P0
      (1,5)   18   1, 5 lone; 1 elder                   5 (18, 18)    1       new P1
      (2,4)   16   2 lone vs {0,4} (oldest 0)           2 (16, 16)    4       P0
      (2,5)   14   {0,4,2} (0: 20) vs {1,5} (1: 18)     1 (18, 14)    2       P0
      (3,6)   12   3, 6 lone; 3 elder                   6 (12, 12)    3       new P2
      (6,7)   10   7 lone vs {3,6}                      7 (10, 10)    6       P2
      (5,7)    9   {0,..} (0: 20) vs {3,6,7} (3: 12)    3 (12, 9)     5       P0 (5 is in P1 and P0:
                                                                              the earliest, P0)
      (1,8)    6   8 lone vs {0,..}                     8 (6, 6)      1       P1 (1 is only in P1)
      (0,5)    4   same component: a cycle, not a death edge
      (9,10)   2   9, 10 lone; 9 elder                  10 (2, 2)     9       new P3

    Death edges in entry order and their pieces: P0 P1 P0 P0 P2 P2 P0 P1 P3. Essential classes:
    0 (20, inf) and 9 (2, inf); H0 = (20, inf), (18, 14), (12, 9), (2, inf).
    """
    edges = [(0, 4, 20), (1, 5, 18), (2, 4, 16), (2, 5, 14), (3, 6, 12), (6, 7, 10), (5, 7, 9),
             (1, 8, 6), (0, 5, 4), (9, 10, 2)]
    src, dst, phi = zip(*edges)
    return InducedGraph.from_edges([[11]], src, dst, phi)


DEATH_EDGES = [(0, 4), (1, 5), (2, 4), (2, 5), (3, 6), (6, 7), (5, 7), (1, 8), (9, 10)]
ANCHORED = [0, 1, 0, 0, 2, 2, 0, 1, 3]
COMPONENTS = [0, 0, 0, 0, 0, 0, 0, 0, 1]  # {0..8} and {9, 10}


@pytest.fixture(params=ENGINES, ids=lambda e: f"engine={e}")
def hand(request):
    return persistence(hand_graph(), engine=request.param)


def test_hand_graph_subgraph_and_diagram(hand):
    assert edges_of(subgraph_edges(hand)) == DEATH_EDGES
    assert sorted(map(tuple, hand.h0.tolist())) == [(2, INF), (12, 9), (18, 14), (20, INF)]


def test_pieces_by_hand(hand):
    assert subgraph_pieces(hand).tolist() == ANCHORED
    assert subgraph_pieces(hand, rule="components").tolist() == COMPONENTS
    # One piece per H0 point (no ties between a survivor's first edge and a death here), and
    # the pieces' first edges have φ = the births 20, 18, 12, 2, in order.
    first = [ANCHORED.index(p) for p in range(4)]
    assert np.asarray(hand.subgraph.phi)[first].tolist() == [20, 18, 12, 2]


@pytest.mark.parametrize("take, expected", [
    (1, [(0, 4), (2, 4), (2, 5), (5, 7)]),                                # P0
    (2, [(0, 4), (1, 5), (2, 4), (2, 5), (5, 7), (1, 8)]),                # + P1, in entry order
    (3, [(0, 4), (1, 5), (2, 4), (2, 5), (3, 6), (6, 7), (5, 7), (1, 8)]),  # + P2
    (4, DEATH_EDGES),
    (99, DEATH_EDGES),
])
def test_take_by_hand(hand, take, expected):
    assert edges_of(subgraph_edges(hand, selection="take", take=take)) == expected


def test_take_components_by_hand(hand):
    assert edges_of(subgraph_edges(hand, selection="take", take=1, pieces="components")) == DEATH_EDGES[:-1]
    assert edges_of(subgraph_edges(hand, selection="take", take=2, pieces="components")) == DEATH_EDGES


@pytest.mark.parametrize("k, expected", [(0, []), (3, DEATH_EDGES[:3]), (9, DEATH_EDGES), (50, DEATH_EDGES)])
def test_top_k_by_hand(hand, k, expected):
    # φ 20, 18, 16, ...: the k strongest are the first k death edges.
    assert edges_of(subgraph_edges(hand, selection="top_k", k=k)) == expected


@pytest.mark.parametrize("threshold, expected", [
    (0, DEATH_EDGES),             # every death edge, zero-persistence ones included
    (0.5, [(2, 5), (5, 7)]),      # kill (18, 14) (persistence 4) and (12, 9) (persistence 3)
    (3, [(2, 5), (5, 7)]),        # 3 >= 3: kept
    (4, [(2, 5)]),
    (4.5, []),
])
def test_min_persistence_by_hand(hand, threshold, expected):
    assert edges_of(subgraph_edges(hand, selection="persistence", min_persistence=threshold)) == expected


def tie_graph(vertices="max"):
    """A path 0-1-2-3 whose three edges all have φ = 5, listed as (2,3), (0,1), (1,2).

    Ties enter by edge index, so the death edges are (2,3), (0,1), (1,2) in that order. All
    vertices have value 5, so the elder is the lower id: (2,3) starts P0 (anchor 2), (0,1)
    starts P1 (anchor 0), and (1,2) joins {0,1} (oldest 0) to {2,3} (oldest 2): 0 is elder, the
    anchor is 1, in P1, even though P0 was created first. Pieces: P0 P1 P1.
    """
    g = InducedGraph.from_edges([[4]], [2, 0, 1], [3, 1, 2], [5, 5, 5])
    return persistence(g, vertices=vertices)


@pytest.mark.parametrize("vertices", ["max", "inf"])
def test_ties(vertices):
    p = tie_graph(vertices)
    assert edges_of(subgraph_edges(p)) == [(2, 3), (0, 1), (1, 2)]
    assert subgraph_pieces(p).tolist() == [0, 1, 1]
    assert edges_of(subgraph_edges(p, selection="take", take=1)) == [(2, 3)]
    # Ties in φ: the first k in entry order.
    assert edges_of(subgraph_edges(p, selection="top_k", k=2)) == [(2, 3), (0, 1)]


def test_custom_vertex_values_refused_for_pieces_only():
    # Path 0 -1- 1 -2- 2 with vertex values 5, 3, 2: (1,2) kills 2, then (0,1) kills the class
    # born at 1 (birth 3). From the subgraph alone, vertex 1's value would read 2 and vertex 0's
    # 1, which contradicts the recorded birth 3: pieces are refused, other selections work.
    g = InducedGraph.from_edges([[3]], [0, 1], [1, 2], [1, 2])
    p = persistence(g, vertices=np.array([5.0, 3.0, 2.0]))
    assert edges_of(subgraph_edges(p, selection="top_k", k=1)) == [(1, 2)]
    with pytest.raises(ValueError, match="custom vertex-value array"):
        subgraph_edges(p, selection="take", take=1)


def test_accepts_result_persistence_and_subgraph(hand):
    result = onnxtopo.AnalysisResult(0, 11, hand.n_edges, hand)
    for obj in (result, hand, hand.subgraph):
        assert edges_of(subgraph_edges(obj, selection="take", take=1)) == [(0, 4), (2, 4), (2, 5), (5, 7)]
    with pytest.raises(TypeError, match="AnalysisResult"):
        subgraph_edges(np.zeros((3, 2)))


def test_empty_subgraph():
    p = persistence(InducedGraph.from_edges([[2]], [0], [1], [0.0]))  # the φ = 0 edge is dropped
    for kwargs in ({}, {"selection": "take", "take": 1}, {"selection": "top_k", "k": 2},
                   {"selection": "persistence", "min_persistence": 0}):
        out = subgraph_edges(p, **kwargs)
        assert out.shape == (0, 2) and out.dtype == np.int64
    assert subgraph_pieces(p).shape == (0,)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"selection": "best"}, ValueError, "'selection' parameter of subgraph_edges must be a str among"),
    ({"selection": "take"}, ValueError, "needs the 'take' parameter"),
    ({"selection": "take", "take": 0}, ValueError, "take == 0, must be >= 1"),
    ({"selection": "take", "take": 1.5}, TypeError, "take must be an instance of int"),
    ({"selection": "top_k"}, ValueError, "needs the 'k' parameter"),
    ({"selection": "top_k", "k": -1}, ValueError, "k == -1, must be >= 0"),
    ({"selection": "persistence"}, ValueError, "needs the 'min_persistence' parameter"),
    ({"selection": "persistence", "min_persistence": -0.1}, ValueError, "must be >= 0"),
    ({"selection": "persistence", "min_persistence": np.nan}, ValueError, "NaN"),
    ({"selection": "take", "take": 1, "pieces": "trees"}, ValueError, "'pieces' parameter"),
])
def test_selection_errors(hand, kwargs, error, message):
    with pytest.raises(error, match=message):
        subgraph_edges(hand, **kwargs)


def test_unused_parameters_are_ignored(hand):
    assert edges_of(subgraph_edges(hand, selection="all", take=1, k=2, min_persistence=3)) == DEATH_EDGES


def reference_piece_starts(graph) -> list[int]:
    """Edge index of the first edge of each piece, by the reference's own grouping.

    pt_activation (subgraph_prediction.create_sample_graph) walks dionysus's reduced matrix: a
    column with two entries is a death edge, its entries (c0, c1) the reduced boundary; the pair
    joins the piece keyed c0, else the first piece (in creation order) holding c0, else starts
    a new piece keyed c0. Run here on onnxtopo's own filtration (as homology.dionysus_persistence
    builds it).
    """
    import dionysus

    dims, indices, values = onnxtopo.superlevel_filtration(graph).simplices()
    simplices = [dionysus.Simplex([i] if d == 0 else [int(graph.src[i]), int(graph.dst[i])], v)
                 for d, i, v in zip(dims.tolist(), indices.tolist(), values.tolist())]
    f = dionysus.Filtration(simplices)
    m = dionysus.homology_persistence(f)
    pieces, starts = {}, []
    for i, column in enumerate(m):
        if len(column) != 2:
            continue
        c0, c1 = f[column[0].index][0], f[column[1].index][0]
        holder = pieces.get(c0) or next((nodes for nodes in pieces.values() if c0 in nodes), None)
        if holder is None:
            pieces[c0] = {c0, c1}
            starts.append(int(indices[i]))
        else:
            holder.update((c0, c1))
    return starts


@st.composite
def random_graphs(draw):
    n = draw(st.integers(2, 14))
    pairs = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(lambda p: p[0] < p[1]),
                          min_size=1, max_size=30, unique=True))
    src, dst = zip(*pairs)
    # Small integers make many ties; exact in float32, dionysus's precision.
    phi = draw(st.lists(st.integers(1, draw(st.sampled_from([2, 4, 1000]))), min_size=len(pairs),
                        max_size=len(pairs)))
    return InducedGraph.from_edges([[n]], src, dst, phi)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs())
def test_pieces_properties_and_reference_starts(graph):
    p = persistence(graph)
    sub = p.subgraph
    piece = subgraph_pieces(p)
    # Numbered by first edge in entry order: 0, 1, 2, ... first appear in that order.
    _, first = np.unique(piece, return_index=True)
    assert np.array_equal(first, np.sort(first)) and (piece.size == 0 or piece[0] == 0)
    # Each piece is a tree: vertices = edges + 1 (its edges are forest edges, so connected).
    vertex_pieces = np.unique(np.concatenate([np.stack([piece, sub.src], 1), np.stack([piece, sub.dst], 1)]), axis=0)
    assert np.array_equal(np.bincount(vertex_pieces[:, 0]), np.bincount(piece) + 1)
    # Pieces start at the same edges as the reference's grouping.
    assert np.asarray(sub.edge)[first].tolist() == reference_piece_starts(graph)
    # One piece per class that survives its vertex's first edge: at least one per H0 point.
    assert len(first) >= len(p.h0)
    # Components: as many pieces as essential classes (components of the graph).
    assert np.unique(subgraph_pieces(p, rule="components")).size == np.isinf(p.h0[:, 1]).sum()
    # Every selection returns rows of the subgraph, in entry order.
    for kwargs in ({"selection": "take", "take": 2}, {"selection": "top_k", "k": 3},
                   {"selection": "persistence", "min_persistence": 1}):
        rows = edges_of(subgraph_edges(p, **kwargs))
        all_rows = edges_of(subgraph_edges(p))
        positions = [all_rows.index(r) for r in rows]
        assert positions == sorted(positions)


# ----------------------------------------------------------------------------------------------
# B. SubgraphFeatures on hand-built analyses

def path_analysis(pairs):
    """Persistence of a graph on 10 vertices with the given (src, dst) edges, φ decreasing."""
    src, dst = zip(*pairs)
    return persistence(InducedGraph.from_edges([[10]], src, dst, np.arange(len(pairs), 0, -1)))


def test_vocabulary_and_transform_ignore_unseen_edges():
    a = path_analysis([(0, 1), (1, 2)])
    b = path_analysis([(0, 1), (2, 3), (7, 9)])  # (2, 3) and (7, 9) are not in a's vocabulary
    features = SubgraphFeatures().fit([a])
    assert features.vocabulary_.tolist() == [[0, 1], [1, 2]]
    assert features.vocabulary_.dtype == np.int64
    out = features.transform([b, a])
    assert scipy.sparse.issparse(out) and out.format == "csr" and out.shape == (2, 2)
    assert out.toarray().tolist() == [[1, 0], [1, 1]]
    assert features.get_feature_names_out().tolist() == ["e0_1", "e1_2"]


def test_fit_transform_equals_fit_then_transform_and_sorted_vocabulary():
    analyses = [path_analysis([(5, 6), (0, 1)]), path_analysis([(0, 1), (1, 3), (3, 4)])]
    f1 = SubgraphFeatures()
    direct = f1.fit_transform(analyses)
    f2 = SubgraphFeatures().fit(analyses)
    assert (direct != f2.transform(analyses)).nnz == 0
    assert f1.vocabulary_.tolist() == [[0, 1], [1, 3], [3, 4], [5, 6]]
    assert direct.toarray().tolist() == [[1, 0, 0, 1], [1, 1, 1, 0]]


def test_selection_parameters_reach_subgraph_edges(hand):
    result = onnxtopo.AnalysisResult(0, 11, hand.n_edges, hand)
    features = SubgraphFeatures(selection="take", take=1).fit([result])
    assert edges_of(features.vocabulary_) == sorted([(0, 4), (2, 4), (2, 5), (5, 7)])
    features.set_params(selection="persistence", min_persistence=3.5).fit([hand])
    assert edges_of(features.vocabulary_) == [(2, 5)]


def test_not_fitted():
    features = SubgraphFeatures()
    with pytest.raises(NotFittedError):
        features.transform([path_analysis([(0, 1)])])
    with pytest.raises(NotFittedError):
        features.get_feature_names_out()


def test_input_errors():
    a = path_analysis([(0, 1)])
    with pytest.raises(ValueError, match="needs `model`"):
        SubgraphFeatures().fit(np.zeros((2, 1, 28, 28), np.float32))
    with pytest.raises(TypeError, match="mixes analyses"):
        SubgraphFeatures().fit([a, np.zeros(3)])
    with pytest.raises(TypeError, match="wrap a single analysis"):
        SubgraphFeatures().fit(a)
    with pytest.raises(ValueError, match="0 inputs"):
        SubgraphFeatures().fit([])
    with pytest.raises(ValueError, match="'selection' parameter of SubgraphFeatures"):
        SubgraphFeatures(selection="everything").fit([a])
    with pytest.raises(ValueError, match="needs the 'take' parameter of SubgraphFeatures"):
        SubgraphFeatures(selection="take").fit([a])
    with pytest.raises(ValueError, match="'engine' parameter"):
        SubgraphFeatures(MODEL, engine="fast").fit(np.zeros((1, 1, 28, 28), np.float32))
    with pytest.raises(ValueError, match="batch_size == 0"):
        SubgraphFeatures(MODEL, batch_size=0).fit(np.zeros((1, 1, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"inputs have shape \(2, 28, 28\)"):
        SubgraphFeatures(MODEL).fit(np.zeros((2, 28, 28), np.float32))


# ----------------------------------------------------------------------------------------------
# C. The shipped CCFF model on held-out MNIST inputs

N_HELDOUT = 60


@pytest.fixture(scope="module")
def heldout():
    data = np.load(ROOT / "models" / "mnist-heldout.npz")
    x, y = data["x"][:N_HELDOUT], data["y"][:N_HELDOUT]
    return x, y, onnxtopo.analyze(MODEL, x)


def test_pipeline_on_raw_inputs_and_cross_validation(heldout):
    x, y, results = heldout
    pipe = Pipeline([("subgraph", SubgraphFeatures(model=MODEL)), ("svm", LinearSVC(random_state=0))])
    pipe.fit(x, y)  # analyzes the raw inputs with the model
    # The same vocabulary as from the analyses computed by onnxtopo.analyze.
    precomputed = SubgraphFeatures().fit(results)
    assert np.array_equal(pipe.named_steps["subgraph"].vocabulary_, precomputed.vocabulary_)
    assert np.array_equal(pipe.predict(results[:10]), pipe.predict(x[:10]))
    # 10 classes (chance 0.1), 40 training inputs per fold. On these inputs the folds score about
    # 0.95; deterministic (fixed data, stratified unshuffled folds, LinearSVC random_state=0).
    scores = cross_val_score(pipe, results, y, cv=3)
    assert scores.shape == (3,)
    assert scores.mean() > 0.6, scores
    # The reference's setting: the first pieces only.
    scores = cross_val_score(clone(pipe).set_params(subgraph__selection="take", subgraph__take=10),
                             results, y, cv=3)
    assert scores.mean() > 0.6, scores


def test_analysis_parameters_reach_the_analyzer(heldout):
    x = heldout[0][:2]
    features = SubgraphFeatures(MODEL, selection="top_k", k=40, threshold=0.3, batch_size=1).fit(x)
    expected = [subgraph_edges(r, selection="top_k", k=40) for r in onnxtopo.analyze(MODEL, x, threshold=0.3)]
    assert np.array_equal(features.vocabulary_, np.unique(np.concatenate(expected), axis=0))
    assert features.transform(x).sum(axis=1).tolist() == [[40], [40]]


def test_real_pieces_follow_the_diagram(heldout):
    # One piece per H0 point (continuous φ: no ties), the j-th starting at the j-th birth.
    for result in heldout[2][:5]:
        piece = subgraph_pieces(result)
        _, first = np.unique(piece, return_index=True)
        assert len(first) == len(result.h0)
        np.testing.assert_array_equal(np.asarray(result.subgraph.phi)[first], result.h0[:, 0])
        assert len(subgraph_edges(result, selection="take", take=len(first))) == len(result.subgraph)


# ----------------------------------------------------------------------------------------------
# D. Diagram vectorizations

def test_betti_curve_by_hand():
    # Alive at t when death < t <= birth; essential (death inf) when t <= birth.
    d1 = np.array([[3, 1], [2, INF], [5, 2]])
    d2 = np.array([[4, 4]])            # birth == death: never alive
    d3 = np.empty((0, 2))
    d4 = np.array([[INF, INF]])        # vertices="inf" essential class: alive at every t
    curve = BettiCurve(n_bins=5).fit([d1, d2])
    # Finite values of the training diagrams span [1, 5]: grid 1, 2, 3, 4, 5.
    np.testing.assert_array_equal(curve.grid_, [1, 2, 3, 4, 5])
    out = curve.transform([d1, d2, d3, d4])
    # d1: t=1: (2,inf) only; t=2: (3,1), (2,inf) [(5,2): 2 < 2 fails]; t=3: (3,1), (5,2);
    #     t=4, 5: (5,2).
    assert out.tolist() == [[1, 2, 2, 1, 1], [0] * 5, [0] * 5, [1] * 5]
    assert out.dtype == np.float64
    assert curve.get_feature_names_out().tolist() == [f"betti{j}" for j in range(5)]


def test_betti_curve_given_range_and_single_bin():
    d = [np.array([[3.0, 1.0], [2.5, 0.5]])]
    curve = BettiCurve(n_bins=6, sample_range=(0, 5)).fit(d)
    # t = 0, 1, 2, 3, 4, 5: (3,1) alive at 2, 3; (2.5,0.5) at 1, 2.
    assert curve.transform(d).tolist() == [[0, 1, 2, 1, 0, 0]]
    # One bin: the grid is the lowest finite value, 0.5, where neither point is alive
    # (0.5 < 0.5 fails for (2.5, 0.5), 1 < 0.5 for (3, 1)).
    single = BettiCurve(n_bins=1).fit(d)
    assert single.grid_.tolist() == [0.5] and single.transform(d).tolist() == [[0]]


def test_persistence_image_by_hand_tiny_sigma():
    # Grid: death [0, 2] and persistence [0, 2] in 2 x 2 pixels of side 1; sigma tiny, so each
    # point's mass lands where its (death, persistence) lies, split evenly across a pixel edge.
    pi = PersistenceImage(resolution=(2, 2), sigma=1e-6, death_range=(0, 2), persistence_range=(0, 2))
    # (b, d) = (1.5, 0.5): (death 0.5, persistence 1.0), on the edge between persistence pixels 0
    #   and 1: 1/2 each, times the linear weight 1.0 / 2 = 1/2: 0.25 in pixels (0,0) and (0,1).
    # (3.5, 1.5): (1.5, 2.0), on the top edge: half inside pixel (1,1), weight 2/2 = 1: 0.5.
    # (7, inf): essential, left out.
    diagram = np.array([[1.5, 0.5], [3.5, 1.5], [7, INF]])
    out = pi.fit([diagram]).transform([diagram])
    np.testing.assert_allclose(out, [[0.25, 0.25, 0.0, 0.5]], atol=1e-12)
    const = clone(pi).set_params(weight="constant").fit([diagram]).transform([diagram])
    np.testing.assert_allclose(const, [[0.5, 0.5, 0.0, 0.5]], atol=1e-12)
    half = clone(pi).set_params(weight=lambda p: p / 4).fit([diagram]).transform([diagram])
    np.testing.assert_allclose(half, [[0.125, 0.125, 0.0, 0.25]], atol=1e-12)


def test_persistence_image_by_hand_gaussian():
    # One point at (death 0.5, persistence 0.5), sigma 0.5, constant weight, same 2 x 2 grid.
    # Per axis, pixel [0, 1] holds Φ(1) − Φ(−1) = 0.682689… and pixel [1, 2] Φ(3) − Φ(1) = 0.157305…
    phi = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))
    inner, outer = phi(1) - phi(-1), phi(3) - phi(1)
    assert abs(inner - 0.682689) < 1e-6 and abs(outer - 0.157305) < 1e-6
    pi = PersistenceImage(resolution=(2, 2), sigma=0.5, weight="constant", death_range=(0, 2),
                          persistence_range=(0, 2))
    diagram = np.array([[1.0, 0.5]])
    out = pi.fit([diagram]).transform([diagram, np.empty((0, 2))])
    np.testing.assert_allclose(out[0], [inner * inner, inner * outer, outer * inner, outer * outer], rtol=1e-12)
    np.testing.assert_array_equal(out[1], 0)


def test_persistence_image_learned_grid():
    d1 = np.array([[5.0, 1.0], [4.0, 3.0], [9.0, INF]])  # (death, persistence) (1, 4), (3, 1)
    d2 = np.array([[2.5, 2.0]])                           # (2, 0.5)
    pi = PersistenceImage(resolution=(4, 2)).fit([d1, d2])
    np.testing.assert_allclose(pi.death_edges_, [1, 1.5, 2, 2.5, 3])       # deaths 1 .. 3
    np.testing.assert_allclose(pi.persistence_edges_, [0, 2, 4])           # [0, largest persistence]
    assert pi.sigma_ == 2.0                                                 # the larger pixel side
    out = pi.transform([d1, d2])
    assert out.shape == (2, 8)
    assert pi.get_feature_names_out().tolist()[:3] == ["pixel0_0", "pixel0_1", "pixel1_0"]
    # A wide grid keeps (nearly) all of the mass: the sum is the total weight, persistence / 4.
    wide = PersistenceImage(resolution=(50, 50), sigma=0.05, death_range=(-5, 10),
                            persistence_range=(-5, 10)).fit([d1])
    np.testing.assert_allclose(wide.transform([d1]).sum(), (4 + 1) / 10, rtol=1e-9)


@pytest.mark.parametrize("estimator", [BettiCurve(), PersistenceImage()], ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("X, message", [
    ([np.array([[1.0, 2.0]])], "birth < death"),
    ([np.array([[np.nan, 0.0]])], "NaN"),
    ([np.array([[1.0, -INF]])], "-inf"),
    ([np.zeros((2, 3))], r"shape \(2, 3\)"),
    (np.zeros((4, 2)), r"Wrap a single diagram in a list"),
    ([], "0 diagrams"),
])
def test_diagram_errors(estimator, X, message):
    with pytest.raises(ValueError, match=message):
        clone(estimator).fit(X)


def test_diagram_parameter_errors_and_empty_training():
    d = [np.array([[2.0, 1.0]])]
    with pytest.raises(ValueError, match="n_bins == 0"):
        BettiCurve(n_bins=0).fit(d)
    with pytest.raises(ValueError, match="'sample_range' parameter"):
        BettiCurve(sample_range=(3, 1)).fit(d)
    with pytest.raises(ValueError, match="no finite value"):
        BettiCurve().fit([np.array([[INF, INF]])])
    assert BettiCurve(n_bins=2, sample_range=(0, 1)).fit([np.array([[INF, INF]])]).transform(d).shape == (1, 2)
    with pytest.raises(ValueError, match="sigma == 0"):
        PersistenceImage(sigma=0).fit(d)
    with pytest.raises(ValueError, match="'weight' parameter"):
        PersistenceImage(weight="quadratic").fit(d)
    with pytest.raises(ValueError, match="'resolution' parameter"):
        PersistenceImage(resolution=5).fit(d)
    with pytest.raises(ValueError, match="no finite point"):
        PersistenceImage().fit([np.array([[3.0, INF]])])


def test_diagram_transformers_take_analyses(hand):
    # An AnalysisResult or Persistence stands for its H0 diagram.
    result = onnxtopo.AnalysisResult(0, 11, hand.n_edges, hand)
    for estimator in (BettiCurve(n_bins=7), PersistenceImage(resolution=(3, 3))):
        a = clone(estimator).fit([hand.h0]).transform([hand.h0])
        b = clone(estimator).fit([result]).transform([hand])
        np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------------------------
# E. scikit-learn conventions
#
# check_estimator / parametrize_with_checks do not apply as a whole: their checks generate 2-D
# numeric arrays (n_samples, n_features), while these estimators take lists of diagrams
# (BettiCurve, PersistenceImage) or batches of model inputs / lists of analyses
# (SubgraphFeatures). Their tags say so (input_tags.two_d_array = False), and check_estimator
# then skips them with a SkipTestWarning. So: (1) the library's checks that need no data, or
# only reach the "not fitted" error, run as they are; (2) the data-dependent contracts
# (check_estimators_overwrite_params, check_dont_overwrite_parameters, fit returns self,
# check_fit_check_is_fitted, check_fit_idempotent, pickling, subset and order invariance) run
# below on data these estimators accept.

ESTIMATORS = [
    SubgraphFeatures(model=MODEL, selection="take", take=3),
    BettiCurve(n_bins=10),
    PersistenceImage(resolution=(4, 5), sigma=0.5),
]

DATA_FREE_CHECKS = [
    checks.check_estimator_cloneable,
    checks.check_estimator_repr,
    checks.check_estimator_tags_renamed,
    checks.check_valid_tag_types,
    checks.check_mixin_order,
    checks.check_no_attributes_set_in_init,
    checks.check_parameters_default_constructible,
    checks.check_get_params_invariance,
    checks.check_set_params,
    checks.check_do_not_raise_errors_in_init_or_set_params,
    checks.check_transformers_unfitted,        # transform on generated data: NotFittedError first
    checks.check_get_feature_names_out_error,
]


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("check", DATA_FREE_CHECKS, ids=lambda c: c.__name__)
def test_sklearn_data_free_checks(estimator, check):
    check(type(estimator).__name__, estimator)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_check_estimator_skips_non_tabular_input(estimator):
    with pytest.warns(checks.SkipTestWarning, match="Can't test estimator"):
        checks.check_estimator(estimator)


def test_get_set_params_round_trip_and_clone():
    est = SubgraphFeatures(model=MODEL, selection="top_k", k=50, engine="dionysus", batch_size=8)
    params = est.get_params()
    assert params["model"] == MODEL and params["k"] == 50 and params["engine"] == "dionysus"
    other = SubgraphFeatures().set_params(**params)
    assert other.get_params() == params
    cloned = clone(est)
    assert cloned is not est and cloned.get_params() == params
    pipe = Pipeline([("subgraph", est), ("svm", LinearSVC())])
    assert clone(pipe).get_params()["subgraph__k"] == 50


def random_diagrams(seed, n):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        death = rng.uniform(0, 2, rng.integers(0, 8))
        d = np.stack([death + rng.exponential(1, death.size), death], axis=1)
        out.append(np.concatenate([d, [[3.0, INF]]]))
    return out


def random_analyses(seed, n):
    """Analyses of random graphs over the same 12 vertex ids (so they share edge ids)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        mask = rng.random((12, 12)) < 0.3
        src, dst = np.nonzero(np.triu(mask, 1))
        out.append(persistence(InducedGraph.from_edges([[12]], src, dst, rng.integers(1, 5, src.size))))
    return out


def dense(a):
    return a.toarray() if scipy.sparse.issparse(a) else np.asarray(a)


@pytest.mark.parametrize("estimator, data", [
    (SubgraphFeatures(selection="take", take=3), random_analyses),
    (SubgraphFeatures(selection="persistence", min_persistence=1), random_analyses),
    (BettiCurve(n_bins=10), random_diagrams),
    (PersistenceImage(resolution=(4, 5)), random_diagrams),
], ids=["SubgraphFeatures-take", "SubgraphFeatures-persistence", "BettiCurve", "PersistenceImage"])
def test_sklearn_contracts_on_real_data(estimator, data):
    X_fit, X_new = data(0, 12), data(1, 7)
    est = clone(estimator)
    name = type(est).__name__
    # Not fitted: check_is_fitted and transform both refuse.
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    with pytest.raises(NotFittedError):
        est.transform(X_new)
    # check_estimators_overwrite_params / check_dont_overwrite_parameters, on real data.
    params = deepcopy(est.get_params())
    before = est.__dict__.copy()
    assert est.fit(X_fit) is est, f"{name}.fit must return self"
    for key, value in params.items():
        assert joblib.hash(est.get_params()[key]) == joblib.hash(value), f"fit changed parameter {key}"
    added = [k for k in est.__dict__ if k not in before and not k.startswith("_")]
    assert added and all(k.endswith("_") for k in added), added
    assert all(est.__dict__[k] is before[k] for k in before if not k.startswith("_"))
    check_is_fitted(est)
    out = dense(est.transform(X_new))
    assert out.shape == (len(X_new), len(est.get_feature_names_out()))
    # check_fit_idempotent; fit_transform agrees with fit + transform.
    np.testing.assert_array_equal(dense(clone(est).fit(X_fit).fit(X_fit).transform(X_new)), out)
    np.testing.assert_allclose(dense(clone(est).fit_transform(X_fit)), dense(est.transform(X_fit)), rtol=1e-12)
    # check_estimators_pickle.
    np.testing.assert_array_equal(dense(pickle.loads(pickle.dumps(est)).transform(X_new)), out)
    # check_methods_subset_invariance / check_methods_sample_order_invariance.
    np.testing.assert_allclose(dense(est.transform(X_new[2:5])), out[2:5], rtol=1e-12)
    np.testing.assert_allclose(dense(est.transform(X_new[::-1])), out[::-1], rtol=1e-12)
    # A clone is unfitted.
    with pytest.raises(NotFittedError):
        check_is_fitted(clone(est))
