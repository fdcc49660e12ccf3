"""The persistent subgraph of one input: its pieces and the edges a selection keeps.

The persistent subgraph is the death edges of H0 in entry order (a maximum spanning forest,
zero-persistence deaths included; design notes, induced-graph.md §5). Its rows are global vertex
ids, stable across the inputs of one model (``InducedGraph.locate`` maps an id to
(layer, tensor, neuron)). ``subgraph_edges`` keeps all of them, the first ``take`` *pieces*
(``subgraph_pieces``), the ``k`` strongest, or those that kill a class of at least a given
persistence. ``as_subgraph`` is the one place an analysis is read as a subgraph.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse

__all__ = ["PIECE_RULES", "SELECTIONS", "as_subgraph", "selected_edges", "subgraph_edges", "subgraph_pieces"]

SELECTIONS = ("all", "take", "top_k", "persistence")
PIECE_RULES = ("anchored", "components")


def check_choice(value, name: str, options, owner: str) -> None:
    """ValueError, in scikit-learn's words, unless ``value`` is one of the str ``options``."""
    if not isinstance(value, str) or value not in options:
        choices = ", ".join(repr(o) for o in options)
        raise ValueError(f"The {name!r} parameter of {owner} must be a str among {{{choices}}}. "
                         f"Got {value!r} instead.")


def check_selection(selection, take, k, min_persistence, pieces, owner: str) -> None:
    """The parameters of a subgraph selection; only the one the selection uses must be set."""
    from sklearn.utils.validation import check_scalar

    check_choice(selection, "selection", SELECTIONS, owner)
    check_choice(pieces, "pieces", PIECE_RULES, owner)
    needed = {"take": ("take", take), "top_k": ("k", k), "persistence": ("min_persistence", min_persistence)}
    if selection in needed:
        name, value = needed[selection]
        if value is None:
            raise ValueError(f"selection={selection!r} needs the {name!r} parameter of {owner}; it is None.")
    if selection == "take":
        check_scalar(take, "take", numbers.Integral, min_val=1)
    elif selection == "top_k":
        check_scalar(k, "k", numbers.Integral, min_val=0)
    elif selection == "persistence":
        check_scalar(min_persistence, "min_persistence", numbers.Real, min_val=0)
        if np.isnan(min_persistence):
            raise ValueError("min_persistence is NaN; it must be a number >= 0.")


def as_subgraph(analysis):
    """The PersistentSubgraph of an AnalysisResult or a Persistence, or the subgraph itself.

    Anything with ``src``, ``dst``, ``phi`` and ``birth`` arrays (or such a ``subgraph``
    attribute) is read as a subgraph; TypeError otherwise.
    """
    sub = getattr(analysis, "subgraph", analysis)
    if not all(hasattr(sub, a) for a in ("src", "dst", "phi", "birth")):
        raise TypeError("expected an AnalysisResult, a Persistence or a PersistentSubgraph, "
                        f"got {type(analysis).__name__}")
    return sub


def _vertex_entry_values(src: np.ndarray, dst: np.ndarray, sub) -> np.ndarray:
    """Per vertex id: its value in the filtration the subgraph comes from.

    With ``vertices="max"`` (the default) a vertex enters with its strongest edge, and that edge
    is a death edge (when it enters, the vertex is still isolated), so the value is the largest φ
    of the vertex's death edges. With ``vertices="inf"`` every class is born at +inf, which the
    births show. Vertices enter by decreasing value, then increasing id.
    """
    n = int(max(src.max(), dst.max())) + 1
    if np.isinf(sub.birth).any():
        return np.full(n, np.inf)
    value = np.zeros(n)
    np.maximum.at(value, src, sub.phi)
    np.maximum.at(value, dst, sub.phi)
    return value


def _pieces(sub, rule: str) -> np.ndarray:
    """Piece index of each death edge of the non-empty subgraph ``sub`` by ``rule`` (see
    ``subgraph_pieces``)."""
    return anchored_walk(sub)[0] if rule == "anchored" else _component_pieces(sub)


def anchored_walk(sub) -> tuple[np.ndarray, np.ndarray]:
    """(piece index, vertex whose class the edge kills) of each death edge of subgraph ``sub``.

    The anchored rule of ``subgraph_pieces``; the killed vertices let a caller find the class
    each piece belongs to (``experiment.piece_lifetimes``).
    """
    from . import _compiled

    src, dst = np.ascontiguousarray(sub.src, np.int64), np.ascontiguousarray(sub.dst, np.int64)
    value = _vertex_entry_values(src, dst, sub)
    n = value.size
    ids = np.arange(n)
    entry = np.empty(n, dtype=np.int64)
    entry[np.lexsort((ids, -value))] = ids  # the filtration's order: decreasing value, then id
    piece, killed = _compiled.anchored_pieces(src, dst, entry, n)
    # The class each edge kills is the younger side's earliest vertex: its value must be the
    # recorded birth, or the vertex values were not those of vertices="max" or "inf".
    if not np.array_equal(value[killed], np.asarray(sub.birth, dtype=np.float64)):
        raise ValueError("cannot group this subgraph into pieces: its births do not match vertex values "
                         'of vertices="max" or "inf" (a custom vertex-value array was used)')
    return piece, killed


def _component_pieces(sub) -> np.ndarray:
    """Piece index of each death edge by the components rule (see ``subgraph_pieces``)."""
    from scipy.sparse.csgraph import connected_components

    src, dst = np.asarray(sub.src, dtype=np.int64), np.asarray(sub.dst, dtype=np.int64)
    n = int(max(src.max(), dst.max())) + 1
    links = scipy.sparse.coo_matrix((np.ones(src.size), (src, dst)), shape=(n, n))
    _, label = connected_components(links, directed=False)
    # Number the components by their first edge in entry order.
    _, first, component = np.unique(label[src], return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first)).astype(np.int64)[component.ravel()]


def subgraph_pieces(analysis, *, rule: str = "anchored") -> np.ndarray:
    """The piece of each persistent-subgraph edge: an int64 array aligned with the subgraph.

    ``analysis`` is an AnalysisResult, a Persistence or a PersistentSubgraph. Pieces are
    numbered 0, 1, … in the entry order of their first (strongest) edge; each piece is
    connected. Two rules:

    ``"anchored"`` (default; the grouping of Gebhart & Schrater's reference ``pt_activation``):
    walk the death edges in entry order, with a union-find over the forest built so far. A death
    edge joins two components; its *anchor* is its endpoint in the component holding the elder
    class (the one that survives, by the elder rule; the other endpoint lies on the side of the
    class the edge kills). If the anchor already lies in a piece, the edge joins the earliest
    created piece holding the anchor; otherwise (the anchor is a lone vertex) the edge starts a
    new piece. Pieces never merge.

    A piece therefore starts at the first edge of a vertex whose class survives that edge, at
    φ = the class's birth: piece j belongs to the j-th H0 class by decreasing birth (ties by
    entry order), and without φ ties there is exactly one piece per point of the H0 diagram,
    essential classes included. ``take=t`` keeps the edges grown from the t earliest-born
    classes. The pieces start at the same edges as the reference's (tests/test_subgraph.py
    checks this against the reference's loop over dionysus's reduced matrix). Their contents
    differ where the reference is at fault: it anchors on the first vertex of the *reduced*
    boundary chain of the edge, which after a reduction need not be an endpoint of the edge,
    records that chain (possibly not an edge of the graph) instead of the edge, and looks up
    the piece the anchor started before the earliest piece holding it.

    ``"components"``: a piece is a connected component of the whole subgraph (equivalently of
    the induced graph, whose maximum spanning forest the death edges are). A network's induced
    graph is usually connected, and then there is a single piece.

    Needs the subgraph of a filtration with ``vertices="max"`` (default) or ``"inf"``: the vertex
    entry order is recovered from the subgraph itself and checked against the recorded births
    (ValueError otherwise). The anchored rule walks the death edges through homology's compiled
    union-find (each step depends on the previous ones).
    """
    sub = as_subgraph(analysis)
    check_choice(rule, "rule", PIECE_RULES, "subgraph_pieces")
    if len(sub.src) == 0:
        return np.empty(0, dtype=np.int64)
    return _pieces(sub, rule)


def selected_edges(sub, selection, take, k, min_persistence, pieces) -> np.ndarray:
    """Positions (in entry order) of the edges of subgraph ``sub`` a selection keeps.

    The parameters are those of ``subgraph_edges``, already checked by ``check_selection``.
    """
    m = len(sub.src)
    if selection == "all" or m == 0:
        return np.arange(m)
    if selection == "take":
        return np.flatnonzero(_pieces(sub, pieces) < take)
    if selection == "top_k":
        # Highest φ first, ties in entry order (a stable sort); the subgraph is in entry order,
        # i.e. by decreasing φ, so these are its first k edges.
        return np.sort(np.argsort(-np.asarray(sub.phi), kind="stable")[:k])
    persistence = np.asarray(sub.birth, dtype=np.float64) - np.asarray(sub.phi, dtype=np.float64)
    return np.flatnonzero(persistence >= min_persistence)


def subgraph_edges(analysis, *, selection: str = "all", take: int | None = None,
                   k: int | None = None, min_persistence: float | None = None,
                   pieces: str = "anchored") -> np.ndarray:
    """Selected edges of an input's persistent subgraph, as an (m, 2) int64 array of (src, dst).

    ``analysis`` is an AnalysisResult, a Persistence or a PersistentSubgraph. Its persistent
    subgraph is the death edges of H0 in entry order (a maximum spanning forest,
    zero-persistence deaths included); rows are global vertex ids, stable across the inputs of
    one model, and come in that entry order. ``selection``:

    * ``"all"``: every death edge;
    * ``"take"``: the edges of the first ``take`` pieces (``subgraph_pieces`` with rule
      ``pieces``, "anchored" by default);
    * ``"top_k"``: the ``k`` strongest edges (highest φ, ties in entry order), all if fewer;
    * ``"persistence"``: the edges that kill a class of persistence birth − death ≥
      ``min_persistence`` (zero-persistence deaths are kept by ``min_persistence=0`` only).

    Only the parameter the selection uses is read; the others are ignored.
    """
    check_selection(selection, take, k, min_persistence, pieces, "subgraph_edges")
    sub = as_subgraph(analysis)
    keep = selected_edges(sub, selection, take, k, min_persistence, pieces)
    return np.stack([np.asarray(sub.src, dtype=np.int64)[keep], np.asarray(sub.dst, dtype=np.int64)[keep]],
                    axis=1).reshape(-1, 2)
