"""Persistence diagrams: coercion and validation, sorting, summaries, distances, conversion.

A diagram here is onnxtopo's superlevel convention: a float64 array of shape (n, 2) holding
(birth, death) with birth ≥ death in φ units (a class appears when the threshold comes down to
its birth and dies when it reaches its death), death = +inf for an essential class. With
``vertices="inf"`` births are +inf too. The static view's diagrams (``onnxtopo.static``) follow
the same convention in normalized units (births 1, deaths |w| / scale). Every module above the
pipeline (features, plots, fingerprint) and every function here reads diagrams through
``as_diagram``, so whatever it accepts (arrays, analyses, the static view's results) they accept.

Other TDA libraries (ripser, persim, gudhi, giotto-tda, dionysus) use sublevel diagrams
(birth ≤ death, essential classes dying at +inf): ``to_sublevel`` converts ours for them.

Distances use the L∞ ground metric between points (as dionysus/hera do), under which a finite
point (b, d) lies (b − d)/2 from the diagonal. Essential classes are matched only with
essential classes, as dionysus does (checked: [(0, inf)] vs [] gives inf in both of its
distances, [(0, inf)] vs [(1, inf)] gives 1, and with q = 2, [(0, inf), (0, 2)] vs
[(1, inf), (0, 3)] gives √2: an essential pair's |Δbirth| enters the sum like any matched pair's
cost): if the numbers of essential classes differ the distances are +inf, otherwise essential
points are matched in order of birth, which is optimal on a line.

* **bottleneck**: ``dionysus.bottleneck_distance`` with ``delta=0`` (exact) on ``to_sublevel``'s
  diagrams; negation is an isometry, so the distance is that of the superlevel diagrams.
  dionysus stores coordinates in float32, so differences below ~6e-8 × φ vanish.
* **Wasserstein** W_q, q = 1 (default) or 2: exact, in float64, as a minimum-cost perfect
  matching (scipy's LAPJVsp) on the usual bipartite graph where each point may also go to the
  diagonal. Only pairs (a, b) with ‖a − b‖∞^q ≤ δ(a)^q + δ(b)^q (δ: distance to the diagonal) can
  appear in an optimal matching (otherwise sending both to the diagonal is cheaper), so only
  those are built: exact, and sparse. dionysus's ``wasserstein_distance`` (hera's auction) is
  available as ``engine="dionysus"`` but is not the default: on diagrams that differ only by
  float32 rounding, its auction does not terminate (dionysus issues #6 and #39); where it
  terminates it agrees with the exact matching (tested). Cost: milliseconds for a few hundred
  points; seconds for thousands of points spread far from the diagonal (resnet-mini: about
  4,000 points, 4.8 million candidate pairs, 7 s per diagram).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "as_diagram",
    "betti_curve",
    "bottleneck_distance",
    "sort_diagram",
    "to_sublevel",
    "total_persistence",
    "wasserstein_distance",
]

#: Weight standing for 0 in the sparse matching, which takes absent entries for missing edges
#: (costs of identical points, diagonal-to-diagonal edges). The cost reported is recomputed from
#: the points, so this never enters it.
_TINY = 1e-300


def as_diagram(diagram, *, name: str = "diagram", finite_births: bool = False) -> np.ndarray:
    """``diagram`` as a validated superlevel diagram: a float64 array of shape (n, 2).

    An AnalysisResult or Persistence (anything with an ``h0`` attribute) stands for its H0
    diagram, and so do the static view's ``LayerPersistence`` and ``WholeNetwork``; a
    ``StaticPersistence`` (a whole model's static view) stands for its whole-network diagram.
    An empty input gives shape (0, 2). Raises ValueError, naming ``name``, for a
    non-numeric array, a wrong shape, NaN, -inf, a point with birth < death (a sublevel diagram:
    negate it), a StaticPersistence computed without its whole network, or, with
    ``finite_births``, an infinite birth (``vertices="inf"``).
    """
    if hasattr(diagram, "layers") and hasattr(diagram, "whole"):  # a StaticPersistence (duck-typed: no import)
        if diagram.whole is None:
            raise ValueError(f"{name} is a StaticPersistence computed with whole=False, which has no whole-network "
                             "diagram to stand for: pass one of its layers (result.layers[i]) or recompute it with "
                             "whole=True")
        diagram = diagram.whole
    if hasattr(diagram, "h0"):
        diagram = diagram.h0
    try:
        points = np.asarray(diagram, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} is not numeric ({exc})") from exc
    if points.size == 0:
        return points.reshape(0, 2)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"{name} has shape {points.shape}; diagrams are arrays of shape (n_points, 2) of "
                         "(birth, death)")
    if np.isnan(points).any():
        raise ValueError(f"{name} holds NaN.")
    if (points == -np.inf).any():
        raise ValueError(f"{name} holds -inf; essential classes die at +inf.")
    if finite_births and np.isinf(points[:, 0]).any():
        raise ValueError(f"{name} has an infinite birth (vertices=\"inf\"); only finite births can be drawn.")
    if ((points[:, 0] < points[:, 1]) & np.isfinite(points[:, 1])).any():
        raise ValueError(f"{name} has a point with birth < death; superlevel diagrams have birth >= death "
                         "(pass (birth, death) with birth = the larger value).")
    return points


def sort_diagram(points) -> np.ndarray:
    """The points by decreasing birth, then decreasing death (the order of every result)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return points[np.lexsort((-points[:, 1], -points[:, 0]))]


def betti_curve(diagram, grid) -> np.ndarray:
    """β(t) for each t of ``grid`` (int64): the classes alive at t, i.e. death < t ≤ birth.

    A class appears when the threshold comes down to its birth and is gone once it reaches its
    death; an essential class (death = +inf) is alive at every t ≤ birth.
    """
    h = as_diagram(diagram)
    grid = np.asarray(grid, dtype=np.float64)
    births = np.sort(h[:, 0])
    deaths = np.sort(h[np.isfinite(h[:, 1]), 1])
    # A finite point with death ≥ t also has birth ≥ t: born minus dead.
    born = len(births) - np.searchsorted(births, grid, side="left")
    dead = len(deaths) - np.searchsorted(deaths, grid, side="left")
    return (born - dead).astype(np.int64)


def _split(diagram) -> tuple[np.ndarray, np.ndarray]:
    """(finite points, sorted births of the essential points)."""
    h = as_diagram(diagram)
    essential = np.isinf(h[:, 1])
    return h[~essential], np.sort(h[essential, 0])


def total_persistence(diagram) -> float:
    """Σ (birth − death) over the points whose birth and death are both finite."""
    h = as_diagram(diagram)
    finite = np.isfinite(h).all(axis=1)
    return float((h[finite, 0] - h[finite, 1]).sum())


def to_sublevel(diagram) -> np.ndarray:
    """A superlevel diagram in the sublevel convention of ripser, persim, gudhi, giotto-tda and
    dionysus: (b, d) -> (−b, −d), birth ≤ death, and an essential class (b, +inf) -> (−b, +inf).

    Negation is an isometry of the plane, so distances between converted diagrams are those of
    the originals. A +inf birth (``vertices="inf"``) becomes −inf.
    """
    h = as_diagram(diagram)
    return np.stack([-h[:, 0], np.where(np.isinf(h[:, 1]), np.inf, -h[:, 1])], axis=1)


def _dionysus_diagram(diagram):
    import dionysus

    return dionysus.Diagram([tuple(p) for p in to_sublevel(diagram).tolist()])


def bottleneck_distance(a, b) -> float:
    """Exact bottleneck distance between two superlevel diagrams (dionysus, L∞ ground metric)."""
    import dionysus

    if len(_split(a)[1]) != len(_split(b)[1]):
        return math.inf  # what dionysus returns too; said here so it need not be computed
    return float(dionysus.bottleneck_distance(_dionysus_diagram(a), _dionysus_diagram(b), 0.0))


def wasserstein_distance(a, b, q: int = 1, *, engine: str = "exact") -> float:
    """q-Wasserstein distance between two superlevel diagrams, L∞ ground metric.

    ``engine="exact"`` (default) solves the matching exactly in float64 (see the module's
    docstring); ``"dionysus"`` calls ``dionysus.wasserstein_distance`` (hera, relative error
    0.01), which may not terminate on nearly identical diagrams.
    """
    if q not in (1, 2):
        raise ValueError(f"q must be 1 or 2, got {q}")
    if engine == "dionysus":
        import dionysus

        return float(dionysus.wasserstein_distance(_dionysus_diagram(a), _dionysus_diagram(b), q=q))
    if engine != "exact":
        raise ValueError(f'engine must be "exact" or "dionysus", got {engine!r}')
    finite_a, essential_a = _split(a)
    finite_b, essential_b = _split(b)
    if len(essential_a) != len(essential_b):
        return math.inf
    # Essential classes: a 1-D matching of births, optimal in sorted order for |·|^q, q ≥ 1.
    total = float((np.abs(essential_a - essential_b) ** q).sum()) + _finite_matching_cost(finite_a, finite_b, q)
    return total ** (1.0 / q)


def _finite_matching_cost(a: np.ndarray, b: np.ndarray, q: int) -> float:
    """Σ cost^q of an optimal matching of finite points, each may go to the diagonal instead."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    ra, rb = (a[:, 0] - a[:, 1]) / 2, (b[:, 0] - b[:, 1]) / 2  # L∞ distances to the diagonal
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        return float((ra ** q).sum() + (rb ** q).sum())
    i, j = _candidate_pairs(a, b, ra, rb)
    cost = np.abs(a[i] - b[j]).max(axis=1) ** q
    keep = cost <= (ra[i] ** q + rb[j] ** q) * (1 + 1e-12)  # slack: an extra edge never hurts
    i, j, cost = i[keep], j[keep], cost[keep]
    # Rows: a_0..a_{n-1}, then the diagonal copies of b; columns: b_0..b_{m-1}, then those of a.
    rows = np.concatenate([i, np.arange(n), n + np.arange(m), n + j])
    cols = np.concatenate([j, m + np.arange(n), np.arange(m), m + i])
    weight = np.concatenate([cost, ra ** q, rb ** q, np.zeros(len(i))])
    # One extra, unconnected column: scipy then skips LAPJV's augmenting row reduction, whose
    # price updates can be as small as the cost differences and loop for practically ever on
    # nearly identical diagrams, and runs only the shortest augmenting paths (n + m of them).
    graph = coo_matrix((np.maximum(weight, _TINY), (rows, cols)), shape=(n + m, n + m + 1)).tocsr()
    if graph.nnz != len(weight):
        # A pair found by both queries (a rounding tie at the radius) was summed: drop repeats.
        _, first = np.unique(rows * (n + m + 1) + cols, return_index=True)
        graph = coo_matrix((np.maximum(weight, _TINY)[first], (rows[first], cols[first])),
                           shape=(n + m, n + m + 1)).tocsr()
    row, col = min_weight_full_bipartite_matching(graph)
    # The cost of that matching, from the points (the _TINY stand-ins for zeros do not enter).
    direct = (row < n) & (col < m)
    matched = np.abs(a[row[direct]] - b[col[direct]]).max(axis=1) ** q
    return float(matched.sum() + (ra[row[(row < n) & (col >= m)]] ** q).sum()
                 + (rb[col[(row >= n) & (col < m)]] ** q).sum())


def _candidate_pairs(a, b, ra, rb) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i, j) with ‖a_i − b_j‖∞ ≤ ra_i + rb_j (a superset of the useful pairs for q ≥ 1).

    Found as the pairs within 2·ra_i of a_i, plus those within 2·rb_j of b_j that the first
    query missed: the larger of the two radii is at least ra_i + rb_j. Each pair comes once.
    """
    from scipy.spatial import cKDTree

    def near(points, radii, others):
        hits = cKDTree(others).query_ball_point(points, r=2 * radii, p=np.inf)
        lengths = np.fromiter((len(h) for h in hits), dtype=np.int64, count=len(hits))
        if not lengths.any():
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.repeat(np.arange(len(points)), lengths), np.concatenate([np.asarray(h, np.int64) for h in hits])

    i, j = near(a, ra, b)
    j2, i2 = near(b, rb, a)
    missed = np.abs(a[i2] - b[j2]).max(axis=1) > 2 * ra[i2]
    return np.concatenate([i, i2[missed]]), np.concatenate([j, j2[missed]])
