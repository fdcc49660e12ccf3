"""Files: reading inputs, writing results (atomically, byte-identical for identical content).

Inputs: a ``.npy`` array, or one array of a ``.npz`` (chosen with ``key`` when there are
several), shaped (n, *sample shape). Results: see ``write_result`` and the README.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .errors import BadInputError


def load_inputs(path, key: str | None = None) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"input file {str(path)!r} does not exist")
    try:
        if path.suffix == ".npy":
            if key is not None:
                raise BadInputError(f"--key applies to .npz files only, not {path.name!r}")
            return np.load(path, allow_pickle=False)
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                names = list(archive.keys())
                if key is None and len(names) != 1:
                    raise BadInputError(
                        f"{path.name!r} holds {len(names)} arrays ({', '.join(names) or 'none'}); "
                        "choose one with --key"
                    )
                key = names[0] if key is None else key
                if key not in names:
                    raise BadInputError(f"{path.name!r} has no array {key!r}; it holds: {', '.join(names)}")
                return archive[key]
    except BadInputError:
        raise
    except Exception as exc:  # whatever numpy, zipfile or zlib raise on a corrupt file
        raise BadInputError(f"cannot read {str(path)!r} as a numpy file ({type(exc).__name__}: {exc})") from exc
    raise BadInputError(f"input file {path.name!r} must be a .npy or .npz file")


def atomic_write(path: Path, write) -> None:
    """Write through a temporary file renamed into place, so no half-written file remains."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o644)  # mkstemp makes files private; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_npz(f, arrays: dict) -> None:
    """A compressed .npz readable by np.load, byte-identical for identical arrays.

    np.savez stamps each member with the current time; fixed timestamps make results from
    different runs comparable byte for byte.
    """
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asarray(value), allow_pickle=False)


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows of dicts with the same keys as a CSV file with a header, written atomically."""
    import csv
    import io

    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(Path(path), lambda f: f.write(text.getvalue().encode()))


def write_json(path: Path, data) -> None:
    atomic_write(Path(path), lambda f: f.write((json.dumps(data, indent=2, default=_plain) + "\n").encode()))


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, np.ndarray)):
        return list(value)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def json_number(value):
    """``value`` as strict JSON takes it: JSON has no infinity, so +inf is written as the string "inf"
    (documented where a file holds one), -inf and NaN likewise."""
    if isinstance(value, float) and not math.isfinite(value):
        return "inf" if value > 0 else ("-inf" if value < 0 else "nan")
    return value


def write_result(out_dir: Path, result, name: str) -> None:
    """``<name>.npz`` with the diagrams and persistent subgraph, ``<name>.json`` with the summary."""
    p = result.persistence
    arrays = {
        "h0": p.h0,
        "subgraph_src": p.subgraph.src,
        "subgraph_dst": p.subgraph.dst,
        "subgraph_phi": p.subgraph.phi,
        "subgraph_birth": p.subgraph.birth,
    }
    if p.h1 is not None:
        arrays["h1"] = p.h1
    atomic_write(out_dir / f"{name}.npz", lambda f: write_npz(f, arrays))
    write_json(out_dir / f"{name}.json", result.summary())


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def run_digest(model: Path, inputs: np.ndarray, options: dict) -> str:
    """SHA-256 of what decides a run's results: the model's bytes, the inputs and the options."""
    digest = hashlib.sha256()
    digest.update(model.read_bytes())
    digest.update(repr((inputs.shape, str(inputs.dtype))).encode())
    digest.update(np.ascontiguousarray(inputs).tobytes())
    digest.update(json.dumps(options, sort_keys=True, default=_plain).encode())
    return digest.hexdigest()


def prepare_output(out: Path, *, model: Path, inputs: np.ndarray, options: dict, names: list[str],
                   resume: bool) -> set[int]:
    """Create the output folder and say which inputs are already done there.

    ``run.json`` records the run's digest (``run_digest``) under the key ``fingerprint``, as
    folders written earlier have it, so that they can still be resumed. Results of another run
    are never mixed in: a folder holding them is refused. Without ``resume`` everything is
    recomputed; with it, inputs whose two result files exist are kept.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInputError(f"cannot use {str(out)!r} as the output folder ({exc.strerror or exc})") from exc
    digest = run_digest(model, inputs, options)
    manifest = out / "run.json"
    if manifest.exists():
        try:
            previous = read_json(manifest)["fingerprint"]
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise BadInputError(f"{str(manifest)!r} is not a run record of onnxtopo; choose another --out") from exc
        if previous != digest:
            raise BadInputError(
                f"{str(out)!r} holds results of another run (different model, inputs or options); "
                "choose another --out or empty it"
            )
    elif resume and any(out.glob("input-*.npz")):
        raise BadInputError(f"{str(out)!r} has results but no run.json; it cannot be resumed safely")
    write_json(manifest, {"fingerprint": digest, "inputs": len(names), "options": options})
    if not resume:
        return set()
    return {i for i, name in enumerate(names) if (out / f"{name}.npz").exists() and (out / f"{name}.json").exists()}
