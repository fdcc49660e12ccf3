"""What ``import onnxtopo`` promises: every exported name imports, every error class is exported,
and the analysis parameters are spelled out, the same, wherever they are taken."""

import dataclasses
import importlib
import inspect
from pathlib import Path

import numpy as np
import pytest

import onnxtopo
from onnxtopo import errors
from onnxtopo.api import AnalysisOptions
from onnxtopo.distributed import analyze_on_dask

MODELS = Path(__file__).resolve().parents[1] / "models"


@pytest.mark.parametrize("name", onnxtopo.__all__)
def test_every_exported_name_imports(name):
    module = importlib.import_module("onnxtopo")  # what ``from onnxtopo import name`` looks the name up in
    assert getattr(module, name) is not None


def test_every_error_class_and_failure_are_exported():
    classes = {name for name, value in vars(errors).items()
               if isinstance(value, type) and issubclass(value, errors.OnnxtopoError)}
    assert {"ResourceLimitError", "ClusterError", "OnnxtopoError"} <= classes
    assert classes | {"Failure"} <= set(onnxtopo.__all__)
    assert onnxtopo.ResourceLimitError.exit_code == 7 and onnxtopo.ClusterError.exit_code == 8
    assert onnxtopo.distributed.ClusterError is onnxtopo.ClusterError  # its former home still works


@pytest.mark.parametrize("function", [onnxtopo.analyze, onnxtopo.Analyzer.analyze, analyze_on_dask])
def test_the_analysis_parameters_are_keywords_with_the_options_defaults(function):
    parameters = inspect.signature(function).parameters
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for field in dataclasses.fields(AnalysisOptions):
        parameter = parameters[field.name]
        assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
        assert parameter.default == field.default, field.name
        assert f"``{field.name}``" in function.__doc__


def test_the_options_reach_the_analysis_and_are_checked_in_one_place():
    x = np.load(MODELS / "mnist-sample.npy")[:2]
    model = MODELS / "ccff-relu.onnx"
    plain, = onnxtopo.analyze(model, x[:1])
    assert plain.h1 is None
    strong, = onnxtopo.analyze(model, x[:1], h1=True, threshold=0.05, engine="dionysus", chunk_edges=1000)
    assert strong.h1 is not None and 0 < strong.n_edges < plain.n_edges
    skipped = onnxtopo.analyze(model, x, errors="skip", memory_limit=None, vertices="inf", percentile=50)
    assert [r.index for r in skipped] == [0, 1]
    for bad, message in [({"engine": "nope"}, "engine must be one of"), ({"percentile": 101}, "percentile"),
                         ({"chunk_edges": 0}, "chunk_edges"), ({"errors": "ignore"}, "errors must be")]:
        with pytest.raises(ValueError, match=message):
            onnxtopo.analyze(model, x, **bad)
        with pytest.raises(ValueError, match=message):
            analyze_on_dask(model, x, "tcp://127.0.0.1:1", **bad)  # refused before any connection
    with pytest.raises(TypeError, match="unexpected keyword"):
        onnxtopo.analyze(model, x, h2=True)
