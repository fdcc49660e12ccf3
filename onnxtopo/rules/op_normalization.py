"""Normalizations by statistics of the input itself: a new layer, dense within each group.

Each output neuron v = y_i depends on every input u = x_j of its normalized group, through the
group's mean and variance, so the edge j -> i weighs φ = |∂y_i/∂x_j · x_j| at the input's own
values (design notes 2b). With μ and σ² the group's mean and (biased) variance over its n
elements, σ = √(σ² + ε), x̂ = (x − μ)/σ and γ_i the scale applied to output i:

    ∂y_i/∂x_j = γ_i / σ · (δ_ij − 1/n − x̂_i · x̂_j / n)

* LayerNormalization: the groups are the trailing axes from ``axis`` (default −1), γ the
  constant Scale broadcast to them. Its optional Mean and InvStdDev outputs are statistics, not
  neurons: an op reading them is refused. ``stash_type`` only sets the precision onnxruntime
  computes in; edges are computed in float64.
* InstanceNormalization: one group per channel (its spatial positions), γ = scale[channel].
* GroupNormalization (opset 21): ``num_groups`` groups of consecutive channels with their
  spatial positions; γ = scale[channel]. Opsets 18 to 20, one scale per group, are deprecated:
  onnx's checker and onnxruntime refuse them. onnxruntime has no kernel for the op: loading a
  model (its basic optimizations) replaces the op by its function body, planned op by op; this
  rule applies to a model planned as written (``plan.build_plan``).
* LRN (size, alpha, beta, bias): y_c = x_c / d_c^β with d_c = bias + alpha/size · Σ x_k² over
  the channels k of c's window [c − ⌊(size−1)/2⌋, c + ⌈(size−1)/2⌉], at each spatial position.
  Edges go from each channel k of the window to c, with
  ∂y_c/∂x_k = δ_ck / d_c^β − 2β · alpha/size · x_c · x_k / d_c^(β+1).

Biases add no edge. An edge whose derivative is exactly zero (γ_i = 0, a group of one element)
is not in the graph. An input at which a derivative is infinite or undefined (a group without
variance and epsilon 0, an LRN denominator that is not positive) is refused (BadInputError).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import BadInputError
from . import EdgePattern, EdgeRule, attribute, edge_rule, refuse
from .windows import window_inputs


def _finite(node, values: np.ndarray) -> np.ndarray:
    """The edge values, unless the input makes a derivative infinite or undefined: the op's own
    output is then not finite either."""
    if not np.isfinite(values).all():
        raise BadInputError(f"node {node.name or '(unnamed)'!r} ({node.op_type}) has an infinite or undefined "
                            "derivative at this input (a normalized group without variance, a denominator that "
                            "is not positive); check the input and the node's epsilon or bias")
    return values


class GroupRule(EdgeRule):
    """Ops whose Jacobian is dense within groups of the input and zero across groups.

    The per-sample input is viewed as (outer, n, inner): group g = (o, k) holds the n elements
    (o, 0..n−1, k). Each part of the pattern is one source element, with an edge to each of the n
    elements of its group; ``weight`` holds the constant factor of the derivative that belongs to
    the target (the scale γ_i of a normalization, 1 for Softmax). Subclasses give ``derivative``.
    """

    def _set_groups(self, outer: int, n: int, inner: int, target_factor: np.ndarray):
        self.outer, self.n, self.inner = outer, n, inner
        self.target_factor = target_factor  # flat, per output element
        self.out_shape = self.in_shape
        self.outer_size = outer * n * inner
        self.edges_per_outer = n

    def build_pattern(self, part: slice) -> EdgePattern:
        sources = range(self.outer_size)[part]
        group, j = np.divmod(np.arange(sources.start, sources.stop, dtype=np.int64), self.n)
        first = self._first_elements(group)
        dst = (first[:, None] + np.arange(self.n, dtype=np.int64)[None, :] * self.inner).ravel()
        return EdgePattern(src=np.repeat(first + j * self.inner, self.n), dst=dst, weight=self.target_factor[dst])

    def _first_elements(self, group: np.ndarray) -> np.ndarray:
        """Flat index of element (o, 0, k) of each group g = o·inner + k."""
        o, k = np.divmod(group, self.inner)
        return o * self.n * self.inner + k

    def edge_values(self, h: np.ndarray, pattern: EdgePattern | None = None,
                    context: dict | None = None) -> np.ndarray:
        p = self.pattern if pattern is None else pattern
        if not len(p):
            return np.zeros(0)
        group = (p.src // (self.n * self.inner)) * self.inner + p.src % self.inner
        # A pattern's parts are consecutive, so its groups are a range: statistics for those only.
        first = int(group.min())
        groups = np.arange(first, int(group.max()) + 1, dtype=np.int64)
        x = h[self._first_elements(groups)[:, None] + np.arange(self.n, dtype=np.int64)[None, :] * self.inner]
        i = (p.dst // self.inner) % self.n
        j = (p.src // self.inner) % self.n
        with np.errstate(all="ignore"):
            values = p.weight * self.derivative(x, group - first, i, j) * h[p.src]
        return _finite(self.node, values)

    def derivative(self, x: np.ndarray, g: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """∂y_i/∂x_j of each edge (without the target's constant factor), for edges in groups
        ``g`` (rows of ``x``, each group's input values) from position j to position i."""
        raise NotImplementedError


class NormalizationRule(GroupRule):
    """(x − μ)/σ within each group, times γ: see the module docstring."""

    rule_name = "normalization"

    def __init__(self, node, in_shape, constants, options):
        super().__init__(node, in_shape, constants, options)
        if len(node.input) < 2 or not node.input[1]:
            raise refuse(node, "it has no scale input")
        if node.input[0] in constants or any(name not in constants for name in node.input[1:] if name):
            raise refuse(node, "onnxtopo supports it with the data as its one computed input and constant "
                               "scale and bias")
        self.epsilon = float(attribute(node, "epsilon", 1e-5))

    def derivative(self, x, g, i, j):
        mean = x.mean(axis=1, keepdims=True)
        sigma = np.sqrt(((x - mean) ** 2).mean(axis=1) + self.epsilon)
        normalized = (x - mean) / sigma[:, None]
        n = x.shape[1]
        return ((i == j) - 1.0 / n - normalized[g, i] * normalized[g, j] / n) / sigma[g]


@edge_rule("LayerNormalization")
class LayerNormalizationRule(NormalizationRule):
    def __init__(self, node, in_shape, constants, options):
        super().__init__(node, in_shape, constants, options)
        rank = len(in_shape) + 1  # with the batch axis
        axis = int(attribute(node, "axis", -1))
        axis = axis + rank if axis < 0 else axis
        if axis == 0:
            raise refuse(node, "it normalizes over the batch axis", "onnxtopo analyzes each sample on its own")
        if not 0 < axis < rank:
            raise refuse(node, f"its axis {attribute(node, 'axis')} is outside its input's {rank} axes")
        normalized = tuple(in_shape[axis - 1:])
        scale = np.asarray(constants[node.input[1]], dtype=np.float64)
        try:
            fits = np.broadcast_shapes(scale.shape, normalized) == normalized
        except ValueError:
            fits = False
        if not fits:
            raise refuse(node, f"its scale of shape {scale.shape} does not broadcast to the normalized "
                               f"shape {normalized}")
        outer = math.prod(in_shape[:axis - 1])
        self._set_groups(outer, math.prod(normalized), 1, np.tile(np.broadcast_to(scale, normalized).ravel(), outer))


def _channels(node, in_shape) -> tuple[int, int]:
    """(channels, spatial size) of an input (C, spatial...)."""
    if not in_shape:
        raise refuse(node, f"its input has per-sample shape {in_shape}, expected (C, ...)")
    return in_shape[0], math.prod(in_shape[1:])


def _channel_scale(node, constants, channels: int) -> np.ndarray:
    scale = np.asarray(constants[node.input[1]], dtype=np.float64)
    if scale.shape != (channels,):
        raise refuse(node, f"its scale of shape {scale.shape} does not hold one value per channel ({channels})")
    return scale


@edge_rule("InstanceNormalization")
class InstanceNormalizationRule(NormalizationRule):
    def __init__(self, node, in_shape, constants, options):
        super().__init__(node, in_shape, constants, options)
        channels, spatial = _channels(node, in_shape)
        scale = _channel_scale(node, constants, channels)
        self._set_groups(channels, spatial, 1, np.repeat(scale, spatial))


@edge_rule("GroupNormalization")
class GroupNormalizationRule(NormalizationRule):
    def __init__(self, node, in_shape, constants, options):
        super().__init__(node, in_shape, constants, options)
        channels, spatial = _channels(node, in_shape)
        groups = attribute(node, "num_groups")
        if groups is None or groups < 1 or channels % groups:
            raise refuse(node, f"num_groups {groups} does not divide its {channels} channels")
        scale = _channel_scale(node, constants, channels)
        self._set_groups(groups, channels // groups * spatial, 1, np.repeat(scale, spatial))


@edge_rule("LRN")
class LRNRule(EdgeRule):
    """Edges from each channel of the window to its centre, at every spatial position.

    Parts are spatial positions; each holds one edge per (window channel, centre channel) pair.
    """

    rule_name = "lrn"

    def __init__(self, node, in_shape, constants, options):
        super().__init__(node, in_shape, constants, options)
        channels, self.spatial = _channels(node, in_shape)
        size = attribute(node, "size")
        if size is None or size < 1:
            raise refuse(node, f"its size {size} is not a positive window size")
        self.size = int(size)
        self.alpha = float(attribute(node, "alpha", 1e-4))
        self.beta = float(attribute(node, "beta", 0.75))
        self.bias = float(attribute(node, "bias", 1.0))
        # Offsets beyond the channel count never reach a channel: clipping them keeps a hostile
        # size from allocating (channels × size) windows.
        before, after = min((self.size - 1) // 2, channels - 1), min(self.size // 2, channels - 1)
        self.windows, self.valid = window_inputs((channels,), (channels,), (before + after + 1,), (1,), (1,),
                                                 (before,))
        self.window_channel = self.windows[self.valid]
        self.centre_channel = np.broadcast_to(np.arange(channels)[:, None], self.windows.shape)[self.valid]
        self.out_shape = self.in_shape
        self.outer_size = self.spatial
        self.edges_per_outer = len(self.window_channel)

    def build_pattern(self, part: slice) -> EdgePattern:
        positions = np.arange(self.spatial, dtype=np.int64)[part][:, None]
        src = (self.window_channel[None, :] * self.spatial + positions).ravel()
        dst = (self.centre_channel[None, :] * self.spatial + positions).ravel()
        return EdgePattern(src=src, dst=dst, weight=np.ones(src.size))

    def edge_values(self, h: np.ndarray, pattern: EdgePattern | None = None,
                    context: dict | None = None) -> np.ndarray:
        p = self.pattern if pattern is None else pattern
        if not len(p):
            return np.zeros(0)
        position = p.src % self.spatial
        first = int(position.min())
        x = h.reshape(-1, self.spatial)[:, first:int(position.max()) + 1]  # (channel, position)
        squares = np.where(self.valid[:, :, None], x[np.where(self.valid, self.windows, 0)] ** 2, 0.0).sum(axis=1)
        d = self.bias + self.alpha / self.size * squares
        centre, k, s = p.dst // self.spatial, p.src // self.spatial, position - first
        d_c, x_c, x_k = d[centre, s], x[centre, s], x[k, s]
        with np.errstate(all="ignore"):
            derivative = ((centre == k) * d_c ** -self.beta
                          - 2 * self.beta * self.alpha / self.size * x_c * x_k * d_c ** (-self.beta - 1))
            values = derivative * h[p.src]
        return _finite(self.node, values)

