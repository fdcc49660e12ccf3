"""``onnxtopo zoo``: inspect and analyze every model of a collection, one table row per model.

The models are every ``*.onnx`` file under a directory (recursively, sorted by path), or the
paths listed in a text file (one per line, relative to the list's folder; blank lines and lines
starting with ``#`` are skipped). Each model is inspected (plan, layers, candidate edges) and
analyzed with onnxtopo's defaults on:

* the ``--inputs`` array (all of it, or its first ``--max-inputs``), when its sample shape is
  the model's input shape and its dtype suits the model;
* otherwise a deterministic probe: ``PROBE_SIZE`` (2) samples drawn uniformly from [0, 1) by
  ``numpy.random.default_rng(PROBE_SEED)`` (seed 0) with the model's input shape, cast to the
  model's input dtype. Two models with the same input shape get the same probe.

Table columns (CSV, or Parquet with pyarrow installed), in order:

========================  ===================================================================
``path``                  the model, relative to the directory (or to the list's folder)
``sha256``                SHA-256 of the model file
``status``                ``ok`` or ``error``
``error_class``           the onnxtopo error class (``BadModelError``, ``UnsupportedOpError``,
                          ``BadInputError``, ``ResourceLimitError``, ...), ``internal error``
                          for an unexpected exception (a bug), ``ClusterError`` for a lost
                          Dask worker; empty when ok
``error_message``         the error's one-line message
``exit_code``             the exit code ``onnxtopo analyze`` would return for it (3, 4, 5, 7, 70...)
``producer``              ``producer_name`` of the ModelProto
``producer_version``      ``producer_version`` of the ModelProto
``opset``                 opset of the default domain
``op_types``              sorted unique op types of the model's graph, ';'-joined (ops of other
                          domains as ``domain.Op``)
``layers``                layers of the plan (the input included)
``vertices``              neurons over all layers
``candidate_edges``       edges per input before those with φ = 0 are dropped
``inputs``                number of inputs analyzed
``input_source``          ``inputs`` (the ``--inputs`` array) or ``probe``
``edges``                 mean over the analyzed inputs of the induced graph's edges (φ > 0)
``h0_points``             mean number of H0 points
``h0_essential``          mean number of essential H0 classes (connected components)
``h0_total_persistence``  mean H0 total persistence (sum of birth − death, finite points)
``time_s``                seconds of computation (inspect + analysis; summed over workers)
``run_config``            digest of the inputs and options: ``--resume`` skips a model only if
                          its path, SHA-256 and run_config match a row of the table
========================  ===================================================================

The table is rewritten atomically after each model, so a killed run loses only the models in
progress; ``--resume`` keeps the rows of finished models (whatever their status) and computes
the others. Without ``--resume`` the table is started afresh. Rows are in model order.

One bad model never stops the run: its row says why it failed. Exit code 0 when every model is
ok, 1 when some failed (5 for bad arguments: no models found, unreadable ``--inputs``).

Work is spread as (model, batch of inputs) tasks: locally in ``--workers`` processes, or on a
Dask cluster with ``--scheduler`` (see ``onnxtopo.distributed``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from .errors import BadInputError, ClusterError, ExitCode, OnnxtopoError
from .executors import DaskExecutor, ProcessExecutor, SerialExecutor, file_analyzer

PROBE_SEED = 0
PROBE_SIZE = 2
INTERNAL_ERROR_CLASS = "internal error"  # the error_class of an unexpected exception (a bug)

COLUMNS = {  # name -> type, in table order
    "path": str, "sha256": str, "status": str, "error_class": str, "error_message": str, "exit_code": int,
    "producer": str, "producer_version": str, "opset": int, "op_types": str, "layers": int, "vertices": int,
    "candidate_edges": int, "inputs": int, "input_source": str, "edges": float, "h0_points": float,
    "h0_essential": float, "h0_total_persistence": float, "time_s": float, "run_config": str,
}


# ---------------------------------------------------------------------------------------------
# Tasks: what runs in a worker (this process, a local process or a Dask worker). Each returns
# plain data and never raises: errors come back as {"ok": False, ...}.

def _error(exc: BaseException) -> dict:
    if isinstance(exc, OnnxtopoError):
        return {"ok": False, "error_class": type(exc).__name__, "error_message": _one_line(str(exc)),
                "exit_code": exc.exit_code}
    return {"ok": False, "error_class": INTERNAL_ERROR_CLASS,
            "error_message": _one_line(f"{type(exc).__name__}: {exc}"), "exit_code": ExitCode.INTERNAL_ERROR}


def _one_line(text: str) -> str:
    return " ".join(text.split())


def inspect_task(path: str, sha256: str, threads: int | None = None, batch_size: int = 1) -> dict:
    """The model's provenance and plan: producer, opset, op types, layers, sizes, input signature.

    The provenance comes from the file as exported (the plan holds the normalized model) and is
    returned even when planning fails, so that an error row still says what the model was.
    """
    started = time.perf_counter()
    about = dict.fromkeys(("producer", "producer_version", "opset", "op_types"))
    try:
        import onnx

        proto = onnx.load(path, load_external_data=False)
        opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
        about = {"producer": proto.producer_name, "producer_version": proto.producer_version,
                 "opset": None if opset is None else int(opset),
                 "op_types": ";".join(sorted({n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
                                              for n in proto.graph.node}))}
    except Exception:  # noqa: BLE001, S110 - unreadable: planning below says why, as a BadModelError
        pass
    try:
        from .resources import default_limit, estimate, require_memory

        plan = file_analyzer(path, sha256, threads).plan
        require_memory(estimate(plan, batch_size=batch_size), default_limit())  # refuse a model that would not fit
        return dict(about, ok=True, layers=len(plan.layers), vertices=plan.n_vertices,
                    candidate_edges=sum(r["edges"] for r in plan.describe()),
                    input_shape=list(plan.input_shape), input_dtype=plan.input_dtype.str,
                    seconds=time.perf_counter() - started)
    except Exception as exc:  # noqa: BLE001 - any failure is this model's row
        return dict(about, **_error(exc), seconds=time.perf_counter() - started)


def analyze_task(path: str, sha256: str, batch: np.ndarray, threads: int | None = None) -> dict:
    """Summaries (edges, H0 points, essential points, total persistence) of a batch of inputs."""
    started = time.perf_counter()
    try:
        analyzer = file_analyzer(path, sha256, threads)
        rows = [(r.n_edges, len(r.h0), int(np.isinf(r.h0[:, 1]).sum()), r.persistence.total_persistence)
                for r in analyzer.analyze(batch, batch_size=len(batch))]
        return {"ok": True, "summaries": np.array(rows, dtype=np.float64).reshape(-1, 4),
                "seconds": time.perf_counter() - started}
    except Exception as exc:  # noqa: BLE001 - any failure is this model's row
        return dict(_error(exc), seconds=time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------
# The run


def find_models(source) -> tuple[Path, list[str]]:
    """(root, model paths relative to it): every *.onnx under a directory, or a list file's entries."""
    source = Path(source)
    if source.is_dir():
        models = sorted(p.relative_to(source).as_posix() for p in source.rglob("*.onnx") if p.is_file())
        if not models:
            raise BadInputError(f"no *.onnx file under {str(source)!r}")
        return source, models
    if not source.is_file():
        raise BadInputError(f"{str(source)!r} is neither a directory of models nor a list file")
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read the model list {str(source)!r} ({exc})") from exc
    models = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not models:
        raise BadInputError(f"the model list {str(source)!r} names no model")
    return source.parent, list(dict.fromkeys(models))


def probe_inputs(shape, dtype) -> np.ndarray:
    """The deterministic probe of a model whose inputs do not fit: seeded uniform [0, 1)."""
    rng = np.random.default_rng(PROBE_SEED)
    return rng.random((PROBE_SIZE, *shape)).astype(np.dtype(dtype))


def _choose_inputs(x: np.ndarray | None, info: dict) -> tuple[np.ndarray, str]:
    dtype = np.dtype(info["input_dtype"])
    fits = (x is not None and tuple(x.shape[1:]) == tuple(info["input_shape"]) and len(x) > 0
            and (x.dtype.kind == "f" or dtype.kind != "f"))  # float models refuse integer pixels
    if fits:
        return x, "inputs"
    return probe_inputs(info["input_shape"], dtype), "probe"


def _sha256_file(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None  # missing or unreadable: the model's row will say so
    return digest.hexdigest()


def run_config(inputs: np.ndarray | None, max_inputs: int | None) -> str:
    """A short digest of what decides a row besides the model: the inputs and the probe rule."""
    from . import __version__

    digest = hashlib.sha256(json.dumps({"version": __version__, "probe": [PROBE_SEED, PROBE_SIZE],
                                        "max_inputs": max_inputs}).encode())
    if inputs is not None:
        digest.update(json.dumps([list(inputs.shape), inputs.dtype.str]).encode())
        digest.update(np.ascontiguousarray(inputs).tobytes())
    return digest.hexdigest()[:16]


class _Model:
    """One model's progress: its inspection, its batches, its row."""

    def __init__(self, position: int, rel: str, path: Path, sha256: str | None):
        self.position, self.rel, self.path, self.sha256 = position, rel, path, sha256
        self.info: dict | None = None
        self.source = ""
        self.parts: dict[int, np.ndarray] = {}
        self.n_batches = 0
        self.seconds = 0.0
        self.error: dict | None = None


def run_zoo(source, out, *, inputs: np.ndarray | None = None, max_inputs: int | None = None,
            batch_size: int = 32, resume: bool = False, workers: int = 1, scheduler: str | None = None,
            progress: bool = True) -> list[dict]:
    """Build the table (see the module's docstring) and write it to ``out`` (.csv or .parquet).

    Returns the rows, in model order. ``scheduler`` (tcp://host:port) runs the tasks on a Dask
    cluster, ``workers`` > 1 in local processes; by default everything runs in this process.
    """
    from tqdm import tqdm

    out = Path(out)
    writer = _table_writer(out)
    root, rels = find_models(source)
    if inputs is not None and max_inputs is not None:
        inputs = inputs[:max_inputs]
    config = run_config(inputs, max_inputs)
    models = [_Model(k, rel, (root / rel).resolve(), _sha256_file(root / rel)) for k, rel in enumerate(rels)]
    rows: dict[int, dict] = {}
    if resume and out.exists():
        previous = {(r["path"], r["sha256"], r["run_config"]): r for r in _read_table(out)}
        for m in models:
            row = previous.get((m.rel, m.sha256, config))
            if row is not None and m.sha256 is not None:
                rows[m.position] = row
    todo = [m for m in models if m.position not in rows]
    if scheduler:
        executor = DaskExecutor(scheduler)
    elif workers > 1:
        executor = ProcessExecutor(workers)
    else:
        executor = SerialExecutor()

    def finish(m: _Model):
        rows[m.position] = _row(m, config)
        writer([rows[k] for k in sorted(rows)])
        if m.error is not None:
            bar.write(f"{m.rel}: {m.error['error_class']}: {m.error['error_message']}", file=sys.stderr)
        bar.update(1)

    try:
        with tqdm(total=len(models), initial=len(rows), unit="model", disable=not progress,
                  file=sys.stderr) as bar:
            writer([rows[k] for k in sorted(rows)])  # resumed rows, or an empty table
            queue = iter(todo)
            owner: dict = {}  # future -> (model, batch number or None for the inspection)

            def start_next():  # a model's tasks start with its inspection; its batches follow
                m = next(queue, None)
                if m is not None:
                    owner[executor.submit(inspect_task, str(m.path), m.sha256 or "", executor.threads,
                                         batch_size)] = (m, None)

            for _ in range(executor.slots):  # models in flight at once
                start_next()
            while owner:
                for future in executor.wait_first(set(owner)):
                    m, part = owner.pop(future)
                    try:
                        result = future.result()
                    except Exception as exc:  # noqa: BLE001 - the task never ran to its end (a lost worker)
                        result = _lost(exc, scheduler)
                    m.seconds += result.get("seconds", 0.0)
                    if part is None:
                        m.info = result
                    if not result["ok"]:
                        m.error = m.error or result  # the first error of the model is its row's
                    elif part is None:
                        x, m.source = _choose_inputs(inputs, result)
                        size = max(1, batch_size)
                        for b, start in enumerate(range(0, len(x), size)):
                            owner[executor.submit(analyze_task, str(m.path), m.sha256 or "", x[start:start + size],
                                                 executor.threads)] = (m, b)
                        m.n_batches = -(-len(x) // size)
                    else:
                        m.parts[part] = result["summaries"]
                    if not any(o is m for o, _ in owner.values()):  # nothing of this model left to run
                        finish(m)
                        start_next()
    finally:
        executor.close()
    return [rows[k] for k in sorted(rows)]


def _lost(exc: Exception, scheduler) -> dict:
    if scheduler:
        return {"ok": False, "error_class": ClusterError.__name__, "exit_code": ClusterError.exit_code,
                "error_message": _one_line(f"the task was lost: {type(exc).__name__}: {exc}")}
    return _error(exc)


def _row(m: _Model, config: str) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(path=m.rel, sha256=m.sha256, run_config=config, time_s=round(m.seconds, 3))
    info = m.info or {}
    for key in ("producer", "producer_version", "opset", "op_types", "layers", "vertices", "candidate_edges"):
        row[key] = info.get(key)
    if m.error is not None:
        row.update(status="error", error_class=m.error["error_class"], error_message=m.error["error_message"],
                   exit_code=m.error["exit_code"])
        return row
    summaries = np.concatenate([m.parts[b] for b in range(m.n_batches)])
    means = summaries.mean(axis=0)
    row.update(status="ok", error_class="", error_message="", exit_code=0, inputs=len(summaries),
               input_source=m.source, edges=float(means[0]), h0_points=float(means[1]),
               h0_essential=float(means[2]), h0_total_persistence=float(means[3]))
    return row


# ---------------------------------------------------------------------------------------------
# Tables


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back as the same float
    return str(value)


def _parse(value: str, kind):
    if value == "":
        return None if kind is not str else ""
    return kind(float(value)) if kind is int else kind(value)


def csv_bytes(rows: list[dict]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows([[_cell(row.get(c)) for c in COLUMNS] for row in rows])
    return buffer.getvalue().encode("utf-8")


def _table_writer(out: Path):
    """A function writing the rows to ``out`` atomically, chosen by its suffix."""
    from .files import atomic_write

    suffix = out.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise BadInputError(f"--out must end in .csv or .parquet, got {out.name!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".csv":
        return lambda rows: atomic_write(out, lambda f: f.write(csv_bytes(rows)))
    pa, pq = _pyarrow()
    schema = pa.schema([(c, {str: pa.string(), int: pa.int64(), float: pa.float64()}[t]) for c, t in COLUMNS.items()])

    def write(rows):
        table = pa.Table.from_pylist([{c: _typed(row.get(c), COLUMNS[c]) for c in COLUMNS} for row in rows],
                                     schema=schema)
        atomic_write(out, lambda f: pq.write_table(table, f))

    return write


def _typed(value, kind):
    if value is None or value == "" and kind is not str:
        return None
    return kind(value)


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise BadInputError("writing Parquet needs pyarrow (pip install pyarrow); or write a .csv table") from None
    return pa, pq


def _read_table(path: Path) -> list[dict]:
    """The rows of an existing table (for --resume), typed like fresh rows."""
    try:
        if path.suffix.lower() == ".parquet":
            _, pq = _pyarrow()
            table = pq.read_table(path)
            names, records = table.column_names, table.to_pylist()
        else:
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                records = list(reader)
                names = reader.fieldnames or []
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise ValueError(f"columns {', '.join(missing)} are missing")
        return [{c: _parse(_cell(r.get(c)), t) for c, t in COLUMNS.items()} for r in records]
    except BadInputError:
        raise
    except Exception as exc:
        raise BadInputError(f"cannot resume from {str(path)!r}: not a table written by onnxtopo zoo ({exc})") from exc
