"""Static fingerprints and ``onnxtopo check --static``: has a model's weights drifted, with no probe?

The static view (``onnxtopo.static``, Rieck et al.'s neural persistence) needs no input, so its
fingerprint needs no probe: the H0 diagram of every layer with learned weights and of the
whole-network static graph, their Betti curves, neural persistence and the network's mean
normalized neural persistence. It is written, read and compared like the induced view's
(``onnxtopo.fingerprint``: the same file handling, distances, verdict and reports), with one
row per *diagram* (the layers in plan order, then the whole network) where the induced check
has one per probe input.

Baseline file format (version 1)
--------------------------------
The ``.npz`` layout of ``onnxtopo.fingerprint`` without probe and H1: ``meta`` (UTF-8 JSON:
``format`` "onnxtopo-static-fingerprint", ``format_version`` 1, ``onnxtopo_version``, ``model``
as there, ``options`` (``p``, a number or "inf"; ``graph``; ``channel_norm``), ``scale``,
``mean_normalized_neural_persistence`` and ``diagrams``: one summary per diagram, the layers'
(``name``, ``op_type``, ``tensor``) then the whole network's (``name`` "whole network"), each with
``vertices``, ``components``, ``edges``, ``h0_points``, ``neural_persistence`` and
``normalized_neural_persistence``), ``grid`` (float64: n_grid values evenly spaced in (0, 1],
where the static diagrams live), ``betti0`` (int64, one curve per diagram) and ``h0_00000``, ...
Each reader refuses the other's baselines by name (an induced baseline has no static diagrams,
and the other way round).

Metrics (per diagram, baseline D vs current D')
-----------------------------------------------
``h0_bottleneck``, ``h0_wasserstein``, ``h0_total_persistence``, ``h0_betti``, relative as in
``onnxtopo.fingerprint`` (the births are all 1, so the bottleneck is absolute), gated by the same
tolerances; ``normalized_neural_persistence`` = |NP' − NP| / NP of the normalized values,
gated by the ``neural_persistence`` tolerance; and ``edges``, the relative change of the number
of edges (nonzero weights), gated by the ``edges`` tolerance, 0 by default: a diagram sees only
the graph's maximum spanning forest, which pruning the smallest weights leaves as it was. The mean over the layers, the network's figure,
then moves by no more than the largest relative change of its layers (a ratio of sums is at
most the largest ratio), so it is reported, not gated separately. Diagrams are paired by
position: a re-export that renames nodes compares as the same network; a model with another
number of layers with learned weights is not the same architecture and is refused
(BadInputError, exit 5).
"""

from __future__ import annotations

import numpy as np

from .diagrams import as_diagram, betti_curve
from .errors import BadInputError
from .files import json_number
from .fingerprint import (
    DEFAULT_N_GRID,
    DEFAULT_TOLERANCES,
    FORMAT,
    STATIC_FORMAT,
    Fingerprint,
    Verdict,
    compare_diagrams,
    gated_metrics,
    model_identity,
    read_meta,
    relative_change,
)

FORMAT_VERSION = 1
#: The induced view's tolerances; one for the relative change of normalized neural persistence (a
#: p-norm of the same persistences that total persistence sums: the same default); and one for the
#: relative change of the number of edges, i.e. of nonzero weights: 0, since rounding never zeroes a
#: weight, while pruning the smallest weights leaves the maximum spanning forest, hence every
#: diagram and NP, exactly as they were (measured on CCFF: README).
STATIC_TOLERANCES = {**DEFAULT_TOLERANCES, "neural_persistence": 1e-4, "edges": 0.0}
STATIC_GATED = [*gated_metrics(False), ("normalized_neural_persistence", "neural_persistence"), ("edges", "edges")]
WHOLE = "whole network"


class StaticFingerprint(Fingerprint):
    """The static view's diagrams (layers, then the whole network), Betti curves and summaries."""

    @property
    def diagrams(self) -> list[dict]:
        return self.meta["diagrams"]

    @property
    def mean_normalized(self) -> float:
        return self.meta["mean_normalized_neural_persistence"]

    @classmethod
    def _from_arrays(cls, arrays: dict) -> StaticFingerprint:
        meta = read_meta(arrays)
        found = meta.get("format")
        if found == FORMAT:
            raise BadInputError("this baseline is the induced view's fingerprint on a probe (written by check "
                                "without --static); compare with it without --static, giving its --probe")
        if found != STATIC_FORMAT:
            raise BadInputError(f"not an onnxtopo static baseline (format {found!r}, expected {STATIC_FORMAT!r})")
        if meta.get("format_version") != FORMAT_VERSION:
            raise BadInputError(f"static baseline format version {meta.get('format_version')!r} is not supported: "
                                f"this onnxtopo reads version {FORMAT_VERSION}; rewrite it with --static "
                                "--write-baseline")
        try:
            n = len(meta["diagrams"])
            for key in ("p", "graph", "channel_norm"):
                meta["options"][key]
            for summary in meta["diagrams"]:
                float(summary["normalized_neural_persistence"])
            float(meta["mean_normalized_neural_persistence"])
            grid = np.asarray(arrays["grid"], dtype=np.float64)
            h0 = [as_diagram(arrays[f"h0_{i:05d}"], name=f"h0_{i:05d}") for i in range(n)]
            betti0 = np.asarray(arrays["betti0"])
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInputError(f"damaged static baseline: missing or malformed entry ({exc})") from exc
        if grid.ndim != 1 or not np.isfinite(grid).all() or np.any(np.diff(grid) <= 0):
            raise BadInputError("damaged static baseline: 'grid' must be a finite increasing 1-D array")
        if betti0.shape != (n, len(grid)) or betti0.dtype.kind not in "iu":
            raise BadInputError(f"damaged static baseline: 'betti0' must be integer of shape ({n}, {len(grid)})")
        return cls(meta, grid, h0, betti0.astype(np.int64))


def static_fingerprint(model, *, p: float = 2.0, graph: str = "unrolled", channel_norm: str = "l2", grid=None,
                       n_grid: int = DEFAULT_N_GRID, memory_limit="auto") -> StaticFingerprint:
    """The static fingerprint of ``model`` (path, bytes or onnx.ModelProto): ``static_persistence``
    with these options, the whole network included; ``grid``: pass a baseline's to compare with it."""
    from . import __version__
    from .static import static_persistence

    proto, identity = model_identity(model)
    result = static_persistence(proto, p=p, graph=graph, channel_norm=channel_norm, memory_limit=memory_limit)
    summaries = [layer.summary() for layer in result.layers] + [{"name": WHOLE, **result.whole.summary()}]
    diagrams = [layer.h0 for layer in result.layers] + [result.whole.h0]
    if grid is None:
        if n_grid < 1:
            raise ValueError(f"n_grid must be at least 1, got {n_grid}")
        grid = np.arange(1, n_grid + 1) / n_grid  # normalized weights lie in (0, 1]
    grid = np.asarray(grid, dtype=np.float64)
    meta = {"format": STATIC_FORMAT, "format_version": FORMAT_VERSION, "onnxtopo_version": __version__,
            "model": identity, "options": {"p": json_number(float(p)), "graph": graph, "channel_norm": channel_norm},
            "scale": result.scale, "mean_normalized_neural_persistence": result.mean_normalized,
            "diagrams": summaries}
    return StaticFingerprint(meta, grid, diagrams, np.stack([betti_curve(d, grid) for d in diagrams]))


def static_check(baseline: StaticFingerprint, model, *, tolerances: dict | None = None, q: int = 1,
                 memory_limit="auto") -> tuple[StaticFingerprint, Verdict]:
    """Fingerprint ``model`` like ``baseline`` (its options and grid) and judge the drift, diagram by diagram."""
    tolerances = {**STATIC_TOLERANCES, **(tolerances or {})}
    options = baseline.options
    current = static_fingerprint(model, p=float(options["p"]), graph=options["graph"],
                                 channel_norm=options["channel_norm"], grid=baseline.grid, memory_limit=memory_limit)
    if len(current) != len(baseline):
        def names(fp):
            return ", ".join(d["name"] for d in fp.diagrams[:-1])
        raise BadInputError(f"the model has {len(current) - 1} layer(s) with learned weights ({names(current)}), the "
                            f"baseline {len(baseline) - 1} ({names(baseline)}): not the same architecture, so its "
                            "layers cannot be compared one by one; rewrite the baseline with --write-baseline")
    rows = compare_diagrams(baseline, current, q=q)
    for row, old, new in zip(rows, baseline.diagrams, current.diagrams, strict=True):
        a, b = float(old["normalized_neural_persistence"]), float(new["normalized_neural_persistence"])
        row.update(name=old["name"], current_name=new["name"],
                   normalized_neural_persistence=relative_change(abs(b - a), a),
                   normalized_neural_persistence_abs=abs(b - a), baseline_normalized_neural_persistence=a,
                   current_normalized_neural_persistence=b,
                   edges=relative_change(abs(new["edges"] - old["edges"]), old["edges"]),
                   edges_delta=new["edges"] - old["edges"])
    return current, Verdict(rows, tolerances, gated=STATIC_GATED)


def mean_change(baseline: StaticFingerprint, current: StaticFingerprint) -> str:
    """One line: the network's mean normalized neural persistence, baseline and now."""
    a, b = baseline.mean_normalized, current.mean_normalized
    return (f"mean normalized neural persistence: {a:.6g} in the baseline, {b:.6g} now "
            f"(relative change {relative_change(abs(b - a), a):.3g})")


__all__ = ["STATIC_TOLERANCES", "StaticFingerprint", "mean_change", "static_check", "static_fingerprint"]
