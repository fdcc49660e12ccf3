"""Features for scikit-learn (onnxtopo.features): InducedPersistence, SubgraphFeatures, diagram vectorizers.

Subgraph selection itself is tested in tests/test_subgraph.py (hand-built graphs reused here).

Sections:
  B. SubgraphFeatures on hand-built analyses: vocabulary, unseen edges, errors.
  C. InducedPersistence and SubgraphFeatures on the shipped CCFF model and held-out MNIST inputs:
     a Pipeline with LinearSVC, cross-validation, each input analyzed once.
  D. BettiCurve and PersistenceImage on tiny hand-made diagrams.
  E. scikit-learn conventions: the library's own checks where they apply, and the same contracts
     checked on data these estimators accept.
"""

from __future__ import annotations

import math
import pickle
from copy import deepcopy

import joblib
import numpy as np
import pytest
import scipy.sparse
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
    InducedPersistence,
    PersistenceImage,
    SubgraphFeatures,
)

from test_subgraph import ENGINES, INF, MODEL, ROOT, edges_of, hand_graph


@pytest.fixture(params=ENGINES, ids=lambda e: f"engine={e}")
def hand(request):
    return persistence(hand_graph(), engine=request.param)


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
    with pytest.raises(TypeError, match=r"analyze model inputs first with InducedPersistence"):
        SubgraphFeatures().fit(np.zeros((2, 1, 28, 28), np.float32))
    with pytest.raises(TypeError, match="SubgraphFeatures takes analyses"):
        SubgraphFeatures().fit([a, np.zeros(3)])
    with pytest.raises(TypeError, match="wrap a single analysis"):
        SubgraphFeatures().fit(a)
    with pytest.raises(ValueError, match="0 inputs"):
        SubgraphFeatures().fit([])
    with pytest.raises(ValueError, match="'selection' parameter of SubgraphFeatures"):
        SubgraphFeatures(selection="everything").fit([a])
    with pytest.raises(ValueError, match="needs the 'take' parameter of SubgraphFeatures"):
        SubgraphFeatures(selection="take").fit([a])
    with pytest.raises(TypeError):
        SubgraphFeatures(model=MODEL)  # the analysis moved to InducedPersistence


def test_induced_persistence_errors():
    x = np.zeros((1, 1, 28, 28), np.float32)
    with pytest.raises(ValueError, match="needs `model`"):
        InducedPersistence().fit(x)
    with pytest.raises(ValueError, match="'engine' parameter"):
        InducedPersistence(MODEL, engine="fast").fit(x)
    with pytest.raises(ValueError, match="'vertices' parameter"):
        InducedPersistence(MODEL, vertices="min").fit(x)
    with pytest.raises(ValueError, match="batch_size == 0"):
        InducedPersistence(MODEL, batch_size=0).fit(x)
    with pytest.raises(ValueError, match="workers == 0"):
        InducedPersistence(MODEL, workers=0).fit(x)
    with pytest.raises(TypeError, match="'h1' parameter"):
        InducedPersistence(MODEL, h1="yes").fit(x)
    with pytest.raises(NotFittedError):
        InducedPersistence(MODEL).transform(x)
    fitted = InducedPersistence(MODEL).fit(x)
    with pytest.raises(ValueError, match=r"inputs have shape \(2, 28, 28\)"):
        fitted.transform(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(TypeError, match="already holds analyses"):
        fitted.transform([path_analysis([(0, 1)])])
    with pytest.raises(ValueError, match="0 inputs"):
        fitted.transform([])


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
    pipe = Pipeline([("analysis", InducedPersistence(MODEL)), ("subgraph", SubgraphFeatures()),
                     ("svm", LinearSVC(random_state=0))])
    pipe.fit(x, y)  # analyzes the raw inputs with the model
    # The same vocabulary as from the analyses computed by onnxtopo.analyze.
    precomputed = SubgraphFeatures().fit(results)
    assert np.array_equal(pipe.named_steps["subgraph"].vocabulary_, precomputed.vocabulary_)
    assert np.array_equal(pipe[1:].predict(results[:10]), pipe.predict(x[:10]))
    # 10 classes (chance 0.1), 40 training inputs per fold. On these inputs the folds score about
    # 0.95; deterministic (fixed data, stratified unshuffled folds, LinearSVC random_state=0).
    vectorize = pipe[1:]  # on precomputed analyses: each input analyzed once for every fold
    scores = cross_val_score(vectorize, results, y, cv=3)
    assert scores.shape == (3,)
    assert scores.mean() > 0.6, scores
    # The reference's setting: the first pieces only.
    scores = cross_val_score(clone(vectorize).set_params(subgraph__selection="take", subgraph__take=10),
                             results, y, cv=3)
    assert scores.mean() > 0.6, scores


def test_pipeline_memory_analyzes_each_input_once(heldout, tmp_path, monkeypatch):
    x, y, results = heldout
    x, y = x[:20], y[:20]
    analyzed = []
    analyze = onnxtopo.Analyzer.analyze

    def counting(self, inputs, **kwargs):
        analyzed.append(len(inputs))
        return analyze(self, inputs, **kwargs)

    monkeypatch.setattr(onnxtopo.Analyzer, "analyze", counting)
    pipe = Pipeline([("analysis", InducedPersistence(MODEL)), ("subgraph", SubgraphFeatures()),
                     ("svm", LinearSVC(random_state=0))], memory=str(tmp_path))
    vocabularies = []
    for params in ({"selection": "all"}, {"selection": "take", "take": 3}, {"selection": "top_k", "k": 30}):
        pipe.set_params(**{f"subgraph__{k}": v for k, v in params.items()}).fit(x, y)
        vocabularies.append(pipe.named_steps["subgraph"].vocabulary_)
    assert analyzed == [20]  # the later fits read the analyses from the cache
    # The cached analyses are those of onnxtopo.analyze: the vocabularies match.
    for params, vocabulary in zip(({"selection": "all"}, {"selection": "take", "take": 3},
                                   {"selection": "top_k", "k": 30}), vocabularies, strict=True):
        assert np.array_equal(vocabulary, SubgraphFeatures(**params).fit(results[:20]).vocabulary_)
    # The analysis step, read back from the cache, still analyzes new inputs (a new session).
    assert np.array_equal(pipe.predict(x[:3]), pipe[1:].predict(results[:3]))


def test_analysis_parameters_reach_the_analyzer(heldout):
    x = heldout[0][:2]
    analysis = InducedPersistence(MODEL, h1=True, vertices="inf", threshold=0.3, batch_size=1)
    got = analysis.fit_transform(x)
    expected = onnxtopo.analyze(MODEL, x, h1=True, vertices="inf", threshold=0.3)
    assert len(got) == 2 and analysis.plan_.n_vertices == got[0].n_vertices
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_array_equal(a.h0, b.h0)
        np.testing.assert_array_equal(a.h1, b.h1)
        np.testing.assert_array_equal(a.subgraph.edge, b.subgraph.edge)
    assert np.isinf(got[0].h0[:, 0]).all()  # vertices="inf": every class born at +inf
    features = SubgraphFeatures(selection="top_k", k=40).fit(got)
    assert features.transform(got).sum(axis=1).tolist() == [[40], [40]]


def test_induced_persistence_contracts(heldout):
    x = heldout[0][:4]
    est = InducedPersistence(MODEL, batch_size=3)
    params = est.get_params()
    assert est.fit(x) is est and est.get_params() == params
    assert [k for k in vars(est) if not k.startswith("_") and k not in params] == ["plan_"]
    out = est.transform(x)
    # Pickled without its onnxruntime session; the copy makes its own and gives the same results.
    copy = pickle.loads(pickle.dumps(est))
    assert "_analyzer" not in vars(copy)
    for a, b in zip(copy.transform(x), out, strict=True):
        np.testing.assert_array_equal(a.h0, b.h0)
    # Subsets and order: each input's analysis is its own (indices follow the given inputs).
    for a, b in zip(est.transform(x[::-1]), out[::-1], strict=True):
        np.testing.assert_array_equal(a.subgraph.edge, b.subgraph.edge)
    with pytest.raises(NotFittedError):
        check_is_fitted(clone(est))
    assert not hasattr(clone(est), "analyzer_")  # NotFittedError is an AttributeError: fitted after fit only
    assert copy.analyzer_.plan is copy.plan_ and est.analyzer_.plan is est.plan_


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
# (BettiCurve, PersistenceImage), lists of analyses (SubgraphFeatures) or batches of model
# inputs (InducedPersistence). Their tags say so (input_tags.two_d_array = False), and check_estimator
# then skips them with a SkipTestWarning. So: (1) the library's checks that need no data, or
# only reach the "not fitted" error, run as they are; (2) the data-dependent contracts
# (check_estimators_overwrite_params, check_dont_overwrite_parameters, fit returns self,
# check_fit_check_is_fitted, check_fit_idempotent, pickling, subset and order invariance) run
# below on data these estimators accept (InducedPersistence's in test_induced_persistence_contracts).

ESTIMATORS = [
    InducedPersistence(MODEL, h1=True),
    SubgraphFeatures(selection="take", take=3),
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


# InducedPersistence outputs analyses, not features: it has no get_feature_names_out to check.
DATA_FREE_CASES = [
    pytest.param(estimator, check, id=f"{check.__name__}-{type(estimator).__name__}")
    for estimator in ESTIMATORS for check in DATA_FREE_CHECKS
    if not (isinstance(estimator, InducedPersistence) and check is checks.check_get_feature_names_out_error)
]


@pytest.mark.parametrize("estimator, check", DATA_FREE_CASES)
def test_sklearn_data_free_checks(estimator, check):
    check(type(estimator).__name__, estimator)


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=lambda e: type(e).__name__)
def test_check_estimator_skips_non_tabular_input(estimator):
    with pytest.warns(checks.SkipTestWarning, match="Can't test estimator"):
        checks.check_estimator(estimator)


def test_get_set_params_round_trip_and_clone():
    analysis, features = InducedPersistence(MODEL, engine="dionysus", batch_size=8), SubgraphFeatures(selection="top_k", k=50)
    for est in (analysis, features):
        params = est.get_params()
        other = type(est)().set_params(**params)
        assert other.get_params() == params
        cloned = clone(est)
        assert cloned is not est and cloned.get_params() == params
    assert analysis.get_params()["model"] == MODEL and analysis.get_params()["engine"] == "dionysus"
    pipe = Pipeline([("analysis", analysis), ("subgraph", features), ("svm", LinearSVC())])
    assert clone(pipe).get_params()["subgraph__k"] == 50 and clone(pipe).get_params()["analysis__batch_size"] == 8


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
