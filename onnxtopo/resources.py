"""Estimates of what an analysis costs, from the plan alone, and the guard that uses them.

The numbers are upper bounds on edges (every candidate edge, before those with φ = 0 are
dropped) and rough, deliberately generous sizes in bytes, calibrated on the shipped models; they
exist to refuse a run that would exhaust the machine, not to predict it to the megabyte.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from .errors import ResourceLimitError
from .plan import Plan

#: Bytes per candidate edge held while a chunk streams through the forest engine (pattern,
#: values, masks, the pending edge arrays and the spanning-forest sort).
FOREST_BYTES_PER_EDGE = 100
#: Bytes per edge of a cached pattern (src, dst, weight).
PATTERN_BYTES_PER_EDGE = 24
#: Bytes per edge of a whole InducedGraph plus dionysus's objects (a simplex is a Python object).
DIONYSUS_BYTES_PER_EDGE = 250
#: Bytes per edge kept for the H1 diagram (its φ, then the (φ, inf) rows).
H1_BYTES_PER_EDGE = 24


@dataclass(frozen=True)
class Estimate:
    vertices: int
    edges: int  # candidate edges per input: an upper bound
    bytes: int  # peak memory of analyzing one input (one worker), roughly


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def estimate(plan: Plan, *, engine: str = "forest", h1: bool = False, chunk_edges: int = 1 << 24,
             batch_size: int = 1) -> Estimate:
    """Memory one input needs with these options (plus its batch's activations)."""
    edges = sum(step.candidate_edges for step in plan.steps)
    activations = 8 * batch_size * sum(layer.size for layer in plan.layers)
    cached = sum(s.candidate_edges for s in plan.steps if s.candidate_edges <= chunk_edges)
    if engine == "dionysus":
        working = edges * (DIONYSUS_BYTES_PER_EDGE + PATTERN_BYTES_PER_EDGE)
    else:
        largest_chunk = min(max(s.candidate_edges for s in plan.steps), chunk_edges)
        working = cached * PATTERN_BYTES_PER_EDGE + 2 * largest_chunk * FOREST_BYTES_PER_EDGE
    if h1:
        working += edges * H1_BYTES_PER_EDGE
    return Estimate(plan.n_vertices, edges, int(working + activations + 200 * plan.n_vertices))


def available_memory() -> int | None:
    """Memory the system can still give, in bytes (MemAvailable), or None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def default_limit() -> int | None:
    """Default memory limit: 80% of what is available now (read at most every
    AVAILABLE_MEMORY_TTL seconds: a loop analyzing one input per call would read it per input)."""
    now = time.monotonic()
    if now - _available[0] > AVAILABLE_MEMORY_TTL:
        _available[:] = [now, available_memory()]
    return None if _available[1] is None else int(0.8 * _available[1])


#: Seconds a reading of the available memory serves ``default_limit``.
AVAILABLE_MEMORY_TTL = 1.0
_available = [float("-inf"), None]  # when read, and what


#: What ``require_memory`` suggests to an analysis that would not fit.
ANALYSIS_REMEDIES = ("Use the forest engine with smaller chunks (--chunk-edges), drop --h1, use fewer workers, "
                     "keep only strong edges (--threshold), or raise the limit (--memory-limit)")


def require_memory(need: Estimate, limit: int | None, *, workers: int = 1, subject: str = "this analysis needs",
                   remedies: str = ANALYSIS_REMEDIES) -> None:
    """Refuse, with the estimate and the ways out (``remedies``), a run that would need more than
    ``limit`` bytes; ``subject`` names what needs the memory, verb included."""
    if limit is None or need.bytes * workers <= limit:
        return
    each = f", {workers} workers of about {format_bytes(need.bytes)} each" if workers > 1 else ""
    raise ResourceLimitError(
        f"{subject} about {format_bytes(need.bytes * workers)} ({need.edges:,} candidate edges, "
        f"{need.vertices:,} vertices{each}) but the memory limit is {format_bytes(limit)}. {remedies}"
    )
