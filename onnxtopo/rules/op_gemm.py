"""Gemm and MatMul with a constant weight: a dense block of edges.

w_{u->v} = alpha · B[u, v] after transB (MatMul: alpha = 1), for Gemm's A or MatMul's left
operand as the activation (Gemm's transA = 0). MatMul(W, X) with a constant W multiplies each
column of the activation: w = W[m, k] from (…, k, n) to (…, m, n). Gemm's C adds no edge.
Gemm's operands are matrices whose first axis is the batch: with the activation as B, or as A
with transA = 1, the op would sum over the batch or move it off the first axis, so it is refused.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from . import EdgePattern, EdgeRule, attribute, edge_rule, refuse


class DenseRule(EdgeRule):
    """Edges (lead…, k) -> (lead…, n) with weight matrix[k, n], for every leading index."""

    rule_name = "dense"
    matrix: np.ndarray

    def _set_matrix(self, matrix):
        k = self.in_shape[-1] if self.in_shape else None
        if matrix.ndim != 2 or matrix.shape[0] != k:
            raise refuse(
                self.node,
                f"its weight of shape {matrix.shape} does not fit an activation of per-sample "
                f"shape {self.in_shape}",
            )
        self.matrix = np.ascontiguousarray(matrix, np.float64)
        self.out_shape = (*self.in_shape[:-1], matrix.shape[1])
        self.outer_size = matrix.shape[0]  # parts are input rows k, for every leading index
        self.edges_per_outer = int(np.prod(self.in_shape[:-1])) * matrix.shape[1]

    def nonzero_edges(self, h: np.ndarray, max_edges: int | None = None, context: dict | None = None):
        """Only the rows of inputs with h ≠ 0 are built: after a ReLU most rows are skipped."""
        from .. import _compiled

        return self.global_nonzero_edges(h, max_edges, _compiled.NO_INDEX, 0, _compiled.NO_SCALE)

    def global_nonzero_edges(self, h, max_edges, input_vertices, offset, scale):
        """``nonzero_edges`` in global vertex ids, as ``_compiled.global_edges`` maps them (with
        ``input_vertices`` not empty), from one compiled loop per chunk of input rows."""
        from .. import _compiled

        n = self.matrix.shape[1]
        active = np.flatnonzero(h)  # flat (lead, k) positions, ascending: pattern order
        rows_per_chunk = max(1, len(active) if max_edges is None else max_edges // max(n, 1))
        for start in range(0, max(len(active), 1), rows_per_chunk):  # one block at least, maybe empty
            yield _compiled.dense_edges(self.matrix, h, active[start:start + rows_per_chunk], input_vertices,
                                        offset, scale)

    # The compiled loop beats even a kept pattern: it never reads the rows of zero inputs.
    prefer_global_edges = True

    @cached_property
    def smallest_weight(self) -> float:
        """The smallest |w| (0 if a weight is 0): whether a product can be 0 (``DenseEdges``)."""
        return float(np.abs(self.matrix).min()) if self.matrix.size else 0.0

    def forest_passes(self, h, scale) -> DenseEdges:
        """The passes ``homology.step_forest`` reduces this step's edges with, for activations ``h``
        (0 where the input is a constant) and the folded ``scale`` of the targets (or empty)."""
        return DenseEdges(self, h, scale)

    def in_place_blocks(self, h, max_edges, input_vertices, offset, scale):
        """``global_nonzero_edges``' blocks as ``DenseEdges`` in global ids, read in place by the
        forest engine instead of written out (one per chunk of input rows)."""
        n = self.matrix.shape[1]
        active = np.flatnonzero((h != 0) & (input_vertices >= 0))
        rows_per_chunk = max(1, len(active) if max_edges is None else max_edges // max(n, 1))
        for start in range(0, len(active), rows_per_chunk):
            yield DenseEdges(self, h, scale, active[start:start + rows_per_chunk], input_vertices, offset)

    def build_pattern(self, part: slice) -> EdgePattern:
        k_all, n = self.matrix.shape
        k = np.arange(k_all)[part]
        lead = int(np.prod(self.in_shape[:-1]))
        base = np.arange(lead)[:, None, None]
        shape = (lead, len(k), n)
        src = base * k_all + k[None, :, None]
        dst = base * n + np.arange(n)[None, None, :]
        return EdgePattern(
            src=np.broadcast_to(src, shape).ravel().astype(np.int64),
            dst=np.broadcast_to(dst, shape).ravel().astype(np.int64),
            weight=np.broadcast_to(self.matrix[k][None], shape).ravel(),
        )


#: A product of magnitudes above this is far from float64's underflow: it is never rounded to 0.
NO_UNDERFLOW = 1e-300


class DenseEdges:
    """A dense layer's edges from some of its input positions, read in place by compiled passes,
    never written out: ``homology.step_forest`` reduces a large step with them, the forest engine
    reads a small step's as a block (``homology.forest_persistence``).

    Vertex ids: ``source_ids[r]`` for input position r and ``target_offset`` + each flat output
    position; by default (step forests) local ones: the flat input positions, then h.size + the
    output positions. ``rows``: the input positions read (by default those with h ≠ 0).
    """

    def __init__(self, rule: DenseRule, h: np.ndarray, scale: np.ndarray, rows: np.ndarray | None = None,
                 source_ids: np.ndarray | None = None, target_offset: int | None = None):
        self.rule, self.h, self.scale = rule, h, scale
        self.rows = np.flatnonzero(h) if rows is None else rows
        self.source_ids = np.arange(h.size) if source_ids is None else source_ids
        self.target_offset = h.size if target_offset is None else target_offset
        self.phi = np.empty(0)  # every edge's φ, once kept_phi() asks for it
        self._loops = (rule.matrix, h, self.rows, scale, self.source_ids, self.target_offset)

    @cached_property
    def n_edges(self) -> int:
        """The number of edges (products ≠ 0) of the rows read: every product, unless a weight or
        scale is 0 or the smallest magnitudes could underflow, when they are counted."""
        from .. import _compiled

        smallest = self.rule.smallest_weight * (np.abs(self.h[self.rows]).min() if self.rows.size else 1.0)
        if self.scale.size:
            smallest *= np.abs(self.scale).min()
        if smallest > NO_UNDERFLOW:
            return self.rows.size * self.rule.matrix.shape[1]
        return _compiled.dense_edge_count(self.rule.matrix, self.h, self.rows, self.scale)

    def kept_phi(self) -> np.ndarray:
        """The array the next ``heavy`` pass fills with every edge's φ, in index order."""
        self.phi = np.empty(self.n_edges)
        return self.phi

    def sample(self, n: int) -> np.ndarray:
        """φ of ``n`` candidate edges of the whole step drawn uniformly (with a fixed seed: runs
        repeat exactly), 0 for a dropped one."""
        matrix = self.rule.matrix
        if not self.rule.candidate_count:
            return np.zeros(0)
        r, j = np.divmod(np.random.default_rng(0).integers(0, self.rule.candidate_count, n), matrix.shape[1])
        return self._values(r, j)

    def sample_edges(self, n: int) -> np.ndarray:
        """φ of about ``n`` of the edges read, evenly spread over them (no random generator to
        seed: this runs for every input of a small model)."""
        width = self.rule.matrix.shape[1]
        step = max(1, self.rows.size * width // max(n, 1))
        step += step % width == 0 and width > 1  # else one column only
        position = np.arange(0, self.rows.size * width, step)
        values = self._values(self.rows[position // width], position % width)
        return values[values > 0]

    def _values(self, r, j):
        matrix = self.rule.matrix
        values = matrix[r % matrix.shape[0], j] * self.h[r]
        if self.scale.size:
            values *= self.scale[(r // matrix.shape[0]) * matrix.shape[1] + j]
        return np.abs(values)

    def heavy(self, pivot, capacity, strongest, first_edge, first=0):
        from .. import _compiled

        return _compiled.dense_heavy_edges(*self._loops, first, pivot, capacity, strongest, first_edge, self.phi)

    def light(self, low, high, label, capacity, first=0):
        from .. import _compiled

        return _compiled.dense_light_edges(*self._loops, first, low, high, label, capacity)

    def crossing(self, first, component, n_components, best_phi, best_edge):
        from .. import _compiled

        every_product = self.n_edges == self.rows.size * self.rule.matrix.shape[1]
        _compiled.dense_crossing_edges(*self._loops, first, component, n_components, best_phi, best_edge,
                                       every_product)


class GemmRule(DenseRule):
    """Gemm(A, B) with the activation as A (transA = 0): the rows of A are the samples."""

    def __init__(self, node, in_shape, constants, options):
        super().__init__(node, in_shape, constants, options)
        if not in_shape:
            raise refuse(node, f"its input A has per-sample shape {in_shape}, expected (K,)")
        # Per-sample rank 2: A's rows merge the batch with another axis (jax2onnx writes a dense
        # layer over tokens as (batch × tokens, K) · B); each row is then a dense layer of its own.
        b = np.asarray(constants[node.input[1]], dtype=np.float64)
        if attribute(node, "transB", 0):
            b = b.T
        self._set_matrix(float(attribute(node, "alpha", 1.0)) * b)


class TransposedGemmRule(EdgeRule):
    """Gemm whose activation holds the samples along its columns: A with transA = 1 (A = Xᵀ), or
    the activation as B (Y = W·Xᵀ with transB = 1, or W·X where X = (K, batch)).

    Per sample the activation is a matrix X of R columns (R > 1 where the batch is merged with
    another axis) and the product contracts its K axis with the constant: the edge from X[k, r]
    to output (r, c) (or (c, r)) weighs the constant's coefficient of k in column c. The samples
    move between the output's axes: ``output_layout`` says where.
    """

    rule_name = "dense"

    def __init__(self, node, in_shape, constants, options):
        super().__init__(node, in_shape, constants, options)
        activation_is_a = node.input[0] not in constants
        trans_a, trans_b = attribute(node, "transA", 0), attribute(node, "transB", 0)
        alpha = float(attribute(node, "alpha", 1.0))
        other = np.asarray(constants[node.input[1 if activation_is_a else 0]], dtype=np.float64)
        if other.ndim != 2:
            raise refuse(node, f"its constant operand has shape {other.shape}, not a matrix")
        rows_first = activation_is_a or not trans_b  # X per sample is (K, R); else (R, K)
        if rows_first and len(in_shape) != 2:
            raise refuse(node, "its activation would contract the batch axis (Gemm's rows are the samples "
                               "only for A without transA)", "export the layer as Gemm(x, W) or MatMul(x, W)")
        k, r = (in_shape if len(in_shape) == 2 else (1, *in_shape))[::1 if rows_first else -1]
        if activation_is_a:  # Y (R, N) = Xᵀ · B
            weights = alpha * (other.T if trans_b else other)  # (K, N)
            self.out_shape = (weights.shape[1],) if r == 1 else (r, weights.shape[1])
            self._moves = (1, 0)
        else:  # Y (M, R) = A · X, or A · Xᵀ
            weights = alpha * (other if trans_a else other.T)  # (K, M)
            self.out_shape = (weights.shape[1], r)
            self._moves = (1, 1) if rows_first else (0, 1)
        if weights.shape[0] != k:
            raise refuse(node, f"its constant of shape {other.shape} does not fit an activation of per-sample "
                               f"shape {in_shape}")
        self.weights, self.k, self.r, self.rows_first, self.activation_is_a = weights, k, r, rows_first, activation_is_a
        self.outer_size, self.edges_per_outer = k, r * weights.shape[1]

    def output_layout(self, layout):
        """The samples leave along the output's axis (0 or 1) the product puts the activation's
        columns (or rows) on."""
        start, end = self._moves
        return layout if layout.axis != start else type(layout)(end, layout.outer, layout.inner)

    def build_pattern(self, part: slice) -> EdgePattern:
        c = self.weights.shape[1]
        k = np.arange(self.k)[part][:, None, None]
        r = np.arange(self.r)[None, :, None]
        col = np.arange(c)[None, None, :]
        shape = (k.shape[0], self.r, c)
        src = k * self.r + r if self.rows_first else r * self.k + k
        dst = r * c + col if self.activation_is_a else col * self.r + r
        return EdgePattern(src=np.broadcast_to(src, shape).ravel().astype(np.int64),
                           dst=np.broadcast_to(dst, shape).ravel().astype(np.int64),
                           weight=np.broadcast_to(self.weights[k[:, :, 0]][:, None, :], shape).ravel())


@edge_rule("Gemm")
def gemm_rule(node, in_shape, constants, options) -> EdgeRule:
    """Gemm with a constant operand; the activation as A (rows: samples) or anywhere else, when
    it holds the samples along its columns."""
    if len(node.input) < 2 or (node.input[0] in constants) == (node.input[1] in constants):
        raise refuse(node, "onnxtopo supports Gemm of one activation by a constant matrix")
    if len(node.input) > 2 and node.input[2] and node.input[2] not in constants:
        raise refuse(node, "its bias C is computed at run time", "export the sum as a separate Add")
    if node.input[0] not in constants and not attribute(node, "transA", 0):
        return GemmRule(node, in_shape, constants, options)
    return TransposedGemmRule(node, in_shape, constants, options)


class LeftDenseRule(EdgeRule):
    """MatMul(W, X) with a constant W (M, K): edges (…, k, n) -> (…, m, n) of weight W[m, k]."""

    rule_name = "dense-left"

    def __init__(self, node, in_shape, constants, options):
        super().__init__(node, in_shape, constants, options)
        self.matrix = np.asarray(constants[node.input[0]], dtype=np.float64)
        if self.matrix.ndim != 2 or len(in_shape) < 2 or in_shape[-2] != self.matrix.shape[1]:
            raise refuse(node, f"its constant left operand of shape {self.matrix.shape} does not fit an "
                               f"activation of per-sample shape {in_shape}")
        self.out_shape = (*in_shape[:-2], self.matrix.shape[0], in_shape[-1])
        self.outer_size = self.matrix.shape[1]  # parts are the activation's rows k
        self.edges_per_outer = int(np.prod(in_shape[:-2])) * self.matrix.shape[0] * in_shape[-1]

    def build_pattern(self, part: slice) -> EdgePattern:
        m_all, k_all = self.matrix.shape
        n = self.in_shape[-1]
        k = np.arange(k_all)[part]
        lead = np.arange(int(np.prod(self.in_shape[:-2])))
        l4, k4 = lead[:, None, None, None], k[None, :, None, None]
        m4, n4 = np.arange(m_all)[None, None, :, None], np.arange(n)[None, None, None, :]
        shape = (lead.size, k.size, m_all, n)
        src = (l4 * k_all + k4) * n + n4
        dst = (l4 * m_all + m4) * n + n4
        weight = self.matrix.T[k][None, :, :, None]
        return EdgePattern(src=np.broadcast_to(src, shape).ravel().astype(np.int64),
                           dst=np.broadcast_to(dst, shape).ravel().astype(np.int64),
                           weight=np.broadcast_to(weight, shape).ravel())


class RightDenseRule(DenseRule):
    def __init__(self, node, in_shape, constants, options):
        super().__init__(node, in_shape, constants, options)
        self._set_matrix(np.asarray(constants[node.input[1]], dtype=np.float64))


@edge_rule("MatMul")
def matmul_rule(node, in_shape, constants, options) -> EdgeRule:
    """MatMul with one constant 2-D operand, on either side of the activation."""
    left, right = (name in constants for name in node.input[:2])
    if right and not left:
        return RightDenseRule(node, in_shape, constants, options)
    if left and not right:
        return LeftDenseRule(node, in_shape, constants, options)
    raise refuse(node, "onnxtopo supports MatMul of an activation by a constant 2-D matrix, on either side")
