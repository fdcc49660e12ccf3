"""Decomposed forms exporters write for one op, recognized as that op before the walk.

PyTorch before opset 17 (and other exporters) write a layer normalization as the chain

    m = ReduceMean(x, trailing axes, keepdims=1);  d = Sub(x, m);  p = Pow(d, 2) or Mul(d, d)
    v = ReduceMean(p, same axes, keepdims=1);  s = Sqrt(Add(v, ε));  y = Div(d, s) or Mul(d, Reciprocal(s))

or with the variance as E[x²] − E[x]² (jax2onnx, and onnxruntime's own inlining of
GroupNormalization, which has no kernel there), possibly clamped by Max(v, 0).

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


class DecomposedOps:
    """Recognizes decomposed layer normalizations while the walker goes through ``nodes``.

    The walker hands every node to ``substitute`` in order; constants computed so far (axes and
    ε are often computed by Shape/Cast nodes) are in ``constants``. A recognized chain's nodes are
    skipped (None) and its last node is replaced by the LayerNormalization node it computes."""

    def __init__(self, nodes: list, ranks: dict[str, int]):
        self.consumers = defaultdict(list)
        for node in nodes:
            for name in dict.fromkeys(node.input):  # Mul(d, d) reads d once
                self.consumers[name].append(node)
        self.producers = defaultdict(list)
        for node in nodes:
            for name in node.output:
                self.producers[name].append(node)
        self.ranks = ranks
        self.walked: set[int] = set()
        self.skipped: set[int] = set()
        self.fused: dict[int, object] = {}

    def substitute(self, node, constants: dict):
        """The node the walker should plan in place of ``node``, or None to skip it."""
        if id(node) in self.fused:
            return self.fused[id(node)]
        if id(node) in self.skipped:
            return None
        if node.op_type == "ReduceMean":
            for root in self._roots(node):
                match = _layernorm_chain(root, self.consumers, constants, self.ranks)
                # Squares are elementwise: already walking one changes nothing.
                if match is None or any(id(n) in self.walked for n in match[0] if n.op_type not in SQUARES):
                    continue
                chain, fused, scale = match
                constants[fused.input[1]] = scale
                self.skipped.update(id(n) for n in chain)
                self.fused[id(chain[-1])] = fused
                if id(node) in self.skipped:
                    return None
        self.walked.add(id(node))
        return node

    def _roots(self, mean):
        """The means a chain through ``mean`` may start at: itself, the other means of its input,
        and, when it averages a square (E[x²]), the means of the squared tensor."""
        source = mean.input[0]
        sources = [source] + [n.input[0] for n in self.producers.get(source, []) if n.op_type in SQUARES]
        return [mean] + [n for t in sources for n in self.consumers.get(t, [])
                         if n.op_type == "ReduceMean" and n is not mean]


SQUARES = ("Mul", "Pow")


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


def _is_square(node, tensor, constants) -> bool:
    """Whether ``node`` computes tensor² (Pow(t, 2) or Mul(t, t))."""
    return ((node.op_type == "Pow" and node.input[0] == tensor and _constant_scalar(constants, node.input[1]) == 2.0)
            or (node.op_type == "Mul" and list(node.input) == [tensor, tensor]))


def _same_mean(node, axes, rank, constants) -> bool:
    found = _mean_axes(node, constants) if node is not None and node.op_type == "ReduceMean" else None
    return found is not None and sorted(a % rank for a in found) == axes


def _layernorm_chain(mean, consumers, constants, ranks):
    x, axes = mean.input[0], _mean_axes(mean, constants)
    rank = ranks.get(x)
    if axes is None or rank is None:
        return None
    axes = sorted(a % rank for a in axes)
    if axes != list(range(rank - len(axes), rank)) or 0 in axes:
        return None  # LayerNormalization normalizes trailing axes, never the batch axis
    m = mean.output[0]
    sub = next((n for n in consumers.get(m, []) if n.op_type == "Sub" and list(n.input) == [x, m]), None)
    if sub is None:
        return None
    centred = sub.output[0]
    chain = [mean, sub]
    # The variance: the mean of the centred squares, or E[x²] − E[x]² (jax2onnx, onnxruntime's
    # inlined GroupNormalization).
    square = next((n for n in consumers.get(centred, []) if _is_square(n, centred, constants)), None)
    if square is not None and consumers.get(m) == [sub]:
        variance = _only(consumers, square.output[0], ("ReduceMean",))
        if not _same_mean(variance, axes, rank, constants):
            return None
        chain += [square, variance]
        expected_readers = 2
    else:
        mean_square = next((n for n in consumers.get(m, []) if n is not sub and _is_square(n, m, constants)), None)
        x_square = next((n for n in consumers.get(x, []) if _is_square(n, x, constants)), None)
        if mean_square is None or x_square is None or len(consumers.get(m, [])) != 2:
            return None
        second = _only(consumers, x_square.output[0], ("ReduceMean",))
        if not _same_mean(second, axes, rank, constants):
            return None
        variance = _only(consumers, second.output[0], ("Sub",))
        if variance is None or list(variance.input) != [second.output[0], mean_square.output[0]] \
                or consumers.get(mean_square.output[0]) != [variance]:
            return None
        chain += [mean_square, x_square, second, variance]
        expected_readers = 1
    value = variance.output[0]
    clamp = _only(consumers, value, ("Max",))  # max(variance, 0) against rounding
    if clamp is not None:
        bound = next((n for n in clamp.input if n != value), None)
        floor = _constant_scalar(constants, bound) if bound is not None else None
        if floor is None or floor > 0:
            return None
        chain.append(clamp)
        value = clamp.output[0]
    add = _only(consumers, value, ("Add",))
    eps_name = next((n for n in add.input if n != value), None) if add is not None else None
    epsilon = _constant_scalar(constants, eps_name) if eps_name else None
    root = _only(consumers, add.output[0], ("Sqrt",)) if epsilon is not None else None
    readers = consumers.get(centred, [])
    if root is None or len(readers) != expected_readers:
        return None
    chain += [add, root]
    last = readers[-1] if expected_readers == 1 else next(n for n in readers if n is not square)
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
