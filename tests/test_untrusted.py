"""Models nobody here wrote: external data kept inside the model's folder, no custom ops,
no control flow, no training-mode graphs; each refused with a clear error before running."""

import os

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import set_external_data

import onnxtopo
from onnxtopo import BadModelError, UnsupportedOpError


def dense_model(nodes=None, extra_inits=(), domain_opsets=()):
    w = numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), "w")
    nodes = nodes or [helper.make_node("MatMul", ["x", "w"], ["y"], name="fc")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [w, *extra_inits])
    opsets = [helper.make_opsetid("", 17), *(helper.make_opsetid(d, 1) for d in domain_opsets)]
    return helper.make_model(graph, opset_imports=opsets)


def save_with_external(model, folder, location):
    """Save ``model`` with its weight pointing at ``location`` (written relative to ``folder``)."""
    weight = model.graph.initializer[0]
    raw = numpy_helper.to_array(weight).tobytes()
    target = location if os.path.isabs(location) else os.path.join(folder, location)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, "wb") as f:
        f.write(raw)
    set_external_data(weight, location=location)
    weight.ClearField("float_data")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    path = os.path.join(folder, "model.onnx")
    with open(path, "wb") as f:
        f.write(model.SerializeToString())
    return path


def test_external_data_beside_the_model_is_read(tmp_path):
    path = save_with_external(dense_model(), tmp_path, "weights/w.bin")
    plan = onnxtopo.inspect(path)
    np.testing.assert_array_equal(plan.steps[0].rule.matrix, np.arange(12).reshape(4, 3))


@pytest.mark.parametrize("where", ["absolute", "parent", "link"])
def test_external_data_outside_the_folder_is_refused(tmp_path, where):
    folder = tmp_path / "model"
    folder.mkdir()
    outside = tmp_path / "secret.bin"
    outside.write_bytes(np.arange(12, dtype=np.float32).tobytes())
    if where == "absolute":
        location = str(outside)
    elif where == "parent":
        location = "../secret.bin"
    else:
        os.symlink(outside, folder / "w.bin")
        location = "w.bin"
    model = dense_model()
    weight = model.graph.initializer[0]
    set_external_data(weight, location=location)
    weight.ClearField("raw_data")
    weight.ClearField("float_data")
    weight.data_location = TensorProto.EXTERNAL
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    with pytest.raises(BadModelError, match="outside the model's directory"):
        onnxtopo.inspect(folder / "model.onnx")


def test_missing_external_data_is_refused(tmp_path):
    path = save_with_external(dense_model(), tmp_path, "w.bin")
    os.remove(tmp_path / "w.bin")
    with pytest.raises(BadModelError, match="missing"):
        onnxtopo.inspect(path)


def _custom_domain_model():
    nodes = [helper.make_node("MatMul", ["x", "w"], ["a"]),
             helper.make_node("FancyActivation", ["a"], ["y"], domain="com.example", name="fancy")]
    return dense_model(nodes, domain_opsets=["com.example"])


def _control_flow_model():
    # onnxruntime runs this one happily: only onnxtopo's check refuses it.
    branch = helper.make_graph([helper.make_node("Identity", ["x"], ["out"])], "b", [],
                               [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)])
    cond = numpy_helper.from_array(np.array(True), "cond")
    nodes = [helper.make_node("If", ["cond"], ["a"], then_branch=branch, else_branch=branch, name="branching"),
             helper.make_node("MatMul", ["a", "w"], ["y"])]
    return dense_model(nodes, [cond])


def _training_model():
    ratio = numpy_helper.from_array(np.array(0.5, dtype=np.float32), "ratio")
    training = numpy_helper.from_array(np.array(True), "training")
    nodes = [helper.make_node("Dropout", ["x", "ratio", "training"], ["d"]),
             helper.make_node("MatMul", ["d", "w"], ["y"])]
    return dense_model(nodes, [ratio, training])


def test_custom_domain_is_refused():
    with pytest.raises(UnsupportedOpError, match="'fancy'.*custom domain 'com.example'"):
        onnxtopo.inspect(_custom_domain_model())


def test_control_flow_is_refused():
    with pytest.raises(UnsupportedOpError, match="'branching' is control flow"):
        onnxtopo.inspect(_control_flow_model())


def test_training_mode_is_refused():
    with pytest.raises(UnsupportedOpError, match="training mode"):
        onnxtopo.inspect(_training_model())
    off = _training_model()
    off.graph.initializer[-1].CopyFrom(numpy_helper.from_array(np.array(False), "training"))
    assert len(onnxtopo.inspect(off).steps) == 1


def test_bytes_with_external_data_are_refused(tmp_path):
    path = save_with_external(dense_model(), tmp_path, "w.bin")
    with open(path, "rb") as f:
        data = f.read()
    with pytest.raises(BadModelError, match="pass the model's path"):
        onnxtopo.inspect(data)


def test_non_finite_weights_are_refused():
    model = dense_model()
    weight = numpy_helper.to_array(model.graph.initializer[0]).copy()
    weight[0, 0] = np.inf
    model.graph.initializer[0].CopyFrom(numpy_helper.from_array(weight, "w"))
    with pytest.raises(BadModelError, match="infinite or NaN weights"):
        onnxtopo.analyze(model, np.array([[0, 1, 1, 1]], dtype=np.float32))


@pytest.mark.parametrize("build, message", [
    (_custom_domain_model, "'fancy'.*custom domain 'com.example'"),
    (_control_flow_model, "'branching' is control flow"),
    (_training_model, "training mode"),
])
def test_the_attack_path_refuses_untrusted_models_too(build, message, tmp_path):
    from onnxtopo.attacks import OnnxClassifier, fgsm

    path = tmp_path / "model.onnx"
    path.write_bytes(build().SerializeToString())
    x = np.full((1, 4), 0.5, dtype=np.float32)
    for model in (build(), path, path.read_bytes()):
        with pytest.raises(UnsupportedOpError, match=message):
            OnnxClassifier(model)
        with pytest.raises(UnsupportedOpError, match=message):
            fgsm(model, x, np.array([0]), 0.1)


def test_the_attack_path_reads_external_data_only_beside_the_model(tmp_path):
    from onnxtopo.attacks import OnnxClassifier

    folder = tmp_path / "model"
    folder.mkdir()
    (tmp_path / "secret.bin").write_bytes(np.arange(12, dtype=np.float32).tobytes())
    path = save_with_external(dense_model(), folder, "../secret.bin")
    with pytest.raises(BadModelError, match="outside the model's directory"):
        OnnxClassifier(path)
