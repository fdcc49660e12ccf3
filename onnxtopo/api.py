"""The public API: one call from a model and inputs to diagrams."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .activations import ActivationRunner
from .errors import BadInputError, InvalidFiltrationError
from .executors import ProcessExecutor, analyze_batch_task
from .filtration import superlevel_filtration
from .graph import InducedGraph, build_graph, edge_blocks, reduced_blocks
from .homology import (
    DEFAULT_CHUNK_EDGES,
    ENGINES,
    Persistence,
    dionysus_persistence,
    forest_persistence,
)
from .model import load_model
from .plan import Plan, PlanOptions, build_plan
from .resources import default_limit, estimate, require_memory
from .runtime import validate_inputs


@dataclass(frozen=True)
class AnalysisResult:
    """What one input gives: its graph's size and its persistence."""

    index: int
    n_vertices: int  # vertices of the network (all layers)
    n_edges: int  # edges of the induced graph (φ > 0, after thresholds)
    persistence: Persistence

    @property
    def h0(self) -> np.ndarray:
        return self.persistence.h0

    @property
    def h1(self) -> np.ndarray | None:
        return self.persistence.h1

    @property
    def subgraph(self):
        return self.persistence.subgraph

    def summary(self) -> dict:
        p = self.persistence
        h0_finite = int(np.isfinite(p.h0[:, 1]).sum())
        out = {
            "index": self.index, "vertices": self.n_vertices, "edges": self.n_edges,
            "vertices_in_complex": p.n_simplices - self.n_edges,
            "h0_points": len(p.h0), "h0_finite_points": h0_finite, "h0_essential_points": len(p.h0) - h0_finite,
            "h0_total_persistence": p.total_persistence, "subgraph_edges": len(p.subgraph),
        }
        if p.h1 is not None:
            out["h1_points"] = len(p.h1)
        return out


@dataclass(frozen=True)
class Failure:
    """An input that could not be analyzed (with ``errors="skip"``), and why."""

    index: int
    error: str
    exit_code: int


def inspect(model, *, maxpool_rule: str = "window", start: str | None = None, stop: str | None = None) -> Plan:
    """Load, check and plan a model (path, bytes or onnx.ModelProto) without running it.

    ``start`` and ``stop`` name tensors of the model: the plan then covers the sub-network from
    ``start`` (layer 0; default: the model input, or for an integer input the first
    floating-point tensor computed from it) to the layer ``stop`` belongs to.
    """
    return build_plan(load_model(model), PlanOptions(maxpool_rule=maxpool_rule, start=start, stop=stop))


def persistence(graph: InducedGraph, *, h1: bool = False, vertices="max", engine: str = "forest") -> Persistence:
    """H0 (and optionally H1) diagrams and persistent subgraph of an induced graph's filtration.

    ``engine`` "forest" (default) is onnxtopo's exact maximum-spanning-forest engine, "dionysus"
    runs dionysus's general reduction; both give the same diagrams and subgraph, ties included.
    """
    _check_engine(engine)
    if engine == "dionysus":
        return dionysus_persistence(superlevel_filtration(graph, vertices), h1=h1)
    return forest_persistence([(graph.src, graph.dst, graph.phi)], graph.n_vertices, vertices=vertices, h1=h1)


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")


@dataclass(frozen=True)
class AnalysisOptions:
    """How each input's graph is filtered and its persistence computed: the single definition of
    the analysis parameters ``analyze``, ``Analyzer.analyze`` and ``analyze_on_dask`` take.

    ``h1``: also compute the H1 diagram. ``threshold``: keep the edges with φ ≥ threshold.
    ``percentile``: the reference's per-step filter, keeping the edges of each edge step with φ
    strictly above that percentile (0-100) of the step's candidate products. ``vertices``: the
    vertices' entry values, "max" (each vertex enters with its strongest edge), "inf" (all at
    once, from the start) or an array of one value per vertex. ``engine``: "forest" (exact, fast, streaming; default) or
    "dionysus" (the general reduction, an oracle). ``chunk_edges``: about how many edges the
    forest engine holds at once.
    """

    h1: bool = False
    threshold: float | None = None
    percentile: float | None = None
    vertices: object = "max"
    engine: str = "forest"
    chunk_edges: int = DEFAULT_CHUNK_EDGES

    def __post_init__(self):
        _check_engine(self.engine)
        if self.percentile is not None and not 0 <= self.percentile <= 100:
            raise ValueError(f"percentile must lie in [0, 100], got {self.percentile}")
        if self.chunk_edges < 1:
            raise ValueError(f"chunk_edges must be at least 1, got {self.chunk_edges}")


class Analyzer:
    """A planned model with its onnxruntime session, reused across batches of inputs."""

    def __init__(self, model, *, maxpool_rule: str = "window", start: str | None = None, stop: str | None = None,
                 threads: int | None = None):
        self.plan = model if isinstance(model, Plan) else inspect(model, maxpool_rule=maxpool_rule, start=start,
                                                                  stop=stop)
        self.runner = ActivationRunner(self.plan, threads=threads)
        # Fixed by the plan: computed once, not per input (small models analyze one in milliseconds).
        self._n_vertices = self.plan.n_vertices
        self._estimates = {}

    def batches(self, inputs, batch_size: int) -> list[np.ndarray]:
        """The validated inputs cut into batches (views); validation happens here, eagerly."""
        x = validate_inputs(self.plan, inputs)
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        size = self.plan.fixed_batch or batch_size
        return [x[start:start + size] for start in range(0, len(x), size)]

    def graphs(self, inputs, *, batch_size: int = 32, threshold=None, percentile=None) -> Iterator[InducedGraph]:
        """The induced graph of each input, in order, computed lazily batch by batch."""
        batches = self.batches(inputs, batch_size)
        return (build_graph(self.plan, activations, sample, threshold=threshold, percentile=percentile)
                for batch in batches for activations in [self.runner.run(batch)] for sample in range(len(batch)))

    def analyze(self, inputs, *, batch_size: int = 32, workers: int = 1, errors: str = "raise",
                memory_limit="auto", h1: bool = AnalysisOptions.h1, threshold: float | None = AnalysisOptions.threshold,
                percentile: float | None = AnalysisOptions.percentile, vertices=AnalysisOptions.vertices,
                engine: str = AnalysisOptions.engine,
                chunk_edges: int = AnalysisOptions.chunk_edges) -> Iterator[AnalysisResult]:
        """Analyze each input, yielding results in input order as they are computed.

        ``h1``, ``threshold``, ``percentile``, ``vertices``, ``engine`` and ``chunk_edges`` are
        the fields of ``AnalysisOptions`` (see there). With ``errors="skip"``, an input whose
        analysis fails through its own fault (NaN in an activation, say) yields a ``Failure``
        instead of stopping the run; a fault of the model stops it. ``memory_limit`` (bytes,
        "auto": 80% of the memory available, or None) refuses, before any work, an analysis
        estimated to need more (ResourceLimitError). The inputs are validated before this
        returns; the work happens as results are consumed. With ``workers`` > 1, batches are
        spread over that many processes, each with its own single-threaded onnxruntime session (on
        Linux forked, after this process has analyzed the first input, so that they start warm).
        The forest engine never holds a whole induced graph: its edges stream through it in
        chunks of about ``chunk_edges``.
        """
        opts = AnalysisOptions(h1=h1, threshold=threshold, percentile=percentile, vertices=vertices, engine=engine,
                               chunk_edges=chunk_edges)
        _check_errors(errors)
        skip = errors == "skip"
        key = (opts.engine, opts.h1, opts.chunk_edges, batch_size)
        if key not in self._estimates:
            self._estimates[key] = estimate(self.plan, engine=opts.engine, h1=opts.h1, chunk_edges=opts.chunk_edges,
                                            batch_size=batch_size)
        need = self._estimates[key]
        require_memory(need, default_limit() if memory_limit == "auto" else memory_limit, workers=workers)
        batches = self.batches(inputs, batch_size)
        starts = np.cumsum([0] + [len(b) for b in batches[:-1]]).tolist()
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if workers == 1 or len(batches) == 1:
            return (r for start, batch in zip(starts, batches) for r in self.analyze_batch(batch, start, opts, skip))
        return self._parallel(batches, starts, opts, skip, workers)

    def analyze_batch(self, batch: np.ndarray, start: int, opts: AnalysisOptions,
                      skip: bool = False) -> list[AnalysisResult | Failure]:
        """Results for one validated batch whose first input has index ``start``."""
        try:
            activations = self.runner.run(batch)
        except BadInputError as exc:  # an input's own fault (say, an activation overflows)
            if not skip:
                raise
            if len(batch) == 1:
                return [Failure(start, str(exc), exc.exit_code)]
            # Find the culprit: run the inputs of the batch one by one.
            return [r for i in range(len(batch)) for r in self.analyze_batch(batch[i:i + 1], start + i, opts, skip)]
        results = []
        for sample in range(len(batch)):
            try:
                results.append(self._analyze_one(start + sample, activations, sample, opts))
            except (BadInputError, InvalidFiltrationError) as exc:
                if not skip:
                    raise
                results.append(Failure(start + sample, str(exc), exc.exit_code))
        return results

    def _analyze_one(self, index, activations, sample, opts: AnalysisOptions) -> AnalysisResult:
        n_vertices = self._n_vertices
        if opts.engine == "dionysus":
            graph = build_graph(self.plan, activations, sample, threshold=opts.threshold, percentile=opts.percentile)
            result = persistence(graph, h1=opts.h1, vertices=opts.vertices, engine=opts.engine)
        else:
            if opts.threshold is None and opts.percentile is None and isinstance(opts.vertices, str):
                blocks = (block for _, block in reduced_blocks(self.plan, activations, sample,
                                                                max_edges=opts.chunk_edges, forests=not opts.h1))
            else:
                blocks = ((src, dst, phi) for _, src, dst, phi in
                          edge_blocks(self.plan, activations, sample, threshold=opts.threshold,
                                      percentile=opts.percentile, max_edges=opts.chunk_edges))
            result = forest_persistence(blocks, n_vertices, vertices=opts.vertices, h1=opts.h1,
                                        chunk_edges=opts.chunk_edges)
        return AnalysisResult(index, n_vertices, result.n_edges, result)

    def _parallel(self, batches, starts, opts, skip, workers):
        model_bytes = self.plan.model.SerializeToString()
        digest = hashlib.sha256(model_bytes).hexdigest()
        first = []
        if ProcessExecutor.FORK:
            # The first input, analyzed here, loads the compiled loops and fills the plan's pattern
            # caches once; the workers, forked after it, inherit them and the plan itself.
            first = self.analyze_batch(batches[0][:1], starts[0], opts, skip)
            batches, starts = [batches[0][1:], *batches[1:]], [starts[0] + 1, *starts[1:]]
        with ProcessExecutor(workers, fork=True) as executor:
            # Spawned workers get the normalized model, once each: they only plan it.
            model = executor.share(self.plan if executor.fork else model_bytes)
            futures = [executor.submit(analyze_batch_task, model, digest, self.plan.options, batch, start, opts, skip)
                       for start, batch in zip(starts, batches, strict=True) if len(batch)]
            yield from first
            for future in futures:
                yield from future.result()


def _check_errors(errors: str) -> None:
    if errors not in ("raise", "skip"):
        raise ValueError(f'errors must be "raise" or "skip", got {errors!r}')


def analyze(model, inputs, *, maxpool_rule: str = "window", start: str | None = None, stop: str | None = None,
            batch_size: int = 32, workers: int = 1, errors: str = "raise", memory_limit="auto",
            h1: bool = AnalysisOptions.h1, threshold: float | None = AnalysisOptions.threshold,
            percentile: float | None = AnalysisOptions.percentile, vertices=AnalysisOptions.vertices,
            engine: str = AnalysisOptions.engine, chunk_edges: int = AnalysisOptions.chunk_edges
            ) -> list[AnalysisResult | Failure]:
    """Persistence of the graph each input induces in ``model``.

    ``model`` is a path, serialized bytes or an onnx.ModelProto; ``inputs`` an array of shape
    (n, *sample shape). The analysis parameters are the fields of ``AnalysisOptions``: ``h1``
    (also compute H1), ``threshold`` (keep φ ≥ threshold), ``percentile`` (the reference's
    per-step percentile filter), ``vertices`` ("max", "inf" or an array), ``engine`` ("forest",
    exact and fast, default; or "dionysus"), ``chunk_edges``. ``start``/``stop`` restrict the
    analysis to the sub-network between two named tensors (see ``inspect``); ``batch_size``,
    ``workers``, ``errors`` and ``memory_limit`` are those of ``Analyzer.analyze``. Returns one
    AnalysisResult per input (a ``Failure`` for an input skipped with ``errors="skip"``), with
    ``h0`` (and ``h1`` if asked) as (n, 2) arrays of (birth, death) and the persistent ``subgraph``.
    """
    analyzer = Analyzer(model, maxpool_rule=maxpool_rule, start=start, stop=stop)
    return list(analyzer.analyze(inputs, batch_size=batch_size, workers=workers, errors=errors,
                                 memory_limit=memory_limit, h1=h1, threshold=threshold, percentile=percentile,
                                 vertices=vertices, engine=engine, chunk_edges=chunk_edges))


def induced_graph(model, x, *, maxpool_rule: str = "window", start: str | None = None, stop: str | None = None,
                  threshold=None, percentile=None) -> InducedGraph:
    """The induced graph of one input ``x`` (per-sample shape, no batch axis)."""
    analyzer = Analyzer(model, maxpool_rule=maxpool_rule, start=start, stop=stop)
    return next(analyzer.graphs(np.asarray(x)[None], threshold=threshold, percentile=percentile))
