"""Stage 3: the activations, from onnxruntime with the needed intermediate tensors exposed.

One session per model; inputs go through it in batches. Every tensor an edge step reads (its h)
becomes a graph output, so onnxruntime's own kernels produce the values φ is computed from.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx

from .errors import BadInputError, BadModelError, UnsupportedOpError
from .plan import Plan, batch_first


class ActivationRunner:
    """Runs a planned model and returns, per batch, the tensors the edge steps read."""

    def __init__(self, plan: Plan, extra_tensors: Iterable[str] = (), threads: int | None = None):
        import onnxruntime as ort

        self.plan = plan
        wanted = [t for s in plan.steps for t in (s.input_tensor, *s.rule.reads)] + list(extra_tensors)
        self.tensors = list(dict.fromkeys(t for t in wanted if t != plan.input_name))
        model = onnx.ModelProto()
        model.CopyFrom(plan.model)
        known = {v.name: v for v in list(model.graph.value_info) + list(model.graph.output)}
        existing = {o.name for o in model.graph.output}
        for name in self.tensors:
            if name in existing:
                continue
            if name in known:
                model.graph.output.append(known[name])
            else:
                model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
        options = ort.SessionOptions()
        options.log_severity_level = 4  # failures come back as exceptions; no C++ log lines on stderr
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Tensor name -> array with the batch axis first, for a validated batch ``x``."""
        try:
            values = self.session.run(self.tensors, {self.plan.input_name: x})
        except Exception as exc:  # inputs are validated already: the model cannot run
            raise BadModelError(f"onnxruntime failed to run the model: {str(exc).strip().splitlines()[0]}") from exc
        # A tensor whose samples lie along a moved or merged axis (attention's batch × heads) is
        # viewed batch first, as the plan sees it.
        out = dict(zip(self.tensors, values))
        for name, layout in self.plan.layouts.items():
            value = out[name]
            if value.ndim <= layout.axis or value.shape[layout.axis] != layout.outer * len(x) * layout.inner:
                raise UnsupportedOpError(f"onnxruntime gives tensor {name!r} shape {value.shape}, where the plan "
                                         f"expects {layout.outer} × {len(x)} × {layout.inner} along axis {layout.axis}")
            out[name] = batch_first(value, layout, len(x))
        out[self.plan.input_name] = x
        for name in self.tensors:
            if out[name].ndim == 0 or len(out[name]) != len(x):  # a batch fixed in the model (Resize sizes)
                raise UnsupportedOpError(
                    f"onnxruntime gives tensor {name!r} a batch of {len(out[name])} for {len(x)} inputs: an op "
                    "before it sets the batch size itself; re-export the model with a dynamic batch throughout, "
                    "or analyze one input at a time (--batch-size 1)")
        for step in self.plan.steps:
            got = tuple(out[step.input_tensor].shape[1:])
            if got != step.rule.in_shape:
                raise UnsupportedOpError(
                    f"onnxruntime gives tensor {step.input_tensor!r} (the input of node {step.node!r}) "
                    f"per-sample shape {got}, but onnxtopo's plan expects {step.rule.in_shape}: an op "
                    "before it is configured in a way onnxtopo and onnxruntime compute differently"
                )
        for name, value in out.items():
            if not np.isfinite(value).all():
                raise BadInputError(
                    f"tensor {name!r} holds NaN or infinite values for some of these inputs; "
                    "check the inputs' scale and the model's weights"
                )
        return out


def validate_inputs(plan: Plan, x) -> np.ndarray:
    """The inputs as an array the model accepts, or a BadInputError saying what is wrong."""
    x = np.asarray(x)
    expected = ", ".join(map(str, plan.input_shape))
    if x.dtype.kind not in "fiub" or (x.dtype.kind in "iub" and plan.input_dtype.kind == "f"):
        raise BadInputError(
            f"inputs have dtype {x.dtype}; the model takes {plan.input_dtype}. Convert them first "
            f"(and scale them as the model was trained, e.g. pixels / 255)"
        )
    if plan.input_dtype.kind in "iub" and x.dtype.kind == "f":
        raise BadInputError(
            f"inputs have dtype {x.dtype}; the model takes {plan.input_dtype} (token ids, bytes...). "
            f"Pass integer arrays"
        )
    if x.ndim != len(plan.input_shape) + 1 or tuple(x.shape[1:]) != plan.input_shape:
        raise BadInputError(
            f"inputs have shape {x.shape}; the model's input {plan.input_name!r} takes "
            f"(n, {expected}), i.e. a batch of samples of shape ({expected})"
        )
    if x.shape[0] == 0:
        raise BadInputError("the inputs are empty (0 samples)")
    if x.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(axis=1))
        if bad.size:
            raise BadInputError(
                f"{bad.size} input(s) hold NaN or infinite values (first: sample {bad[0]}); "
                "remove or repair them"
            )
    return x.astype(plan.input_dtype, copy=False)
