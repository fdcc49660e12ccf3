"""Small shared helpers: one-node ONNX models, onnxruntime as the reference, edge-set comparison."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.shape_inference
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def make_model(nodes, sample_shape, initializers=None, *, input_name="x", output_name="y", opset=OPSET):
    """A float32 model with one input of shape ("N", *sample_shape) and one output, at ``opset``.

    The output's shape is filled by onnx shape inference, so the model passes onnx.checker.
    """
    initializers = initializers or {}
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", *sample_shape])
    y = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, None)
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in initializers.items()]
    graph = helper.make_graph(list(nodes), "test", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
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


def node_jacobian(node, operands: dict, wrt: str, *, output: int = 0, step: float = 1e-6, opset: int = OPSET):
    """The Jacobian ∂y/∂x of one ONNX node by central finite differences in float64.

    ``operands`` maps each input name of ``node`` to its value for ONE sample, batch axis
    included (size 1), in float64 (constants too); ``wrt`` names the input to differentiate
    against. The node runs alone, at ``opset``, in onnxruntime when it has a float64 kernel for
    the op, else in onnx's reference evaluator. Returns an array of shape (output size, input
    size) over the flattened tensors, batch axis of size 1 dropped.
    """
    run = _double_runner(node, operands, output, opset)
    x = np.asarray(operands[wrt], dtype=np.float64)
    y0 = run({**operands, wrt: x})
    jac = np.empty((y0.size, x.size))
    flat = x.reshape(-1)
    for j in range(x.size):
        plus, minus = flat.copy(), flat.copy()
        plus[j] += step
        minus[j] -= step
        jac[:, j] = (run({**operands, wrt: plus.reshape(x.shape)})
                     - run({**operands, wrt: minus.reshape(x.shape)})).reshape(-1) / (2 * step)
    return jac


def _double_runner(node, operands, output, opset):
    names = [n for n in node.input if n]
    inputs = [helper.make_tensor_value_info(n, TensorProto.DOUBLE if np.asarray(operands[n]).dtype.kind == "f"
                                            else TensorProto.INT64, np.shape(operands[n])) for n in names]
    outputs = [helper.make_tensor_value_info(o, TensorProto.DOUBLE, None) for o in node.output if o]
    graph = helper.make_graph([node], "one-node", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])

    def feeds(values):
        return {n: np.asarray(values[n], dtype=np.float64 if np.asarray(values[n]).dtype.kind == "f" else np.int64)
                for n in names}

    try:
        options = ort.SessionOptions()
        options.log_severity_level = 4
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        session.run(None, feeds(operands))
        return lambda values: session.run(None, feeds(values))[output]
    except Exception:  # no float64 kernel in onnxruntime: onnx's reference evaluator
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(model)
        return lambda values: np.asarray(evaluator.run(None, feeds(values))[output], dtype=np.float64)
