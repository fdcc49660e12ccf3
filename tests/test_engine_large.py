"""The forest engine's large-graph path: Filter-Kruskal batches sized by the reduction's edges
(``FILTER_HEAVY_SHARE``) and forests carried unordered from chunk to chunk give exactly the
maximum spanning forest a plain Kruskal builds in entry order, and the same bytes as one chunk."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest

from onnxtopo import homology

from conftest import assert_same_persistence
from test_engine_speedpaths import kruskal_in_entry_order


def layered_graph(rng, layers, width, fan_in, levels):
    """A layered graph as a CNN induces one: each vertex of a layer gets ``fan_in`` edges from
    the layer before, φ drawn from ``levels`` (few values: many ties)."""
    src, dst = [], []
    for layer in range(1, layers):
        targets = np.arange(width) + layer * width
        sources = np.stack([rng.choice(width, fan_in, replace=False) for _ in range(width)]) + (layer - 1) * width
        src.append(sources.ravel())
        dst.append(np.repeat(targets, fan_in))
    src, dst = np.concatenate(src), np.concatenate(dst)
    return src, dst, rng.choice(levels, size=src.size), layers * width


@pytest.mark.parametrize("levels", [np.array([1.0, 2.0, 3.0]), np.geomspace(1e-3, 1e3, 500)], ids=["ties", "spread"])
@pytest.mark.parametrize("heavy_share, chunk_edges, block_size", [
    (20, 1 << 24, 5_000),  # one reduction, batch a twentieth of its edges
    (3, 1 << 24, 5_000),  # a third: few Filter-Kruskal rounds
    (400, 1 << 24, 5_000),  # tiny batches: many rounds
    (20, 3_000, 1_000),  # several chunks, forests carried unordered to the next reduction
    (50, 700, 250),
])
def test_heavy_share_batches_give_plain_kruskal(levels, heavy_share, chunk_edges, block_size):
    rng = np.random.default_rng([heavy_share, chunk_edges, block_size, levels.size])
    src, dst, phi, n_vertices = layered_graph(rng, layers=6, width=400, fan_in=12, levels=levels)
    blocks = [(src[i:i + block_size], dst[i:i + block_size], phi[i:i + block_size])
              for i in range(0, len(src), block_size)]
    with mock.patch.object(homology, "FILTER_BATCH_MIN", 8), mock.patch.object(homology, "FILTER_HEAVY_SHARE",
                                                                               heavy_share):
        result = homology.forest_persistence(blocks, n_vertices, h1=True, chunk_edges=chunk_edges)
    expected = kruskal_in_entry_order(src.tolist(), dst.tolist(), phi.tolist(), n_vertices)
    assert result.subgraph.edge.tolist() == expected
    np.testing.assert_array_equal(result.subgraph.phi, phi[expected])
    # The defaults, everything in one block and one chunk: the same results, byte for byte.
    whole = homology.forest_persistence([(src, dst, phi)], n_vertices, h1=True)
    assert_same_persistence(whole, result, "one chunk vs streamed")


def test_batch_follows_the_reduction_not_the_whole_graph():
    """Many vertices, few edges per reduction: the batch is a share of the edges, so a pivot is
    drawn (the share applies) instead of sorting every edge."""
    rng = np.random.default_rng(7)
    src, dst, phi, n_vertices = layered_graph(rng, layers=4, width=3000, fan_in=8, levels=np.geomspace(1, 9, 50))
    pivots = []
    original = homology._pivot

    def spy(sample, n_edges, batch):
        pivots.append(batch)
        return original(sample, n_edges, batch)

    with mock.patch.object(homology, "_pivot", spy):
        result = homology.forest_persistence([(src, dst, phi)], n_vertices)
    assert pivots and pivots[0] == src.size // homology.FILTER_HEAVY_SHARE < n_vertices
    assert result.subgraph.edge.tolist() == kruskal_in_entry_order(src.tolist(), dst.tolist(), phi.tolist(),
                                                                    n_vertices)
