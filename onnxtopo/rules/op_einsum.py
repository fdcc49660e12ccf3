"""Einsum, and every contraction of activations (MatMul of two activations): a new layer.

y = Σ Π operands over an equation's indices is linear in each operand. For an activation
operand X, ∂y_v/∂X_u is the sum, over the indices in neither X nor y, of the product of the
other operands at the indices u and v fix. There is an edge X_u -> y_v for every assignment of
X's and y's indices (when an index repeats in X, from X's diagonal only), with

* Einsum with one activation operand, the others constant: w = that coefficient (1 when X is
  the only operand), φ = |w · h_u|;
* several activation operands (attention's Q·Kᵀ, softmax(...)·V): φ = |X_u · ∂y_v/∂X_u| at the
  input's own activations. For y_ij = Σ_k A_ik B_kj: φ(A_ik -> y_ij) = φ(B_kj -> y_ij) = |A_ik · B_kj|.

Equations follow ONNX (and numpy): spaces, upper-case letters, an implicit output (the ellipsis,
then the letters that appear once, in ASCII order) or an explicit one after "->", repeated
indices (diagonals, traces), an ellipsis, size-1 axes broadcast. The first axis of every
activation operand is its batch axis: it must carry the same index in each, come first in the
output, and index a constant only along a size-1 axis; anything else mixes samples: refused.
"""

from __future__ import annotations

import math
import string
from collections import Counter
from dataclasses import dataclass

import numpy as np

from . import EdgePattern, EdgeRule, attribute, edge_rule, operand_rule, refuse

#: np.einsum names indices with letters, so a contraction has at most this many.
MAX_INDICES = 52


@dataclass(frozen=True)
class Contraction:
    """One sample's einsum. ``operands`` labels each axis of each operand (None: a size-1 axis
    that broadcasts); labels are equation letters or ellipsis axes (ints counted from the right);
    ``sizes`` gives every label's size."""

    operands: tuple[tuple, ...]
    output: tuple
    sizes: dict

    def shape(self, axes) -> tuple[int, ...]:
        return tuple(1 if label is None else self.sizes[label] for label in axes)


def contraction(node, labels, shapes, output) -> Contraction:
    """The contraction of operands of per-sample ``shapes`` whose axes carry ``labels``, checking
    that an index has one size in every operand, or 1 where it broadcasts."""
    sizes: dict = {}
    for axes, shape in zip(labels, shapes):
        along: dict = {}
        for label, n in zip(axes, shape):
            if along.setdefault(label, n) != n:
                raise refuse(node, f"an index repeated in one operand (a diagonal) has sizes {along[label]} and {n}")
            if n != 1 and sizes.setdefault(label, n) != n:
                raise refuse(node, f"its operands of per-sample shapes {list(map(tuple, shapes))} do not match: "
                                   f"{_describe(label)} has sizes {sizes[label]} and {n}")
    for axes in labels:
        for label in axes:
            sizes.setdefault(label, 1)
    unknown = [label for label in output if label not in sizes]
    if unknown:
        raise refuse(node, f"its output has {_describe(unknown[0])}, which no operand has")
    if len(sizes) > MAX_INDICES:
        raise refuse(node, f"it has {len(sizes)} indices; onnxtopo handles at most {MAX_INDICES}")
    broadcast = tuple(tuple(None if n == 1 and sizes[label] != 1 else label for label, n in zip(axes, shape))
                      for axes, shape in zip(labels, shapes))
    return Contraction(broadcast, tuple(output), sizes)


def _describe(label) -> str:
    return f"index {label!r}" if isinstance(label, str) else "a broadcast (ellipsis or leading) axis"


@dataclass(frozen=True)
class PairedPattern(EdgePattern):
    """A pattern whose values read another tensor: ``partner`` indexes, for each edge, the flat
    ∂y_v/∂X_u computed from the other operands for each sample."""

    partner: np.ndarray


class ContractionRule(EdgeRule):
    """Edges from one operand X of a contraction: one per assignment of X's and the output's labels."""

    def __init__(self, node, spec: Contraction, position: int, in_shape, operands):
        """``operands``: for each operand of ``spec``, the name of its activation or its constant value."""
        super().__init__(node, in_shape, {}, None)
        self.spec = spec
        self.own = spec.operands[position]
        self.others = [(axes, operand) for i, (axes, operand) in enumerate(zip(spec.operands, operands))
                       if i != position]
        self.labels = tuple(dict.fromkeys([label for label in self.own if label is not None] + list(spec.output)))
        in_others = {label for axes, _ in self.others for label in axes if label is not None}
        # ∂y/∂X depends on these labels only; the others' remaining labels are summed over
        self.partner_labels = tuple(label for label in self.labels if label in in_others)
        self.reads = tuple(dict.fromkeys(o for _, o in self.others if isinstance(o, str)))
        self.rule_name = "bilinear" if self.reads else "einsum"
        if not self.reads:
            self.coefficients = self._derivatives({}).ravel()
        self.out_shape = spec.shape(spec.output)
        sizes = [spec.sizes[label] for label in self.labels]
        self.outer_size = sizes[0] if sizes else 1  # parts are the values of the first label
        self.edges_per_outer = math.prod(sizes[1:])

    def build_pattern(self, part: slice) -> EdgePattern:
        ranges = [np.arange(self.spec.sizes[label], dtype=np.int64) for label in self.labels]
        if ranges:
            ranges[0] = ranges[0][part]
        grid = tuple(len(r) for r in ranges)
        # each label's values along its own axis of the grid of assignments
        coordinate = {label: r.reshape([-1 if i == j else 1 for j in range(len(grid))])
                      for i, (label, r) in enumerate(zip(self.labels, ranges))}

        def flat(axes, shape):
            index, stride = np.zeros((1,) * len(grid), dtype=np.int64), 1
            for label, n in zip(reversed(axes), reversed(shape)):
                if label is not None:
                    index = index + stride * coordinate[label]
                stride *= n
            return np.broadcast_to(index, grid).ravel()

        src = flat(self.own, self.in_shape)
        dst = flat(self.spec.output, self.out_shape)
        partner = flat(self.partner_labels, self.spec.shape(self.partner_labels))
        if not self.reads:
            return EdgePattern(src=src, dst=dst, weight=self.coefficients[partner])
        return PairedPattern(src=src, dst=dst, weight=np.broadcast_to(1.0, src.shape), partner=partner)

    def edge_values(self, h: np.ndarray, pattern: EdgePattern | None = None,
                    context: dict | None = None) -> np.ndarray:
        p = self.pattern if pattern is None else pattern
        if not self.reads:
            return super().edge_values(h, p)
        return h[p.src] * self._derivatives(context).ravel()[p.partner]

    def _derivatives(self, context: dict) -> np.ndarray:
        """∂y/∂X over ``partner_labels``: the other operands' product, summed over their other labels."""
        index = {label: i for i, label in enumerate(self.spec.sizes)}
        arguments = []
        for axes, operand in self.others:
            value = context[operand] if isinstance(operand, str) else operand
            kept = [label for label in axes if label is not None]
            arguments += [np.reshape(value, self.spec.shape(kept)), [index[label] for label in kept]]
        if not arguments:
            return np.ones(())
        return np.einsum(*arguments, [index[label] for label in self.partner_labels], optimize=len(self.others) > 1)


def _subscripts(node, term: str) -> list[str]:
    parts = term.split("...")
    if len(parts) > 2:
        raise refuse(node, f"its equation term {term!r} has more than one ellipsis")
    if any(c not in string.ascii_letters for c in "".join(parts)):
        raise refuse(node, f"its equation term {term!r} has a character other than letters and '...'")
    return list(parts[0]) + (["...", *parts[1]] if len(parts) == 2 else [])


def einsum_contraction(node, shapes) -> Contraction:
    """One sample's contraction of an Einsum node. ``shapes``: each input's shape, None in place
    of the batch size for activations (constants have no batch axis)."""
    equation = attribute(node, "equation")
    if not isinstance(equation, str) or not equation.strip():
        raise refuse(node, "it has no equation")
    equation = "".join(equation.split())
    lhs, arrow, rhs = equation.partition("->")
    terms = [_subscripts(node, term) for term in lhs.split(",")]
    if len(terms) != len(shapes):
        raise refuse(node, f"its equation {equation!r} has {len(terms)} operands, the node {len(shapes)}")
    labels = []
    for subscripts, shape in zip(terms, shapes):
        spread = len(shape) - (len(subscripts) - subscripts.count("..."))
        if spread < 0 or (spread and "..." not in subscripts):
            raise refuse(node, f"its equation term {''.join(subscripts)!r} does not fit an operand of "
                               f"rank {len(shape)}")
        labels.append([a for s in subscripts for a in (range(spread - 1, -1, -1) if s == "..." else [s])])
    spread = max((len(shape) - len(s) + 1 for s, shape in zip(terms, shapes) if "..." in s), default=0)
    ellipsis = list(range(spread - 1, -1, -1))
    if arrow:
        out = _subscripts(node, rhs)
        letters = [s for s in out if s != "..."]
        if len(set(letters)) != len(letters):
            raise refuse(node, f"its output {rhs!r} repeats an index")
        if "..." not in out and any("..." in s for s in terms):
            raise refuse(node, "its operands have an ellipsis and its output has none")
        output = [a for s in out for a in (ellipsis if s == "..." else [s])]
    else:
        counts = Counter(s for subscripts in terms for s in subscripts if s != "...")
        output = ellipsis + sorted(letter for letter, count in counts.items() if count == 1)

    activations = [i for i, shape in enumerate(shapes) if shape[:1] == (None,)]
    batch = {labels[i][0] for i in activations}
    if len(batch) != 1 or output[:1] != list(batch) or any(labels[i].count(output[0]) != 1 for i in activations):
        raise refuse(node, f"its equation {equation!r} does not keep the batch axis (the first axis of every "
                           "activation operand, under one index used nowhere else) as its output's first axis",
                     "onnxtopo analyzes samples independently")
    per_sample_labels, per_sample_shapes = [], []
    for i, (axes, shape) in enumerate(zip(labels, shapes)):
        if i in activations:
            axes, shape = axes[1:], shape[1:]
        elif any(label == output[0] and n != 1 for label, n in zip(axes, shape)):
            raise refuse(node, f"its constant operand {node.input[i]!r} of shape {tuple(shape)} has one value "
                               "per sample of a batch", "onnxtopo needs operands shared by every sample")
        else:  # a size-1 batch axis of a constant broadcasts: it indexes nothing
            kept = [k for k, label in enumerate(axes) if label != output[0]]
            axes, shape = [axes[k] for k in kept], [shape[k] for k in kept]
        per_sample_labels.append(list(axes))
        per_sample_shapes.append(tuple(shape))
    return contraction(node, per_sample_labels, per_sample_shapes, output[1:])


def _einsum_rules(node, constants, shapes: dict) -> list[ContractionRule]:
    if any(not name for name in node.input):
        raise refuse(node, "it has an empty input name")
    spec = einsum_contraction(node, [np.shape(constants[n]) if n in constants else (None, *shapes[n])
                                     for n in node.input])
    operands = [np.asarray(constants[n], dtype=np.float64) if n in constants else n for n in node.input]
    return [ContractionRule(node, spec, i, shapes[n], operands) for i, n in enumerate(node.input)
            if n not in constants]


@edge_rule("Einsum")
def einsum_rule(node, in_shape, constants, options) -> ContractionRule:
    """Einsum with one activation operand: linear."""
    return _einsum_rules(node, constants, {n: tuple(in_shape) for n in node.input if n not in constants})[0]


@operand_rule("Einsum")
def einsum_rules(node, names, shapes, constants, options) -> list[ContractionRule]:
    """Einsum of several activation operands: one rule per operand, in input order."""
    return _einsum_rules(node, constants, {n: tuple(s) for n, s in zip(names, shapes)})
