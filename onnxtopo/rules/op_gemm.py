"""Gemm and MatMul with a constant weight: a dense block of edges.

w_{u->v} = alpha · B[u, v] after transB (MatMul: alpha = 1), for Gemm's A or MatMul's left
operand as the activation (Gemm's transA = 0). MatMul(W, X) with a constant W multiplies each
column of the activation: w = W[m, k] from (…, k, n) to (…, m, n). Gemm's C adds no edge.
Gemm's operands are matrices whose first axis is the batch: with the activation as B, or as A
with transA = 1, the op would sum over the batch or move it off the first axis, so it is refused.
"""

from __future__ import annotations

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
        self.matrix = matrix
        self.out_shape = (*self.in_shape[:-1], matrix.shape[1])
        self.outer_size = matrix.shape[0]  # parts are input rows k, for every leading index
        self.edges_per_outer = int(np.prod(self.in_shape[:-1])) * matrix.shape[1]

    def nonzero_edges(self, h: np.ndarray, max_edges: int | None = None, context: dict | None = None):
        """Only the rows of inputs with h ≠ 0 are built: after a ReLU most rows are skipped."""
        k_all, n = self.matrix.shape
        active = np.flatnonzero(h)  # flat (lead, k) positions, ascending: pattern order
        rows_per_chunk = len(active) if max_edges is None else max(1, max_edges // max(n, 1))
        for start in range(0, len(active), max(rows_per_chunk, 1)):
            rows = active[start:start + rows_per_chunk]
            values = (h[rows, None] * self.matrix[rows % k_all]).ravel()
            src = np.repeat(rows, n)
            dst = (np.repeat(rows // k_all, n) * n + np.tile(np.arange(n), len(rows)))
            nonzero = np.flatnonzero(values)
            yield src[nonzero], dst[nonzero], values[nonzero]

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


@edge_rule("Gemm")
class GemmRule(DenseRule):
    def __init__(self, node, in_shape, constants, options):
        super().__init__(node, in_shape, constants, options)
        # Gemm's operands are matrices whose rows are the batch only for A without transA: any
        # other place for the activation puts the batch on a contracted or an output column axis.
        if node.input[1] not in constants:
            trans_b = attribute(node, "transB", 0)
            raise refuse(node, "its operand B is an activation, whose first axis (the batch) is "
                               + ("the output's column axis (Y = A·Bᵀ puts the batch second)" if trans_b
                                  else "summed over (Y = A·B mixes the samples of a batch)"),
                         "export the layer as Gemm(x, W) or MatMul(x, W), the activation first")
        if len(node.input) > 2 and node.input[2] and node.input[2] not in constants:
            raise refuse(node, "its bias C is computed at run time", "export the sum as a separate Add")
        if attribute(node, "transA", 0):
            raise refuse(node, "transA=1 makes the activation's first axis (the batch) Gemm's summed axis K, "
                               "mixing the samples of a batch", "export the layer with transA=0")
        if not in_shape:
            raise refuse(node, f"its input A has per-sample shape {in_shape}, expected (K,)")
        # Per-sample rank 2: A's rows merge the batch with another axis (jax2onnx writes a dense
        # layer over tokens as (batch × tokens, K) · B); each row is then a dense layer of its own.
        b = np.asarray(constants[node.input[1]], dtype=np.float64)
        if attribute(node, "transB", 0):
            b = b.T
        self._set_matrix(float(attribute(node, "alpha", 1.0)) * b)


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
