"""The static view's results read by the diagram helpers and the feature vectorizers.

The model: x (2) -> MatMul W1 -> Relu -> MatMul W2 -> y (1), W1 = [[4, 2], [1, 3]] (row = input),
W2 = [[2], [1]]; the largest |w| is 4. Diagrams derived by hand (Kruskal, strongest first;
every vertex born at 1, points of persistence 0 dropped):

* layer 1: 4 joins x0-h0 (death 1, dropped), 3 joins x1-h1 (0.75), 2 joins them (0.5), 1 closes a cycle;
* layer 2: h0-y 2 (0.5), h1-y 1 (0.25);
* whole network: 4 (1, dropped), 3 (0.75), the two weights 2 (0.5, 0.5), the two 1 close cycles.
"""

from __future__ import annotations

import numpy as np
import pytest

from onnxtopo.diagrams import as_diagram, betti_curve, bottleneck_distance, total_persistence, wasserstein_distance
from onnxtopo.features import BettiCurve, PersistenceImage
from onnxtopo.static import static_persistence

from test_static import dense_model

INF = np.inf
LAYER1 = [[1, INF], [1, 0.75], [1, 0.5]]
LAYER2 = [[1, INF], [1, 0.5], [1, 0.25]]
WHOLE = [[1, INF], [1, 0.75], [1, 0.5], [1, 0.5]]
GRID = [0.3, 0.6, 0.8, 1.0]  # β0(t) = classes with death < t ≤ birth


@pytest.fixture(scope="module")
def result():
    return static_persistence(dense_model([[4.0, 2.0], [1.0, 3.0]], [[2.0], [1.0]]))


def test_the_hand_derived_diagrams(result):
    np.testing.assert_array_equal(result.layers[0].h0, LAYER1)
    np.testing.assert_array_equal(result.layers[1].h0, LAYER2)
    np.testing.assert_array_equal(result.whole.h0, WHOLE)


def test_diagram_helpers_take_the_static_results(result):
    np.testing.assert_array_equal(as_diagram(result), WHOLE)  # a whole model stands for its whole network
    np.testing.assert_array_equal(as_diagram(result.whole), WHOLE)
    np.testing.assert_array_equal(as_diagram(result.layers[1]), LAYER2)
    assert total_persistence(result) == pytest.approx(0.25 + 0.5 + 0.5)
    assert total_persistence(result.layers[0]) == pytest.approx(0.75)
    # layer 1 at 0.3: only the essential class; 0.6: + (1, 0.5); 0.8 and 1: + (1, 0.75).
    assert betti_curve(result.layers[0], GRID).tolist() == [1, 2, 3, 3]
    assert betti_curve(result, GRID).tolist() == [1, 3, 4, 4]
    # Layer 1 against layer 2: (1, .25) must go to the diagonal (0.375 away) or to a point 0.25 or
    # more away, so d_B = 0.25 (.75 <-> .5, .5 <-> .25); W1 = 0.5 (that matching, or .5 <-> .5 with
    # the other two on the diagonal: 0.125 + 0.375). The essential classes match at cost 0.
    assert bottleneck_distance(result.layers[0], result.layers[1]) == pytest.approx(0.25)
    assert wasserstein_distance(result.layers[0], result.layers[1]) == pytest.approx(0.5)
    assert wasserstein_distance(result, np.array(WHOLE)) == 0.0


def test_betti_curves_one_row_per_model_or_per_layer(result):
    grid = {"n_bins": 4, "sample_range": (0.0, 1.0)}  # t = 0, 1/3, 2/3, 1
    # whole network: 1 class until 1/3, + the two (1, .5) at 2/3, + (1, .75) at 1
    per_model = BettiCurve(**grid).fit_transform([result, result])
    np.testing.assert_array_equal(per_model, [[1, 1, 3, 4], [1, 1, 3, 4]])
    # one row per layer: layer 1 gains (1, .5) at 2/3 and (1, .75) at 1; layer 2 (1, .25) at 1/3, (1, .5) at 2/3
    np.testing.assert_array_equal(BettiCurve(**grid).fit_transform(result), [[1, 1, 2, 3], [1, 2, 3, 3]])


def test_persistence_images_read_the_same_diagrams(result):
    image = PersistenceImage(resolution=(3, 3), sigma=0.1)
    from_results = image.fit(result).transform([result, result.layers[0]])
    from_arrays = PersistenceImage(resolution=(3, 3), sigma=0.1).fit([LAYER1, LAYER2]).transform([WHOLE, LAYER1])
    np.testing.assert_allclose(from_results, from_arrays)
    assert not np.allclose(from_results[0], from_results[1])


def test_a_result_without_its_whole_network_is_refused_clearly(result):
    layers_only = static_persistence(dense_model([[4.0, 2.0], [1.0, 3.0]], [[2.0], [1.0]]), whole=False)
    with pytest.raises(ValueError, match="whole=False.*result.layers"):
        as_diagram(layers_only)
    with pytest.raises(ValueError, match="BettiCurve: diagram 0 is a StaticPersistence computed with whole=False"):
        BettiCurve().fit([layers_only])
    # t = 0, 0.5, 1: the layers alone still work (layer 1: (1, .5) is not alive at 0.5, death < t fails)
    np.testing.assert_array_equal(BettiCurve(n_bins=3, sample_range=(0, 1)).fit_transform(layers_only),
                                  [[1, 1, 3], [1, 2, 3]])
