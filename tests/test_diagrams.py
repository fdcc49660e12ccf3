"""Persistence diagrams (onnxtopo.diagrams): coercion and validation, sorting, Betti curves,
total persistence, the sublevel conversion and the distances, on diagrams worked out by hand,
against brute force and against dionysus."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

import onnxtopo
from onnxtopo import InducedGraph, diagrams, persistence

MODELS = Path(__file__).resolve().parents[1] / "models"
INF = np.inf


# ---------------------------------------------------------------------------------------------
# Coercion, sorting, summaries


def test_as_diagram_accepts_arrays_lists_and_analyses():
    d = diagrams.as_diagram([[3, 1], [2, 2]])
    assert d.dtype == np.float64 and d.tolist() == [[3.0, 1.0], [2.0, 2.0]]
    assert diagrams.as_diagram([]).shape == (0, 2) and diagrams.as_diagram(np.zeros((0, 5))).shape == (0, 2)
    h0 = np.array([[4.0, INF], [3.0, 1.0]])
    assert diagrams.as_diagram(SimpleNamespace(h0=h0)) is not None
    np.testing.assert_array_equal(diagrams.as_diagram(SimpleNamespace(h0=h0)), h0)
    # vertices="inf": births at +inf are valid superlevel points, unless finite births are asked for.
    np.testing.assert_array_equal(diagrams.as_diagram([[INF, INF], [INF, 2]]), [[INF, INF], [INF, 2]])
    with pytest.raises(ValueError, match="H0 diagram has an infinite birth"):
        diagrams.as_diagram([[INF, 2]], name="H0 diagram", finite_births=True)


@pytest.mark.parametrize("points, message", [
    ([[1.0, 2.0]], "birth < death"),
    ([[np.nan, 0.0]], "holds NaN"),
    ([[1.0, -INF]], "holds -inf"),
    (np.zeros((2, 3)), r"has shape \(2, 3\)"),
    (np.zeros(4), r"has shape \(4,\)"),
    ([["a", "b"]], "is not numeric"),
])
def test_as_diagram_errors_name_the_diagram(points, message):
    with pytest.raises(ValueError, match="probe diagram 7 .*" + message):
        diagrams.as_diagram(points, name="probe diagram 7")


def test_sort_diagram_by_decreasing_birth_then_death():
    d = [[2, 1], [5, INF], [5, 3], [2, 1.5], [7, 0]]
    assert diagrams.sort_diagram(d).tolist() == [[7, 0], [5, INF], [5, 3], [2, 1.5], [2, 1]]
    assert diagrams.sort_diagram(np.zeros((0, 2))).shape == (0, 2)


def test_betti_curve_by_hand():
    # Alive at t when death < t ≤ birth; essential (death inf) when t ≤ birth.
    e1 = np.array([[4.0, INF], [2.0, 1.0]])
    # t = 0.5: (4, inf); 1.0: (4, inf) [(2, 1): 1 < 1 fails]; 1.5, 2.0: both; 3, 4: (4, inf); 5: none.
    curve = diagrams.betti_curve(e1, [0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0])
    assert curve.dtype == np.int64 and curve.tolist() == [1, 1, 2, 2, 1, 1, 0]
    # birth == death: never alive; a +inf birth (vertices="inf"): alive for every t > death.
    assert diagrams.betti_curve([[3, 3], [INF, 2]], [1, 2, 3, 100]).tolist() == [0, 0, 1, 1]
    assert diagrams.betti_curve(np.zeros((0, 2)), [1, 2]).tolist() == [0, 0]


def seven_vertex_graph() -> InducedGraph:
    """Edges (0,1) 9, (1,2) 7, (2,3) 4, (0,2) 8, (3,4) 2, (4,5) 6, (5,6) 5.

    Vertex values (vertices="max"): 0, 1: 9; 2: 8; 4, 5: 6; 6: 5; 3: 4. By decreasing φ: (0,1)
    at 9 kills 1 (9, 9); (0,2) at 8 kills 2 (8, 8); (1,2) at 7 closes a cycle; (4,5) at 6 kills
    5 (6, 6); (5,6) at 5 kills 6 (5, 5); (2,3) at 4 kills 3 (4, 4); (3,4) at 2 joins {0,1,2,3}
    (born 9) and {4,5,6} (born 6): kills (6, 2). Zero-persistence points are dropped, so
    H0 = (9, inf), (6, 2).
    """
    src, dst = [0, 1, 2, 0, 3, 4, 5], [1, 2, 3, 2, 4, 5, 6]
    return InducedGraph.from_edges([[7]], src, dst, [9.0, 7.0, 4.0, 8.0, 2.0, 6.0, 5.0])


def test_total_persistence_by_hand():
    # Finite points only: (5, 1) and (3, 3) give 4 + 0; essential and +inf-birth points are left out.
    assert diagrams.total_persistence([[5, 1], [3, 3], [2, INF], [INF, 4]]) == 4.0
    assert diagrams.total_persistence(np.zeros((0, 2))) == 0.0
    p = persistence(seven_vertex_graph())
    assert p.h0.tolist() == [[9.0, INF], [6.0, 2.0]]
    assert p.total_persistence == 4.0 and onnxtopo.AnalysisResult(0, 7, 7, p).summary()["h0_total_persistence"] == 4.0


def test_to_sublevel_by_hand():
    out = diagrams.to_sublevel([[5.0, 1.0], [2.0, INF], [INF, 3.0]])
    assert out.tolist() == [[-5.0, -1.0], [-2.0, INF], [-INF, -3.0]]
    assert (out[:, 0] <= out[:, 1]).all()  # the sublevel convention: birth ≤ death


def test_to_sublevel_is_the_sublevel_diagram_of_the_negated_filtration():
    # Independent oracle: dionysus's own sublevel persistence of the filtration by −φ (each
    # vertex at −(its largest incident φ)), sorted by dionysus, gives the points of our
    # superlevel diagram converted. Integer φ are exact in dionysus's float32.
    import dionysus

    graph = seven_vertex_graph()
    ours = diagrams.to_sublevel(persistence(graph).h0)
    value = np.zeros(7)
    np.maximum.at(value, graph.src, graph.phi)
    np.maximum.at(value, graph.dst, graph.phi)
    simplices = [([v], -value[v]) for v in range(7)]
    simplices += [([int(a), int(b)], -f) for a, b, f in zip(graph.src, graph.dst, graph.phi)]
    f = dionysus.Filtration(simplices)
    f.sort()
    theirs = sorted((p.birth, p.death) for p in dionysus.init_diagrams(dionysus.homology_persistence(f), f)[0])
    assert sorted(map(tuple, ours.tolist())) == theirs == [(-9.0, INF), (-6.0, -2.0)]


# ---------------------------------------------------------------------------------------------
# Distances


def test_distances_on_small_diagrams():
    inf = np.inf
    a, b = np.array([[5.0, 1.0]]), np.array([[5.0, 2.0]])
    assert diagrams.bottleneck_distance(a, b) == 1  # matched to each other (sending both to the diagonal costs 2)
    assert diagrams.wasserstein_distance(a, b, 1) == 1 and diagrams.wasserstein_distance(a, b, 2) == 1
    c = np.array([[5.0, 1.0], [3.0, 2.0]])  # an extra point 0.5 from the diagonal
    assert diagrams.wasserstein_distance(a, c, 1) == 0.5 and diagrams.bottleneck_distance(a, c) == 0.5
    assert diagrams.wasserstein_distance(a, c, 2) == 0.5
    # Essential classes are matched with essential classes only, by birth.
    e1, e2 = np.array([[4.0, inf], [2.0, 1.0]]), np.array([[3.0, inf], [2.0, 1.5]])
    assert diagrams.bottleneck_distance(e1, e2) == 1
    assert diagrams.wasserstein_distance(e1, e2, 1) == 1.5
    assert diagrams.wasserstein_distance(e1, e2, 2) == pytest.approx(np.sqrt(1 + 0.25))
    assert diagrams.bottleneck_distance(e1, e1[1:]) == inf and diagrams.wasserstein_distance(e1, e1[1:]) == inf
    assert diagrams.wasserstein_distance(np.zeros((0, 2)), np.zeros((0, 2))) == 0


def _random_diagram(rng, n, essential=1):
    birth = rng.uniform(0.1, 3, n)
    points = np.stack([birth, birth * rng.uniform(0.05, 0.95, n)], axis=1)
    return np.concatenate([points, np.stack([rng.uniform(1, 3, essential), np.full(essential, np.inf)], axis=1)])


def _dense_wasserstein(a, b, q):
    """Brute force: the full (n + m)² assignment problem, finite points only."""
    ra, rb = (a[:, 0] - a[:, 1]) / 2, (b[:, 0] - b[:, 1]) / 2
    n, m = len(a), len(b)
    cost = np.full((n + m, n + m), np.inf)
    cost[:n, :m] = np.abs(a[:, None] - b[None]).max(axis=2) ** q
    cost[np.arange(n), m + np.arange(n)] = ra ** q
    cost[n + np.arange(m), np.arange(m)] = rb ** q
    cost[n:, m:] = 0
    rows, cols = linear_sum_assignment(cost)
    return cost[rows, cols].sum() ** (1 / q)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 25), st.integers(0, 25), st.sampled_from([1, 2]),
       st.floats(0, 0.2))
def test_exact_wasserstein_matches_brute_force(seed, n, m, q, noise):
    rng = np.random.default_rng(seed)
    a = _random_diagram(rng, n, 0)
    # Near copies (as a re-export gives), duplicated points (as saturated pixels give) or unrelated points.
    b = a[:m] * np.clip(1 + noise * rng.standard_normal((min(n, m), 2)), 0.5, 1.5) if m <= n else _random_diagram(rng, m, 0)
    b = np.concatenate([b, b[:2]])
    b[:, 1] = np.minimum(b[:, 1], b[:, 0] * 0.99)
    assert diagrams.wasserstein_distance(a, b, q) == pytest.approx(_dense_wasserstein(a, b, q), rel=1e-9, abs=1e-12)


def test_exact_wasserstein_agrees_with_dionysus_where_hera_terminates():
    # hera's auction terminates on well-separated diagrams; it is then within its 1 % relative error.
    rng = np.random.default_rng(7)
    for q in (1, 2):
        for _ in range(5):
            a, b = _random_diagram(rng, 30), _random_diagram(rng, 20)
            exact = diagrams.wasserstein_distance(a, b, q)
            assert diagrams.wasserstein_distance(a, b, q, engine="dionysus") == pytest.approx(exact, rel=0.011)


def test_nearly_identical_shipped_diagrams_are_fast():
    # The case dionysus's Wasserstein never finishes on: two exports of one network.
    x = np.load(MODELS / "mnist-heldout.npz")["x"][:1]
    [a] = onnxtopo.analyze(MODELS / "ccff-relu.onnx", x)
    [b] = onnxtopo.analyze(MODELS / "ccff-relu-keras.onnx", x)
    for q in (1, 2):
        assert 0 < diagrams.wasserstein_distance(a.h0, b.h0, q) < 1e-5
    assert 0 < diagrams.bottleneck_distance(a.h0, b.h0) < 1e-6
