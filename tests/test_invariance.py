"""Framework invariance: the same trained CCFF exported by four exporters gives the same graph.

models/ccff-relu*.onnx hold identical weights, exported by PyTorch's TorchScript and dynamo
exporters, Keras through tf2onnx (NHWC with Transposes and a Shape-computed Reshape) and
Flax through jax2onnx (see models/README.md). Vertices are defined by the layer tensors, so the
vertex ids, edge counts, diagrams and persistent subgraphs must agree up to float32 rounding.
"""

from pathlib import Path

import numpy as np
import pytest

import onnxtopo

MODELS = Path(__file__).resolve().parents[1] / "models"
EXPORTS = ["ccff-relu-dynamo.onnx", "ccff-relu-keras.onnx", "ccff-relu-jax.onnx"]


@pytest.fixture(scope="module")
def inputs():
    return np.load(MODELS / "mnist-heldout.npz")["x"][:6]


@pytest.fixture(scope="module")
def reference(inputs):
    return onnxtopo.Analyzer(MODELS / "ccff-relu.onnx")


@pytest.mark.parametrize("export", EXPORTS)
def test_same_plan(export, reference):
    plan = onnxtopo.inspect(MODELS / export)
    assert [layer.shape for layer in plan.layers] == [layer.shape for layer in reference.plan.layers]
    assert [s.candidate_edges for s in plan.steps] == [s.candidate_edges for s in reference.plan.steps]


@pytest.mark.parametrize("export", EXPORTS)
def test_same_graphs_and_diagrams(export, inputs, reference):
    other = onnxtopo.Analyzer(MODELS / export)
    for a, b in zip(reference.graphs(inputs), other.graphs(inputs), strict=True):
        # Same edges between the same vertex ids; φ equal to float32 rounding of activations.
        order_a, order_b = np.lexsort((a.dst, a.src)), np.lexsort((b.dst, b.src))
        np.testing.assert_array_equal(a.src[order_a], b.src[order_b])
        np.testing.assert_array_equal(a.dst[order_a], b.dst[order_b])
        np.testing.assert_allclose(a.phi[order_a], b.phi[order_b], rtol=1e-4, atol=1e-6)
    for a, b in zip(reference.analyze(inputs, h1=True), other.analyze(inputs, h1=True), strict=True):
        assert a.n_edges == b.n_edges
        assert a.h0.shape == b.h0.shape and a.h1.shape == b.h1.shape
        np.testing.assert_allclose(a.h0, b.h0, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(a.h1, b.h1, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(a.persistence.total_persistence, b.persistence.total_persistence, rtol=1e-4)
