"""The public API: one call from a model and inputs to diagrams."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .activations import ActivationRunner, validate_inputs
from .filtration import superlevel_filtration
from .graph import InducedGraph, build_graph, edge_blocks
from .model import load_model
from .homology import DEFAULT_CHUNK_EDGES, ENGINES, Persistence, dionysus_persistence, forest_persistence
from .plan import Plan, PlanOptions, build_plan


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
        out = dict(
            index=self.index, vertices=self.n_vertices, edges=self.n_edges,
            vertices_in_complex=p.n_simplices - self.n_edges,
            h0_points=len(p.h0), h0_finite_points=h0_finite, h0_essential_points=len(p.h0) - h0_finite,
            h0_total_persistence=p.total_persistence, subgraph_edges=len(p.subgraph),
        )
        if p.h1 is not None:
            out["h1_points"] = len(p.h1)
        return out


def inspect(model, *, maxpool_rule: str = "window") -> Plan:
    """Load, check and plan a model (path, bytes or onnx.ModelProto) without running it."""
    return build_plan(load_model(model), PlanOptions(maxpool_rule=maxpool_rule))


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


class Analyzer:
    """A planned model with its onnxruntime session, reused across batches of inputs."""

    def __init__(self, model, *, maxpool_rule: str = "window", threads: int | None = None):
        self.plan = model if isinstance(model, Plan) else inspect(model, maxpool_rule=maxpool_rule)
        self.runner = ActivationRunner(self.plan, threads=threads)

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
                for activations, sample in self._samples(batches))

    def analyze(self, inputs, *, h1: bool = False, threshold=None, percentile=None, vertices="max",
                engine: str = "forest", batch_size: int = 32,
                chunk_edges: int = DEFAULT_CHUNK_EDGES) -> Iterator[AnalysisResult]:
        """Analyze each input in turn, yielding results as they are computed.

        The inputs are validated before this returns; the work happens as results are consumed.
        The forest engine never holds a whole induced graph: its edges stream through it in
        chunks of about ``chunk_edges``.
        """
        _check_engine(engine)
        batches = self.batches(inputs, batch_size)
        return (self._analyze_one(index, activations, sample, h1=h1, threshold=threshold,
                                  percentile=percentile, vertices=vertices, engine=engine,
                                  chunk_edges=chunk_edges)
                for index, (activations, sample) in enumerate(self._samples(batches)))

    def _samples(self, batches):
        for batch in batches:
            activations = self.runner.run(batch)
            for sample in range(len(batch)):
                yield activations, sample

    def _analyze_one(self, index, activations, sample, *, h1, threshold, percentile, vertices, engine,
                     chunk_edges) -> AnalysisResult:
        if engine == "dionysus":
            graph = build_graph(self.plan, activations, sample, threshold=threshold, percentile=percentile)
            result = persistence(graph, h1=h1, vertices=vertices, engine=engine)
        else:
            blocks = ((src, dst, phi) for _, src, dst, phi in
                      edge_blocks(self.plan, activations, sample, threshold=threshold, percentile=percentile,
                                  max_edges=chunk_edges))
            result = forest_persistence(blocks, self.plan.n_vertices, vertices=vertices, h1=h1,
                                        chunk_edges=chunk_edges)
        return AnalysisResult(index, self.plan.n_vertices, result.n_edges, result)


def analyze(model, inputs, *, h1: bool = False, threshold: float | None = None,
            percentile: float | None = None, vertices="max", engine: str = "forest",
            maxpool_rule: str = "window", batch_size: int = 32) -> list[AnalysisResult]:
    """Persistence of the graph each input induces in ``model``.

    ``model`` is a path, serialized bytes or an onnx.ModelProto; ``inputs`` an array of shape
    (n, *sample shape); ``engine`` is "forest" (exact, fast, default) or "dionysus". Returns one
    AnalysisResult per input, with ``h0`` (and ``h1`` if asked) as (n, 2) arrays of
    (birth, death) and the persistent ``subgraph``.
    """
    analyzer = Analyzer(model, maxpool_rule=maxpool_rule)
    return list(analyzer.analyze(inputs, h1=h1, threshold=threshold, percentile=percentile,
                                 vertices=vertices, engine=engine, batch_size=batch_size))


def induced_graph(model, x, *, maxpool_rule: str = "window", threshold=None, percentile=None) -> InducedGraph:
    """The induced graph of one input ``x`` (per-sample shape, no batch axis)."""
    analyzer = Analyzer(model, maxpool_rule=maxpool_rule)
    return next(analyzer.graphs(np.asarray(x)[None], threshold=threshold, percentile=percentile))
