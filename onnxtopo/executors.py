"""Where analysis tasks run: in this process, in local processes, or on a Dask cluster.

Every executor has the same face: ``submit(fn, *args)`` returns a future; ``wait_first(pending)``
returns the futures of ``pending`` that are done (at least one); ``share(value)`` returns what to
pass to tasks in place of a large value (a model's bytes) so that it travels once per worker, not
once per task, and a task reads it back with ``shared(arg)``; ``close()`` ends the run (also as a
context manager). ``threads`` is the onnxruntime threads a task should use, ``slots`` how many
models to keep in flight so that no worker waits.

Tasks find their Analyzer in a small per-process cache (``cached_analyzer``), so a worker plans
a model once for all the batches it is given.
"""

from __future__ import annotations

import itertools
import sys
import threading
import warnings
from collections import OrderedDict
from concurrent.futures import FIRST_COMPLETED, Future
from dataclasses import dataclass

from .errors import ClusterError

#: Seconds to wait for a Dask scheduler before giving up.
CONNECT_TIMEOUT = 30

# -- the analyzer cache (per process) ---------------------------------------------------------

_ANALYZERS: OrderedDict = OrderedDict()  # key -> Analyzer, the most recently used few
_ANALYZERS_LOCK = threading.Lock()  # Dask workers may run several tasks in threads
ANALYZER_CACHE_SIZE = 2


def cached_analyzer(key: tuple, build):
    """The Analyzer cached under ``key`` in this process, made by ``build()`` on a miss."""
    with _ANALYZERS_LOCK:
        if key in _ANALYZERS:
            _ANALYZERS.move_to_end(key)
            return _ANALYZERS[key]
    analyzer = build()
    with _ANALYZERS_LOCK:
        _ANALYZERS[key] = analyzer
        while len(_ANALYZERS) > ANALYZER_CACHE_SIZE:
            _ANALYZERS.popitem(last=False)
    return analyzer


def clear_analyzers() -> None:
    """Drop this process's cached analyzers (and their onnxruntime sessions)."""
    with _ANALYZERS_LOCK:
        _ANALYZERS.clear()


def file_analyzer(path: str, sha256: str, threads: int | None):
    """The Analyzer of the model file at ``path`` (loaded, checked and planned with the defaults).

    ``sha256`` is the file's digest: a file changed since is planned afresh.
    """
    from .api import Analyzer

    return cached_analyzer(("file", path, sha256, threads), lambda: Analyzer(path, threads=threads))


def normalized_analyzer(model, digest: str, plan_options, threads: int | None = 1):
    """The Analyzer of a model ``load_model`` already checked and normalized, sent as bytes.

    ``model`` is the bytes, or what an executor's ``share`` gave for them; ``digest`` names them
    (their SHA-256). Only planning is left to do, once per process and plan options. A forked
    worker may be given the parent's Plan itself (``plan_options``'s, never pickled): it then only
    opens its own onnxruntime session.
    """
    from .api import Analyzer
    from .plan import Plan

    def build():
        import onnx

        from .plan import build_plan

        value = shared(model)
        plan = value if isinstance(value, Plan) else build_plan(onnx.load_from_string(value), plan_options)
        return Analyzer(plan, threads=threads)

    return cached_analyzer(("normalized", digest, plan_options, threads), build)


def analyze_batch_task(model, digest: str, plan_options, batch, start: int, opts, skip: bool) -> list:
    """One task: the results of a validated batch whose first input has index ``start``."""
    return normalized_analyzer(model, digest, plan_options).analyze_batch(batch, start, opts, skip)


# -- values sent once per worker --------------------------------------------------------------

_SHARED: dict[int, object] = {}  # what a local process pool's workers were given at start-up


@dataclass(frozen=True)
class Shared:
    """A value a local worker process received when it started, by its number."""

    number: int


def shared(arg):
    """The value behind ``arg`` if an executor's ``share`` made it, else ``arg`` itself."""
    return _SHARED[arg.number] if isinstance(arg, Shared) else arg


def _receive(values: dict) -> None:
    _SHARED.update(values)


_INHERITED: list = []  # a forked worker's copies of its parent's cached analyzers, never freed


def _receive_forked(values: dict) -> None:
    # An onnxruntime session copied by fork must not be destroyed in the child (its destructor
    # joins threads that stayed in the parent): the cache's copies are kept, out of the cache.
    with _ANALYZERS_LOCK:
        _INHERITED.extend(_ANALYZERS.values())
        _ANALYZERS.clear()
    _receive(values)


# -- executors ----------------------------------------------------------------------------------


class _Executor:
    def share(self, value):
        return value

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SerialExecutor(_Executor):
    """Runs tasks here, one at a time, oldest first, when ``wait_first`` asks for a result."""

    threads = None  # onnxruntime's default thread pool
    slots = 1

    def __init__(self):
        self._queue: list[tuple[Future, object, tuple]] = []

    def submit(self, fn, *args) -> Future:
        future = Future()
        self._queue.append((future, fn, args))
        return future

    def wait_first(self, pending) -> set:
        future, fn, args = self._queue.pop(0)
        future.set_result(fn(*args))
        return {future}

    def close(self) -> None:
        clear_analyzers()  # the sessions cached here would otherwise outlive the run


class ProcessExecutor(_Executor):
    """``workers`` local processes, spawned, or forked with ``fork=True`` where ``FORK`` is.

    A spawned process imports onnxtopo afresh and loads the compiled loops (about a second). A
    forked one starts in milliseconds with what this process has loaded, and receives shared
    values without pickling (a Plan, say); tasks must then open their own onnxruntime sessions,
    never use one made before the fork (its thread pool stays in this process).
    The processes start at the first ``submit``: values shared before it reach each of them once.
    """

    threads = 1
    #: Whether ``fork=True`` is honoured: on Linux only (macOS's system libraries are not fork-safe).
    FORK = sys.platform.startswith("linux")

    def __init__(self, workers: int, *, fork: bool = False):
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        self.fork = fork and self.FORK
        self.slots = workers + 1  # one model ahead, so no worker waits for the next inspection
        self._pool = None
        self._values: dict[int, object] = {}
        self._numbers = itertools.count()

    def share(self, value) -> Shared:
        if self._pool is not None:
            raise RuntimeError("share values before the first submit: the worker processes have started")
        number = next(self._numbers)
        self._values[number] = value
        return Shared(number)

    def submit(self, fn, *args) -> Future:
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            context = multiprocessing.get_context("fork" if self.fork else "spawn")
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context,
                                             initializer=_receive_forked if self.fork else _receive,
                                             initargs=(self._values,))
            with warnings.catch_warnings():
                # Python ≥ 3.12 warns when forking with threads alive: here idle BLAS and onnxruntime
                # pools, which the children never use (see the class docstring).
                warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
                return self._pool.submit(fn, *args)  # a fork context starts every worker here
        return self._pool.submit(fn, *args)

    def wait_first(self, pending) -> set:
        from concurrent.futures import wait

        return wait(pending, return_when=FIRST_COMPLETED).done

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


def dask_client(address):
    """(client, owned): a distributed.Client connected to ``address``, or ``address`` itself if it
    is a Client (then not owned: the caller's to close)."""
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


class DaskExecutor(_Executor):
    """Tasks on a Dask cluster, given its scheduler's address or a ``distributed.Client``."""

    threads = 1  # onnxruntime threads per task: workers' processes give the parallelism

    def __init__(self, address):
        from distributed import as_completed

        self.client, self._owned = dask_client(address)
        workers = len(self.client.scheduler_info().get("workers", {}))
        self.slots = 2 * max(1, workers)  # models in flight: enough to keep every worker busy
        # Tied to this client's loop: distributed.wait would need a default client.
        self._completed = as_completed(loop=self.client.loop)

    def share(self, value):
        [future] = self.client.scatter([value], broadcast=True, hash=False)  # sent once per worker
        return future  # Dask hands tasks the value itself

    def submit(self, fn, *args):
        # pure=False: no hashing of the (possibly large) input batches to deduplicate tasks.
        future = self.client.submit(fn, *args, pure=False)
        self._completed.add(future)
        return future

    def wait_first(self, pending) -> set:
        return {next(self._completed)}  # every submitted future is pending until it comes out here

    def gather(self, futures) -> list:
        """The futures' results, in their order, in one round trip."""
        return self.client.gather(futures)

    def close(self) -> None:
        if self._owned:
            self.client.close()
