"""Compiled loops (numba) of edge production and of the forest engine, imported on first use.

Each loop here either fuses what would be several passes of numpy over every edge, or carries a
dependency from one step to the next (a union-find, a vertex's best edge so far), which numpy
cannot express without a Python loop per element. Compilations are cached on disk
(``cache=True``): a process pays for loading them once, not for compiling them.

The forest engine passes edge sets as (src, dst, phi, index) tuples of arrays. A block of the
edge stream, whose indices are consecutive, is passed as (src, dst, phi, NO_INDEX, index of
its first edge).
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
from numba import config, njit


def _writable(path: str) -> bool:
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return os.access(path, os.W_OK)


# numba caches next to this file or, where that is read-only (a system-wide install), in the
# user's cache directory; where neither can be written (no home either), it refuses to cache at
# all, and this module would not import: then the temporary directory holds the cache.
if not config.CACHE_DIR and not _writable(os.path.dirname(__file__)) and not _writable(
        os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "numba")):
    config.CACHE_DIR = os.path.join(tempfile.gettempdir(), f"onnxtopo-numba-{getattr(os, 'getuid', lambda: 0)()}")

#: The index array of a block whose edge indices are consecutive.
NO_INDEX = np.empty(0, np.int64)
#: The scale of a step without a folded affine map; the activations of a rule's own values.
NO_SCALE = NO_H = np.empty(0)
#: ``conv_windows``' input_vertices for sources in the step's own ids, as int32.
LOCAL_IDS = np.empty(0, np.int32)
#: Runs of keys tied in their packed bits longer than this are sorted by merge sort.
_SHORT_RUN = 16
_TOP = np.int64(0x7FFFFFFFFFFFFFFF)


@njit(cache=True, nogil=True)
def global_edges(src, dst, values, h, input_vertices, offset, scale, drop_zeros):
    """A step's edges in global vertex ids: sources through ``input_vertices`` (-1: a constant,
    which makes no edge), targets shifted by the layer's ``offset``, values scaled by their
    target's ``scale`` (if not empty); edges whose value is 0 dropped if ``drop_zeros``. With
    ``h`` (not empty), ``values`` are a linear rule's weights and each value is weight · h[src]."""
    n = src.size
    out_src, out_dst, out_values = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n)
    k = 0
    for i in range(n):
        u = input_vertices[src[i]]
        value = values[i] * h[src[i]] if h.size else values[i]
        if scale.size:
            value *= scale[dst[i]]
        # Written always, kept by moving on: no branch to mispredict on ReLU's random zeros.
        out_src[k], out_dst[k], out_values[k] = u, dst[i] + offset, value
        k += (u >= 0) & ((value != 0) | (not drop_zeros))
    return out_src[:k], out_dst[:k], out_values[:k]


@njit(cache=True, nogil=True)
def conv_windows(h, window_start, window_src, window_offset, first_group, stop_group, group_channels, n_in,
                 n_offsets, input_vertices):
    """The inputs of each window of a convolution's groups ``first_group .. stop_group-1`` that
    make edges (h ≠ 0, and not a constant where ``input_vertices`` is given), read once for all
    their output channels. Output position p reads, at kernel offset ``window_offset[j]``, the
    spatial input position ``window_src[j]`` for j in ``window_start[p] .. window_start[p+1]-1``
    (valid ones only). For the i-th group of the range and output position p, entries
    ``start[i·P + p] .. start[i·P + p + 1]-1`` come in pattern order (input channel in group,
    kernel offset), each with its source (the flat input position, or its global id through
    ``input_vertices``; of ``input_vertices``' dtype: ``LOCAL_IDS`` gives int32 positions, less
    for the passes to stream), its column in the kernel viewed as (M, C/group · offsets), and h
    there. The loops below then never visit a zero activation (ReLU makes about half of them,
    MNIST's background most) nor map an id twice."""
    n_out = window_start.size - 1
    mapped = input_vertices.size > 0
    # Room for every pair, filled in one pass (room never written takes no memory): a pass
    # counting the entries first was measured slower.
    size = (stop_group - first_group) * group_channels * window_src.size
    start = np.empty((stop_group - first_group) * n_out + 1, np.int64)
    src, column, value = np.empty(size, input_vertices.dtype), np.empty(size, np.int32), np.empty(size)
    e = row = 0
    for g in range(first_group, stop_group):
        for p in range(n_out):
            start[row] = e
            row += 1
            for c in range(group_channels):
                base = (g * group_channels + c) * n_in
                for j in range(window_start[p], window_start[p + 1]):
                    s = base + window_src[j]
                    x = h[s]
                    # Branches, measured faster than writing always: zeros come in runs.
                    if x != 0:
                        u = input_vertices[s] if mapped else s
                        if u >= 0:
                            src[e] = u
                            column[e] = c * n_offsets + window_offset[j]
                            value[e] = x
                            e += 1
    start[row] = e
    return start, src[:e], column[:e], value[:e]


@njit(cache=True, nogil=True)
def conv_window_edges(kernel, windows, n_out, first_group, first, stop, per_group, offset, scale):
    """(src, dst, w·h·scale) of a convolution's output channels ``first .. stop-1`` in pattern order
    (output channel, output position, input channel in group, kernel offset), products = 0
    dropped, from the ``conv_windows`` of their groups (the first of them ``first_group``) and
    the kernel viewed as (M, C/group · offsets): only the windows' entries are visited. Sources
    are the windows' (global ids if they were mapped), targets the flat output positions
    shifted by ``offset``; the targets' folded ``scale`` applies if not empty."""
    start, src, column, value = windows
    n = 0
    for m in range(first, stop):
        row = (m // per_group - first_group) * n_out
        n += start[row + n_out] - start[row]
    out_src, out_dst, out_values = np.empty(n, np.int64), np.empty(n, np.int64), np.empty(n)
    k = 0
    for m in range(first, stop):
        row = (m // per_group - first_group) * n_out
        weights = kernel[m]
        for p in range(n_out):
            target = m * n_out + p
            factor = scale[target] if scale.size else 1.0  # × 1.0 is exact: w·h unchanged
            for e in range(start[row + p], start[row + p + 1]):
                product = weights[column[e]] * value[e] * factor
                # Written always, kept by moving on: k never passes the entries read.
                out_src[k], out_dst[k], out_values[k] = src[e], target + offset, product
                k += product != 0
    return out_src[:k], out_dst[:k], out_values[:k]


@njit(cache=True, nogil=True)
def conv_heavy_edges(kernel, windows, n_src, per_group, scale, pivot, capacity, strongest, first_edge):
    """One read-only pass over a whole convolution's edges, in ``conv_window_edges``' order and
    with its values, from the ``conv_windows`` of all its groups (in ``LOCAL_IDS``, of h: 0 where
    the input is a constant) and its kernel viewed as (M, C/group · offsets), that writes only
    the edges with φ ≥ ``pivot`` (> 0).

    Edges are in local ids: source = flat input position, target = ``n_src`` + flat output
    position; index = position among the step's edges (φ > 0). Updates, as ``scan_block``, each
    local vertex's first edge in entry order (``strongest``, ``first_edge``). Returns the first
    ``capacity`` heavy edges as (src, dst, φ, index), the number of heavy edges and of edges.
    """
    start, src, column, value = windows
    n_out = (start.size - 1) * per_group // kernel.shape[0]
    out_src, out_dst = np.empty(capacity, np.int64), np.empty(capacity, np.int64)
    out_phi, out_index = np.empty(capacity), np.empty(capacity, np.int64)
    k = 0
    n_heavy = 0
    for m in range(kernel.shape[0]):
        row = (m // per_group) * n_out
        for p in range(n_out):
            target = m * n_out + p
            t = n_src + target
            factor = scale[target] if scale.size else 1.0  # × 1.0 is exact: conv_window_edges' values
            best = strongest[t]
            for e in range(start[row + p], start[row + p + 1]):
                s = src[e]
                phi = abs(kernel[m, column[e]] * value[e] * factor)
                # No branch on φ = 0 (a zero kernel element or scale): a zero is never above
                # anything, and the index only moves on past edges.
                if phi > best:  # entry order is index order: the first of equal φ stays
                    best = phi
                    first_edge[0, t], first_edge[1, t], first_edge[2, t] = k, s, t
                if phi > strongest[s]:
                    strongest[s] = phi
                    first_edge[0, s], first_edge[1, s], first_edge[2, s] = k, s, t
                if phi >= pivot:
                    if n_heavy < capacity:
                        out_src[n_heavy], out_dst[n_heavy], out_phi[n_heavy], out_index[n_heavy] = s, t, phi, k
                    n_heavy += 1
                k += phi != 0
            strongest[t] = best
    n_kept = min(n_heavy, capacity)
    return (out_src[:n_kept], out_dst[:n_kept], out_phi[:n_kept], out_index[:n_kept]), n_heavy, k


@njit(cache=True, nogil=True)
def conv_light_edges(kernel, windows, n_src, per_group, scale, low, high, label, capacity):
    """The later passes of ``conv_heavy_edges``: the edges with ``low`` ≤ φ < ``high`` (low > 0)
    whose endpoints lie in different components (by root ``label`` of the local ids), the first
    ``capacity`` of them as (src, dst, φ, index), and their number."""
    start, src, column, value = windows
    n_out = (start.size - 1) * per_group // kernel.shape[0]
    out_src, out_dst = np.empty(capacity, np.int64), np.empty(capacity, np.int64)
    out_phi, out_index = np.empty(capacity), np.empty(capacity, np.int64)
    k = 0
    n_light = 0
    for m in range(kernel.shape[0]):
        row = (m // per_group) * n_out
        for p in range(n_out):
            target = m * n_out + p
            t = n_src + target
            factor = scale[target] if scale.size else 1.0
            target_label = label[t]
            for e in range(start[row + p], start[row + p + 1]):
                s = src[e]
                phi = abs(kernel[m, column[e]] * value[e] * factor)
                if (phi >= low) & (phi < high) & (label[s] != target_label):  # one rarely taken branch
                    if n_light < capacity:
                        out_src[n_light], out_dst[n_light], out_phi[n_light], out_index[n_light] = s, t, phi, k
                    n_light += 1
                k += phi != 0
    n_kept = min(n_light, capacity)
    return (out_src[:n_kept], out_dst[:n_kept], out_phi[:n_kept], out_index[:n_kept]), n_light


@njit(cache=True, nogil=True)
def _dense_row(weights, hr, scale, lead, row_phi, position):
    """φ of one input row's n products into ``row_phi`` (in loops the compiler vectorizes) and
    each product's position among the row's nonzero ones into ``position`` (j itself unless a
    product is 0: a zero weight, a zero scale, an underflow); returns how many are nonzero."""
    n = weights.size
    if scale.size:
        for j in range(n):
            row_phi[j] = abs(weights[j] * hr * scale[lead + j])
    else:
        for j in range(n):
            row_phi[j] = abs(weights[j] * hr)
    zeros = 0
    for j in range(n):
        zeros += row_phi[j] == 0
    if zeros:
        count = 0
        for j in range(n):
            position[j] = count
            count += row_phi[j] != 0
    elif n and position[n - 1] != n - 1:  # restore j after a row with zeros
        for j in range(n):
            position[j] = j
    return n - zeros


@njit(cache=True, nogil=True)
def dense_edge_count(matrix, h, rows, scale):
    """How many of a dense layer's products from the input positions ``rows`` are nonzero."""
    k_all, n = matrix.shape
    row_phi, position = np.empty(n), np.arange(n)
    count = 0
    for r in rows:
        count += _dense_row(matrix[r % k_all], h[r], scale, (r // k_all) * n, row_phi, position)
    return count


@njit(cache=True, nogil=True)
def dense_heavy_edges(matrix, h, rows, scale, source_ids, target_offset, first, pivot, capacity, strongest,
                      first_edge, phi_out):
    """``conv_heavy_edges`` for a dense layer: one read-only pass over its edges from the input
    positions ``rows`` (h ≠ 0, ascending), in ``dense_edges``' order and with its values, which
    writes only the edges with φ ≥ ``pivot`` and, if ``phi_out`` is not empty, every edge's φ.

    Vertex ids: source ``source_ids[r]`` for input position r, target ``target_offset`` + flat
    output position; indices count the edges (φ > 0) from ``first``. The targets of a row are
    distinct, so their first edges are updated in vectorized loops (a max and a select of the
    index; their sources are looked up from the index at the end); a source's is its row's
    largest φ, found as the largest bit pattern (an integer reduction vectorizes, a float one
    does not), the first in index order.
    """
    k_all, n = matrix.shape
    out_src, out_dst = np.empty(capacity, np.int64), np.empty(capacity, np.int64)
    out_phi, out_index = np.empty(capacity), np.empty(capacity, np.int64)
    row_phi, position = np.empty(n), np.arange(n)
    row_bits, strongest_bits = row_phi.view(np.int64), strongest.view(np.int64)  # φ ≥ 0: bits order as values
    row_first = np.empty(rows.size, np.int64)
    pivot = max(pivot, np.nextafter(0.0, 1.0))  # a zero product is no edge, so never heavy
    k = first
    n_heavy = 0
    for i in range(rows.size):
        r = rows[i]
        u, lead = source_ids[r], (r // k_all) * n
        t0 = target_offset + lead
        row_first[i] = k
        kept = _dense_row(matrix[r % k_all], h[r], scale, lead, row_phi, position)
        best, index = strongest[t0:t0 + n], first_edge[0, t0:t0 + n]
        for j in range(n):  # in index order: the first of equal φ stays
            better = row_phi[j] > best[j]
            best[j] = row_phi[j] if better else best[j]
            index[j] = k + position[j] if better else index[j]
        largest = np.int64(0)
        for j in range(n):
            largest = max(largest, row_bits[j])
        if largest > strongest_bits[u]:
            j = 0
            while row_bits[j] != largest:
                j += 1
            strongest[u] = row_phi[j]
            first_edge[0, u], first_edge[1, u], first_edge[2, u] = k + position[j], u, t0 + j
        for j in range(n):
            if row_phi[j] >= pivot:
                if n_heavy < capacity:
                    out_src[n_heavy], out_dst[n_heavy], out_phi[n_heavy], out_index[n_heavy] = \
                        u, t0 + j, row_phi[j], k + position[j]
                n_heavy += 1
        if phi_out.size:
            written = phi_out[k - first:k - first + kept]
            if kept == n:
                written[:] = row_phi
            else:
                for j in range(n):
                    if row_phi[j] != 0:
                        written[position[j]] = row_phi[j]
        k += kept
    if rows.size:
        for t in range(target_offset + (rows[0] // k_all) * n, target_offset + (rows[-1] // k_all + 1) * n):
            e = first_edge[0, t]
            if strongest[t] > 0 and first <= e < k:  # its first edge is one of these
                first_edge[1, t] = source_ids[rows[np.searchsorted(row_first, e, side="right") - 1]]
                first_edge[2, t] = t
    n_kept = min(n_heavy, capacity)
    return (out_src[:n_kept], out_dst[:n_kept], out_phi[:n_kept], out_index[:n_kept]), n_heavy, k - first


@njit(cache=True, nogil=True)
def dense_light_edges(matrix, h, rows, scale, source_ids, target_offset, first, low, high, label, capacity):
    """``conv_light_edges`` for a dense layer (ids and indices as in ``dense_heavy_edges``)."""
    k_all, n = matrix.shape
    out_src, out_dst = np.empty(capacity, np.int64), np.empty(capacity, np.int64)
    out_phi, out_index = np.empty(capacity), np.empty(capacity, np.int64)
    row_phi, position = np.empty(n), np.arange(n)
    k = first
    n_light = 0
    for r in rows:
        u, lead = source_ids[r], (r // k_all) * n
        t0 = target_offset + lead
        kept = _dense_row(matrix[r % k_all], h[r], scale, lead, row_phi, position)
        source_label = label[u]
        for j in range(n):
            phi = row_phi[j]
            if (phi >= low) & (phi < high) & (label[t0 + j] != source_label):  # one rarely taken branch
                if n_light < capacity:
                    out_src[n_light], out_dst[n_light], out_phi[n_light], out_index[n_light] = \
                        u, t0 + j, phi, k + position[j]
                n_light += 1
        k += kept
    n_kept = min(n_light, capacity)
    return (out_src[:n_kept], out_dst[:n_kept], out_phi[:n_kept], out_index[:n_kept]), n_light


@njit(cache=True, nogil=True)
def dense_crossing_edges(matrix, h, rows, scale, source_ids, target_offset, first, component, n_components,
                         best_phi, best_edge, every_product):
    """``first_crossing_edges`` over a dense layer's edges, read in place (ids and indices as in
    ``dense_heavy_edges``). Most sources lie in one component: when ``every_product`` is nonzero
    (so an edge's index is known without computing its row), their rows visit only the targets
    outside it."""
    k_all, n = matrix.shape
    row_phi, position = np.empty(n), np.arange(n)
    sources = np.zeros(n_components + 1, np.int64)
    for r in rows:
        sources[component[source_ids[r]] + 1] += 1
    common = np.argmax(sources) - 1
    outside, n_outside, outside_lead = np.empty(n, np.int64), 0, -1
    k = first
    for r in rows:
        u, lead = source_ids[r], (r // k_all) * n
        t0 = target_offset + lead
        a = component[u]
        if every_product and a == common:
            if lead != outside_lead:
                n_outside, outside_lead = 0, lead
                for j in range(n):
                    outside[n_outside] = j
                    n_outside += component[t0 + j] != common
            weights, hr = matrix[r % k_all], h[r]
            for i in range(n_outside):
                j = outside[i]
                w = abs(weights[j] * hr * scale[lead + j]) if scale.size else abs(weights[j] * hr)  # as _dense_row
                _cross(a, component[t0 + j], w, k + j, u, t0 + j, n_components, best_phi, best_edge)
            k += n
            continue
        kept = _dense_row(matrix[r % k_all], h[r], scale, lead, row_phi, position)
        for j in range(n):
            b = component[t0 + j]
            if a != b and row_phi[j] != 0:  # rarely: most vertices share one component
                _cross(a, b, row_phi[j], k + position[j], u, t0 + j, n_components, best_phi, best_edge)
        k += kept


@njit(cache=True, nogil=True)
def _cross(a, b, w, e, s, d, n_components, best_phi, best_edge):
    """An edge (index e, s → d, φ = w) between components a ≠ b, for the pair table."""
    pair = min(a, b) * n_components + max(a, b)
    if w > best_phi[pair] or (w == best_phi[pair] and e < best_edge[0, pair]):
        best_phi[pair] = w
        best_edge[0, pair], best_edge[1, pair], best_edge[2, pair] = e, s, d


@njit(cache=True, nogil=True)
def dense_edges(matrix, h, rows, input_vertices, offset, scale):
    """(src, dst, w·h) of a dense layer's edges from the flat input positions ``rows`` (those
    with h ≠ 0, ascending), in pattern order (input position, then output column), products
    = 0 dropped, without building the pattern. Position r is row r % K of ``matrix`` (K, N)
    under leading index r // K. With ``input_vertices`` (not empty), edges come in global ids
    as from ``global_edges``."""
    k_all, n = matrix.shape
    out_src = np.empty(rows.size * n, np.int64)
    out_dst, out_values = np.empty(rows.size * n, np.int64), np.empty(rows.size * n)
    k = 0
    for r in rows:
        u = input_vertices[r] if input_vertices.size else r
        if u < 0:
            continue
        hr, weights, first = h[r], matrix[r % k_all], (r // k_all) * n
        # A row's products are written whole, in loops the compiler vectorizes; a row with a
        # zero product (a zero weight, an underflow) is then compacted in place.
        values = out_values[k:k + n]
        if scale.size:
            row_scale = scale[first:first + n]
            for j in range(n):
                values[j] = weights[j] * hr * row_scale[j]
        else:
            for j in range(n):
                values[j] = weights[j] * hr
        zeros = 0
        for j in range(n):
            zeros += values[j] == 0
        if zeros == 0:
            out_src[k:k + n] = u
            targets = out_dst[k:k + n]
            for j in range(n):
                targets[j] = first + j + offset
            k += n
            continue
        for j in range(n):  # writes never pass the value read next
            out_src[k], out_dst[k], out_values[k] = u, first + j + offset, values[j]
            k += values[j] != 0
    return out_src[:k], out_dst[:k], out_values[:k]


@njit(cache=True, nogil=True)
def _find(parent, v):
    while parent[v] != v:
        parent[v] = parent[parent[v]]
        v = parent[v]
    return v


@njit(cache=True, nogil=True)
def take(edges, order):
    src, dst, phi, index = edges
    return src[order], dst[order], phi[order], index[order]


@njit(cache=True, nogil=True)
def labels(parent):
    """Each vertex's root: a pass over the edges then reads two labels per edge, no chains."""
    label = np.empty(parent.size, np.int64)
    for v in range(parent.size):
        label[v] = _find(parent, v)
    return label


@njit(cache=True, nogil=True)
def kruskal(edges, order, parent):
    """The edges at positions ``order`` (in entry order) that join two components, joined."""
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
def _index(index, first, i):
    return index[i] if index.size else first + i


@njit(cache=True, nogil=True)
def _gather(src, dst, phi, index, first, keep):
    idx = np.empty(keep.size, np.int64)
    for j in range(keep.size):
        idx[j] = _index(index, first, keep[j])
    return src[keep], dst[keep], phi[keep], idx


@njit(cache=True, nogil=True)
def scan_block(src, dst, phi, index, first, pivot, strongest, first_edge):
    """One pass over edges: each vertex's first edge in entry order so far, updated in place
    (``strongest``: its φ; ``first_edge``: its index, src and dst, by row), and the edges with
    φ ≥ ``pivot``, returned."""
    keep = np.empty(src.size, np.int64)
    n_keep = 0
    for i in range(src.size):
        w, s, d = phi[i], src[i], dst[i]
        if w >= strongest[s] or w >= strongest[d]:  # rarely, once each vertex has seen a few edges
            e = _index(index, first, i)
            for v in (s, d):
                if w > strongest[v] or (w == strongest[v] and e < first_edge[0, v]):
                    strongest[v] = w
                    first_edge[0, v] = e
                    first_edge[1, v] = s
                    first_edge[2, v] = d
        keep[n_keep] = i  # kept by moving on (no branch to mispredict)
        n_keep += w >= pivot
    return _gather(src, dst, phi, index, first, keep[:n_keep])


@njit(cache=True, nogil=True)
def filter_block(src, dst, phi, index, first, pivot, label):
    """The edges with φ < ``pivot`` that join two components (by root ``label``)."""
    keep = np.empty(src.size, np.int64)
    n_keep = 0
    for i in range(src.size):
        if phi[i] < pivot and label[src[i]] != label[dst[i]]:
            keep[n_keep] = i
            n_keep += 1
    return _gather(src, dst, phi, index, first, keep[:n_keep])


@njit(cache=True, nogil=True)
def component_ids(label, strongest, limit):
    """Ids 0 .. C-1 of the components (by root ``label``) of the vertices with an edge
    (``strongest`` > 0), -1 for the others, and C; counting stops past ``limit``."""
    n = label.size
    component = np.full(n, -1, np.int64)
    root_component = np.full(n, -1, np.int64)
    count = 0
    for v in range(n):
        if strongest[v] > 0:
            root = label[v]
            if root_component[root] < 0:
                if count == limit:
                    return component, count + 1
                root_component[root] = count
                count += 1
            component[v] = root_component[root]
    return component, count


@njit(cache=True, nogil=True)
def first_crossing_edges(src, dst, phi, index, first, component, n_components, best_phi, best_edge):
    """One pass over edges: each pair (a, b), a < b, of components' first crossing edge in entry
    order (largest φ, then smallest index), updated at a · n_components + b in ``best_phi`` (0:
    none yet) and ``best_edge`` (its index, src and dst, by row)."""
    for i in range(src.size):
        a, b = component[src[i]], component[dst[i]]
        if a != b:
            _cross(a, b, phi[i], _index(index, first, i), src[i], dst[i], n_components, best_phi, best_edge)


@njit(cache=True, nogil=True)
def join_first_edges(strongest, first_edge, parent):
    """Borůvka's step: joins in ``parent`` each vertex's first edge in entry order (it is in the
    forest: the heaviest edge across the cut between the vertex and the rest); returns them."""
    n = strongest.size
    src, dst = np.empty(n, np.int64), np.empty(n, np.int64)
    phi, index = np.empty(n), np.empty(n, np.int64)
    count = 0
    for v in range(n):
        if strongest[v] > 0:
            s, d = first_edge[1, v], first_edge[2, v]
            a, b = _find(parent, s), _find(parent, d)
            if a != b:  # else it is also the first edge of its other end, already joined
                parent[b] = a
                src[count], dst[count], phi[count], index[count] = s, d, strongest[v], first_edge[0, v]
                count += 1
    return src[:count], dst[:count], phi[:count], index[:count]


@njit(cache=True, nogil=True)
def _position_bits(n):
    bits = 1
    while (1 << bits) < n:
        bits += 1
    return bits


@njit(cache=True, nogil=True)
def packed_keys(values):
    """Sort keys of positive (or +inf) float64 ``values``, largest first: the top bits of each
    value's bit pattern (read as an integer, it orders like the value), inverted, then the
    element's position. A plain integer sort of them orders the values, except among values
    that share those top bits, which ``settle_ties`` finishes."""
    n = values.size
    shift = _position_bits(n)
    bits = values.view(np.int64)
    keys = np.empty(n, np.int64)
    for i in range(n):
        keys[i] = ((_TOP - bits[i]) >> shift << shift) | i
    return keys


@njit(cache=True, nogil=True)
def settle_ties(keys, values, tiebreak):
    """Positions in the order of (value decreasing, ``tiebreak`` increasing), from the sorted
    ``packed_keys`` of ``values``: runs that share their packed bits are sorted in full."""
    n = keys.size
    shift = _position_bits(n)
    order = keys & ((1 << shift) - 1)
    start = 0
    while start < n:
        end = start + 1
        while end < n and keys[end] >> shift == keys[start] >> shift:
            end += 1
        if end - start > _SHORT_RUN:
            run = order[start:end]
            run = run[np.argsort(tiebreak[run], kind="mergesort")]
            order[start:end] = run[np.argsort(-values[run], kind="mergesort")]
        else:
            for i in range(start + 1, end):  # insertion sort
                p = order[i]
                j = i
                while j > start and (values[order[j - 1]] < values[p] or (
                        values[order[j - 1]] == values[p] and tiebreak[order[j - 1]] > tiebreak[p])):
                    order[j] = order[j - 1]
                    j -= 1
                order[j] = p
        start = end
    return order


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


@njit(cache=True, nogil=True)
def anchored_pieces(src, dst, entry, n_vertices):
    """The anchored rule of ``subgraph.subgraph_pieces`` over a forest's edges in entry order.

    The union-find of ``elder_pairing``; besides the vertex whose class each edge kills, the
    edge's piece: the earliest piece holding its anchor (its endpoint on the elder side), or a
    new piece when the anchor lies in none yet. Raises ValueError if an edge closes a cycle.
    """
    parent = np.arange(n_vertices)
    oldest = np.arange(n_vertices)
    first_piece = np.full(n_vertices, -1, np.int64)  # per vertex: the earliest piece holding it
    piece = np.empty(src.size, np.int64)
    born = np.empty(src.size, np.int64)
    n_pieces = 0
    for k in range(src.size):
        anchor, other = src[k], dst[k]
        a, b = _find(parent, anchor), _find(parent, other)
        if a == b:
            raise ValueError("the subgraph is not a forest: not the death edges of a persistence")
        if entry[oldest[a]] > entry[oldest[b]]:
            anchor, other, a, b = other, anchor, b, a
        born[k] = oldest[b]
        p = first_piece[anchor]
        if p < 0:
            p = n_pieces
            n_pieces += 1
            first_piece[anchor] = p
        if first_piece[other] < 0 or first_piece[other] > p:
            first_piece[other] = p
        piece[k] = p
        parent[b] = a
    return piece, born
