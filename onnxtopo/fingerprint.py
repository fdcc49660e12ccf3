"""Topological fingerprints of a model, and ``onnxtopo check``: has a shipped model drifted?

A fingerprint is what a model does, topologically, on a fixed *probe* (a few inputs): per probe
input the H0 diagram (and optionally H1) of the graph the input induces, a few summaries, and the
H0 Betti curve on a grid of φ values. Comparing the fingerprint of a new build of a model with a
stored *baseline* tells whether the network still computes the same thing: a re-export by another
framework or exporter leaves it unchanged up to float32 rounding, while retraining, pruning or a
swapped layer moves it.

Diagrams follow the package's convention: float64 arrays (n, 2) of superlevel pairs
(birth, death), birth ≥ death in φ units, death = +inf for essential classes.

Baseline file format (version 1)
--------------------------------
A ``.npz`` archive (``np.load(path, allow_pickle=False)``; nothing in it needs pickle) with:

* ``meta``: uint8 array holding UTF-8 JSON: ``format`` ("onnxtopo-fingerprint"),
  ``format_version`` (1), ``onnxtopo_version``, ``model`` (``file``, ``sha256`` of the model's
  bytes, ``producer_name``, ``producer_version``, ``ir_version``, ``opset`` {domain: version}),
  ``probe`` (``sha256``, ``shape``, ``dtype``, ``file``, ``key``), ``options`` (the analysis
  options the fingerprint was computed with: ``h1``, ``threshold``, ``percentile``,
  ``vertices``, ``maxpool_rule``), and ``inputs``: one summary per probe input (``vertices``,
  ``edges``, ``h0_points``, ``h0_essential_points``, ``h0_total_persistence``, and
  ``h1_points``/``h1_essential_points`` with H1).
* ``grid``: float64 (g,), increasing φ values where the Betti curves are sampled.
* ``betti0``: int64 (n, g), β0(t) per probe input: the H0 classes alive at threshold t, i.e.
  points with birth ≥ t > death (essential points: birth ≥ t).
* ``h0_00000``, ``h0_00001``, ...: float64 (k, 2) H0 diagram of each probe input.
* with H1: ``betti1`` (n, g) and ``h1_00000``, ... likewise.

The probe's SHA-256 covers its shape, dtype and bytes after conversion to the model's input
dtype, so a baseline is only ever compared on the very inputs it was computed from. A reader
refuses any other ``format`` or ``format_version`` (``BadInputError``), as it does a damaged
file. Files are written atomically and are byte-identical for identical content.

Distances (per probe input, baseline D vs current D')
-----------------------------------------------------
Bottleneck and q-Wasserstein distances (q = 1 by default, or 2) with the L∞ ground metric, from
``onnxtopo.diagrams`` (see there: exact, essential classes matched only with essential classes,
+inf when their numbers differ). dionysus's Wasserstein auction is available as
``engine="dionysus"`` but is not the default: on diagrams that differ only by float32 rounding,
which is exactly what ``check`` compares for a re-exported model, it does not terminate.

The checked metrics are relative, so one tolerance suits models whatever their φ scale:

* ``h0_bottleneck`` = d_B(D, D') / max(births of D);
* ``h0_wasserstein`` = W_q(D, D') / ‖births of D‖_q;
* ``h0_total_persistence`` = |TP(D') − TP(D)| / TP(D), TP = Σ (birth − death) over finite points;
* ``h0_betti`` = Σ_t |β0'(t) − β0(t)| / Σ_t β0(t) over the grid (relative L1 of Betti curves);
* with H1, ``h1_bottleneck``, ``h1_wasserstein`` and ``h1_betti`` likewise (H1 points are all
  essential: one never-dying class per edge outside the maximum spanning forest).

Each comparison also records the absolute distances, Δ point counts, Δ essential counts and the
L1/L∞ distances between Betti curves (in counts).

``onnxtopo check`` exits 0 when every gated metric of every probe input is within its
tolerance, 1 when one is not (the model drifted), and with onnxtopo's error codes when it cannot
compare (3 bad model, 4 unsupported model, 5 bad probe, other probe or bad baseline, 7 memory).
``--report`` writes JSON: ``verdict`` ("pass", "drift" or "error"), ``tolerances``, ``metrics``
(per gated metric: ``max`` over inputs, ``worst_input``, ``failing_inputs``, ``passed``),
``inputs`` (every value of every input), the two models' provenance and ``same_model_file``;
JSON having no infinity, +inf is written as the string "inf". ``--junit`` writes one
``<testsuite>`` with one ``<testcase>`` per gated metric, a ``<failure>`` listing the failing
inputs when it drifted, or a single ``<error>`` testcase when the check could not run (the
JSON report then has ``verdict: "error"`` and the ``exit_code``).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np

from .diagrams import (
    as_diagram,
    betti_curve,
    bottleneck_distance,
    total_persistence,
    wasserstein_distance,
)
from .errors import BadInputError, OnnxtopoError
from .files import json_number

FORMAT = "onnxtopo-fingerprint"
FORMAT_VERSION = 1
#: The static view's baselines (``check --static``, ``onnxtopo.static_fingerprint``): refused here by name.
STATIC_FORMAT = "onnxtopo-static-fingerprint"
DEFAULT_N_GRID = 64

#: Default tolerances of ``check`` (all relative, see the module's docstring). Exporters differ
#: by float32 rounding: against the shipped TorchScript CCFF on 8 held-out images, the dynamo
#: re-export gives exactly 0 and the tf2onnx and jax2onnx ones at most 3.7e-7 (bottleneck),
#: 1.4e-8 (W1; 9.4e-8 for W2), 5.6e-8 (total persistence) and 0 (Betti). Real changes move every
#: input: the mildest one tried, 20 gradient steps on the last layer, gives 5e-3 to 0.046
#: (bottleneck), 4e-4 to 3e-3 (W1), 4e-4 to 0.015 (total persistence); pruning, a swapped
#: kernel or activation give far more. 1e-4 sits ~270× above the rounding noise and below every
#: input of that mildest change; float32 sums accumulated in another order (other fused kernels,
#: another onnxruntime build) cost about sqrt(fan-in) × 6e-8 ≈ 2e-6, still 50× below. Betti
#: curves are integer counts on the grid: a point that rounding moves across a grid value
#: changes one count by 1, about 0.1 % of the curve's mass; 1e-2 tolerates a few such flips,
#: while the mildest change moves the worst input's curve by 3.7 %.
DEFAULT_TOLERANCES = {"bottleneck": 1e-4, "wasserstein": 1e-4, "total_persistence": 1e-4, "betti": 1e-2}


# ---------------------------------------------------------------------------------------------
# Fingerprints


@dataclass(frozen=True, eq=False)
class Fingerprint:
    """Diagrams, Betti curves and summaries of a model on a probe, with provenance (``meta``)."""

    meta: dict
    grid: np.ndarray
    h0: list[np.ndarray]
    betti0: np.ndarray  # (n inputs, len(grid))
    h1: list[np.ndarray] | None = None
    betti1: np.ndarray | None = None

    @property
    def options(self) -> dict:
        return self.meta["options"]

    @property
    def probe_sha256(self) -> str:
        return self.meta["probe"]["sha256"]

    def __len__(self) -> int:
        return len(self.h0)

    def arrays(self) -> dict:
        """The arrays of the baseline file, in a fixed order (see the module's docstring)."""
        meta = json.dumps(self.meta, sort_keys=True, allow_nan=False).encode()
        out = {"meta": np.frombuffer(meta, dtype=np.uint8), "grid": self.grid, "betti0": self.betti0}
        out.update({f"h0_{i:05d}": d for i, d in enumerate(self.h0)})
        if self.h1 is not None:
            out["betti1"] = self.betti1
            out.update({f"h1_{i:05d}": d for i, d in enumerate(self.h1)})
        return out

    def save(self, path) -> None:
        """Write the baseline file atomically (temporary file, then rename)."""
        from .files import atomic_write, write_npz

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda f: write_npz(f, self.arrays()))

    @classmethod
    def load(cls, path) -> Fingerprint:
        """Read a baseline file; BadInputError if it is missing, damaged or of another format."""
        path = Path(path)
        if not path.is_file():
            raise BadInputError(f"baseline {str(path)!r} does not exist; write it first with --write-baseline")
        try:
            with np.load(path, allow_pickle=False) as archive:
                arrays = {k: archive[k] for k in archive.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise BadInputError(f"{str(path)!r} is not a readable onnxtopo baseline ({exc})") from exc
        try:
            return cls._from_arrays(arrays)
        except BadInputError as exc:
            raise BadInputError(f"{str(path)!r}: {exc}") from exc

    @classmethod
    def _from_arrays(cls, arrays: dict) -> Fingerprint:
        meta = read_meta(arrays)
        if meta.get("format") != FORMAT:
            found = meta.get("format")
            if found == STATIC_FORMAT:
                raise BadInputError("this baseline is a static fingerprint (written by check --static, weights only); "
                                    "compare with it by adding --static, without --probe")
            raise BadInputError(f"not an onnxtopo baseline (format {found!r}, expected {FORMAT!r})")
        version = meta.get("format_version")
        if version != FORMAT_VERSION:
            raise BadInputError(
                f"baseline format version {version!r} is not supported: this onnxtopo reads version "
                f"{FORMAT_VERSION}; rewrite the baseline with --write-baseline"
            )
        try:
            n = len(meta["inputs"])
            h1 = bool(meta["options"]["h1"])
            for key in ("threshold", "percentile", "vertices", "maxpool_rule"):  # what check() reuses
                meta["options"][key]
            if not isinstance(meta["probe"]["sha256"], str) or not isinstance(meta["probe"]["shape"], list):
                raise TypeError("the probe's sha256 and shape are missing")
            grid = np.asarray(arrays["grid"], dtype=np.float64)
            h0 = [as_diagram(arrays[f"h0_{i:05d}"], name=f"h0_{i:05d}") for i in range(n)]
            betti0 = np.asarray(arrays["betti0"])
            h1_list = [as_diagram(arrays[f"h1_{i:05d}"], name=f"h1_{i:05d}") for i in range(n)] if h1 else None
            betti1 = np.asarray(arrays["betti1"]) if h1 else None
        except (KeyError, TypeError, ValueError) as exc:
            raise BadInputError(f"damaged baseline: missing or malformed entry ({exc})") from exc
        if grid.ndim != 1 or not np.isfinite(grid).all() or np.any(np.diff(grid) <= 0):
            raise BadInputError("damaged baseline: 'grid' must be a finite increasing 1-D array")
        for name, curve in (("betti0", betti0), ("betti1", betti1)):
            if curve is not None and (curve.shape != (n, len(grid)) or curve.dtype.kind not in "iu"):
                raise BadInputError(f"damaged baseline: {name!r} must be integer of shape ({n}, {len(grid)})")
        return cls(meta, grid, h0, betti0.astype(np.int64), h1_list,
                   None if betti1 is None else betti1.astype(np.int64))


def read_meta(arrays: dict) -> dict:
    """The JSON header of a baseline's arrays (BadInputError if it is missing or not a JSON object)."""
    if "meta" not in arrays or arrays["meta"].dtype != np.uint8:
        raise BadInputError("not an onnxtopo baseline (no uint8 'meta' array)")
    try:
        meta = json.loads(arrays["meta"].tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInputError(f"damaged baseline: its 'meta' is not UTF-8 JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise BadInputError("not an onnxtopo baseline (its 'meta' is not a JSON object)")
    return meta


def sha256_array(x: np.ndarray) -> str:
    """SHA-256 of an array's shape, dtype and C-order bytes."""
    digest = hashlib.sha256(json.dumps([list(x.shape), x.dtype.str]).encode())
    digest.update(np.ascontiguousarray(x).tobytes())
    return digest.hexdigest()


def model_identity(model) -> tuple[object, dict]:
    """The ModelProto to analyze and its provenance: file, SHA-256, producer, IR version, opsets."""
    import onnx

    from .model import read_model

    proto = read_model(model)  # raises BadModelError for a missing or unreadable model
    if isinstance(model, onnx.ModelProto):
        raw, name = model.SerializeToString(), None
    elif isinstance(model, (bytes, bytearray)):
        raw, name = bytes(model), None
    else:
        raw, name = Path(model).read_bytes(), Path(model).name
    return proto, {
        "file": name, "sha256": hashlib.sha256(raw).hexdigest(), "producer_name": proto.producer_name,
        "producer_version": proto.producer_version, "ir_version": int(proto.ir_version),
        "opset": {(o.domain or "ai.onnx"): int(o.version) for o in proto.opset_import},
    }


def fingerprint(model, probe_inputs, *, h1: bool = False, grid=None, n_grid: int = DEFAULT_N_GRID,
                maxpool_rule: str = "window", threshold: float | None = None, percentile: float | None = None,
                vertices: str = "max", batch_size: int = 32, workers: int = 1, probe_source: dict | None = None,
                progress=None) -> Fingerprint:
    """The fingerprint of ``model`` (path, bytes or onnx.ModelProto) on ``probe_inputs`` (n, *sample).

    ``grid``: the φ values where Betti curves are sampled; pass a baseline's ``grid`` so that a
    later model is evaluated on the same values. By default, ``n_grid`` values evenly spaced in
    (0, largest birth over the probe]. The analysis options (``h1``, ``threshold``,
    ``percentile``, ``vertices``, ``maxpool_rule``) are those of ``onnxtopo.analyze`` and are
    recorded, so that ``check`` can analyze a new model the same way. ``probe_source`` (e.g.
    file and key) is recorded for information; ``progress`` is called with each input's result.
    """
    from . import __version__
    from .api import Analyzer
    from .runtime import validate_inputs

    if vertices == "inf":
        # Every class would be born at +inf: the Betti-curve grid would end at +inf and the
        # distances between diagrams would not be defined, so a baseline could never be compared.
        raise BadInputError('a fingerprint needs vertices="max" (the default): with "inf" every H0 class is '
                            "born at +inf, where the distances and Betti curves it compares are not defined")
    if vertices != "max":  # an array of vertex values would not fit the JSON header
        raise ValueError(f'vertices must be "max" in a fingerprint, got {vertices!r}')
    proto, identity = model_identity(model)
    analyzer = Analyzer(proto, maxpool_rule=maxpool_rule)
    probe = validate_inputs(analyzer.plan, probe_inputs)
    options = {"h1": bool(h1), "threshold": threshold, "percentile": percentile, "vertices": vertices,
               "maxpool_rule": maxpool_rule}
    summaries, h0, h1_list = [], [], [] if h1 else None
    for result in analyzer.analyze(probe, batch_size=batch_size, workers=workers, h1=h1, threshold=threshold,
                                   percentile=percentile, vertices=vertices):
        h0.append(result.h0)
        summary = {"vertices": result.n_vertices, "edges": result.n_edges, "h0_points": len(result.h0),
                   "h0_essential_points": int(np.isinf(result.h0[:, 1]).sum()),
                   "h0_total_persistence": total_persistence(result.h0)}
        if h1:
            h1_list.append(result.h1)
            summary.update(h1_points=len(result.h1), h1_essential_points=int(np.isinf(result.h1[:, 1]).sum()))
        summaries.append(summary)
        if progress is not None:
            progress(result)
    if grid is None:
        if n_grid < 1:
            raise ValueError(f"n_grid must be at least 1, got {n_grid}")
        top = max((float(d[:, 0].max()) for d in h0 if len(d)), default=0.0)
        grid = (top if top > 0 else 1.0) * np.arange(1, n_grid + 1) / n_grid
    grid = np.asarray(grid, dtype=np.float64)
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "onnxtopo_version": __version__, "model": identity,
        "probe": dict(sha256=sha256_array(probe), shape=list(probe.shape), dtype=probe.dtype.str,
                      **(probe_source or {})),
        "options": options, "inputs": summaries,
    }
    return Fingerprint(meta, grid, h0, np.stack([betti_curve(d, grid) for d in h0]),
                       h1_list, None if h1_list is None else np.stack([betti_curve(d, grid) for d in h1_list]))


# ---------------------------------------------------------------------------------------------
# Comparison


def relative_change(value: float, scale: float) -> float:
    """value / scale, with 0/0 = 0 and x/0 = inf (a diagram that appears where there was none)."""
    if scale > 0:
        return value / scale
    return 0.0 if value == 0 else math.inf


def compare(baseline: Fingerprint, current: Fingerprint, *, q: int = 1, engine: str = "exact") -> list[dict]:
    """Per probe input, every metric of ``current`` against ``baseline`` (see the module's docstring).

    Both must come from the same probe (BadInputError otherwise). Gated metrics are named
    ``h0_bottleneck``, ``h0_wasserstein``, ``h0_total_persistence``, ``h0_betti`` (and ``h1_*``);
    the rest (``*_abs``, ``*_delta``, Betti L1/L∞ in counts) are for the report.
    """
    if baseline.probe_sha256 != current.probe_sha256:
        raise BadInputError(
            f"the probe differs from the baseline's (SHA-256 {current.probe_sha256[:12]}… vs "
            f"{baseline.probe_sha256[:12]}…, shape {current.meta['probe']['shape']} vs "
            f"{baseline.meta['probe']['shape']}); check against the probe the baseline was written "
            "with, or rewrite the baseline with --write-baseline"
        )
    return compare_diagrams(baseline, current, q=q, engine=engine)


def compare_diagrams(baseline, current, *, q: int = 1, engine: str = "exact") -> list[dict]:
    """Row i: every metric of ``current``'s i-th diagram against ``baseline``'s (``compare``'s rows).

    Both hold ``grid``, ``h0``, ``betti0`` (and ``h1``, ``betti1``, possibly None) with as many
    diagrams; the static view's fingerprints are compared through this too.
    """
    if not np.array_equal(baseline.grid, current.grid):
        raise ValueError("fingerprints on different grids: compute the current one with grid=baseline.grid")
    dims = [("h0", baseline.h0, current.h0, baseline.betti0, current.betti0)]
    if baseline.h1 is not None and current.h1 is not None:
        dims.append(("h1", baseline.h1, current.h1, baseline.betti1, current.betti1))
    rows = []
    for i in range(len(baseline)):
        row = {"index": i}
        for name, base, cur, base_betti, cur_betti in dims:
            a, b = base[i], cur[i]
            births = np.abs(a[:, 0])
            bottleneck = bottleneck_distance(a, b)
            wasserstein = wasserstein_distance(a, b, q, engine=engine)
            diff = np.abs(cur_betti[i] - base_betti[i])
            row.update({
                f"{name}_bottleneck": relative_change(bottleneck, float(births.max(initial=0.0))),
                f"{name}_bottleneck_abs": bottleneck,
                f"{name}_wasserstein": relative_change(wasserstein, float((births ** q).sum() ** (1 / q))),
                f"{name}_wasserstein_abs": wasserstein,
                f"{name}_betti": relative_change(float(diff.sum()), float(base_betti[i].sum())),
                f"{name}_betti_l1": int(diff.sum()),
                f"{name}_betti_linf": int(diff.max(initial=0)),
                f"{name}_points_delta": len(b) - len(a),
                f"{name}_essential_delta": int(np.isinf(b[:, 1]).sum() - np.isinf(a[:, 1]).sum()),
            })
            if name == "h0":
                tp_a, tp_b = total_persistence(a), total_persistence(b)
                row.update(h0_total_persistence=relative_change(abs(tp_b - tp_a), tp_a),
                           h0_total_persistence_abs=abs(tp_b - tp_a))
        rows.append(row)
    return rows


def gated_metrics(h1: bool) -> list[tuple[str, str]]:
    """(metric, tolerance name) pairs that ``check`` gates, in report order."""
    out = [("h0_bottleneck", "bottleneck"), ("h0_wasserstein", "wasserstein"),
           ("h0_total_persistence", "total_persistence"), ("h0_betti", "betti")]
    if h1:
        out += [("h1_bottleneck", "bottleneck"), ("h1_wasserstein", "wasserstein"), ("h1_betti", "betti")]
    return out


@dataclass
class Verdict:
    """The outcome of a check: per gated metric, the worst input and whether all inputs pass."""

    rows: list[dict]
    tolerances: dict
    metrics: list[dict] = field(default_factory=list)
    gated: list[tuple[str, str]] | None = None  # (metric, tolerance name); None: gated_metrics(H1 or not)

    def __post_init__(self):
        h1 = bool(self.rows) and "h1_bottleneck" in self.rows[0]
        for metric, tol_name in self.gated or gated_metrics(h1):
            values = np.array([r[metric] for r in self.rows], dtype=np.float64)
            tol = float(self.tolerances[tol_name])
            failing = [int(i) for i in np.flatnonzero(~(values <= tol))]  # NaN fails too
            worst = int(np.argmax(np.where(np.isnan(values), np.inf, values))) if len(values) else None
            self.metrics.append({"metric": metric, "tolerance": tol, "max": float(values.max(initial=0.0)),
                                 "worst_input": worst, "failing_inputs": failing, "passed": not failing})

    @property
    def passed(self) -> bool:
        return all(m["passed"] for m in self.metrics)


def check(baseline: Fingerprint, model, probe_inputs, *, tolerances: dict | None = None, q: int = 1,
          batch_size: int = 32, workers: int = 1, progress=None) -> tuple[Fingerprint, Verdict]:
    """Fingerprint ``model`` like ``baseline`` (same options, same grid) and judge the drift."""
    tolerances = {**DEFAULT_TOLERANCES, **(tolerances or {})}
    options = baseline.options
    current = fingerprint(model, probe_inputs, grid=baseline.grid, h1=options["h1"],
                          threshold=options["threshold"], percentile=options["percentile"],
                          vertices=options["vertices"], maxpool_rule=options["maxpool_rule"],
                          batch_size=batch_size, workers=workers, progress=progress)
    return current, Verdict(compare(baseline, current, q=q), tolerances)


# ---------------------------------------------------------------------------------------------
# Reports


def report_dict(verdict: Verdict | None, *, model, baseline_path, baseline: Fingerprint | None,
                current: Fingerprint | None, q: int, seconds: float, error: OnnxtopoError | None = None,
                rows_key: str = "inputs") -> dict:
    """The JSON report: inputs, per-input metrics, per-metric verdicts and the overall verdict.

    ``rows_key`` names the per-row list ("diagrams" for the static view, one row per diagram)."""
    from . import __version__

    out = {"onnxtopo_version": __version__, "model": str(model), "baseline": str(baseline_path), "wasserstein_q": q,
           "seconds": round(seconds, 3)}
    if baseline is not None:
        out["baseline_model"] = baseline.meta["model"]
        out["options"] = baseline.options
    if current is not None:
        out["current_model"] = current.meta["model"]
        out["same_model_file"] = baseline is not None and current.meta["model"]["sha256"] == baseline.meta["model"]["sha256"]
    if error is not None:
        out.update(verdict="error", exit_code=error.exit_code, error=f"{type(error).__name__}: {error}")
        return out
    out.update(
        verdict="pass" if verdict.passed else "drift",
        tolerances=verdict.tolerances,
        metrics=[{k: json_number(v) for k, v in m.items()} for m in verdict.metrics],
        **{rows_key: [{k: json_number(v) for k, v in row.items()} for row in verdict.rows]},
    )
    return out


def junit_xml(verdict: Verdict | None, *, model, seconds: float, error: OnnxtopoError | None = None,
              rows_are: str = "probe inputs") -> bytes:
    """JUnit XML: one testsuite, one testcase per gated metric (an <error> one if the check could not run).

    ``rows_are`` names the verdict's rows in the failure messages ("diagrams" for the static view)."""
    suite_name = f"onnxtopo check {Path(str(model)).name}"
    classname = "onnxtopo.check." + Path(str(model)).stem.replace(".", "_")
    suites = ET.Element("testsuites", name="onnxtopo check")
    suite = ET.SubElement(suites, "testsuite", name=suite_name, time=f"{seconds:.3f}")
    cases = failures = errors = 0
    if error is not None:
        case = ET.SubElement(suite, "testcase", classname=classname, name="check", time=f"{seconds:.3f}")
        node = ET.SubElement(case, "error", message=str(error), type=type(error).__name__)
        node.text = f"onnxtopo check could not compare the model (exit code {error.exit_code}): {error}"
        cases, errors = 1, 1
    else:
        for m in verdict.metrics:
            cases += 1
            case = ET.SubElement(suite, "testcase", classname=classname, name=m["metric"], time="0")
            if m["passed"]:
                continue
            failures += 1
            values = [verdict.rows[i][m["metric"]] for i in m["failing_inputs"]]
            row = rows_are.split()[-1][:-1]  # "probe inputs" -> "input", "diagrams" -> "diagram"
            message = (f"{m['metric']} = {m['max']:.3g} exceeds the tolerance {m['tolerance']:.3g} on "
                       f"{len(values)} of {len(verdict.rows)} {rows_are} (worst: {row} {m['worst_input']})")
            node = ET.SubElement(case, "failure", message=message, type="drift")
            node.text = "\n".join(f"{row} {i}: {v:.6g}" for i, v in zip(m["failing_inputs"], values))
    for element in (suites, suite):
        element.set("tests", str(cases))
        element.set("failures", str(failures))
        element.set("errors", str(errors))
    suite.set("skipped", "0")
    ET.indent(suites)
    buffer = io.BytesIO()
    ET.ElementTree(suites).write(buffer, encoding="utf-8", xml_declaration=True)
    return buffer.getvalue() + b"\n"


def format_table(verdict: Verdict, rows_are: str = "inputs") -> str:
    """The human table: metric, max over inputs (or ``rows_are``), tolerance, result."""
    header = ["metric", f"max over {rows_are}", "tolerance", "result"]
    rows = []
    for m in verdict.metrics:
        result = "pass" if m["passed"] else (f"FAIL ({len(m['failing_inputs'])}/{len(verdict.rows)} {rows_are}, "
                                             f"worst: {rows_are[:-1]} {m['worst_input']})")
        rows.append([m["metric"], f"{m['max']:.3g}", f"{m['tolerance']:.3g}", result])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows])
