"""onnxtopo.runtime: the one onnxruntime session factory and the one check of a model's inputs."""

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import onnxtopo
from onnxtopo import BadInputError, BadModelError
from onnxtopo.attacks import OnnxClassifier
from onnxtopo.runtime import check_inputs, session, validate_inputs

from conftest import make_model

MODELS = Path(__file__).resolve().parents[1] / "models"


def test_sessions_take_the_thread_count_and_refuse_unloadable_models(tmp_path):
    model = make_model([helper.make_node("Relu", ["x"], ["y"])], (3,))
    options = session(model, threads=2).get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads, options.log_severity_level) == (2, 1, 4)
    default = session(model.SerializeToString()).get_session_options()  # bytes work as well
    assert default.intra_op_num_threads == 0  # onnxruntime's own pool
    out = session(model).run(None, {"x": np.array([[-1, 0, 2]], np.float32)})[0]
    np.testing.assert_array_equal(out, [[0, 0, 2]])
    with pytest.raises(BadModelError, match="onnxruntime cannot load the model"):
        session(b"not a model")


def test_the_basic_optimization_writes_the_optimized_model(tmp_path):
    nodes = [helper.make_node("Identity", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["y"])]
    target = tmp_path / "optimized.onnx"
    session(make_model(nodes, (3,)), optimized_path=str(target))
    assert [n.op_type for n in onnx.load(target).graph.node] == ["Relu"]  # Identity removed


SHAPE = {"input_name": "x", "dtype": np.float32, "sample_shape": (2, 3)}


@pytest.mark.parametrize("x, message", [
    (np.zeros((4, 2, 3), np.uint8), "dtype uint8; the model takes float32. Convert them first"),
    (np.array([["a"] * 3] * 2)[None], "dtype <U1"),
    (np.zeros((4, 3, 2), np.float32), r"shape \(4, 3, 2\); the model's input 'x' takes \(n, 2, 3\)"),
    (np.zeros((2, 3), np.float32), r"shape \(2, 3\)"),
    (np.zeros((0, 2, 3), np.float32), "empty"),
])
def test_inputs_that_do_not_fit_are_refused_with_what_to_do(x, message):
    with pytest.raises(BadInputError, match=message):
        check_inputs(x, **SHAPE)


def test_non_finite_samples_are_named_and_integer_models_refuse_floats():
    x = np.zeros((5, 2, 3))
    x[2, 1, 1], x[4, 0, 0] = np.nan, -np.inf
    with pytest.raises(BadInputError, match=r"2 input\(s\) hold NaN or infinite values \(first: sample 2\)"):
        check_inputs(x, **SHAPE)
    with pytest.raises(BadInputError, match="the model takes int64 .token ids"):
        check_inputs(np.zeros((1, 4)), input_name="ids", dtype=np.int64, sample_shape=(4,))
    ids = check_inputs(np.zeros((1, 4), np.int32), input_name="ids", dtype=np.int64, sample_shape=(4,))
    assert ids.dtype == np.int64


def test_values_a_narrowing_cast_would_overflow_are_refused():
    x = np.zeros((4, 2, 3))
    x[1, 0, 2], x[3, 1, 1] = 1e39, -4e38  # finite in float64, beyond float32's ±3.4e38
    with pytest.raises(BadInputError, match=r"2 input\(s\) hold values outside the range of the model's float32 "
                                            r"\[.*\] \(first: sample 1\)"):
        check_inputs(x, **SHAPE)
    x[[1, 3]] = 3.4e38  # the largest magnitudes float32 holds pass
    assert np.isfinite(check_inputs(x, **SHAPE)).all()
    with pytest.raises(BadInputError, match="outside the range of the model's int32"):
        check_inputs(np.array([[1, 2**31, 3, 4]]), input_name="ids", dtype=np.int32, sample_shape=(4,))


def test_accepted_inputs_come_back_in_the_model_dtype():
    x = np.random.default_rng(0).random((3, 2, 3))
    out = check_inputs(x, **SHAPE)
    assert out.dtype == np.float32 and np.array_equal(out, x.astype(np.float32))
    same = x.astype(np.float32)
    assert check_inputs(same, **SHAPE) is same  # no copy when nothing changes
    assert check_inputs(np.zeros((0, 2, 3), np.float32), **SHAPE, allow_empty=True).shape == (0, 2, 3)
    # A symbolic dimension (None) takes any size.
    assert check_inputs(np.zeros((1, 2, 9)), input_name="x", dtype=np.float32, sample_shape=(2, None)).shape == (1, 2, 9)


def test_the_analysis_and_the_attacks_check_inputs_alike():
    plan = onnxtopo.inspect(MODELS / "ccff-relu.onnx")
    clf = OnnxClassifier(MODELS / "ccff-relu.onnx")
    bad = [np.zeros((2, 28, 28), np.float32), np.zeros((2, 1, 28, 28), np.uint8),
           np.full((2, 1, 28, 28), np.nan, np.float32)]
    for x in bad:
        with pytest.raises(BadInputError) as analysis:
            validate_inputs(plan, x)
        with pytest.raises(BadInputError) as attack:
            clf.validate(x)
        assert str(analysis.value) == str(attack.value)


def test_a_symbolic_sample_dimension_is_not_checked_by_the_classifier():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "T"])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    clf = OnnxClassifier(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), output_kind="logits")
    assert clf.sample_shape == (None,)
    np.testing.assert_array_equal(clf.logits(np.array([[-1.0, 2.0, 3.0]])), [[0, 2, 3]])
