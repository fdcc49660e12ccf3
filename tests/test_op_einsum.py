"""Einsum with constant operands (rules/op_einsum.py): a linear op.

Every case is a small network (conftest.Net): x -> branches with constant weights -> the op (tensor
"p") -> Reshape to (batch, -1) -> MatMul. The edges are checked against edges enumerated with plain
loops over every index assignment of the equation, and onnxruntime's output rebuilt from the signed
edge values. (Einsum of two activations is tested with the products, in test_op_product.py.)
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from onnx import helper

import onnxtopo
from onnxtopo.rules.op_einsum import einsum_rules

from conftest import NET_BATCH, Net, analyzed, assert_same_edges, flat_index, size_of, vertex_ids

BATCH = NET_BATCH  # conftest.Net's batch
TOL = {"rtol": 1e-4, "atol": 1e-6}  # the analysis runs the optimized model: fused kernels round apart


# --------------------------------------------------------------------------------------------
# Linear ops: Einsum with constant operands, Mean
# --------------------------------------------------------------------------------------------

def brute_derivatives(equation, operands, wrt):
    """{(u, v): ∂y_v/∂X_u} for the operand at position ``wrt`` of a letters-only einsum, by plain
    loops over every assignment of its indices; a size-1 axis broadcasts."""
    lhs, out = equation.split("->")
    terms = lhs.split(",")
    sizes = {}
    for term, value in zip(terms, operands):
        for letter, n in zip(term, np.shape(value)):
            sizes[letter] = max(sizes.get(letter, 1), n)
    letters = sorted(sizes)
    derivatives = {}
    for values in itertools.product(*(range(sizes[c]) for c in letters)):
        index = dict(zip(letters, values))
        at = [tuple(index[c] if n > 1 else 0 for c, n in zip(term, np.shape(v))) for term, v in zip(terms, operands)]
        if any(len({index[c] for c in term if c == d}) > 1 for term in terms for d in term):
            continue
        coefficient = 1.0
        for i, (position, value) in enumerate(zip(at, operands)):
            if i != wrt:
                coefficient *= float(np.asarray(value)[position])
        u = flat_index(at[wrt], np.shape(operands[wrt]))
        v = flat_index(tuple(index[c] for c in out), tuple(sizes[c] for c in out))
        derivatives[(u, v)] = derivatives.get((u, v), 0.0) + coefficient
    return derivatives


def einsum_linear(equation, per_sample, a_shape, constants, out_shape, *, single=False):
    """Einsum of one activation "a" (a layer from the flattened input) and constants;
    ``per_sample`` is the same equation without the batch index, letters only, for the loops."""
    net = Net(11, (3, 4))
    net.flat_dense("a", size_of(a_shape), a_shape)
    net.source("a", "a_flat")
    names = [net.const(f"C{i}", shape) if shape else "a" for i, shape in enumerate(constants)]
    case = net.finish(helper.make_node("Einsum", names, ["p"], name="op", equation=equation), out_shape)
    case.per_sample = per_sample
    return case


LINEAR_EINSUM_CASES = {
    "matmul-like": lambda: einsum_linear("nij,jk->nik", "ij,jk->ik", (3, 4), [None, (4, 5)], (3, 5)),
    "implicit": lambda: einsum_linear("bij,jk", "ij,jk->ik", (3, 4), [None, (4, 5)], (3, 5)),
    "permuted-output": lambda: einsum_linear("nij,kj->nki", "ij,kj->ki", (3, 4), [None, (5, 4)], (5, 3)),
    "ellipsis": lambda: einsum_linear("...ij,jk->...ik", "bij,jk->bik", (2, 3, 4), [None, (4, 5)], (2, 3, 5)),
    "diagonal": lambda: einsum_linear("nii,ik->nk", "ii,ik->k", (4, 4), [None, (4, 3)], (3,)),
    "trace": lambda: einsum_linear("nii->n", "ii->", (4, 4), [None], ()),
    "summed-in-constant": lambda: einsum_linear("nij,jkl->nik", "ij,jkl->ik", (3, 4), [None, (4, 5, 2)], (3, 5)),
    "constant-first-uppercase": lambda: einsum_linear("Jk,nIJ->nkI", "Jk,IJ->kI", (3, 4), [(4, 5), None], (5, 3)),
    "constant-batch-broadcast": lambda: einsum_linear("nij,nj->ni", "ij,j->i", (3, 4), [None, (1, 4)], (3,)),
    "two-constants": lambda: einsum_linear("nij,jk,kl->nil", "ij,jk,kl->il", (3, 4), [None, (4, 5), (5, 2)], (3, 2)),
    "single-operand-sum": lambda: einsum_linear("nij->nj", "ij->j", (3, 4), [None], (4,)),
}


@pytest.mark.parametrize("name", list(LINEAR_EINSUM_CASES))
def test_linear_einsum(name):
    case = LINEAR_EINSUM_CASES[name]()
    plan, target, got = analyzed(case)
    (step,) = [s for s in plan.steps if s.target == target.index]
    assert step.rule.rule_name == "einsum" and step.rule.reads == ()
    ids = vertex_ids(plan, case, "a")
    position = list(case.op.input).index("a")
    terms = case.per_sample.split("->")[0].split(",")
    for n in range(BATCH):
        h = case.acts["a"][n].astype(np.float64).ravel()
        # a constant's size-1 batch axis, absent from the per-sample equation, is dropped
        operands = [h.reshape(case.acts["a"].shape[1:]) if operand == "a" else
                    case.inits[operand].astype(np.float64).reshape(case.inits[operand].shape[-len(term):])
                    for operand, term in zip(case.op.input, terms)]
        expected = {(ids[u], target.offset + v): abs(w * h[u])
                    for (u, v), w in brute_derivatives(case.per_sample, operands, position).items() if w * h[u] != 0}
        assert_same_edges(got[n], expected, **TOL, what=f"{name}, sample {n}")
        # onnxruntime's output, rebuilt from the signed edge values
        out = np.zeros(target.size)
        np.add.at(out, step.rule.pattern.dst, step.rule.edge_values(h, step.rule.pattern))
        np.testing.assert_allclose(out, case.acts["p"][n].ravel(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("equation, shapes, reason", [
    ("nij,nj->ni", [(None, 3, 4), (2, 4)], "one value per sample"),
    ("nij,njj->ni", [(None, 3, 4), (None, 4, 5)], "a diagonal"),
    ("nij,njk->nik", [(None, 3, 4), (None, 5, 2)], "index 'j' has sizes 4 and 5"),
    ("n...i...,nj->nj", [(None, 3, 4), (None, 4)], "more than one ellipsis"),
    ("n1,nj->nj", [(None, 3), (None, 4)], "other than letters"),
    ("nij,nj->nji", [(None, 3, 4, 5), (None, 4)], "does not fit an operand of rank 4"),
    ("n...,n...->n", [(None, 3), (None, 3)], "its output has none"),
    ("nij,nj->nii", [(None, 3, 4), (None, 4)], "repeats an index"),
    ("nij,nj->nk", [(None, 3, 4), (None, 4)], "index 'k', which no operand has"),
    ("nij->nij", [(None, 3, 4), (None, 4)], "has 1 operands, the node 2"),
    ("nnj,nj->nj", [(None, 3, 4), (None, 4)], "does not keep the batch axis"),
])
def test_einsum_refusals(equation, shapes, reason):
    node = helper.make_node("Einsum", ["a", "b"], ["p"], name="op", equation=equation)
    constants = {f"{n}": np.zeros(s) for n, s in zip("ab", shapes) if s[0] is not None}
    names = [n for n in "ab" if n not in constants]
    with pytest.raises(onnxtopo.UnsupportedOpError) as info:
        einsum_rules(node, names, [s[1:] for s in shapes if s[0] is None], constants, None)
    message = str(info.value)
    assert "'op' (Einsum)" in message and reason in message, message
