"""Running onnxtopo on a Dask distributed cluster (optional: ``pip install "onnxtopo[dask]"``).

Nothing here imports Dask until a scheduler address is given: local runs never need it.

Two entry points:

* ``analyze_on_dask(model, inputs, address, h1=..., ...)``: ``onnxtopo.analyze`` with the batches
  of inputs spread over the cluster's workers. The model is checked and planned here, then its
  normalized bytes are sent once to every worker (no shared filesystem needed); each task plans
  it (once per worker process, cached) and analyzes one batch; results (AnalysisResult objects
  holding numpy arrays) come back in input order, identical to ``onnxtopo.analyze``'s.
* ``onnxtopo zoo DIR --out table.csv --scheduler tcp://HOST:8786``: the zoo's (model, batch)
  tasks run on the cluster. Those tasks open the models by path, so the workers must see the
  model files at the same absolute paths as the client (a shared or replicated filesystem).

Pointing it at a real cluster
-----------------------------
On every machine, install the same onnxtopo (and its dependencies) with the Dask extra::

    pip install "onnxtopo[dask]"

Start a scheduler on one machine, and workers anywhere that can reach it::

    dask-scheduler --port 8786                                  # prints tcp://10.0.0.1:8786
    dask-worker tcp://10.0.0.1:8786 --nworkers 4 --nthreads 1   # on each worker machine

(``dask scheduler`` / ``dask worker`` are the same commands in recent Dask.) One thread per
worker process is best: each task runs onnxruntime single-threaded and the forest engine is
single-threaded, so processes, not threads, give the parallelism; size ``--nworkers`` to the
cores and the memory (``onnxtopo inspect`` prints the memory one input needs). Then::

    onnxtopo zoo models/ --out zoo.csv --scheduler tcp://10.0.0.1:8786

or, from Python::

    results = onnxtopo.distributed.analyze_on_dask("model.onnx", x, "tcp://10.0.0.1:8786", h1=True)

For a quick try on one machine, ``distributed.LocalCluster(n_workers=2, threads_per_worker=1)``
gives an address (``cluster.scheduler_address``) usable the same way.

Errors: onnxtopo's own errors raised in a worker come back as the same exception class (and
exit code). A missing Dask, an unreachable scheduler or a lost worker raise ``ClusterError``
(exit code 8).
"""

from __future__ import annotations

import hashlib

from .api import AnalysisOptions, inspect
from .errors import ClusterError, OnnxtopoError
from .executors import DaskExecutor, analyze_batch_task
from .runtime import validate_inputs

# ClusterError lives in onnxtopo.errors, DaskExecutor (and the connection timeout) in
# onnxtopo.executors; both stay importable from here.
__all__ = ["ClusterError", "DaskExecutor", "analyze_on_dask"]


def analyze_on_dask(model, inputs, address, *, maxpool_rule: str = "window", batch_size: int = 32,
                    errors: str = "raise", h1: bool = AnalysisOptions.h1,
                    threshold: float | None = AnalysisOptions.threshold,
                    percentile: float | None = AnalysisOptions.percentile, vertices=AnalysisOptions.vertices,
                    engine: str = AnalysisOptions.engine, chunk_edges: int = AnalysisOptions.chunk_edges) -> list:
    """``onnxtopo.analyze`` on a Dask cluster: one AnalysisResult per input, in input order.

    ``model``: a path, serialized bytes or an onnx.ModelProto; ``inputs``: (n, *sample shape);
    ``address``: the scheduler's address (``tcp://host:8786``) or a ``distributed.Client``.
    ``h1``, ``threshold``, ``percentile``, ``vertices``, ``engine`` and ``chunk_edges`` are the
    fields of ``onnxtopo.api.AnalysisOptions``, as for ``onnxtopo.analyze``. The model is checked
    and the inputs validated here, before anything is sent. With ``errors="skip"``, inputs whose
    analysis fails give an ``onnxtopo.Failure`` instead of raising.
    """
    opts = AnalysisOptions(h1=h1, threshold=threshold, percentile=percentile, vertices=vertices, engine=engine,
                           chunk_edges=chunk_edges)
    if errors not in ("raise", "skip"):
        raise ValueError(f'errors must be "raise" or "skip", got {errors!r}')
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    plan = inspect(model, maxpool_rule=maxpool_rule)  # checked and planned here; no session needed
    x = validate_inputs(plan, inputs)
    size = plan.fixed_batch or batch_size
    model_bytes = plan.model.SerializeToString()
    digest = hashlib.sha256(model_bytes).hexdigest()
    with DaskExecutor(address) as executor:
        shared = executor.share(model_bytes)
        futures = [executor.submit(analyze_batch_task, shared, digest, plan.options, x[start:start + size], start,
                                   opts, errors == "skip") for start in range(0, len(x), size)]
        try:
            parts = executor.gather(futures)
        except OnnxtopoError:
            raise
        except Exception as exc:  # a worker died, the connection dropped, ...
            raise ClusterError(f"the Dask cluster failed to analyze the inputs ({type(exc).__name__}: {exc})") from exc
    return [result for part in parts for result in part]
