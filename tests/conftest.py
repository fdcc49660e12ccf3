"""Small shared helpers: one-node ONNX models, onnxruntime as the reference, edge-set comparison."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.shape_inference
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def make_model(nodes, sample_shape, initializers=None, *, input_name="x", output_name="y"):
    """A float32 model with one input of shape ("N", *sample_shape) and one output.

    The output's shape is filled by onnx shape inference, so the model passes onnx.checker.
    """
    initializers = initializers or {}
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", *sample_shape])
    y = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, None)
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()]
    graph = helper.make_graph(list(nodes), "test", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    return model


def ort_outputs(model, x, tensors=("y",), *, input_name="x"):
    """onnxruntime's values of the named tensors (intermediate ones too), graph optimizations off."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    known = {v.name: v for v in list(m.graph.value_info) + list(m.graph.output)}
    present = {o.name for o in m.graph.output}
    for name in tensors:
        if name not in present:
            m.graph.output.append(known[name])
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(m.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return dict(zip(tensors, session.run(list(tensors), {input_name: np.asarray(x, dtype=np.float32)})))


def edges_as_dict(src, dst, value, what="edge"):
    """{(src, dst): value}, asserting that each (src, dst) pair occurs once."""
    src, dst, value = np.asarray(src), np.asarray(dst), np.asarray(value)
    assert src.ndim == dst.ndim == value.ndim == 1 and len(src) == len(dst) == len(value)
    keys = list(zip(src.tolist(), dst.tolist()))
    assert len(set(keys)) == len(keys), f"some {what} (src, dst) pairs occur more than once"
    return dict(zip(keys, value.tolist()))


def assert_same_edges(got: dict, expected: dict, *, rtol=1e-6, atol=0.0, what="edges"):
    """Same (src, dst) keys, and values equal to tolerance."""
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    assert not missing and not extra, (
        f"{what}: {len(missing)} missing (first {missing[:5]}), {len(extra)} unexpected (first {extra[:5]}); "
        f"{len(got)} found, {len(expected)} expected"
    )
    keys = sorted(expected)
    np.testing.assert_allclose([got[k] for k in keys], [expected[k] for k in keys], rtol=rtol, atol=atol,
                               err_msg=what)
