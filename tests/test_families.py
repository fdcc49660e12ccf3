"""The shipped architecture-family models (models/families/, built by models/build/build_families.py).

Each one is planned, its sample inputs are analyzed, and both engines give the same H0. The plan
is checked against onnxruntime running the model itself: every tensor the plan reads (its layers
and each edge step's data input) has the shape the plan gives it, and the vertices are exactly
the elements of the layer tensors.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnxtopo

FAMILIES = Path(__file__).resolve().parents[1] / "models" / "families"
STEMS = sorted(p.stem for p in FAMILIES.glob("*.onnx"))


@pytest.fixture(scope="module")
def samples():
    with np.load(FAMILIES / "inputs.npz", allow_pickle=False) as archive:
        return dict(archive)


def onnxruntime_shapes(path: Path, names, x) -> dict[str, tuple[int, ...]]:
    """Shapes onnxruntime gives the named tensors (intermediate ones made graph outputs) on ``x``."""
    model = onnx.load(str(path))
    outputs = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in outputs)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    input_name = next(i.name for i in session.get_inputs())
    names = list(dict.fromkeys(names))
    values = session.run([n for n in names if n != input_name], {input_name: x})
    shapes = {n: v.shape for n, v in zip([n for n in names if n != input_name], values)}
    if input_name in names:
        shapes[input_name] = x.shape
    return shapes


def test_every_model_has_samples(samples):
    assert len(STEMS) >= 9
    assert set(samples) == set(STEMS)
    for stem in STEMS:
        assert FAMILIES.joinpath(f"{stem}.onnx").stat().st_size < 1 << 20
        assert len(samples[stem]) >= 2


def test_zoo_style_model_is_pre_ir4():
    model = onnx.load(str(FAMILIES / "alexnet-tiny-opset9.onnx"))
    assert model.ir_version == 3
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 9)]
    declared = {i.name for i in model.graph.input}
    assert {t.name for t in model.graph.initializer} < declared
    assert {"LRN", "MaxPool"} <= {n.op_type for n in model.graph.node}
    plan = onnxtopo.inspect(FAMILIES / "alexnet-tiny-opset9.onnx")
    assert plan.input_name == "input" and plan.input_shape == (3, 32, 32)


@pytest.mark.parametrize("stem", STEMS)
def test_plan_shapes_are_onnxruntimes(stem, samples):
    path = FAMILIES / f"{stem}.onnx"
    plan = onnxtopo.inspect(path)
    x = samples[stem]
    read = [layer.tensor for layer in plan.layers] + [step.input_tensor for step in plan.steps]
    shapes = onnxruntime_shapes(path, read, x)
    offset = 0
    for layer in plan.layers:
        assert shapes[layer.tensor] == (len(x), *layer.shape), layer.tensor
        assert layer.offset == offset
        offset += int(np.prod(shapes[layer.tensor][1:]))
    assert plan.n_vertices == offset
    for step in plan.steps:
        assert shapes[step.input_tensor][1:] == tuple(step.rule.in_shape), step.node


@pytest.mark.parametrize("stem", STEMS)
def test_analysis_runs_and_engines_agree(stem, samples):
    path = FAMILIES / f"{stem}.onnx"
    plan = onnxtopo.inspect(path)
    x = samples[stem]
    forest = onnxtopo.analyze(path, x)
    assert len(forest) == len(x)
    for result in forest:
        assert result.n_vertices == sum(layer.size for layer in plan.layers)
        assert result.n_edges > 0 and len(result.h0) > 0
    # dionysus is slow: the first sample is enough to compare the engines.
    [dionysus] = onnxtopo.analyze(path, x[:1], engine="dionysus")
    assert dionysus.n_vertices == forest[0].n_vertices and dionysus.n_edges == forest[0].n_edges
    np.testing.assert_array_equal(forest[0].h0, dionysus.h0)
