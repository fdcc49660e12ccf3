"""Persistence of hand-built induced graphs: diagrams, persistent subgraph, filtration checks.

Definitions (docs/induced-graph.md): superlevel filtration, a vertex enters at the maximum φ of
its edges (or +inf with vertices="inf"), elder rule, points (birth, death) with birth >= death,
points with birth == death dropped, essential classes die at +inf, H1 = one class per edge outside
the maximum spanning forest, persistent subgraph = the death edges in entry order.

Hand-checked values are small integers, exact in float32 (the precision dionysus stores a
simplex's value in) as in float64, so they are compared exactly whichever engine computed them.
The property tests draw φ either from small integers (many ties) or from float32-representable
floats, for the same reason.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections import Counter

import numpy as np
import pytest
import scipy.sparse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

import onnxtopo
from onnxtopo import InducedGraph, InvalidFiltrationError, persistence, superlevel_filtration

from conftest import assert_same_persistence

INF = np.inf

# Every persistence engine onnxtopo offers (persistence.ENGINES, when it has several) must give
# these results; the public default is what `persistence(graph)` runs.
ENGINE_NAMES = sorted(importlib.import_module("onnxtopo.homology").ENGINES)


def run(graph, engine=None, **kwargs):
    """onnxtopo.persistence with the given engine (None: the default, no engine argument)."""
    if engine is not None:
        kwargs["engine"] = engine
    return persistence(graph, **kwargs)


@pytest.fixture(params=ENGINE_NAMES, ids=lambda e: f"engine={e}")
def persist(request):
    return lambda graph, **kwargs: run(graph, request.param, **kwargs)


def points(diagram) -> list[tuple[float, float]]:
    """A diagram as a sorted list of (birth, death) tuples (a multiset, order-free)."""
    return sorted((float(b), float(d)) for b, d in np.asarray(diagram).reshape(-1, 2))


def path_graph(phis):
    """A path 0 - 1 - ... - n through n+1 layers of one vertex each."""
    n = len(phis)
    return InducedGraph.from_edges([[1]] * (n + 1), list(range(n)), list(range(1, n + 1)), phis)


# ----------------------------------------------------------------------------------------------
# A.1 Hand-computed diagrams
# ----------------------------------------------------------------------------------------------

def test_path_with_one_finite_class(persist):
    # Path 0 -3- 1 -1- 2 -2- 3 (edge indices 0, 1, 2).
    # Vertex values (max incident φ): v0 = 3, v1 = max(3, 1) = 3, v2 = max(1, 2) = 2, v3 = 2.
    # Descending: v0, v1 (3) then e01 (3): merges two classes born at 3 -> (3, 3), dropped.
    #             v2, v3 (2) then e23 (2): -> (2, 2), dropped.
    #             e12 (1): merges {0,1} (born 3) with {2,3} (born 2): the younger dies -> (2, 1).
    # One component left: (3, inf). No cycle.
    g = path_graph([3.0, 1.0, 2.0])
    p = persist(g, h1=True)
    assert points(p.h0) == [(2.0, 1.0), (3.0, INF)]
    assert points(p.h1) == []
    # Death edges in entry order: e01 (φ 3, kills v1 born 3), e23 (φ 2, kills a class born 2),
    # e12 (φ 1, kills the {2,3} class born 2).
    sg = p.subgraph
    assert sg.edge.tolist() == [0, 2, 1]
    assert sg.src.tolist() == [0, 2, 1] and sg.dst.tolist() == [1, 3, 2]
    assert sg.phi.tolist() == [3.0, 2.0, 1.0]
    assert sg.birth.tolist() == [3.0, 2.0, 2.0]
    assert len(sg) == 3
    assert p.total_persistence == 1.0  # 2 - 1
    assert p.n_simplices == 4 + 3


def test_path_with_two_finite_classes(persist):
    # Path through 6 one-vertex layers, edges e0 .. e4 = (0,1) 5, (1,2) 1, (2,3) 4, (3,4) 2, (4,5) 3.
    # Vertex values: 5, 5, 4, 4, 3, 3. Components appear as A = {0,1} at 5, B = {2,3} at 4,
    # C = {4,5} at 3 (each with a dropped (b, b) point for its own edge).
    # e34 (2) merges B (4) and C (3): C dies -> (3, 2).
    # e12 (1) merges A (5) and B∪C (4): B dies -> (4, 1).
    # Essential: (5, inf). Total persistence (3 - 2) + (4 - 1) = 4.
    g = path_graph([5.0, 1.0, 4.0, 2.0, 3.0])
    p = persist(g, h1=True)
    assert points(p.h0) == [(3.0, 2.0), (4.0, 1.0), (5.0, INF)]
    assert points(p.h1) == []
    # Entry order of the death edges: e0 (5), e2 (4), e4 (3), e3 (2), e1 (1); the birth of the
    # class each kills: 5 (v1), 4 (v3), 3 (v5), 3 (C), 4 (B).
    assert p.subgraph.edge.tolist() == [0, 2, 4, 3, 1]
    assert p.subgraph.phi.tolist() == [5.0, 4.0, 3.0, 2.0, 1.0]
    assert p.subgraph.birth.tolist() == [5.0, 4.0, 3.0, 3.0, 4.0]
    assert p.total_persistence == 4.0
    # The rows of h0 are sorted by decreasing birth (persistence.py's documented order).
    assert p.h0.tolist() == [[5.0, INF], [4.0, 1.0], [3.0, 2.0]]


def test_star_has_only_the_essential_class(persist):
    # Centre 0 (layer 0) to leaves 1..4 (layer 1); edges listed as 0-1: 2, 0-2: 4, 0-3: 1, 0-4: 3.
    # The centre enters at 4; each leaf enters at its only edge's φ together with that edge,
    # which merges it into the centre's class at once: (φ, φ), dropped. Only (4, inf) is left.
    g = InducedGraph.from_edges([[1], [4]], [0, 0, 0, 0], [1, 2, 3, 4], [2.0, 4.0, 1.0, 3.0])
    p = persist(g, h1=True)
    assert points(p.h0) == [(4.0, INF)]
    assert points(p.h1) == []
    # Every edge kills a leaf's class: entry order is decreasing φ: edges 1, 3, 0, 2.
    assert p.subgraph.edge.tolist() == [1, 3, 0, 2]
    assert p.subgraph.dst.tolist() == [2, 4, 1, 3]
    assert p.subgraph.phi.tolist() == [4.0, 3.0, 2.0, 1.0]
    assert p.subgraph.birth.tolist() == [4.0, 3.0, 2.0, 1.0]
    assert p.total_persistence == 0.0


def test_two_components_and_an_isolated_vertex(persist):
    # Layers of 3 and 3 vertices: 0,1,2 | 3,4,5. Edges 0-3: 5, 1-4: 2, 1-5: 1; vertex 2 has no
    # edge and is not in the complex.
    # Component {0,3}: both enter at 5 with their edge -> (5,5) dropped; essential (5, inf).
    # Component {1,4,5}: v1 = v4 = 2 with e14 -> dropped; v5 = 1 with e15 -> dropped; (2, inf).
    g = InducedGraph.from_edges([[3], [3]], [0, 1, 1], [3, 4, 5], [5.0, 2.0, 1.0])
    p = persist(g, h1=True)
    assert points(p.h0) == [(2.0, INF), (5.0, INF)]
    assert points(p.h1) == []
    assert p.subgraph.edge.tolist() == [0, 1, 2]
    assert p.subgraph.birth.tolist() == [5.0, 2.0, 1.0]
    assert p.total_persistence == 0.0
    assert p.n_simplices == 5 + 3  # vertex 2 is not in the complex


def test_four_cycle_across_two_layers(persist):
    # u1 = 0, u2 = 1 (layer 0); v1 = 2, v2 = 3 (layer 1). The 4-cycle u1-v1-u2-v2-u1 with
    # φ(u1,v1) = 4, φ(u2,v2) = 3, φ(u2,v1) = 2, φ(u1,v2) = 1, listed in the order
    # e0 = u2-v1 (2), e1 = u1-v2 (1), e2 = u1-v1 (4), e3 = u2-v2 (3).
    # Vertex values: u1 = 4, v1 = 4, u2 = 3, v2 = 3.
    # e2 (4): u1, v1 merge at birth -> dropped.  e3 (3): u2, v2 merge at birth -> dropped.
    # e0 (2): {u1,v1} (born 4) meets {u2,v2} (born 3): (3, 2).
    # e1 (1): both ends already connected: closes the cycle, an H1 class born at 1: (1, inf).
    g = InducedGraph.from_edges([[2], [2]], [1, 0, 0, 1], [2, 3, 2, 3], [2.0, 1.0, 4.0, 3.0])
    p = persist(g, h1=True)
    assert points(p.h0) == [(3.0, 2.0), (4.0, INF)]
    assert points(p.h1) == [(1.0, INF)]
    assert p.subgraph.edge.tolist() == [2, 3, 0]
    assert p.subgraph.src.tolist() == [0, 1, 1] and p.subgraph.dst.tolist() == [2, 3, 2]
    assert p.subgraph.phi.tolist() == [4.0, 3.0, 2.0]
    assert p.subgraph.birth.tolist() == [4.0, 3.0, 3.0]
    assert p.total_persistence == 1.0
    # Without h1=True, no H1 diagram is computed; H0 and the subgraph are unchanged.
    q = persist(g)
    assert q.h1 is None
    assert points(q.h0) == points(p.h0)
    assert q.subgraph.edge.tolist() == [2, 3, 0]


def test_ties_complete_bipartite_all_equal(persist):
    # K_{2,2} (0,1 | 2,3) with every φ = 1: every vertex enters at 1, every merge happens at 1,
    # so every finite H0 point is (1, 1) and dropped. One component: (1, inf). 4 edges, 4
    # vertices, connected: 4 - 3 = 1 cycle, born at 1: (1, inf).
    g = InducedGraph.from_edges([[2], [2]], [0, 0, 1, 1], [2, 3, 2, 3], [1.0] * 4)
    p = persist(g, h1=True)
    assert points(p.h0) == [(1.0, INF)]
    assert points(p.h1) == [(1.0, INF)]
    assert p.total_persistence == 0.0
    # Tie-independent facts: 3 death edges, all at 1, killing classes born at 1.
    assert len(p.subgraph) == 3
    assert p.subgraph.phi.tolist() == [1.0, 1.0, 1.0]
    assert p.subgraph.birth.tolist() == [1.0, 1.0, 1.0]
    # filtration.py fixes ties by edge index: edges 0 (0-2), 1 (0-3), 2 (1-2) already span the
    # graph, so edge 3 (1-3) is the one that closes the cycle.
    assert p.subgraph.edge.tolist() == [0, 1, 2]


def test_ties_equal_births_merge(persist):
    # Path 0 -2- 1 -1- 2 -2- 3: two components {0,1} and {2,3}, both born at 2 (tie), merged
    # by e12 at 1. Whichever is declared younger, the point is (2, 1); essential (2, inf).
    g = path_graph([2.0, 1.0, 2.0])
    p = persist(g, h1=True)
    assert points(p.h0) == [(2.0, 1.0), (2.0, INF)]
    assert points(p.h1) == []
    assert p.subgraph.edge.tolist() == [0, 2, 1]
    assert p.subgraph.birth.tolist() == [2.0, 2.0, 2.0]
    assert p.total_persistence == 1.0


def test_vertex_with_positive_persistence_in_a_layered_graph(persist):
    # Layers 0 | 1,2 | 3. Edges e0 = 0-1: 6, e1 = 0-2: 1, e2 = 2-3: 5, e3 = 1-3: 2.
    # Values: v0 = 6, v1 = 6, v2 = 5, v3 = 5. Classes {0,1} born 6 and {2,3} born 5 meet at
    # e3 (2): (5, 2). e1 (1) closes the cycle 0-1-3-2-0: H1 (1, inf). Persistence 3.
    g = InducedGraph.from_edges([[1], [2], [1]], [0, 0, 2, 1], [1, 2, 3, 3], [6.0, 1.0, 5.0, 2.0])
    p = persist(g, h1=True)
    assert points(p.h0) == [(5.0, 2.0), (6.0, INF)]
    assert points(p.h1) == [(1.0, INF)]
    assert p.subgraph.edge.tolist() == [0, 2, 3]
    assert p.subgraph.birth.tolist() == [6.0, 5.0, 5.0]
    assert p.total_persistence == 3.0


def test_vertices_inf_deaths_are_the_msf_weights(persist):
    # Same 4-cycle as above, every vertex present from the start (value +inf).
    # Four classes born at inf; the maximum spanning forest edges 4, 3, 2 each merge two of them:
    # (inf, 4), (inf, 3), (inf, 2). e(u1,v2) = 1 closes the cycle: H1 (1, inf).
    g = InducedGraph.from_edges([[2], [2]], [1, 0, 0, 1], [2, 3, 2, 3], [2.0, 1.0, 4.0, 3.0])
    p = persist(g, h1=True, vertices="inf")
    finite = [pt for pt in points(p.h0) if np.isfinite(pt[1])]
    assert finite == [(INF, 2.0), (INF, 3.0), (INF, 4.0)]
    assert points(p.h1) == [(1.0, INF)]
    assert p.subgraph.edge.tolist() == [2, 3, 0]
    assert p.subgraph.phi.tolist() == [4.0, 3.0, 2.0]
    assert np.isinf(p.subgraph.birth).all()
    # On a path (a tree), every edge is in the forest: the deaths are all the weights.
    q = persist(path_graph([3.0, 1.0, 2.0]), vertices="inf")
    assert [pt for pt in points(q.h0) if np.isfinite(pt[1])] == [(INF, 1.0), (INF, 2.0), (INF, 3.0)]


def test_vertices_inf_essential_class(persist):
    # With vertices="inf", the one class per component that never dies is born at inf and dies at
    # inf: the point (inf, inf). It is an unpaired (essential) class, not a zero-length pair, so
    # it is kept (dionysus's init_diagrams keeps it): one per connected component.
    g = InducedGraph.from_edges([[2], [2]], [1, 0, 0, 1], [2, 3, 2, 3], [2.0, 1.0, 4.0, 3.0])
    assert points(persist(g, vertices="inf").h0) == [(INF, 2.0), (INF, 3.0), (INF, 4.0), (INF, INF)]
    # Two components ({0,3} and {1,4,5}, see test_two_components_...): two (inf, inf) points.
    g2 = InducedGraph.from_edges([[3], [3]], [0, 1, 1], [3, 4, 5], [5.0, 2.0, 1.0])
    assert points(persist(g2, vertices="inf").h0) == [(INF, 1.0), (INF, 2.0), (INF, 5.0), (INF, INF), (INF, INF)]


def test_dionysus_keeps_the_essential_inf_class():
    # The convention the test above follows, checked on dionysus itself: vertices at +inf, one
    # edge joining two of them, a third vertex alone. init_diagrams gives (inf, 1) for the merge
    # and keeps one (inf, inf) per component although birth == death in value.
    import dionysus

    f = dionysus.Filtration([dionysus.Simplex([0], INF), dionysus.Simplex([1], INF),
                             dionysus.Simplex([2], INF), dionysus.Simplex([0, 1], 1.0)])
    m = dionysus.homology_persistence(f)
    h0 = [(p.birth, p.death) for p in dionysus.init_diagrams(m, f)[0]]
    assert sorted(h0) == [(INF, 1.0), (INF, INF), (INF, INF)]


def test_empty_graph(persist):
    # All φ = 0: no edge, hence no vertex in the complex and empty diagrams.
    g = InducedGraph.from_edges([[2], [2]], [0, 1], [2, 3], [0.0, 0.0])
    p = persist(g, h1=True)
    assert p.h0.shape == (0, 2) and p.h1.shape == (0, 2)
    assert len(p.subgraph) == 0
    assert p.total_persistence == 0.0


# ----------------------------------------------------------------------------------------------
# A.2 Custom vertex values
# ----------------------------------------------------------------------------------------------

def test_invalid_vertex_values_are_refused(persist):
    # Path 0 -3- 1 -1- 2; vertex 1 at 2 would enter after its edge 0 -> 1 (φ = 3).
    g = path_graph([3.0, 1.0])
    bad = np.array([3.0, 2.0, 1.0])
    with pytest.raises(InvalidFiltrationError, match=r"0 -> 1") as info:
        superlevel_filtration(g, bad)
    assert "φ = 3" in str(info.value)
    assert isinstance(info.value, onnxtopo.OnnxtopoError)
    with pytest.raises(InvalidFiltrationError, match=r"0 -> 1"):
        persist(g, vertices=bad)
    # The offending edge is named whichever of its ends is late: here vertex 2 (the target).
    with pytest.raises(InvalidFiltrationError, match=r"1 -> 2"):
        persist(g, vertices=np.array([3.0, 3.0, 0.5]))


def test_bad_vertices_argument(persist):
    g = path_graph([3.0, 1.0])
    with pytest.raises(ValueError):
        persist(g, vertices="min")
    with pytest.raises(ValueError):
        persist(g, vertices=np.array([3.0, 3.0]))  # wrong shape


def test_valid_custom_vertex_values(persist):
    # Path 0 -3- 1 -1- 2 with vertex values 10, 5, 4 (each >= its edges' φ).
    # Entry: v0 (10), v1 (5), v2 (4), e01 (3): {1} (born 5) joins {0} (born 10): (5, 3).
    # e12 (1): {2} (born 4) joins: (4, 1). Essential (10, inf). Total (5-3) + (4-1) = 5.
    g = path_graph([3.0, 1.0])
    p = persist(g, h1=True, vertices=np.array([10.0, 5.0, 4.0]))
    assert points(p.h0) == [(4.0, 1.0), (5.0, 3.0), (10.0, INF)]
    assert points(p.h1) == []
    assert p.subgraph.edge.tolist() == [0, 1]
    assert p.subgraph.birth.tolist() == [5.0, 4.0]
    assert p.total_persistence == 5.0
    # The values "max" would choose, given explicitly, give the "max" diagrams.
    same = persist(g, vertices=np.array([3.0, 3.0, 1.0]))
    assert points(same.h0) == points(persist(g).h0) == [(3.0, INF)]


# ----------------------------------------------------------------------------------------------
# A.3 Properties on random small layered graphs
# ----------------------------------------------------------------------------------------------

# φ: 0 (no edge), small integers (ties) or float32-representable floats (dionysus stores values
# as float32, so these come back exactly).
NONZERO_PHI = st.one_of(st.integers(1, 4).map(float),
                        st.floats(0.0009765625, 1024.0, allow_nan=False, allow_infinity=False, width=32))


@st.composite
def layered_graphs(draw):
    sizes = draw(st.lists(st.integers(1, 5), min_size=2, max_size=5))
    # Per graph, the share of present edges (the others get φ = 0), from sparse (several
    # components) to complete.
    density = draw(st.integers(1, 10))
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    src, dst, phis = [], [], []
    for layer in range(len(sizes) - 1):
        for a in range(sizes[layer]):
            for b in range(sizes[layer + 1]):
                src.append(offsets[layer] + a)
                dst.append(offsets[layer + 1] + b)
                phis.append(draw(NONZERO_PHI) if draw(st.integers(0, 9)) < density else 0.0)
    return InducedGraph.from_edges([[s] for s in sizes], src, dst, phis)


PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def present_vertices(g) -> np.ndarray:
    return np.unique(np.concatenate([g.src, g.dst]))


def n_components(g) -> int:
    """Connected components of the graph restricted to the vertices that have an edge."""
    present = present_vertices(g)
    if present.size == 0:
        return 0
    relabel = {v: i for i, v in enumerate(present.tolist())}
    rows = [relabel[v] for v in g.src.tolist()]
    cols = [relabel[v] for v in g.dst.tolist()]
    m = scipy.sparse.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(present.size,) * 2)
    return connected_components(m, directed=False)[0]


def msf_weights(g) -> np.ndarray:
    """Weights of a maximum spanning forest, by scipy: minimum spanning tree of -φ.

    Each undirected edge is stored once, at [src, dst] (no duplicates in these graphs), so the
    matrix needs no symmetrization; scipy reads it as undirected and ignores zeros (absent edges,
    never a -φ since φ > 0).
    """
    m = scipy.sparse.csr_matrix((-g.phi, (g.src, g.dst)), shape=(g.n_vertices,) * 2)
    tree = minimum_spanning_tree(m).tocoo()
    return np.sort(-tree.data)


class UnionFind:
    def __init__(self):
        self.parent = {}

    def find(self, v):
        self.parent.setdefault(v, v)
        while self.parent[v] != v:
            self.parent[v] = self.parent[self.parent[v]]
            v = self.parent[v]
        return v


def kruskal_diagrams(g, vertices="max"):
    """H0 and H1 by Kruskal + union-find + elder rule, written independently of onnxtopo.

    Edges go in descending φ (ties in any order); a vertex enters at the maximum φ of its edges
    (or +inf), i.e. no later than its first edge. A merge kills the younger component (lower
    birth) at the edge's φ; points with birth == death are dropped. An edge inside a component
    gives an H1 class (φ, inf).
    """
    value = {}
    for u, v, w in zip(g.src.tolist(), g.dst.tolist(), g.phi.tolist()):
        for x in (u, v):
            value[x] = INF if vertices == "inf" else max(value.get(x, 0.0), w)
    uf = UnionFind()
    birth = dict(value)  # root -> birth of its component (the oldest vertex's value)
    h0, h1 = [], []
    for e in sorted(range(g.n_edges), key=lambda i: -g.phi[i]):
        u, v, w = int(g.src[e]), int(g.dst[e]), float(g.phi[e])
        ru, rv = uf.find(u), uf.find(v)
        if ru == rv:
            h1.append((w, INF))
            continue
        old, young = (ru, rv) if birth[ru] >= birth[rv] else (rv, ru)
        if birth[young] != w:
            h0.append((birth[young], w))
        uf.parent[young] = old
    roots = {uf.find(v) for v in value}
    h0 += [(birth[r], INF) for r in roots]
    return sorted(h0), sorted(h1)


ENGINES_AND_DEFAULT = list(dict.fromkeys([*ENGINE_NAMES, None]))


@PROPERTY
@given(layered_graphs())
def test_property_essential_classes_are_components(g):
    for engine in ENGINES_AND_DEFAULT:
        p = run(g, engine)
        essential = np.isinf(p.h0[:, 1])
        assert essential.sum() == n_components(g), engine
        # Every point has birth > death (birth == death is dropped), births are vertex values
        # (= some φ) and finite deaths are edge weights.
        assert (p.h0[:, 0] > p.h0[:, 1])[~essential].all(), engine
        phis = set(g.phi.tolist())
        assert set(p.h0[:, 0].tolist()) <= phis, engine
        assert set(p.h0[~essential, 1].tolist()) <= phis, engine


@PROPERTY
@given(layered_graphs())
def test_property_counts(g):
    n_present = present_vertices(g).size
    for engine in ENGINES_AND_DEFAULT:
        p = run(g, engine, h1=True)
        assert len(p.subgraph) == n_present - n_components(g), engine
        assert len(p.h1) == g.n_edges - len(p.subgraph), engine
        assert p.n_simplices == n_present + g.n_edges, engine
        # Each H1 class is born at the φ of an edge and never dies.
        assert np.isinf(p.h1[:, 1]).all(), engine


@PROPERTY
@given(layered_graphs())
def test_property_subgraph_is_a_maximum_spanning_forest(g):
    expected = msf_weights(g)
    for engine in ENGINES_AND_DEFAULT:
        sg = run(g, engine).subgraph
        # The subgraph describes edges of the graph, in entry (descending φ) order.
        assert sg.src.tolist() == g.src[sg.edge].tolist(), engine
        assert sg.dst.tolist() == g.dst[sg.edge].tolist(), engine
        assert sg.phi.tolist() == g.phi[sg.edge].tolist(), engine
        assert (np.diff(sg.phi) <= 0).all(), engine
        assert len(set(sg.edge.tolist())) == len(sg), engine
        # The class killed was born no later than the edge that kills it (superlevel: birth >= φ).
        assert (sg.birth >= sg.phi).all(), engine
        # Acyclic.
        uf = UnionFind()
        for u, v in zip(sg.src.tolist(), sg.dst.tolist()):
            ru, rv = uf.find(u), uf.find(v)
            assert ru != rv, f"{engine}: edge {u}-{v} of the persistent subgraph closes a cycle"
            uf.parent[ru] = rv
        # Maximum weight, and (with the count test) spanning: same weights as scipy's forest.
        assert len(sg) == len(expected), engine
        assert np.sort(sg.phi).tolist() == pytest.approx(expected.tolist(), rel=1e-12), engine
        assert sg.phi.sum() == pytest.approx(expected.sum(), rel=1e-12), engine


@PROPERTY
@given(layered_graphs())
def test_property_vertices_inf_deaths_are_msf_weights(g):
    for engine in ENGINES_AND_DEFAULT:
        p = run(g, engine, vertices="inf")
        finite = np.isfinite(p.h0[:, 1])
        assert np.isinf(p.h0[:, 0]).all(), engine
        assert np.sort(p.h0[finite, 1]).tolist() == pytest.approx(msf_weights(g).tolist(), rel=1e-12), engine


@PROPERTY
@given(layered_graphs())
def test_property_vertices_inf_one_essential_class_per_component(g):
    # Each component keeps a class born at +inf that never dies: the point (inf, inf). It has
    # birth == death in value but is not a zero-length pair: it is unpaired, and dionysus keeps it.
    for engine in ENGINES_AND_DEFAULT:
        p = run(g, engine, vertices="inf")
        essential = np.isinf(p.h0[:, 1])
        assert essential.sum() == n_components(g), engine


@PROPERTY
@pytest.mark.parametrize("mode", ["max", "inf"])
@given(g=layered_graphs())
def test_property_matches_independent_kruskal(mode, g):
    h0, h1 = kruskal_diagrams(g, mode)
    for engine in ENGINES_AND_DEFAULT:
        p = run(g, engine, h1=True, vertices=mode)
        assert Counter(points(p.h0)) == Counter(h0), engine
        assert Counter(points(p.h1)) == Counter(h1), engine


@PROPERTY
@given(layered_graphs(), st.sampled_from(["max", "inf"]))
def test_property_engines_agree(g, mode):
    # Every engine gives the same result, persistent subgraph and its order included (ties are
    # broken by the filtration, not by the engine).
    results = [run(g, engine, h1=True, vertices=mode) for engine in ENGINES_AND_DEFAULT]
    first = results[0]
    for engine, p in zip(ENGINES_AND_DEFAULT[1:], results[1:], strict=True):
        assert_same_persistence(p, first, engine)
        assert p.n_simplices == first.n_simplices


def test_assert_same_persistence_catches_every_kind_of_difference():
    """The equivalence tests' one comparison fails on a moved point, a missing H1, a reordered
    subgraph and a subgraph array of another dtype with equal values."""
    g = InducedGraph.from_edges([[1], [2], [1]], [0, 0, 1, 2], [1, 2, 3, 3], [3.0, 2.0, 2.0, 1.0])  # one cycle
    p = persistence(g, h1=True)
    assert len(p.h1) == 1 and len(p.subgraph) == 3
    assert_same_persistence(p, persistence(g, h1=True))
    moved = p.h0.copy()
    moved[0, 0] -= 0.5
    sub = p.subgraph
    for other in (dataclasses.replace(p, h0=moved), dataclasses.replace(p, h1=None),
                  dataclasses.replace(p, subgraph=dataclasses.replace(sub, src=sub.src[::-1].copy())),
                  dataclasses.replace(p, subgraph=dataclasses.replace(sub, phi=sub.phi.astype(np.float32)))):
        with pytest.raises(AssertionError):
            assert_same_persistence(p, other)
