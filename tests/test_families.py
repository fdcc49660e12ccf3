"""The shipped architecture-family models (models/families/, built by models/build/build_families.py).

Each one is planned, its sample inputs are analyzed, and both engines give the same H0. The plan
is checked against onnxruntime running the model itself: every tensor the plan reads (its layers
and each edge step's data input) has the shape the plan gives it, and the vertices are exactly
the elements of the layer tensors.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnxtopo

from conftest import assert_same_persistence

FAMILIES = Path(__file__).resolve().parents[1] / "models" / "families"
STEMS = sorted(p.stem for p in FAMILIES.glob("*.onnx"))


@pytest.fixture(scope="module")
def samples():
    with np.load(FAMILIES / "inputs.npz", allow_pickle=False) as archive:
        return dict(archive)


def onnxruntime_shapes(path: Path, input_name: str, names, x) -> dict[str, tuple[int, ...]]:
    """Shapes onnxruntime gives the named tensors (intermediate ones made graph outputs) on ``x``."""
    model = onnx.load(str(path))
    outputs = {o.name for o in model.graph.output}
    computed = [n for n in dict.fromkeys(names) if n != input_name]
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in computed if n not in outputs)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    values = session.run(computed, {input_name: x})
    return {input_name: x.shape, **{n: v.shape for n, v in zip(computed, values)}}


def assert_per_sample(batch_shape, n, sample_shape, what):
    """onnxruntime's shape of a batch of n is the plan's per-sample shape with the batch axis in
    front, or merged into the leading axis (jax2onnx's dense layers over tokens: [n·tokens, width])."""
    sample_shape = tuple(sample_shape)
    merged = (n * sample_shape[0], *sample_shape[1:]) if sample_shape else None
    assert tuple(batch_shape) in ((n, *sample_shape), merged), (what, batch_shape, sample_shape)


def test_every_model_has_samples_and_a_description(samples):
    assert len(STEMS) >= 10
    assert set(samples) == set(STEMS)
    manifest = json.loads((FAMILIES / "manifest.json").read_text())
    assert set(manifest) == set(STEMS)
    assert all(entry["family"] and entry["framework"] and entry["exporter"] for entry in manifest.values())
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
    shapes = onnxruntime_shapes(path, plan.input_name, read, x)
    offset = 0
    for layer in plan.layers:
        assert_per_sample(shapes[layer.tensor], len(x), layer.shape, layer.tensor)
        assert layer.offset == offset
        offset += int(np.prod(shapes[layer.tensor])) // len(x)
    assert plan.n_vertices == offset
    for step in plan.steps:
        assert_per_sample(shapes[step.input_tensor], len(x), step.rule.in_shape, step.node)


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
    assert_same_persistence(forest[0], dionysus)
