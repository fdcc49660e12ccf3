"""Running onnxtopo on a Dask distributed cluster (optional: ``pip install "onnxtopo[dask]"``).

Nothing here imports Dask until a scheduler address is given: local runs never need it.

Two entry points:

* ``analyze_on_dask(model, inputs, address, **options)``: ``onnxtopo.analyze`` with the batches
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
import threading
from collections import OrderedDict

import numpy as np

from .errors import ExitCode, OnnxtopoError

#: Seconds to wait for the scheduler before giving up.
CONNECT_TIMEOUT = 30


class ClusterError(OnnxtopoError):
    """Dask is missing, the scheduler cannot be reached, or a worker died during a task."""

    exit_code = ExitCode.CLUSTER_ERROR


def _client(address):
    """A distributed.Client connected to ``address`` (or ``address`` itself if it is a Client)."""
    try:
        import distributed
    except ImportError:
        raise ClusterError('running on a Dask cluster needs Dask: pip install "onnxtopo[dask]" '
                           '(or pip install "dask[distributed]")') from None
    if isinstance(address, distributed.Client):
        return address, False
    try:
        return distributed.Client(address, timeout=CONNECT_TIMEOUT, set_as_default=False), True
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {address!r} ({type(exc).__name__}: {exc}); "
                           "is dask-scheduler running there?") from exc


class DaskBackend:
    """The zoo's task backend on a Dask cluster (see ``onnxtopo.zoo``)."""

    threads = 1  # onnxruntime threads per task: workers' processes give the parallelism

    def __init__(self, address):
        from distributed import as_completed

        self.client, self._owned = _client(address)
        workers = len(self.client.scheduler_info().get("workers", {}))
        self.slots = 2 * max(1, workers)  # models in flight: enough to keep every worker busy
        # Tied to this client's loop: distributed.wait would need a default client.
        self._completed = as_completed(loop=self.client.loop)

    def submit(self, fn, *args):
        # pure=False: no hashing of the (possibly large) input batches to deduplicate tasks.
        future = self.client.submit(fn, *args, pure=False)
        self._completed.add(future)
        return future

    def wait_first(self, pending) -> set:
        return {next(self._completed)}  # every submitted future is pending until it comes out here

    def close(self):
        if self._owned:
            self.client.close()


# ---------------------------------------------------------------------------------------------
# analyze_on_dask

_WORKER_ANALYZERS: OrderedDict = OrderedDict()  # (model digest, PlanOptions) -> Analyzer, per worker process
_WORKER_LOCK = threading.Lock()
_WORKER_CACHE_SIZE = 2


def _worker_analyzer(model_bytes: bytes, digest: str, plan_options):
    from .api import Analyzer
    from .plan import build_plan

    key = (digest, plan_options)  # the same model planned with another MaxPool rule is another plan
    with _WORKER_LOCK:
        if key in _WORKER_ANALYZERS:
            _WORKER_ANALYZERS.move_to_end(key)
            return _WORKER_ANALYZERS[key]
    import onnx

    # The bytes are the client's normalized model: only planning is left to do, as in
    # onnxtopo.api's local worker processes.
    analyzer = Analyzer(build_plan(onnx.load_from_string(model_bytes), plan_options), threads=1)
    with _WORKER_LOCK:
        _WORKER_ANALYZERS[key] = analyzer
        while len(_WORKER_ANALYZERS) > _WORKER_CACHE_SIZE:
            _WORKER_ANALYZERS.popitem(last=False)
    return analyzer


def _analyze_batch(model_bytes: bytes, digest: str, plan_options, batch: np.ndarray, start: int, opts, skip: bool):
    """One task: the results of a validated batch whose first input has index ``start``."""
    return _worker_analyzer(model_bytes, digest, plan_options).analyze_batch(batch, start, opts, skip)


def analyze_on_dask(model, inputs, address, *, maxpool_rule: str = "window", batch_size: int = 32,
                    errors: str = "raise", **options) -> list:
    """``onnxtopo.analyze`` on a Dask cluster: one AnalysisResult per input, in input order.

    ``model``: a path, serialized bytes or an onnx.ModelProto; ``inputs``: (n, *sample shape);
    ``address``: the scheduler's address (``tcp://host:8786``) or a ``distributed.Client``;
    ``options``: those of ``onnxtopo.analyze`` (``h1``, ``threshold``, ``percentile``,
    ``vertices``, ``engine``, ``chunk_edges``). The model is checked and the inputs validated
    here, before anything is sent. With ``errors="skip"``, inputs whose analysis fails give an
    ``onnxtopo.api.Failure`` instead of raising.
    """
    from .activations import validate_inputs
    from .api import AnalysisOptions, inspect

    opts = AnalysisOptions(**options)
    if errors not in ("raise", "skip"):
        raise ValueError(f'errors must be "raise" or "skip", got {errors!r}')
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    plan = inspect(model, maxpool_rule=maxpool_rule)  # checked and planned here; no session needed
    x = validate_inputs(plan, inputs)
    size = plan.fixed_batch or batch_size
    starts = list(range(0, len(x), size))
    model_bytes = plan.model.SerializeToString()
    digest = hashlib.sha256(model_bytes).hexdigest()
    client, owned = _client(address)
    try:
        [shared] = client.scatter([model_bytes], broadcast=True, hash=False)  # sent once per worker
        futures = [client.submit(_analyze_batch, shared, digest, plan.options, x[start:start + size], start, opts,
                                 errors == "skip", pure=False) for start in starts]
        try:
            parts = client.gather(futures)
        except OnnxtopoError:
            raise
        except Exception as exc:  # a worker died, the connection dropped, ...
            raise ClusterError(f"the Dask cluster failed to analyze the inputs ({type(exc).__name__}: {exc})") from exc
    finally:
        if owned:
            client.close()
    return [result for part in parts for result in part]
