"""Where the layers start and stop: integer inputs, --start/--stop, pre-IR-4 models, refusals.

Expected edges are enumerated here with plain loops from the definitions; activations come from
onnxruntime with graph optimizations off.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxtopo

from conftest import assert_same_edges, assert_same_persistence, edges_as_dict, make_model, ort_outputs

BATCH = 3


def int_model(nodes, seq, initializers, *, dtype=TensorProto.INT64):
    x = helper.make_tensor_value_info("ids", dtype, ["N", seq])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()]
    model = helper.make_model(helper.make_graph(nodes, "int", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    return model


def dense_edges(h, M, src_offset, dst_offset):
    """{(u, v): |M[k, j] · h_k|} of a dense layer over a flat activation h, φ = 0 dropped."""
    return {(src_offset + k, dst_offset + j): abs(float(M[k, j]) * float(h[k]))
            for k in range(M.shape[0]) for j in range(M.shape[1]) if M[k, j] * h[k] != 0}


def test_embedding_lookup_is_layer_zero():
    rng = np.random.default_rng(1)
    vocab, seq, dim, out = 7, 4, 3, 5
    table = rng.normal(size=(vocab, dim)).astype(np.float32)
    M = rng.normal(size=(seq * dim, out)).astype(np.float32)
    nodes = [helper.make_node("Gather", ["table", "ids"], ["emb"], name="embed"),
             helper.make_node("Flatten", ["emb"], ["f"]),
             helper.make_node("MatMul", ["f", "M"], ["y"])]
    model = int_model(nodes, seq, {"table": table, "M": M})
    plan = onnxtopo.inspect(model)
    assert [(layer.tensor, layer.shape) for layer in plan.layers] == [("emb", (seq, dim)), ("y", (out,))]
    assert "first floating-point tensor" in plan.origin and "'emb'" in plan.origin
    ids = rng.integers(0, vocab, size=(BATCH, seq))
    for n, g in enumerate(onnxtopo.Analyzer(model).graphs(ids)):
        h = table[ids[n]].reshape(-1)
        assert_same_edges(edges_as_dict(g.src, g.dst, g.phi), dense_edges(h, M, 0, seq * dim), rtol=1e-6,
                          what=f"sample {n}")
    for forest, oracle in zip(onnxtopo.analyze(model, ids), onnxtopo.analyze(model, ids, engine="dionysus"),
                              strict=True):
        assert_same_persistence(forest, oracle)


def test_one_hot_bytes_with_a_mask_and_position_embedding():
    """Bytes → Equal/Cast one-hot (layer 0), a float mask from the same input multiplies it
    (elementwise: a run-time value, not a neuron), a constant position embedding is added."""
    rng = np.random.default_rng(2)
    seq, vocab, out = 3, 4, 2
    M = rng.normal(size=(seq * vocab, out)).astype(np.float32)
    pos = rng.normal(size=(seq, vocab)).astype(np.float32)
    nodes = [helper.make_node("Unsqueeze", ["ids", "last"], ["ids3"]),
             helper.make_node("Equal", ["ids3", "classes"], ["hot"]),
             helper.make_node("Cast", ["hot"], ["onehot"], to=TensorProto.FLOAT),
             helper.make_node("Greater", ["ids3", "zero"], ["keep"]),
             helper.make_node("Cast", ["keep"], ["mask"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["onehot", "mask"], ["masked"]),
             helper.make_node("Add", ["masked", "pos"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("MatMul", ["f", "M"], ["y"])]
    model = int_model(nodes, seq,
                      {"last": np.array([2]), "classes": np.arange(vocab), "zero": np.array(0), "pos": pos, "M": M})
    plan = onnxtopo.inspect(model)
    assert [layer.tensor for layer in plan.layers] == ["onehot", "y"]
    ids = rng.integers(0, vocab, size=(BATCH, seq))
    ids[0, 0] = 0  # masked out
    for n, g in enumerate(onnxtopo.Analyzer(model).graphs(ids)):
        onehot = (ids[n][:, None] == np.arange(vocab)).astype(np.float64)
        h = (onehot * (ids[n][:, None] > 0) + pos).reshape(-1)
        assert_same_edges(edges_as_dict(g.src, g.dst, g.phi), dense_edges(h, M, 0, seq * vocab), rtol=1e-6)


def test_integer_model_refuses_float_inputs():
    model = int_model([helper.make_node("Gather", ["table", "ids"], ["emb"]), helper.make_node("Flatten", ["emb"], ["f"]),
                       helper.make_node("MatMul", ["f", "M"], ["y"])], 2,
                      {"table": np.ones((3, 2), np.float32), "M": np.ones((4, 1), np.float32)})
    with pytest.raises(onnxtopo.BadInputError, match="integer"):
        onnxtopo.analyze(model, np.zeros((1, 2), np.float32))


def chain_model(rng):
    """x → Conv → Relu (a) → Conv → Relu (b) → Flatten → MatMul → Relu (c) → MatMul (y)."""
    W1 = rng.normal(size=(2, 1, 3, 3)).astype(np.float32)
    W2 = rng.normal(size=(2, 2, 3, 3)).astype(np.float32)
    M1 = rng.normal(size=(2 * 4 * 4, 5)).astype(np.float32)
    M2 = rng.normal(size=(5, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "W1"], ["c1"]), helper.make_node("Relu", ["c1"], ["a"]),
             helper.make_node("Conv", ["a", "W2"], ["c2"]), helper.make_node("Relu", ["c2"], ["b"]),
             helper.make_node("Flatten", ["b"], ["f"]), helper.make_node("MatMul", ["f", "M1"], ["m1"]),
             helper.make_node("Relu", ["m1"], ["c"]), helper.make_node("MatMul", ["c", "M2"], ["y"])]
    return make_model(nodes, (1, 8, 8), {"W1": W1, "W2": W2, "M1": M1, "M2": M2}), M1, M2


def test_start_and_stop_cut_the_layers():
    rng = np.random.default_rng(3)
    model, M1, M2 = chain_model(rng)
    full = onnxtopo.inspect(model)
    assert [layer.tensor for layer in full.layers] == ["x", "c1", "c2", "m1", "y"]
    assert [layer.tensor for layer in onnxtopo.inspect(model, stop="b").layers] == ["x", "c1", "c2"]
    assert [layer.tensor for layer in onnxtopo.inspect(model, stop="c2").layers] == ["x", "c1", "c2"]
    cut = onnxtopo.inspect(model, start="f", stop="m1")
    assert [(layer.tensor, layer.shape) for layer in cut.layers] == [("f", (32,)), ("m1", (5,))]
    assert "--start" in cut.origin
    x = rng.normal(size=(BATCH, 1, 8, 8)).astype(np.float32)
    f = ort_outputs(model, x, ("f",))["f"]
    for n, g in enumerate(onnxtopo.Analyzer(model, start="f", stop="m1").graphs(x)):
        assert_same_edges(edges_as_dict(g.src, g.dst, g.phi), dense_edges(f[n], M1, 0, 32), rtol=1e-5)
    # The middle of the network alone: its diagrams are those of the graph restricted to it.
    sub = onnxtopo.analyze(model, x, start="c", stop="y")
    c = ort_outputs(model, x, ("c",))["c"]
    for n, result in enumerate(sub):
        edges = dense_edges(c[n], M2, 0, 5)
        assert result.n_edges == len(edges)


@pytest.mark.parametrize("option, name, match", [
    ("start", "nope", "not a tensor of the model"),
    ("stop", "W1", "a constant"),
    ("stop", "x", "nothing would be analyzed"),
])
def test_start_stop_errors(option, name, match):
    model, _, _ = chain_model(np.random.default_rng(4))
    with pytest.raises(onnxtopo.UnsupportedOpError, match=match):
        onnxtopo.inspect(model, **{option: name})


def test_runtime_weight_before_start_is_refused():
    """A Conv whose kernel is computed before --start has no constant weights: refused."""
    rng = np.random.default_rng(5)
    nodes = [helper.make_node("MatMul", ["x", "A"], ["a"]), helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("MatMul", ["r", "B"], ["b"]),
             helper.make_node("Reshape", ["b", "s"], ["b4"]), helper.make_node("Reshape", ["a", "s"], ["a4"]),
             helper.make_node("Conv", ["b4", "a4"], ["y"], name="runtime_kernel")]
    model = make_model(nodes, (4,), {"A": rng.normal(size=(4, 4)).astype(np.float32),
                                     "B": rng.normal(size=(4, 4)).astype(np.float32),
                                     "s": np.array([-1, 1, 4])})
    with pytest.raises(onnxtopo.UnsupportedOpError, match="runtime_kernel.*computed at run time"):
        onnxtopo.inspect(model, start="r")


def test_unsupported_op_names_node_and_suggests_stop():
    rng = np.random.default_rng(6)
    nodes = [helper.make_node("MatMul", ["x", "A"], ["a"]), helper.make_node("Round", ["a"], ["r"], name="rounding"),
             helper.make_node("MatMul", ["r", "B"], ["y"])]
    model = make_model(nodes, (3,), {"A": rng.normal(size=(3, 3)).astype(np.float32),
                                     "B": rng.normal(size=(3, 2)).astype(np.float32)})
    with pytest.raises(onnxtopo.UnsupportedOpError, match=r"'rounding' \(op type Round\).*--stop 'a'"):
        onnxtopo.inspect(model)
    assert [layer.tensor for layer in onnxtopo.inspect(model, stop="a").layers] == ["x", "a"]


def test_random_ops_are_refused():
    nodes = [helper.make_node("RandomNormalLike", ["x"], ["noise"], name="noise"),
             helper.make_node("Add", ["x", "noise"], ["xn"]),
             helper.make_node("MatMul", ["xn", "A"], ["y"])]
    model = make_model(nodes, (3,), {"A": np.ones((3, 2), np.float32)})
    with pytest.raises(onnxtopo.UnsupportedOpError, match="'noise'.*random"):
        onnxtopo.inspect(model)


def test_pre_ir4_initializers_listed_as_inputs_are_constants():
    rng = np.random.default_rng(7)
    W = rng.normal(size=(2, 1, 3, 3)).astype(np.float32)
    scale, bias = (rng.random(2) + 0.5).astype(np.float32), rng.normal(size=2).astype(np.float32)
    mean, var = rng.normal(size=2).astype(np.float32), (rng.random(2) + 0.5).astype(np.float32)
    M = rng.normal(size=(2 * 3 * 3, 4)).astype(np.float32)
    shape = np.array([1, -1], dtype=np.int64)
    consts = {"W": W, "scale": scale, "bias": bias, "mean": mean, "var": var, "M": M, "shape": shape}
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["bn"]),
             helper.make_node("Relu", ["bn"], ["r"]), helper.make_node("MaxPool", ["r"], ["p"], kernel_shape=[2, 2]),
             helper.make_node("Reshape", ["p", "shape"], ["f"]), helper.make_node("MatMul", ["f", "M"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 6, 6])]
    inputs += [helper.make_tensor_value_info(k, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
               for k, v in consts.items()]
    graph = helper.make_graph(nodes, "zoo", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
                              [numpy_helper.from_array(v, k) for k, v in consts.items()])
    old = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 8)])
    old.ir_version = 3
    onnx.checker.check_model(old)
    plan = onnxtopo.inspect(old)
    assert [layer.shape for layer in plan.layers] == [(1, 6, 6), (2, 4, 4), (2, 3, 3), (4,)]
    assert len(old.graph.input) == 1 + len(consts)  # the caller's model is left as it was
    x = rng.normal(size=(1, 1, 6, 6)).astype(np.float32)
    for forest, oracle in zip(onnxtopo.analyze(old, x), onnxtopo.analyze(old, x, engine="dionysus"), strict=True):
        assert_same_persistence(forest, oracle)


def test_cli_inspect_and_analyze_with_start_stop_and_integer_input(tmp_path):
    import subprocess
    import sys

    rng = np.random.default_rng(8)
    model = int_model([helper.make_node("Gather", ["table", "ids"], ["emb"], name="embed"),
                       helper.make_node("Flatten", ["emb"], ["f"]), helper.make_node("MatMul", ["f", "M"], ["m"]),
                       helper.make_node("Relu", ["m"], ["r"]), helper.make_node("MatMul", ["r", "M2"], ["y"])], 3,
                      {"table": rng.normal(size=(5, 2)).astype(np.float32),
                       "M": rng.normal(size=(6, 4)).astype(np.float32),
                       "M2": rng.normal(size=(4, 2)).astype(np.float32)})
    path = tmp_path / "tokens.onnx"
    onnx.save(model, path)

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "onnxtopo.cli", *map(str, args)], capture_output=True,
                              check=False, text=True, timeout=300)

    proc = cli("inspect", path)
    assert proc.returncode == 0, proc.stderr
    assert "layer 0 is tensor 'emb' (Gather node 'embed'), the first floating-point tensor" in proc.stdout
    proc = cli("inspect", path, "--start", "r", "--stop", "y")
    assert proc.returncode == 0 and "layer 0 is tensor 'r' (--start)" in proc.stdout, proc.stderr
    ids = tmp_path / "ids.npy"
    np.save(ids, rng.integers(0, 5, size=(2, 3)))
    proc = cli("analyze", path, "--inputs", ids, "--stop", "m", "--out", tmp_path / "out", "--quiet")
    assert proc.returncode == 0, proc.stderr
    import json
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [layer["tensor"] for layer in summary["layers"]] == ["emb", "m"]
    assert summary["options"]["stop"] == "m"
    proc = cli("inspect", path, "--stop", "nothing")
    assert proc.returncode == 4 and "--stop 'nothing' is not a tensor of the model" in proc.stderr


@pytest.mark.parametrize("op, attrs", [("Round", {}), ("Cast", {"to": TensorProto.INT32}), ("Sign", {})])
def test_piecewise_constant_op_feeding_a_layer_is_refused(op, attrs):
    rng = np.random.default_rng(9)
    tail = ([helper.make_node("Cast", ["q"], ["qf"], to=TensorProto.FLOAT)] if op == "Cast" else
            [helper.make_node("Identity", ["q"], ["qf"])])
    nodes = [helper.make_node("MatMul", ["x", "A"], ["a"]), helper.make_node(op, ["a"], ["q"], name="step", **attrs),
             *tail, helper.make_node("MatMul", ["qf", "B"], ["y"])]
    model = make_model(nodes, (3,), {"A": rng.normal(size=(3, 3)).astype(np.float32),
                                     "B": rng.normal(size=(3, 2)).astype(np.float32)})
    with pytest.raises(onnxtopo.UnsupportedOpError, match=rf"'step' \(op type {op}\).*piecewise constant.*--stop 'a'"):
        onnxtopo.inspect(model)


def test_float_cast_and_argmax_after_the_last_layer():
    """A Cast between float types keeps the neuron; an ArgMax after the last layer is ignored."""
    rng = np.random.default_rng(10)
    nodes = [helper.make_node("Cast", ["x"], ["xd"], to=TensorProto.DOUBLE),
             helper.make_node("Cast", ["xd"], ["xf"], to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["xf", "A"], ["a"]), helper.make_node("ArgMax", ["a"], ["k"], axis=1),
             helper.make_node("Cast", ["k"], ["y"], to=TensorProto.FLOAT)]
    plan = onnxtopo.inspect(make_model(nodes, (3,), {"A": rng.normal(size=(3, 4)).astype(np.float32)}))
    assert [layer.shape for layer in plan.layers] == [(3,), (4,)]
    assert any("ArgMax" in name for name in plan.ignored)


def test_batch_axis_moved_and_merged_by_attention_layouts():
    """Attention exports move the batch axis (Transpose [2, 0, 3, 1, 4] of a (batch, P, 3, H, d)
    qkv tensor) and merge it with the heads ((batch × H, P, d)); the neurons are followed through
    both, and a MatMul on the merged tensor is a layer of per-sample shape (H, P, k)."""
    rng = np.random.default_rng(11)
    P, E, H, d, k, out = 3, 4, 2, 2, 3, 2
    W = rng.normal(size=(E, 3 * H * d)).astype(np.float32)
    K = rng.normal(size=(d, k)).astype(np.float32)
    M = rng.normal(size=(H * P * k, out)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "W"], ["z"]), helper.make_node("Tanh", ["z"], ["t"]),
             helper.make_node("Reshape", ["t", "qkv_shape"], ["qkv"]),
             helper.make_node("Transpose", ["qkv"], ["heads"], perm=[2, 0, 3, 1, 4]),
             helper.make_node("Gather", ["heads", "one"], ["key"], axis=0),
             helper.make_node("Reshape", ["key", "merged_shape"], ["merged"]),
             helper.make_node("MatMul", ["merged", "K"], ["m"]),
             helper.make_node("Reshape", ["m", "flat_shape"], ["f"]),
             helper.make_node("MatMul", ["f", "M"], ["y"])]
    model = make_model(nodes, (P, E),
                       {"W": W, "K": K, "M": M, "one": np.array(1), "qkv_shape": np.array([0, P, 3, H, d]),
                        "merged_shape": np.array([-1, P, d]), "flat_shape": np.array([-1, H * P * k])})
    plan = onnxtopo.inspect(model)
    assert [(layer.tensor, layer.shape) for layer in plan.layers] == [
        ("x", (P, E)), ("z", (P, 3 * H * d)), ("m", (H, P, k)), ("y", (out,))]
    off1, off2, off3 = (layer.offset for layer in plan.layers[1:])
    x = rng.normal(size=(BATCH, P, E)).astype(np.float32)
    t = np.tanh(x.astype(np.float64) @ W)
    graphs = list(onnxtopo.Analyzer(model).graphs(x))
    for b, g in enumerate(graphs):
        got = edges_as_dict(g.src, g.dst, g.phi)
        expected = {}
        key = np.zeros((H, P, k))
        for h in range(H):
            for p in range(P):
                for dd in range(d):
                    u = p * 3 * H * d + H * d + h * d + dd
                    for j in range(k):
                        expected[(off1 + u, off2 + (h * P + p) * k + j)] = abs(K[dd, j] * t[b, p, u - p * 3 * H * d])
                        key[h, p, j] += K[dd, j] * t[b, p, u - p * 3 * H * d]
        for i, value in enumerate(key.reshape(-1)):
            for j in range(out):
                expected[(off2 + i, off3 + j)] = abs(M[i, j] * value)
        into_later = {e: v for e, v in got.items() if e[1] >= off2}
        assert_same_edges(into_later, expected, rtol=1e-4, atol=1e-7, what=f"sample {b}")
    for forest, oracle in zip(onnxtopo.analyze(model, x), onnxtopo.analyze(model, x, engine="dionysus"), strict=True):
        assert_same_persistence(forest, oracle)


def test_layout_that_mixes_samples_is_refused():
    nodes = [helper.make_node("MatMul", ["x", "W"], ["z"]),
             helper.make_node("Transpose", ["z"], ["t"], perm=[1, 0]),
             helper.make_node("Reshape", ["t", "shape"], ["r"], name="mixer"),
             helper.make_node("MatMul", ["r", "M"], ["y"])]
    inits = {"W": np.ones((3, 4), np.float32), "M": np.ones((2, 1), np.float32), "shape": np.array([-1, 2])}
    with pytest.raises(onnxtopo.UnsupportedOpError, match="MatMul.*samples along its last axis"):
        onnxtopo.inspect(make_model(nodes, (3,), inits))  # (4, batch) reshaped to (4, 2): batch last
    inits["shape"] = np.array([1, -1])  # every sample's elements interleaved in one row: still the last axis
    with pytest.raises(onnxtopo.UnsupportedOpError, match="MatMul.*samples along its last axis"):
        onnxtopo.inspect(make_model(nodes, (3,), inits))


def test_layernorm_without_bias_as_pytorch_exports_it():
    """LayerNormalization(x, scale, "") (LayerNorm(bias=False)) made onnxruntime crash the process."""
    rng = np.random.default_rng(12)
    nodes = [helper.make_node("MatMul", ["x", "A"], ["a"]),
             helper.make_node("LayerNormalization", ["a", "gamma", ""], ["n"], axis=-1),
             helper.make_node("MatMul", ["n", "B"], ["y"])]
    model = make_model(nodes, (3,), {"A": rng.normal(size=(3, 4)).astype(np.float32),
                                     "gamma": rng.normal(size=4).astype(np.float32),
                                     "B": rng.normal(size=(4, 2)).astype(np.float32)})
    results = onnxtopo.analyze(model, rng.normal(size=(2, 3)).astype(np.float32))
    assert len(results) == 2 and list(model.graph.node[1].input) == ["a", "gamma", ""]


def test_gemm_over_rows_that_merge_batch_and_tokens():
    """jax2onnx writes a dense layer over tokens as Gemm on (batch × tokens, K)."""
    rng = np.random.default_rng(13)
    T, K, N = 3, 4, 2
    W = rng.normal(size=(K, N)).astype(np.float32)
    M = rng.normal(size=(T * N, 1)).astype(np.float32)
    nodes = [helper.make_node("Reshape", ["x", "rows"], ["r"]), helper.make_node("Gemm", ["r", "W"], ["g"]),
             helper.make_node("Reshape", ["g", "back"], ["b"]), helper.make_node("Tanh", ["b"], ["t"]),
             helper.make_node("Reshape", ["t", "flat"], ["f"]), helper.make_node("MatMul", ["f", "M"], ["y"])]
    model = make_model(nodes, (T, K), {"W": W, "M": M, "rows": np.array([-1, K]), "back": np.array([-1, T, N]),
                                       "flat": np.array([-1, T * N])})
    plan = onnxtopo.inspect(model)
    assert [(layer.tensor, layer.shape) for layer in plan.layers] == [("x", (T, K)), ("g", (T, N)), ("y", (1,))]
    x = rng.normal(size=(BATCH, T, K)).astype(np.float32)
    for b, g in enumerate(onnxtopo.Analyzer(model).graphs(x)):
        expected = {(t * K + k, T * K + t * N + n): abs(float(W[k, n]) * float(x[b, t, k]))
                    for t in range(T) for k in range(K) for n in range(N)}
        got = {e: v for e, v in edges_as_dict(g.src, g.dst, g.phi).items() if e[1] < T * K + T * N}
        assert_same_edges(got, expected, rtol=1e-5)


@pytest.mark.parametrize("axis, refused", [(-1, False), (2, True)])
def test_axes_on_a_merged_batch_must_count_from_the_end(axis, refused):
    """On (batch × H, P, d) a Softmax over axis 2 is the last axis; a rule counting axes with the
    batch first would take another one, so non-negative axes are refused there."""
    rng = np.random.default_rng(14)
    H, P, d = 2, 3, 4
    nodes = [helper.make_node("MatMul", ["x", "W"], ["z"]), helper.make_node("Reshape", ["z", "merge"], ["m"]),
             helper.make_node("Softmax", ["m"], ["s"], axis=axis, name="attention"),
             helper.make_node("Reshape", ["s", "flat"], ["f"]), helper.make_node("MatMul", ["f", "M"], ["y"])]
    model = make_model(nodes, (H, P, d), {"W": rng.normal(size=(d, d)).astype(np.float32),
                                          "M": rng.normal(size=(H * P * d, 2)).astype(np.float32),
                                          "merge": np.array([-1, P, d]), "flat": np.array([-1, H * P * d])})
    if refused:
        with pytest.raises(onnxtopo.UnsupportedOpError, match="'attention'.*counted from the front"):
            onnxtopo.inspect(model)
    else:
        assert [layer.op_type for layer in onnxtopo.inspect(model).layers] == ["", "MatMul", "Softmax", "MatMul"]


def test_samples_arranged_differently_for_other_batch_sizes_are_refused():
    """(batch, 4) → Transpose → (4, batch) → Reshape to (batch, -1): for a batch of 2 each row's
    second element is sample 1's, for a batch of 3 the samples interleave across rows."""
    nodes = [helper.make_node("MatMul", ["x", "W"], ["z"]), helper.make_node("Transpose", ["z"], ["t"], perm=[1, 0]),
             helper.make_node("Shape", ["z"], ["zs"]), helper.make_node("Gather", ["zs", "zero"], ["b"]),
             helper.make_node("Concat", ["b", "minus"], ["shape"], axis=0),
             helper.make_node("Reshape", ["t", "shape"], ["r"]), helper.make_node("Tanh", ["r"], ["y0"]),
             helper.make_node("Unsqueeze", ["y0", "one"], ["y1"]),
             helper.make_node("MatMul", ["y1", "M"], ["y"])]
    model = make_model(nodes, (3,), {"W": np.ones((3, 4), np.float32), "M": np.ones((1, 2), np.float32),
                                     "zero": np.array([0]), "minus": np.array([-1]), "one": np.array([2])})
    with pytest.raises(onnxtopo.UnsupportedOpError, match="depends on the batch size|mixes"):
        onnxtopo.inspect(model)


def test_batch_second_and_tokens_times_batch_rows():
    """nn.MultiheadAttention's export: (batch, L, E) → Transpose → (L, batch, E) → MatMul → Reshape
    (L × batch, E) → Gemm → Reshape → Transpose back. Edges as for the plain dense layers."""
    rng = np.random.default_rng(15)
    L, E, F = 3, 4, 2
    W = rng.normal(size=(E, F)).astype(np.float32)
    G = rng.normal(size=(F, F)).astype(np.float32)
    M = rng.normal(size=(L * F, 1)).astype(np.float32)
    nodes = [helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2]),
             helper.make_node("MatMul", ["t", "W"], ["a"]), helper.make_node("Tanh", ["a"], ["ta"]),
             helper.make_node("Reshape", ["ta", "rows"], ["r"]), helper.make_node("Gemm", ["r", "G"], ["g"]),
             helper.make_node("Reshape", ["g", "back"], ["gb"]), helper.make_node("Transpose", ["gb"], ["u"], perm=[1, 0, 2]),
             helper.make_node("Tanh", ["u"], ["tu"]), helper.make_node("Reshape", ["tu", "flat"], ["f"]),
             helper.make_node("MatMul", ["f", "M"], ["y"])]
    model = make_model(nodes, (L, E), {"W": W, "G": G, "M": M, "rows": np.array([-1, F]), "back": np.array([L, -1, F]),
                                       "flat": np.array([-1, L * F])})
    plan = onnxtopo.inspect(model)
    assert [(layer.tensor, layer.shape) for layer in plan.layers] == [
        ("x", (L, E)), ("a", (L, 1, F)), ("g", (L, F)), ("y", (1,))]
    off_a, off_g, off_y = (layer.offset for layer in plan.layers[1:])
    x = rng.normal(size=(BATCH, L, E)).astype(np.float32)
    for b, graph in enumerate(onnxtopo.Analyzer(model).graphs(x)):
        a = np.tanh(x[b].astype(np.float64) @ W)  # (L, F)
        g = np.tanh(a @ G)
        expected = {(l * E + e, off_a + l * F + f): abs(W[e, f] * x[b, l, e])
                    for l in range(L) for e in range(E) for f in range(F)}
        expected.update({(off_a + l * F + f, off_g + l * F + k): abs(G[f, k] * a[l, f])
                         for l in range(L) for f in range(F) for k in range(F)})
        expected.update({(off_g + i, off_y): abs(M[i, 0] * g.reshape(-1)[i]) for i in range(L * F)})
        assert_same_edges(edges_as_dict(graph.src, graph.dst, graph.phi), expected, rtol=1e-4, atol=1e-7,
                          what=f"sample {b}")


@pytest.mark.parametrize("form", ["transA", "activation-as-B", "activation-as-B-transB", "transA-merged"])
def test_gemm_of_a_transposed_activation(form):
    """Gemm(Xᵀ, W, transA=1), Gemm(W, Xᵀ) and Gemm(W, X, transB=1): the samples sit on the
    activation's columns and move to the output's rows or columns; the edges are those of
    the dense layer X·W (resp. X·Wᵀ), enumerated here from the weights."""
    rng = np.random.default_rng(16)
    K, N, T = 4, 3, 2
    Wn = rng.normal(size=(K, N)).astype(np.float32)  # the layer as X · Wn
    x_shape = (T, K) if form == "transA-merged" else (K,)
    inits = {"M": rng.normal(size=(N * (T if form == "transA-merged" else 1), 1)).astype(np.float32)}
    nodes = [helper.make_node("Tanh", ["x"], ["h"])]
    if form == "transA":
        nodes += [helper.make_node("Transpose", ["h"], ["ht"], perm=[1, 0]),
                  helper.make_node("Gemm", ["ht", "W"], ["y0"], transA=1), helper.make_node("Identity", ["y0"], ["o"])]
        inits["W"] = Wn
    elif form == "transA-merged":  # (batch, T, K) → (K, batch × T)
        inits.update(W=Wn, rows=np.array([-1, K]), back=np.array([-1, T * N]))
        nodes += [helper.make_node("Reshape", ["h", "rows"], ["hr"]),
                  helper.make_node("Transpose", ["hr"], ["ht"], perm=[1, 0]),
                  helper.make_node("Gemm", ["ht", "W"], ["y0"], transA=1), helper.make_node("Reshape", ["y0", "back"], ["o"])]
    elif form == "activation-as-B":  # Y (N, batch) = Wnᵀ · Xᵀ
        nodes += [helper.make_node("Transpose", ["h"], ["ht"], perm=[1, 0]),
                  helper.make_node("Gemm", ["W", "ht"], ["y0"]), helper.make_node("Transpose", ["y0"], ["o"], perm=[1, 0])]
        inits["W"] = np.ascontiguousarray(Wn.T)
    else:  # Y (N, batch) = Wnᵀ · Xᵀ with B = X, transB = 1
        nodes += [helper.make_node("Gemm", ["W", "h"], ["y0"], transB=1),
                  helper.make_node("Transpose", ["y0"], ["o"], perm=[1, 0])]
        inits["W"] = np.ascontiguousarray(Wn.T)
    nodes += [helper.make_node("Relu", ["o"], ["ro"]), helper.make_node("MatMul", ["ro", "M"], ["y"])]
    model = make_model(nodes, x_shape, inits)
    plan = onnxtopo.inspect(model)
    assert [s.op_type for s in plan.steps] == ["Gemm", "MatMul"]
    x = rng.normal(size=(BATCH, *x_shape)).astype(np.float32)
    expected_out = ort_outputs(model, x, ("o",))["o"]
    first = plan.layers[1]
    for b, graph in enumerate(onnxtopo.Analyzer(model).graphs(x)):
        h = np.tanh(x[b].astype(np.float64)).reshape(-1, K)  # rows t
        expected = {}
        for t in range(h.shape[0]):
            for k in range(K):
                for n in range(N):
                    if form.startswith("activation"):  # layer (N, 1): vertex n
                        v = first.offset + n
                    else:
                        v = first.offset + t * N + n
                    expected[(t * K + k, v)] = abs(float(Wn[k, n]) * h[t, k])
        got = {e: phi for e, phi in edges_as_dict(graph.src, graph.dst, graph.phi).items() if e[1] < first.offset + first.size}
        assert_same_edges(got, expected, rtol=1e-5, what=f"{form}, sample {b}")
        # the weights expected above reproduce onnxruntime's output of the layer
        np.testing.assert_allclose((h @ Wn).reshape(-1), expected_out[b].reshape(-1), rtol=1e-4, atol=1e-5)


def test_a_batch_size_written_into_the_model_is_refused_when_it_differs():
    """A Resize given sizes (1, C, 2H, 2W) fixes the batch at 1 in a dynamic-batch model: two
    inputs at once are refused with what to do (found by the fuzzer), one at a time work."""
    rng = np.random.default_rng(17)
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"]),
             helper.make_node("Resize", ["c", "", "", "sizes"], ["r"], mode="nearest"),
             helper.make_node("Flatten", ["r"], ["f"]), helper.make_node("MatMul", ["f", "M"], ["y"])]
    model = make_model(nodes, (1, 3, 3), {"W": rng.normal(size=(2, 1, 2, 2)).astype(np.float32),
                                          "sizes": np.array([1, 2, 4, 4]), "M": np.ones((32, 1), np.float32)})
    x = rng.normal(size=(2, 1, 3, 3)).astype(np.float32)
    with pytest.raises(onnxtopo.UnsupportedOpError, match="a batch of 1 for 2 inputs.*--batch-size 1"):
        onnxtopo.analyze(model, x)
    assert len(onnxtopo.analyze(model, x, batch_size=1)) == 2
