"""The static view: neural persistence of the weights (Rieck et al.), its graphs, files and command.

Expected values are derived by hand in the tests or computed by brute force written here
(Kruskal over a weight matrix, loops over kernels); dionysus is the oracle of the forest engine.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

import onnxtopo
from onnxtopo.errors import ResourceLimitError, UnsupportedOpError
from onnxtopo.static import channel_edges, load, static_graph, static_persistence

from conftest import assert_same_persistence, brute_conv_edges, make_model

REPO = Path(__file__).resolve().parents[1]
CCFF = REPO / "models" / "ccff-relu.onnx"


def dense_model(*matrices, activation="Relu"):
    """x (N, k) through MatMul by each matrix in turn, ``activation`` between them."""
    nodes, inits, current = [], {}, "x"
    for i, m in enumerate(matrices):
        inits[f"W{i}"] = np.asarray(m, np.float32)
        out = "y" if i == len(matrices) - 1 else f"m{i}"
        nodes.append(helper.make_node("MatMul", [current, f"W{i}"], [out], name=f"dense{i}"))
        current = out
        if out != "y":
            nodes.append(helper.make_node(activation, [out], [f"a{i}"]))
            current = f"a{i}"
    return make_model(nodes, [np.shape(matrices[0])[0]], inits)


# --- hand-computed diagrams and neural persistence ---------------------------------------------

def test_one_dense_layer_by_hand():
    # x0, x1 -> y0, y1 with |w| 0.5, 1.0 (x0) and 0.25, 0.75 (x1); the scale is 1.0. All four
    # vertices are born at 1; 1.0 joins x0-y1 (persistence 0, dropped), 0.75 joins x1 to them,
    # 0.5 joins y0, 0.25 closes a cycle.
    result = static_persistence(dense_model([[0.5, -1.0], [0.25, 0.75]]), p=2)
    assert result.scale == 1.0
    (layer,) = result.layers
    np.testing.assert_array_equal(layer.h0, [[1, np.inf], [1, 0.75], [1, 0.5]])
    assert (layer.n_vertices, layer.n_components, layer.n_edges) == (4, 1, 4)
    assert layer.neural_persistence == pytest.approx(math.sqrt(0.25 ** 2 + 0.5 ** 2))
    assert layer.normalized == pytest.approx(math.sqrt(0.3125 / 3))  # bound: 3 forest edges
    p1 = static_persistence(dense_model([[0.5, -1.0], [0.25, 0.75]]), p=1).layers[0]
    assert (p1.neural_persistence, p1.normalized) == pytest.approx((0.75, 0.25))
    inf = static_persistence(dense_model([[0.5, -1.0], [0.25, 0.75]]), p=np.inf).layers[0]
    assert (inf.neural_persistence, inf.normalized) == pytest.approx((0.5, 0.5))


def test_two_dense_layers_share_one_scale_and_the_whole_graph_joins_them():
    # The second layer's 2.0 is the network's largest |w|: the first layer's weights halve.
    result = static_persistence(dense_model([[0.5, -1.0], [0.25, 0.75]], [[2.0], [-0.5]]))
    assert result.scale == 2.0
    first, second = result.layers
    np.testing.assert_array_equal(first.h0, [[1, np.inf], [1, 0.5], [1, 0.375], [1, 0.25]])
    assert first.normalized == pytest.approx(math.sqrt((0.25 + 0.390625 + 0.5625) / 3))
    # y0 -> z weighs 1 (dropped point), y1 -> z 0.25.
    np.testing.assert_array_equal(second.h0, [[1, np.inf], [1, 0.25]])
    assert (second.neural_persistence, second.normalized) == pytest.approx((0.75, 0.75 / math.sqrt(2)))
    assert result.mean_normalized == pytest.approx((first.normalized + second.normalized) / 2)
    # Whole graph, weights / 2: y0z 1, x0y1 .5, x1y1 .375, x0y0 .25 (joins y0, z), y1z .25, x1y0 .125.
    whole = result.whole
    assert whole.scale == 2.0
    np.testing.assert_array_equal(whole.h0, [[1, np.inf], [1, 0.5], [1, 0.375], [1, 0.25]])
    assert (whole.n_vertices, whole.n_components, whole.n_edges) == (5, 1, 6)
    assert whole.normalized == pytest.approx(math.sqrt(1.203125 / 4))
    assert result.layer("dense1") is second and result.layer("m0") is first  # node or output tensor
    with pytest.raises(KeyError, match="dense0"):
        result.layer("nothing")


def kruskal_deaths(weights: np.ndarray) -> np.ndarray:
    """Deaths of a complete bipartite graph's H0 with every vertex born at once: the weights of
    the maximum spanning tree, by Kruskal with a plain union-find."""
    k, n = weights.shape
    parent = list(range(k + n))

    def find(v):
        while parent[v] != v:
            v = parent[v]
        return v

    deaths = []
    for _, i, j in sorted((-weights[i, j], i, j) for i in range(k) for j in range(n)):
        a, b = find(i), find(k + j)
        if a != b:
            parent[a] = b
            deaths.append(weights[i, j])
    return np.array(deaths)


def test_dense_layers_match_the_reference_definition():
    # Rieck et al.'s code: |W| / (largest |w| of the network), vertices at 1, the p-norm over the
    # maximum spanning tree's points plus the never-dying class as (1, 0); / sqrt(|V| - 1).
    rng = np.random.default_rng(3)
    w1, w2 = (rng.normal(size=shape).astype(np.float32).astype(np.float64) for shape in ((7, 5), (5, 3)))
    scale = max(np.abs(w1).max(), np.abs(w2).max())
    result = static_persistence(dense_model(w1, w2))
    assert result.scale == pytest.approx(scale)
    for layer, w in zip(result.layers, (w1, w2)):
        deaths = kruskal_deaths(np.abs(w) / scale)
        reference = math.sqrt(((1 - deaths) ** 2).sum() + 1)
        assert layer.neural_persistence == pytest.approx(math.sqrt(reference ** 2 - 1))
        assert layer.normalized == pytest.approx(layer.neural_persistence / math.sqrt(sum(w.shape) - 1))
        np.testing.assert_allclose(np.sort(layer.h0[np.isfinite(layer.h0[:, 1]), 1]),
                                   np.sort(deaths[deaths < 1]), rtol=1e-12)


# --- the static graphs, edge by edge -------------------------------------------------------------

def test_a_dense_layer_s_edges_are_its_weight_matrix():
    rng = np.random.default_rng(0)
    b = rng.normal(size=(4, 6)).astype(np.float32)  # Gemm's B with transB = 1: (n, k)
    b[1, 2] = 0.0  # a weight of 0 is no edge
    node = helper.make_node("Gemm", ["x", "B", "C"], ["y"], transB=1, alpha=0.5)
    model = make_model([node], [6], {"B": b, "C": np.ones(4, np.float32)})
    graph = static_graph(model)
    got = {(int(u), int(v)): float(w) for u, v, w in zip(graph.src, graph.dst, graph.phi)}
    expected = {(k, 6 + n): abs(0.5 * float(b[n, k])) for k in range(6) for n in range(4) if b[n, k] != 0}
    assert got.keys() == expected.keys()
    for edge, weight in expected.items():
        assert got[edge] == pytest.approx(weight, rel=1e-12)


def test_a_conv_layer_s_edges_are_its_kernel_in_every_window():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(4, 1, 3, 2)).astype(np.float32)  # group 2: 2 input channels, 4 outputs
    node = helper.make_node("Conv", ["x", "W"], ["y"], group=2, strides=[2, 1], pads=[1, 0, 0, 1])
    model = make_model([node], [2, 5, 4], {"W": w})
    out_spatial = (2, 4)  # pads [1, 0, 0, 1] are (begin y, begin x, end y, end x): (5 + 1 - 3) // 2 + 1, 4 + 1 - 2 + 1
    expected = brute_conv_edges((2, 5, 4), w, 2, (2, 1), (1, 1), (1, 0), out_spatial)
    graph = static_graph(model)
    got = {(int(u), int(v) - 40): float(p) for u, v, p in zip(graph.src, graph.dst, graph.phi)}
    assert got.keys() == expected.keys()
    for edge, weight in expected.items():
        assert got[edge] == abs(weight)


def conv_bn(fold: bool):
    rng = np.random.default_rng(2)
    w = rng.normal(size=(3, 2, 3, 3)).astype(np.float32)
    gamma, beta = rng.uniform(0.5, 2, 3).astype(np.float32), rng.normal(size=3).astype(np.float32)
    mean, var = rng.normal(size=3).astype(np.float32), rng.uniform(0.5, 2, 3).astype(np.float32)
    s = gamma / np.sqrt(var + 1e-5)
    if fold:  # what an exporter fusing BatchNormalization into the Conv writes
        return make_model([helper.make_node("Conv", ["x", "W", "B"], ["y"], name="conv")], [2, 6, 6],
                          {"W": w * s[:, None, None, None], "B": beta - mean * s})
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], name="conv"),
             helper.make_node("BatchNormalization", ["c", "g", "b", "m", "v"], ["y"], epsilon=1e-5)]
    return make_model(nodes, [2, 6, 6], {"W": w, "g": gamma, "b": beta, "m": mean, "v": var})


def test_batch_normalization_after_a_conv_scales_its_weights_as_if_fused():
    fused, separate = static_persistence(conv_bn(True)), static_persistence(conv_bn(False))
    assert separate.scale == pytest.approx(fused.scale, rel=1e-6)
    assert separate.layers[0].normalized == pytest.approx(fused.layers[0].normalized, rel=1e-6)
    np.testing.assert_allclose(separate.layers[0].h0, fused.layers[0].h0, rtol=1e-6)


def test_weight_free_steps_weigh_their_coefficient_or_one():
    w = np.arange(1, 9, dtype=np.float32).reshape(2, 1, 2, 2) / 10
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2]),
             helper.make_node("GlobalAveragePool", ["p"], ["y"])]
    model = make_model(nodes, [1, 3, 3], {"W": w})
    plan = onnxtopo.inspect(model)
    graph = static_graph(plan)
    pool, average = (np.flatnonzero(graph.step == i) for i in (1, 2))
    # MaxPool 2x2 over the 2x2 conv output: every input of the window, weight 1 (the window rule).
    assert sorted(zip(graph.src[pool] - 9, graph.dst[pool] - 17)) == [(c * 4 + k, c) for c in range(2) for k in range(4)]
    np.testing.assert_array_equal(graph.phi[pool], 1.0)
    # GlobalAveragePool of a 1x1 map: 1 / 1.
    np.testing.assert_array_equal(graph.phi[average], 1.0)
    result = static_persistence(plan)
    assert [layer.name for layer in result.layers] == [plan.steps[0].node]
    assert result.scale == pytest.approx(0.8) and result.whole.scale == 1.0


def brute_channel_edges(w, group, transposed):
    """{(source channel, target channel): the slice W[a, b] joining them}, by loops."""
    first, second = w.shape[:2]
    n_in = first if transposed else second * group
    edges = {}
    for a in range(first):
        g = a // (first // group)
        for b in range(second):
            other = g * second + b
            pair = (a, n_in + other) if transposed else (other, n_in + a)
            edges[pair] = w[a, b]
    return edges


@pytest.mark.parametrize("op, group", [("Conv", 1), ("Conv", 2), ("ConvTranspose", 2)])
def test_the_channel_graph_is_the_norm_of_each_kernel_slice(op, group):
    rng = np.random.default_rng(4)
    shape = (4, 3, 3, 2) if op == "Conv" else (4, 3, 2, 2)
    w = rng.normal(size=shape).astype(np.float32)
    channels = shape[1] * group if op == "Conv" else shape[0]
    model = make_model([helper.make_node(op, ["x", "W"], ["y"], group=group)], [channels, 5, 5], {"W": w})
    rule = onnxtopo.inspect(model).steps[0].rule
    expected = brute_channel_edges(w.astype(np.float64), group, op == "ConvTranspose")
    for norm, of in (("l2", lambda k: math.sqrt((k ** 2).sum())), ("l1", lambda k: np.abs(k).sum()),
                     ("max", lambda k: np.abs(k).max())):
        src, dst, weight, n_in, n_out = channel_edges(rule, norm)
        assert n_in == channels and n_in + n_out == max(v for _, v in expected) + 1
        got = {(int(u), int(v)): x for u, v, x in zip(src, dst, weight)}
        assert got.keys() == expected.keys()
        for pair, kernel in expected.items():
            assert got[pair] == pytest.approx(of(kernel), rel=1e-12)
    layer = static_persistence(model, graph="channel").layers[0]
    assert layer.graph == "channel" and layer.n_edges == len(expected)
    assert layer.n_components == group and layer.n_vertices == n_in + n_out


# --- bounds and engines --------------------------------------------------------------------------

def random_net(rng):
    """A small CNN with random shapes and weights, some exactly 0, strided or grouped convs,
    pooling, a residual sum and a softmax inside."""
    c1 = int(rng.integers(1, 4))
    group = int(rng.choice([1, 2]))
    c2 = 2 * group
    w1 = rng.normal(size=(c2, c1, 3, 3)) * (rng.random((c2, c1, 3, 3)) > 0.3)
    w2 = rng.normal(size=(c2, c2 // group, 2, 2))
    stride = int(rng.integers(1, 3))
    nodes = [helper.make_node("Conv", ["x", "W1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Conv", ["r", "W2"], ["b"], strides=[stride, stride], group=group),
             helper.make_node("MaxPool", ["r"], ["m"], kernel_shape=[2, 2], strides=[stride, stride]),
             helper.make_node("Add", ["b", "m"], ["s"]),
             helper.make_node("Flatten", ["s"], ["f"]),
             helper.make_node("Softmax", ["f"], ["q"], axis=1),
             helper.make_node("MatMul", ["q", "W3"], ["y"])]
    side = int(rng.integers(4, 7))
    out_side = (side - 2) // stride + 1
    w3 = rng.normal(size=(c2 * out_side ** 2, 3))
    inits = {"W1": w1.astype(np.float32), "W2": w2.astype(np.float32), "W3": w3.astype(np.float32)}
    return make_model(nodes, [c1, side, side], inits)


def test_normalized_neural_persistence_lies_in_0_1_and_engines_agree():
    rng = np.random.default_rng(5)
    for _ in range(6):
        model = random_net(rng)
        p = float(rng.choice([0.5, 1, 2, 3, np.inf]))
        forest = static_persistence(model, p=p)
        oracle = static_persistence(model, p=p, engine="dionysus")
        for layer in (*forest.layers, forest.whole):
            assert 0 <= layer.normalized <= 1 + 1e-12, (p, layer)
        assert forest.scale == oracle.scale
        for a, b in zip(forest.layers, oracle.layers, strict=True):
            np.testing.assert_array_equal(a.h0, b.h0)
            assert (a.neural_persistence, a.n_components, a.n_vertices) == (b.neural_persistence, b.n_components,
                                                                           b.n_vertices)
        assert_same_persistence(forest.whole.persistence, oracle.whole.persistence)
        assert forest.whole.n_edges == oracle.whole.n_edges


def test_the_whole_graph_from_the_forests_is_the_whole_graph_s_own():
    # _whole_from_forests feeds the steps' spanning forests only; the whole graph in one stream agrees.
    model = random_net(np.random.default_rng(6))
    graph = static_graph(model)
    direct = onnxtopo.persistence(graph, vertices="inf")
    whole = static_persistence(model).whole
    scale = graph.phi.max()
    np.testing.assert_array_equal(whole.persistence.subgraph.edge, direct.subgraph.edge)
    np.testing.assert_array_equal(whole.persistence.subgraph.phi, direct.subgraph.phi / scale)
    np.testing.assert_array_equal(whole.h0[:, 1], np.sort(direct.h0[direct.h0[:, 1] != scale, 1] / scale)[::-1])


# --- refusals, files, the command ----------------------------------------------------------------

def test_a_sub_network_between_start_and_stop():
    whole = static_persistence(CCFF)
    part = static_persistence(CCFF, start="/c1/Conv_output_0", stop="/l1/MatMul_output_0")
    assert [layer.name for layer in part.layers] == ["/c2/Conv", "/l1/MatMul"]
    assert (part.start, part.stop, whole.start, whole.stop) == ("/c1/Conv_output_0", "/l1/MatMul_output_0", None, None)
    # Its own scale: the largest |w| of its two layers, not of the network's four.
    assert part.scale == max(_largest_weight(whole, name) for name in ("/c2/Conv", "/l1/MatMul")) < whole.scale
    ratio = whole.scale / part.scale
    for layer in part.layers:  # the same graphs, deaths rescaled (the points reaching 1 dropped)
        mine, theirs = layer.h0[:, 1], whole.layer(layer.name).h0[:, 1] * ratio
        np.testing.assert_allclose(np.sort(mine[mine < 1 - 1e-9]), np.sort(theirs[theirs < 1 - 1e-9]), rtol=1e-12)
        assert np.isinf(mine).sum() == np.isinf(theirs).sum() == 1


def _largest_weight(result, name):
    """A layer's largest |w| in raw units, from its diagram: its first forest edge, or the
    scale itself when that edge weighs 1 (its point was dropped)."""
    h0 = result.layer(name).h0
    finite = h0[np.isfinite(h0[:, 1]), 1]
    return result.scale * (finite.max() if finite.size else 1.0)


def test_the_memory_guard_refuses_a_static_graph_too_large():
    with pytest.raises(ResourceLimitError, match="static graphs of this model need about .*--no-whole"):
        static_persistence(CCFF, memory_limit=1 << 20)
    with pytest.raises(ResourceLimitError):  # dionysus holds every edge: 456,676 of them do not fit in 64 MiB
        static_persistence(CCFF, engine="dionysus", memory_limit=64 << 20)


def test_models_without_learned_weights_and_bad_options_are_refused():
    pool_only = make_model([helper.make_node("GlobalAveragePool", ["x"], ["y"])], [2, 3, 3])
    with pytest.raises(UnsupportedOpError, match="no layer with learned weights"):
        static_persistence(pool_only)
    zero = dense_model(np.zeros((2, 2)))
    with pytest.raises(UnsupportedOpError, match="is 0"):
        static_persistence(zero)
    model = dense_model(np.ones((2, 2)))
    for kwargs, what in [({"p": 0}, "p must be positive"), ({"graph": "dense"}, "graph must be"),
                         ({"channel_norm": "l3"}, "channel_norm"), ({"engine": "ripser"}, "engine"),
                         ({"maxpool_rule": "argmax"}, "no maximum to pick")]:
        with pytest.raises(ValueError, match=what):
            static_persistence(model, **kwargs)


def test_save_and_load_round_trip(tmp_path):
    result = static_persistence(random_net(np.random.default_rng(7)), graph="channel")
    result.save(tmp_path / "out")
    again = load(tmp_path / "out")
    assert again.summary() == result.summary()
    for a, b in zip(again.layers, result.layers, strict=True):
        np.testing.assert_array_equal(a.h0, b.h0)
    assert_same_persistence(again.whole.persistence, result.whole.persistence)
    with np.load(tmp_path / "out" / "static.npz") as npz:
        assert sorted(npz.files) == sorted([f"layer-{i}-h0" for i in range(len(result.layers))] + [
            "whole_h0", "whole_subgraph_src", "whole_subgraph_dst", "whole_subgraph_phi", "whole_subgraph_edge"])
    no_whole = static_persistence(dense_model(np.ones((2, 2))), whole=False, p=np.inf)
    no_whole.save(tmp_path / "layers")
    assert json.loads((tmp_path / "layers" / "static.json").read_text())["p"] == "inf"  # strict JSON: no Infinity
    again = load(tmp_path / "layers")
    assert again.whole is None and again.p == np.inf
    with pytest.raises(onnxtopo.BadInputError, match="no readable static.json"):
        load(tmp_path / "nothing")


def run(*args):
    return subprocess.run([sys.executable, "-m", "onnxtopo.cli", *map(str, args)], check=False,
                          capture_output=True, text=True, timeout=600)


def test_the_static_command_on_the_shipped_model(tmp_path):
    proc = run("static", CCFF, "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[1].split() == ["layer", "node", "op", "graph", "vertices", "components", "edges", "NP", "normalized",
                                "NP"]
    assert [line.split()[1] for line in lines[2:6]] == ["/c1/Conv", "/c2/Conv", "/l1/MatMul", "/l2/MatMul"]
    summary = json.loads((tmp_path / "static.json").read_text())
    expected = static_persistence(CCFF)
    assert summary == json.loads(json.dumps(expected.summary()))
    assert summary["layers"][2]["vertices"] == 1452 + 256
    assert f"{expected.mean_normalized:.4f}" in proc.stdout


def test_the_static_command_s_errors_are_clean(tmp_path):
    for args, code, fragment in [
        (("static", tmp_path / "missing.onnx"), 3, "does not exist"),
        (("static", CCFF, "--memory-limit", "1M", "--out", tmp_path), 7, "memory limit"),
        (("static", CCFF, "--graph", "dense"), 2, "invalid choice"),
        (("static", CCFF, "--p", "0"), 2, "p must be positive"),
    ]:
        proc = run(*args)
        assert proc.returncode == code, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and fragment in proc.stderr
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(CCFF.read_bytes()[:500])
    proc = run("static", broken)
    assert proc.returncode == 3 and proc.stderr.startswith("onnxtopo: error: ")


def test_every_shipped_model_has_a_static_view():
    paths = sorted(itertools.chain((REPO / "models").glob("*.onnx"), (REPO / "models" / "families").glob("*.onnx")))
    assert len(paths) >= 17
    for path in paths:
        result = static_persistence(path)
        assert result.layers, path
        assert all(0 <= layer.normalized <= 1 + 1e-12 for layer in (*result.layers, result.whole)), path
        assert result.whole.n_components >= 1 and result.whole.n_edges >= sum(layer.n_edges for layer in result.layers)


def test_readme_shows_the_real_static_output(tmp_path):
    readme = (REPO / "README.md").read_text()
    block = readme.split("$ onnxtopo static models/ccff-relu.onnx\n", 1)[1].split("```", 1)[0]
    (tmp_path / "models").symlink_to(REPO / "models")
    proc = subprocess.run([sys.executable, "-m", "onnxtopo.cli", "static", "models/ccff-relu.onnx"], check=False,
                          capture_output=True, text=True, timeout=600, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == block


def test_random_architectures_of_every_op_family():
    # fuzzing.random_net draws from every rule family (normalizations, softmax, products,
    # attention-like branches, resizes, selections): a static view or a documented refusal, the
    # bounds, and the engines' agreement where the graph is small.
    import random

    import fuzzing

    rng, results = random.Random(11), 0
    for _ in range(40):
        model = fuzzing.random_net(rng)
        try:
            plan = onnxtopo.inspect(model)
            forest = static_persistence(plan)
        except onnxtopo.OnnxtopoError:
            continue
        results += 1
        assert all(0 <= layer.normalized <= 1 + 1e-12 for layer in (*forest.layers, forest.whole))
        if plan.n_vertices < 2000:
            oracle = static_persistence(plan, engine="dionysus")
            assert all(np.array_equal(a.h0, b.h0) for a, b in zip(forest.layers, oracle.layers, strict=True))
            assert_same_persistence(forest.whole.persistence, oracle.whole.persistence)
    assert results >= 15
