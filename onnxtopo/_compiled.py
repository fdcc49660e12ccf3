"""Compiled loops of the forest engine (numba), imported only when the engine first runs.

Each loop here carries a dependency from one step to the next (a union-find, a counting sort's
cursor), which numpy cannot express without a Python loop per element. Compilations are cached
on disk (``cache=True``): a process pays for loading them once, not for compiling them.

Entry order (the order in which a superlevel filtration adds edges) is φ decreasing, then edge
index increasing. φ is a positive float64, whose bit pattern, read as an integer, orders like
its value: a stable radix sort of integer keys gives entry order exactly, ties included.

Edge sets are passed around as (src, dst, phi, index) tuples of arrays; a block of edges whose
indices run from ``first`` on has an empty index array.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_DIGIT_BITS = 11
#: φ values sampled to choose a Filter-Kruskal pivot.
PIVOT_SAMPLE = 1024
_TOP = np.int64(0x7FFFFFFFFFFFFFFF)
#: The index array of a block whose indices are consecutive.
NO_INDEX = np.empty(0, np.int64)


@njit(cache=True, nogil=True)
def _find(parent, v):
    while parent[v] != v:
        parent[v] = parent[parent[v]]
        v = parent[v]
    return v


@njit(cache=True, nogil=True)
def _stable_order(keys):
    """The stable argsort of non-negative int64 ``keys`` (LSD radix sort, 11-bit digits)."""
    n = keys.size
    order = np.arange(n)
    if n < 2:
        return order
    mask = (1 << _DIGIT_BITS) - 1
    n_digits = 0
    top = keys.max()
    while top > 0:
        top >>= _DIGIT_BITS
        n_digits += 1
    count = np.zeros((n_digits, mask + 1), np.int64)  # every digit's histogram, in one pass
    for i in range(n):
        k = keys[i]
        for d in range(n_digits):
            count[d, (k >> (d * _DIGIT_BITS)) & mask] += 1
    keys = keys.copy()
    spare_keys = np.empty(n, np.int64)
    spare = np.empty(n, np.int64)
    for d in range(n_digits):
        if count[d].max() == n:  # a digit all keys share moves nothing
            continue
        start = np.empty(mask + 1, np.int64)
        total = 0
        for b in range(mask + 1):
            start[b] = total
            total += count[d, b]
        shift = d * _DIGIT_BITS
        for i in range(n):
            k = keys[i]
            j = start[(k >> shift) & mask]
            start[(k >> shift) & mask] = j + 1
            spare_keys[j] = k
            spare[j] = order[i]
        keys, spare_keys = spare_keys, keys
        order, spare = spare, order
    return order


@njit(cache=True, nogil=True)
def decreasing_order(values):
    """The stable argsort of positive (or +inf) float64 ``values``, largest first."""
    bits = values.view(np.int64)
    keys = np.empty(values.size, np.int64)
    for i in range(values.size):
        keys[i] = _TOP - bits[i]
    return _stable_order(keys)


@njit(cache=True, nogil=True)
def take(edges, order):
    src, dst, phi, index = edges
    return src[order], dst[order], phi[order], index[order]


@njit(cache=True, nogil=True)
def _index(index, first, i):
    return index[i] if index.size else first + i


@njit(cache=True, nogil=True)
def labels(parent):
    """Each vertex's root: a pass over the edges then reads two labels per edge, no chains."""
    label = np.empty(parent.size, np.int64)
    for v in range(parent.size):
        label[v] = _find(parent, v)
    return label


@njit(cache=True, nogil=True)
def _kruskal(edges, order, parent):
    """The edges ``order`` (positions in entry order) that join two components, joined."""
    src, dst = edges[0], edges[1]
    joined = np.empty(order.size, np.int64)
    count = 0
    for p in order:
        a, b = _find(parent, src[p]), _find(parent, dst[p])
        if a != b:
            parent[b] = a
            joined[count] = p
            count += 1
    return take(edges, joined[:count])


@njit(cache=True, nogil=True)
def pivot(sample, n_edges, batch):
    """A φ with about ``batch`` of ``n_edges`` edges at or above it, from a sample of their φ."""
    sample = np.sort(sample)
    return sample[sample.size - 1 - (sample.size * batch) // n_edges]


@njit(cache=True, nogil=True)
def scan_block(src, dst, phi, index, first, pivot, strongest, first_edge):
    """One pass over a block of edges (``index``, or indices from ``first`` on if it is empty).

    Updates in place each vertex's first edge in entry order so far: ``strongest`` (its φ) and
    ``first_edge`` (its index, src and dst, by row); returns the edges with φ ≥ ``pivot``.
    """
    keep = np.empty(src.size, np.int64)
    n_keep = 0
    for i in range(src.size):
        w = phi[i]
        e = _index(index, first, i)
        for v in (src[i], dst[i]):
            if w > strongest[v] or (w == strongest[v] and e < first_edge[0, v]):
                strongest[v] = w
                first_edge[0, v] = e
                first_edge[1, v] = src[i]
                first_edge[2, v] = dst[i]
        if w >= pivot:
            keep[n_keep] = i
            n_keep += 1
    return _block_edges(src, dst, phi, index, first, keep[:n_keep])


@njit(cache=True, nogil=True)
def filter_block(src, dst, phi, index, first, pivot, label):
    """The edges of a block with φ < ``pivot`` that join two components (by root ``label``)."""
    keep = np.empty(src.size, np.int64)
    n_keep = 0
    for i in range(src.size):
        if phi[i] < pivot and label[src[i]] != label[dst[i]]:
            keep[n_keep] = i
            n_keep += 1
    return _block_edges(src, dst, phi, index, first, keep[:n_keep])


@njit(cache=True, nogil=True)
def _block_edges(src, dst, phi, index, first, keep):
    idx = np.empty(keep.size, np.int64)
    for j in range(keep.size):
        idx[j] = _index(index, first, keep[j])
    return src[keep], dst[keep], phi[keep], idx


@njit(cache=True, nogil=True)
def join_first_edges(strongest, first_edge, parent):
    """Borůvka's step: each vertex's first edge in entry order is in the forest (the heaviest
    edge across the cut between the vertex and the rest). Joins them in ``parent``, returns them."""
    n = strongest.size
    edges = (np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n), np.empty(n, np.int64))
    count = 0
    for v in range(n):
        if strongest[v] > 0:
            s, d = first_edge[1, v], first_edge[2, v]
            a, b = _find(parent, s), _find(parent, d)
            if a != b:  # else it is also the first edge of its other end, already joined
                parent[b] = a
                edges[0][count], edges[1][count] = s, d
                edges[2][count], edges[3][count] = strongest[v], first_edge[0, v]
                count += 1
    return take(edges, np.arange(count))


@njit(cache=True, nogil=True)
def join_in_entry_order(edges, parent, batch):
    """Kruskal over ``edges`` (in index order), continuing the forest in ``parent``: the edges
    that join it, by Filter-Kruskal rounds, in no particular order.

    Each round sorts about ``batch`` of the heaviest edges left and joins them; a lighter edge
    whose endpoints are then connected closes a cycle of edges that enter before it and can
    never join, so only the lighter edges between components go on. Heavy means φ ≥ the pivot,
    light φ < it: ties never straddle a round. ``parent`` must hold only edges that enter before
    all of ``edges``, or that are in the forest whatever comes (Borůvka's).
    """
    size = min(edges[0].size, max(parent.size - 1, 0))
    joined = (np.empty(size, np.int64), np.empty(size, np.int64), np.empty(size), np.empty(size, np.int64))
    count = 0
    while edges[0].size:
        phi = edges[2]
        cut = -np.inf
        if phi.size > 2 * batch:
            cut = pivot(phi[::phi.size // PIVOT_SAMPLE + 1], phi.size, batch)
        heavy = np.flatnonzero(phi >= cut)
        found = _kruskal(take(edges, heavy), decreasing_order(phi[heavy]), parent)
        end = count + found[0].size
        joined[0][count:end], joined[1][count:end] = found[0], found[1]
        joined[2][count:end], joined[3][count:end] = found[2], found[3]
        count = end
        if heavy.size == phi.size:
            break
        label = labels(parent)
        src, dst = edges[0], edges[1]
        keep = np.empty(phi.size, np.int64)
        n_keep = 0
        for i in range(phi.size):
            if phi[i] < cut and label[src[i]] != label[dst[i]]:
                keep[n_keep] = i
                n_keep += 1
        edges = take(edges, keep[:n_keep])
    return take(joined, np.arange(count))


@njit(cache=True, nogil=True)
def entry_sorted(edges):
    """Edges in entry order: φ decreasing, then index."""
    edges = take(edges, _stable_order(edges[3]))
    return take(edges, decreasing_order(edges[2]))


@njit(cache=True, nogil=True)
def elder_pairing(src, dst, entry, n_vertices):
    """Kruskal's union-find over the forest's edges in entry order, with the elder rule.

    Returns, per forest edge, the vertex whose class it kills (the earliest vertex, by
    ``entry`` position, of the younger component), and per vertex the earliest vertex of its
    component.
    """
    parent = np.arange(n_vertices)
    oldest = np.arange(n_vertices)  # per root: the component's earliest vertex, carrying its class
    born = np.empty(src.size, np.int64)
    for k in range(src.size):
        a, b = _find(parent, src[k]), _find(parent, dst[k])
        if entry[oldest[a]] > entry[oldest[b]]:
            a, b = b, a
        born[k] = oldest[b]
        parent[b] = a
    eldest = np.empty(n_vertices, np.int64)
    for v in range(n_vertices):
        eldest[v] = oldest[_find(parent, v)]
    return born, eldest
