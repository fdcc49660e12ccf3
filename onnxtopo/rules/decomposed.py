"""Decomposed forms exporters write for one op, recognized as that op before the walk.

PyTorch before opset 17 (and other exporters) write a layer normalization as the chain

    m = ReduceMean(x, trailing axes, keepdims=1);  d = Sub(x, m);  p = Pow(d, 2) or Mul(d, d)
    v = ReduceMean(p, same axes, keepdims=1);  s = Sqrt(Add(v, ε));  y = Div(d, s) or Mul(d, Reciprocal(s))

Walked op by op it would make four layers (two means, the centring, the quotient); it computes
LayerNormalization(x, γ = 1, ε), so the walker sees that node instead and the same network gives
the same graph whichever way it was exported (a following Mul γ / Add β folds into its edges).
Only the walker's list changes: onnxruntime still runs the original nodes, which give y and x.
A chain is recognized only when each intermediate tensor feeds nothing else.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx

from . import attribute


def recognize_decomposed(nodes: list, constants: dict, ranks: dict[str, int]) -> list:
    """``nodes`` with each decomposed layer normalization replaced by one LayerNormalization node
    (its scale, a constant 1, added to ``constants``). ``ranks`` gives tensors' ranks where known."""
    consumers = defaultdict(list)
    for node in nodes:
        for name in dict.fromkeys(node.input):  # Mul(d, d) reads d once
            consumers[name].append(node)
    replaced, inserted = set(), {}
    for node in nodes:
        if node.op_type == "ReduceMean" and id(node) not in replaced:
            match = _layernorm_chain(node, consumers, constants, ranks)
            if match is not None:
                chain, fused, scale = match
                replaced.update(id(n) for n in chain)
                inserted[id(chain[-1])] = fused
                constants[fused.input[1]] = scale
    return [inserted.get(id(n), n) for n in nodes if id(n) not in replaced or id(n) in inserted]


def _only(consumers, name, op_types):
    """The one node reading ``name``, if it has one of ``op_types``."""
    readers = consumers.get(name, [])
    return readers[0] if len(readers) == 1 and readers[0].op_type in op_types else None


def _constant_scalar(constants, name):
    value = constants.get(name)
    return float(np.asarray(value).reshape(-1)[0]) if value is not None and np.size(value) == 1 else None


def _mean_axes(node, constants):
    axes = attribute(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1] in constants:
        axes = np.asarray(constants[node.input[1]]).reshape(-1).tolist()
    if axes is None or not attribute(node, "keepdims", 1):
        return None
    return [int(a) for a in axes]


def _layernorm_chain(mean, consumers, constants, ranks):
    x, axes = mean.input[0], _mean_axes(mean, constants)
    rank = ranks.get(x)
    if axes is None or rank is None:
        return None
    axes = sorted(a % rank for a in axes)
    if axes != list(range(rank - len(axes), rank)) or 0 in axes:
        return None  # LayerNormalization normalizes trailing axes, never the batch axis
    sub = _only(consumers, mean.output[0], ("Sub",))
    if sub is None or list(sub.input) != [x, mean.output[0]]:
        return None
    centred = sub.output[0]
    readers = consumers.get(centred, [])
    if len(readers) != 2:
        return None
    square = next((n for n in readers if (n.op_type == "Pow" and n.input[0] == centred
                                          and _constant_scalar(constants, n.input[1]) == 2.0)
                   or (n.op_type == "Mul" and list(n.input) == [centred, centred])), None)
    if square is None:
        return None
    variance = _only(consumers, square.output[0], ("ReduceMean",))
    if variance is None or _mean_axes(variance, constants) is None or \
            sorted(a % rank for a in _mean_axes(variance, constants)) != axes:
        return None
    add = _only(consumers, variance.output[0], ("Add",))
    eps_name = next((n for n in add.input if n != variance.output[0]), None) if add is not None else None
    epsilon = _constant_scalar(constants, eps_name) if eps_name else None
    if epsilon is None:
        return None
    root = _only(consumers, add.output[0], ("Sqrt",))
    if root is None:
        return None
    chain = [mean, sub, square, variance, add, root]
    last = next(n for n in readers if n is not square)
    if last.op_type == "Div" and list(last.input) == [centred, root.output[0]] and \
            consumers.get(root.output[0]) == [last]:
        chain.append(last)
    else:
        inverse = _only(consumers, root.output[0], ("Reciprocal",))
        if inverse is None or last.op_type != "Mul" or sorted(last.input) != sorted([centred, inverse.output[0]]) \
                or consumers.get(inverse.output[0]) != [last]:
            return None
        chain += [inverse, last]
    scale_name = f"{last.output[0]}::unit_scale"
    fused = onnx.helper.make_node("LayerNormalization", [x, scale_name], [last.output[0]],
                                  name=last.name or last.output[0], axis=rank - len(axes), epsilon=epsilon)
    return chain, fused, np.ones(1, dtype=np.float32)
