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
from .runtime import session, validate_inputs

# validate_inputs lives in onnxtopo.runtime; this was its import path before.
__all__ = ["ActivationRunner", "validate_inputs"]


class ActivationRunner:
    """Runs a planned model and returns, per batch, the tensors the edge steps read."""

    def __init__(self, plan: Plan, extra_tensors: Iterable[str] = (), threads: int | None = None):
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
        self.session = session(model, threads)

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

