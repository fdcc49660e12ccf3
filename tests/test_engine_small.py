"""Small networks' fast paths against the paths they replace and against plain Python: dense
layers' edges from one compiled pass over the weight matrix (no pattern), and the H1 diagram
written in one compiled pass; diagrams and subgraphs checked against the dionysus engine,
with ties in φ, zero activations, isolated vertices, every vertex mode, H1 on and off.
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from onnx.helper import make_node as onnx_node

import onnxtopo
from onnxtopo import InducedGraph
from onnxtopo.rules.op_gemm import DenseRule, GemmRule, RightDenseRule

from conftest import assert_same_persistence

REPO = Path(__file__).resolve().parents[1]
FIELDS = ("src", "dst", "phi", "birth", "edge")


def random_dense_rule(rng):
    """A Gemm (transB or not, alpha) or MatMul rule, per-sample rank 1 or 2 (rows merged with
    the batch, as jax2onnx writes a dense layer over tokens), weights with zeros."""
    k, n = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    in_shape = (k,) if rng.random() < 0.5 else (int(rng.integers(1, 4)), k)
    W = rng.standard_normal((k, n)) * (rng.random((k, n)) < 0.8)
    if rng.random() < 0.5:
        return RightDenseRule(onnx_node("MatMul", ["x", "W"], ["y"]), in_shape, {"W": W}, None)
    trans_b = int(rng.integers(0, 2))
    node = onnx_node("Gemm", ["x", "W"], ["y"], transB=trans_b, alpha=float(rng.choice([1.0, -0.5, 3.0])))
    return GemmRule(node, (k,), {"W": W.T if trans_b else W}, None)


def concatenated(blocks):
    blocks = list(blocks)
    assert blocks, "a rule yields one block at least"
    return [np.concatenate(column) for column in zip(*blocks)]


@pytest.mark.parametrize("seed", range(60))
def test_compiled_dense_edges_equal_the_pattern_path(seed):
    """The compiled pass gives the pattern's edges with w·h ≠ 0, value for value and in pattern
    order, whatever the chunk size; in global ids, constants (-1) make no edge, targets shift and
    a folded scale applies, as global_edges does on the pattern."""
    from onnxtopo import _compiled

    rng = np.random.default_rng(seed)
    rule = random_dense_rule(rng)
    size = int(np.prod(rule.in_shape))
    h = rng.standard_normal(size) * (rng.random(size) < 0.5)  # ReLU-like zeros
    if seed % 7 == 0:
        h[:] = 0  # a dead layer: no edge, one empty block
    pattern = rule.build_pattern(slice(0, rule.outer_size))
    values = pattern.weight * h[pattern.src]
    nonzero = values != 0
    input_vertices = rng.integers(100, 10**6, size)
    input_vertices[rng.random(size) < 0.2] = -1
    scale = rng.standard_normal(int(np.prod(rule.out_shape))) * (rng.random(int(np.prod(rule.out_shape))) < 0.8)
    expected_global = _compiled.global_edges(pattern.src, pattern.dst, pattern.weight, h, input_vertices, 7, scale,
                                             True)
    for max_edges in (None, 1, rule.matrix.shape[1], 2 * rule.matrix.shape[1] + 1, rule.candidate_count):
        got = concatenated(rule.nonzero_edges(h, max_edges))
        for a, b in zip(got, (pattern.src[nonzero], pattern.dst[nonzero], values[nonzero])):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
        got = concatenated(rule.global_nonzero_edges(h, max_edges, input_vertices, 7, scale))
        for a, b in zip(got, expected_global):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
        # Independently of global_edges: plain numpy on the pattern.
        signed = values * scale[pattern.dst]
        keep = (input_vertices[pattern.src] >= 0) & (signed != 0)
        np.testing.assert_array_equal(got[0], input_vertices[pattern.src][keep])
        np.testing.assert_array_equal(got[1], pattern.dst[keep] + 7)
        np.testing.assert_array_equal(got[2], signed[keep])


def test_dense_edges_chunks_hold_at_most_max_edges():
    rng = np.random.default_rng(0)
    rule = RightDenseRule(onnx_node("MatMul", ["x", "W"], ["y"]), (50,), {"W": rng.standard_normal((50, 7))}, None)
    h = rng.standard_normal(50)
    blocks = list(rule.nonzero_edges(h, 20))
    assert len(blocks) == 25  # two rows of 7 edges per block
    assert max(b[0].size for b in blocks) <= 20


def analyses(analyzer, x, **options):
    return list(analyzer.analyze(x, **options))


def assert_same(a, b):
    np.testing.assert_array_equal(a.h0, b.h0)
    if a.h1 is None:
        assert b.h1 is None
    else:
        assert a.h1.dtype == b.h1.dtype and a.h1.shape == b.h1.shape
        np.testing.assert_array_equal(a.h1, b.h1)
    for field in FIELDS:
        got, want = getattr(a.subgraph, field), getattr(b.subgraph, field)
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("h1", [False, True])
def test_ccff_same_results_as_the_pattern_path_and_dionysus(h1):
    """On the shipped CCFF network: the compiled dense pass against the pattern path it replaces
    (every edge, and the whole analysis), and the forest engine against dionysus."""
    from onnxtopo.graph import edge_blocks

    x = np.load(REPO / "models" / "mnist-heldout.npz")["x"][:2]
    analyzer = onnxtopo.Analyzer(REPO / "models" / "ccff-relu.onnx", threads=1)
    activations = analyzer.runner.run(x)
    fast = analyses(analyzer, x, h1=h1)
    new = [concatenated(b[1:] for b in edge_blocks(analyzer.plan, activations, i)) for i in range(len(x))]
    with mock.patch.object(DenseRule, "prefer_global_edges", False):
        old = [concatenated(b[1:] for b in edge_blocks(analyzer.plan, activations, i)) for i in range(len(x))]
        slow = analyses(analyzer, x, h1=h1)
    for sample_new, sample_old in zip(new, old):
        assert sample_new[0].size > 100_000
        for a, b in zip(sample_new, sample_old):
            np.testing.assert_array_equal(a, b)
    oracle = analyses(analyzer, x, h1=h1, engine="dionysus")
    for a, b, c in zip(fast, slow, oracle, strict=True):
        assert a.n_edges == b.n_edges == c.n_edges
        assert_same(a, b)
        assert_same(a, c)


def tied_mlp():
    """A two-layer MLP whose weights take three magnitudes (many ties in φ = |w·h|), with ReLU
    zeros and a dead hidden neuron (isolated vertices)."""
    from conftest import make_model

    rng = np.random.default_rng(11)
    W1 = rng.choice([-1.0, 0.5, 2.0], size=(6, 5)).astype(np.float32)
    W1[:, 2] = 0  # hidden neuron 2 gets nothing: isolated in every input's graph
    W2 = rng.choice([-0.5, 1.0, 1.0], size=(5, 4)).astype(np.float32)
    model = make_model([onnx_node("Relu", ["x"], ["r"]), onnx_node("MatMul", ["r", "W1"], ["a"]),
                        onnx_node("Relu", ["a"], ["b"]), onnx_node("Gemm", ["b", "W2"], ["y"])],
                       (6,), {"W1": W1, "W2": W2})
    x = rng.choice([-1.0, 0.0, 1.0, 2.0], size=(12, 6)).astype(np.float32)
    return onnxtopo.Analyzer(model), x


@pytest.mark.parametrize("h1", [False, True])
@pytest.mark.parametrize("vertices", ["max", "inf", "given"])
def test_tied_mlp_equals_dionysus_and_the_pattern_path(h1, vertices):
    analyzer, x = tied_mlp()
    given = np.full(analyzer.plan.n_vertices, 100.0)  # above every φ (at most 2 · 2 · 6 · 2)
    given[::3] = 200.0  # ties among vertices too
    options = {"h1": h1, "vertices": given if vertices == "given" else vertices}
    fast = analyses(analyzer, x, **options)
    with mock.patch.object(DenseRule, "prefer_global_edges", False):
        slow = analyses(analyzer, x, **options)
    oracle = analyses(analyzer, x, engine="dionysus", **options)
    for a, b, c in zip(fast, slow, oracle, strict=True):
        assert_same(a, b)
        assert_same(a, c)


@pytest.mark.parametrize("seed", range(20))
def test_h1_diagram_drops_the_forest_edges_by_position(seed):
    """The H1 points are the φ of the stream's edges outside the forest (given by position),
    largest first, each dying at +inf, whatever the blocks' sizes and the ties among φ."""
    from onnxtopo.homology import _h1_diagram

    rng = np.random.default_rng(seed)
    phi = rng.choice([0.25, 1.0, np.nextafter(1.0, 2), 3.0, 1e-300], size=int(rng.integers(0, 40)))
    forest = rng.choice(phi.size, size=int(rng.integers(0, phi.size + 1)), replace=False)
    cuts = np.sort(rng.integers(0, phi.size + 1, size=3))
    got = _h1_diagram(np.split(phi, cuts), forest, phi.size)
    outside = [v for i, v in enumerate(phi.tolist()) if i not in set(forest.tolist())]
    assert got.shape == (phi.size - forest.size, 2) and got.dtype == np.float64
    assert got.tolist() == [[v, np.inf] for v in sorted(outside, reverse=True)]


@pytest.mark.parametrize("seed", range(10))
def test_h1_of_a_graph_with_ties_and_isolated_vertices(seed):
    """Every edge outside the spanning forest gives one H1 point (φ, +inf): counted by hand
    (edges − vertices in the complex + components) and equal to dionysus's."""
    import scipy.sparse.csgraph

    rng = np.random.default_rng(seed)
    n, m = 30, 120
    pairs = np.unique(np.sort(rng.integers(0, n - 3, (m, 2)), axis=1), axis=0)  # the last 3 are isolated
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    phi = rng.choice([0.0, 0.5, 1.0, 2.0], size=len(pairs))  # ties, and edges with φ = 0 dropped
    graph = InducedGraph.from_edges([n], pairs[:, 0], pairs[:, 1], phi)
    fast = onnxtopo.persistence(graph, h1=True)
    slow = onnxtopo.persistence(graph, h1=True, engine="dionysus")
    np.testing.assert_array_equal(fast.h1, slow.h1)
    np.testing.assert_array_equal(fast.h0, slow.h0)
    present = np.zeros(n, bool)
    present[graph.src] = present[graph.dst] = True
    _, label = scipy.sparse.csgraph.connected_components(graph.matrix, directed=False)
    components = np.unique(label[present]).size
    assert len(fast.h1) == graph.n_edges - present.sum() + components
    assert np.isinf(fast.h1[:, 1]).all() and (np.diff(fast.h1[:, 0]) <= 0).all()


# ----------------------------------------------------------------------------------------------
# Light edges between few components: each pair's first crossing edge, from one pass


def components_seen(monkeypatch):
    """Records how many components each reduction had left after its heavy edges."""
    from onnxtopo import _compiled

    seen = []
    original = _compiled.component_ids

    def spy(label, strongest, limit):
        component, count = original(label, strongest, limit)
        seen.append(count)
        return component, count

    monkeypatch.setattr(_compiled, "component_ids", spy)
    return seen


#: (fan-in, FILTER_BATCH_MIN, φ levels, chunk_edges): graphs leaving one component after the
#: heavy edges, a few (the table) and more than PAIR_TABLE_COMPONENTS (the filter rounds).
PAIR_SWEEP = [(fan_in, batch_min, levels, chunk_edges) for fan_in in (10, 4) for batch_min in (8, 400)
              for levels in (3, 500) for chunk_edges in (1 << 24, 2_000)]


def pair_sweep_graph(monkeypatch, fan_in, batch_min, levels, chunk_edges):
    from onnxtopo import homology

    from test_engine_large import layered_graph

    monkeypatch.setattr(homology, "FILTER_BATCH_MIN", batch_min)
    rng = np.random.default_rng([fan_in, batch_min, levels, chunk_edges])
    levels = np.array([1.0, 2.0, 3.0]) if levels == 3 else np.geomspace(1e-3, 1e3, levels)
    src, dst, phi, n_vertices = layered_graph(rng, layers=4, width=150, fan_in=fan_in, levels=levels)
    blocks = [(src[i:i + 700], dst[i:i + 700], phi[i:i + 700]) for i in range(0, len(src), 700)]
    return (src, dst, phi, n_vertices), blocks


@pytest.mark.parametrize("fan_in, batch_min, levels, chunk_edges", PAIR_SWEEP)
def test_pair_table_gives_plain_kruskal_and_the_filter_rounds_bytes(monkeypatch, fan_in, batch_min, levels,
                                                                   chunk_edges):
    """Whatever the number of components left after the heavy edges, ties included and over
    several chunks: the forest a plain Kruskal builds, and the same bytes as the filter rounds
    give (PAIR_TABLE_COMPONENTS = 0) for every reduction."""
    from onnxtopo import homology

    from test_engine_speedpaths import kruskal_in_entry_order

    (src, dst, phi, n_vertices), blocks = pair_sweep_graph(monkeypatch, fan_in, batch_min, levels, chunk_edges)
    expected = kruskal_in_entry_order(src.tolist(), dst.tolist(), phi.tolist(), n_vertices)
    results = {}
    for limit in (0, 1, 3, homology.PAIR_TABLE_COMPONENTS):
        monkeypatch.setattr(homology, "PAIR_TABLE_COMPONENTS", limit)
        results[limit] = homology.forest_persistence(blocks, n_vertices, h1=True, chunk_edges=chunk_edges)
        assert results[limit].subgraph.edge.tolist() == expected
        assert_same_persistence(results[limit], results[0], f"pair table up to {limit} components vs filter rounds")


def test_the_pair_sweep_takes_every_path(monkeypatch):
    """The sweep above reaches the one-component shortcut, the table and the filter rounds (so
    its equalities cannot hold by never reaching a path)."""
    from onnxtopo import homology

    seen = components_seen(monkeypatch)
    for case in PAIR_SWEEP:
        (*_, n_vertices), blocks = pair_sweep_graph(monkeypatch, *case)
        homology.forest_persistence(blocks, n_vertices, chunk_edges=case[-1])
    limit = homology.PAIR_TABLE_COMPONENTS
    assert 1 in seen and any(2 <= c <= limit for c in seen) and any(c > limit for c in seen), seen


def test_ccff_light_edges_go_through_the_pair_table(monkeypatch):
    """On CCFF the heavy edges leave a few components: the table path runs, with the filter
    rounds' results byte for byte (dionysus agrees with those in the test above)."""
    from onnxtopo import homology

    x = np.load(REPO / "models" / "mnist-heldout.npz")["x"][:6]
    analyzer = onnxtopo.Analyzer(REPO / "models" / "ccff-relu.onnx", threads=1)
    seen = components_seen(monkeypatch)
    table = analyses(analyzer, x, h1=True)
    assert any(2 <= c <= homology.PAIR_TABLE_COMPONENTS for c in seen), seen
    monkeypatch.setattr(homology, "PAIR_TABLE_COMPONENTS", 0)
    for a, b in zip(table, analyses(analyzer, x, h1=True), strict=True):
        assert_same(a, b)
