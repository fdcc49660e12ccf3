"""Dense layers read in place by the forest engine (``DenseEdges`` through ``graph.reduced_blocks``):
no edge written out, yet the same persistence, byte for byte, as the engine fed every edge and as
dionysus, with H1, ties, zero weights and scales, constants among the inputs, several leading
indices, chunks, the pair table of few components and the filtered light edges of many."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest

from onnxtopo import homology

from conftest import assert_same_persistence, make_model
from test_engine_large import onnx_node, tied_dense_rule


def dense_stack(rng, levels):
    """An MLP with what real ones have: a Gemm (alpha, transB) reading an activation concatenated
    with a constant, tied weights with zeros, a MatMul over three leading rows (tokens) followed by
    a folded per-element scale with zeros, ReLU zeros, a last Gemm."""
    def weights(*shape, zeros=0.1):
        return (rng.choice(levels, size=shape) * rng.choice([-1, 0, 1], size=shape, p=[(1 - zeros) / 2, zeros,
                                                                                      (1 - zeros) / 2])
                ).astype(np.float32)

    nodes = [onnx_node("Concat", ["x", "k"], ["with_constant"], axis=1),
             onnx_node("Gemm", ["with_constant", "W1"], ["g1"], transB=1, alpha=0.5),
             onnx_node("Relu", ["g1"], ["a1"]),
             onnx_node("Reshape", ["a1", "tokens"], ["t"]),
             onnx_node("MatMul", ["t", "W2"], ["m2"]),
             onnx_node("Mul", ["m2", "s"], ["n2"]),
             onnx_node("Relu", ["n2"], ["a2"]),
             onnx_node("Flatten", ["a2"], ["flat"]),
             onnx_node("Gemm", ["flat", "W3"], ["y"])]
    scale = weights(3, 7, zeros=0.2)
    return make_model(nodes, (10,), {
        "k": weights(1, 4), "W1": weights(24, 14), "tokens": np.array([-1, 3, 8], np.int64),
        "W2": weights(8, 7), "s": scale, "W3": weights(21, 5)})


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("h1", [False, True], ids=["h0", "h1"])
@pytest.mark.parametrize("components, share", [(64, 16), (0, 16), (64, 10_000)],
                         ids=["pair-table", "filtered", "second-run"])
def test_dense_edges_read_in_place_give_the_streamed_results_and_dionysus(seed, h1, components, share):
    import onnxtopo
    from onnxtopo import graph
    from onnxtopo.rules.op_gemm import DenseEdges

    rng = np.random.default_rng(seed)
    levels = np.array([0.5, 1.0]) if seed % 2 else np.geomspace(0.1, 10, 40)
    analyzer = onnxtopo.Analyzer(dense_stack(rng, levels))
    x = (rng.choice(levels, size=(2, 10)) * rng.choice([-1, 0, 1], size=(2, 10))).astype(np.float32)
    assert any(step.reads_constants for step in analyzer.plan.steps) and analyzer.plan.scales
    kinds = [type(block) for _, block in graph.reduced_blocks(analyzer.plan, analyzer.runner.run(x[:1]), 0)]
    assert kinds.count(DenseEdges) == 3  # every dense step, none written out
    options = {"h1": h1, "batch_size": 1}  # the constant's batch axis is 1
    with mock.patch.object(homology, "PAIR_TABLE_COMPONENTS", components), \
            mock.patch.object(homology, "IN_PLACE_WRITTEN_SHARE", share), \
            mock.patch.object(homology, "FILTER_BATCH_MIN", 4):
        in_place = list(analyzer.analyze(x, **options))
        chunked = list(analyzer.analyze(x, chunk_edges=30, **options))  # several blocks and reductions
    oracle = list(analyzer.analyze(x, engine="dionysus", **options))
    for sample in range(2):
        streamed = homology.forest_persistence(
            (edges for _, *edges in graph.edge_blocks(analyzer.plan, analyzer.runner.run(x[sample:sample + 1]), 0)),
            analyzer.plan.n_vertices, h1=h1)
        assert in_place[sample].n_edges == streamed.n_edges
        assert_same_persistence(streamed, in_place[sample].persistence, "in place vs streamed")
        assert_same_persistence(streamed, chunked[sample].persistence, "in place, small chunks, vs streamed")
        assert_same_persistence(streamed, oracle[sample].persistence, "in place vs dionysus")


@pytest.mark.parametrize("seed", range(30))
def test_dense_edges_count_and_phi_are_the_streamed_ones(seed):
    """``n_edges`` and the φ a heavy pass keeps are those of the edges the rule streams, in order:
    zero weights and scales, and products that underflow to 0 (weights and activations near
    float64's smallest normal), are no edges."""
    from onnxtopo import _compiled
    from onnxtopo.rules.op_gemm import DenseEdges

    rng = np.random.default_rng(seed)
    rule = tied_dense_rule(rng, np.array([0.5, 1.0, 3.0]))
    n_in, n_out = int(np.prod(rule.in_shape)), int(np.prod(rule.out_shape))
    h = rng.choice([0.0, 0.25, 2.0], n_in)
    if seed % 3 == 0:  # some products underflow, others only come close
        rule.matrix = rule.matrix * rng.choice([1.0, 1e-160], size=rule.matrix.shape)
        h = h * rng.choice([1.0, 1e-160], size=n_in)
    scale = rng.choice([0.0, 0.5, 1.5], n_out, p=[0.2, 0.4, 0.4]) if seed % 2 else _compiled.NO_SCALE
    rule.__dict__.pop("smallest_weight", None)
    streamed = [phi for _, _, phi in rule.global_nonzero_edges(h, None, np.arange(n_in), n_in, scale)]
    expected = np.abs(np.concatenate(streamed))
    edges = DenseEdges(rule, h, scale)
    assert edges.n_edges == expected.size
    kept = edges.kept_phi()
    strongest, first_edge = np.zeros(n_in + n_out), np.zeros((3, n_in + n_out), np.int64)
    _, _, n_edges = edges.heavy(np.inf, 0, strongest, first_edge)
    assert n_edges == expected.size
    np.testing.assert_array_equal(kept, expected)


def test_blocks_read_in_place_refuse_given_vertex_values():
    from onnxtopo.rules.op_gemm import DenseEdges

    rule = tied_dense_rule(np.random.default_rng(0), np.array([1.0]))
    block = DenseEdges(rule, np.ones(int(np.prod(rule.in_shape))), np.empty(0))
    with pytest.raises(ValueError, match="in place"):
        homology.forest_persistence([block], block.target_offset + int(np.prod(rule.out_shape)),
                                    vertices=np.ones(block.target_offset + int(np.prod(rule.out_shape))))
