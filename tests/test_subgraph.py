"""Persistent subgraphs (onnxtopo.subgraph): pieces (anchored, components) and edge selections.

Hand-built graphs whose subgraphs and pieces are worked out in the docstrings; random graphs
against a re-implementation of the reference's grouping (pt_activation) on dionysus's reduced
matrix; the shipped CCFF's real subgraphs against their own diagrams.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import onnxtopo
from onnxtopo import InducedGraph, persistence
from onnxtopo.subgraph import (
    as_subgraph,
    selected_edges,
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


def test_real_pieces_follow_the_diagram():
    # One piece per H0 point (continuous φ: no ties), the j-th starting at the j-th birth.
    for result in onnxtopo.analyze(MODEL, np.load(ROOT / "models" / "mnist-heldout.npz")["x"][:5]):
        piece = subgraph_pieces(result)
        _, first = np.unique(piece, return_index=True)
        assert len(first) == len(result.h0)
        np.testing.assert_array_equal(np.asarray(result.subgraph.phi)[first], result.h0[:, 0])
        assert len(subgraph_edges(result, selection="take", take=len(first))) == len(result.subgraph)


def test_as_subgraph_reads_any_analysis_and_refuses_the_rest(hand):
    result = onnxtopo.AnalysisResult(0, 11, hand.n_edges, hand)
    assert as_subgraph(result) is hand.subgraph and as_subgraph(hand) is hand.subgraph
    assert as_subgraph(hand.subgraph) is hand.subgraph
    # Duck-typed: anything with the subgraph's arrays (e.g. read back from a file).
    loose = SimpleNamespace(src=[0, 1], dst=[1, 2], phi=[3.0, 2.0], birth=[3.0, 2.0])
    assert edges_of(subgraph_edges(loose, selection="top_k", k=1)) == [(0, 1)]
    for bad in (np.zeros((3, 2)), SimpleNamespace(src=[0], dst=[1], phi=[1.0]), "subgraph"):
        with pytest.raises(TypeError, match="expected an AnalysisResult, a Persistence or a PersistentSubgraph"):
            as_subgraph(bad)


def test_a_cycle_is_not_a_subgraph():
    # Three edges on three vertices close a cycle: no persistence has them all as death edges.
    cycle = SimpleNamespace(src=np.array([0, 1, 0]), dst=np.array([1, 2, 2]), phi=np.array([3.0, 2.0, 1.0]),
                            birth=np.array([3.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match="not a forest"):
        subgraph_pieces(cycle)


def test_selected_edges_are_positions_in_entry_order(hand):
    # The positions behind subgraph_edges: P0 is at positions 0, 2, 3, 6 (ANCHORED above);
    # persistence >= 3 keeps the deaths at 14 and 9 (positions 3 and 6).
    sub = hand.subgraph
    assert selected_edges(sub, "take", 1, None, None, "anchored").tolist() == [0, 2, 3, 6]
    assert selected_edges(sub, "persistence", None, None, 3, "anchored").tolist() == [3, 6]
    assert selected_edges(sub, "top_k", None, 2, None, "anchored").tolist() == [0, 1]
    assert selected_edges(sub, "all", None, None, None, "anchored").tolist() == list(range(9))
