"""The static view: neural persistence of a network's weights, no input (Rieck et al., ICLR 2019).

Rieck et al. turn each layer with learned weights into a bipartite graph whose edges weigh the
absolute weights, divided by the largest absolute weight of the whole network; every vertex is
present from the start (at 1, the top of the normalized scale) and edges enter from the
strongest down. The H0 diagram then holds one point (1, w') per edge of the layer's maximum
spanning forest, and the layer's *neural persistence* is its p-norm (p = 2 by default):
NP = (Σ (1 − w')^p)^(1/p). Normalized neural persistence divides NP by its upper bound, reached
when every forest edge has persistence 1; the mean over the layers describes the network.

onnxtopo computes this for every layer of the plan with learned weights (Conv, ConvTranspose,
Gemm, MatMul and Einsum with a constant operand), on the same edges the induced view
enumerates: the static graph of a step is its induced graph with every activation h = 1, so
an edge weighs |s · w| (s: a constant affine map folded into the op, BatchNormalization after
a Conv, say; section 2b of the design notes). Edges of weight 0 are no edges, as in the
induced view. Conv layers give their unrolled graph (one vertex per neuron, an edge per kernel
element and window position) or, with ``graph="channel"``, the channel graph: one vertex per
channel, an edge from input channel c to output channel m weighing a norm of the kernel slice
W[m, c] (``channel_norm``: "l2", the Frobenius norm, by default; "l1"; "max").

Two choices differ from the reference code, both documented in the README:

* NP is the p-norm of the finite points only. The reference also counts the connected
  component that never dies as a point (1, 0), adding 1 to Σ, so its normalized value can
  exceed 1 (NP_reference = (NP^p + 1)^(1/p)).
* The bound counts the edges a spanning forest of the layer's graph has, |V| − c (|V| the
  vertices with an edge, c the connected components), where the paper writes |V| − 1: equal
  for a dense layer without zero weights, and still the exact bound for layers that fall
  apart into several components (grouped and strided convolutions, MatMul over tokens).

The whole-network static graph puts every edge step of the plan into one filtration, with the
same construction: weight-free linear steps (pooling averages, residual sums, resizes,
reductions) weigh their own coefficient |∂v/∂u|; steps whose derivative depends on the input
take its constant factor and 1 for the rest: a max (MaxPool, ReduceMax, Max of activations)
weighs 1 (the derivative where the input is the maximum, the window rule of the induced view),
a product of activations ±1 → 1, attention's MatMul 1, a softmax 1, a normalization its scale
γ. All of it is divided by the largest of those weights, so the diagram stays in [0, 1].
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .diagrams import sort_diagram
from .errors import BadInputError, UnsupportedOpError
from .files import atomic_write, json_number, write_json, write_npz
from .filtration import superlevel_filtration
from .graph import REDUCING_THREADS, InducedGraph, merge_repeats, reduces_in_place, step_edges, step_forest_block
from .homology import (
    DEFAULT_CHUNK_EDGES,
    ENGINES,
    Persistence,
    PersistentSubgraph,
    dionysus_persistence,
    forest_persistence,
)
from .plan import Plan, PlanOptions, build_plan
from .resources import Estimate, default_limit, estimate, require_memory
from .rules.op_normalization import GroupRule, LRNRule

#: Rules whose edges weigh the layer's learned weights: the layers neural persistence is computed for.
LEARNED_RULES = ("dense", "dense-left", "conv", "conv-transpose")
GRAPHS = ("unrolled", "channel")
CHANNEL_NORMS = ("l2", "l1", "max")
#: Bytes per vertex of a step's maximum spanning forest kept for the whole-network graph.
FOREST_BYTES_PER_VERTEX = 32


@dataclass(frozen=True)
class LayerPersistence:
    """The static graph of one layer with learned weights and its neural persistence.

    ``h0`` is the H0 diagram in normalized units: (1, |w| / scale) per forest edge that kills a
    class (points of persistence 0 dropped), (1, inf) per connected component. ``n_vertices``
    counts the vertices with an edge (the others are not in the complex), ``n_components`` the
    connected components among them, so the layer's maximum spanning forest has
    n_vertices − n_components edges.
    """

    name: str  # the ONNX node
    op_type: str
    rule: str
    layer: int  # index of the plan layer the node makes
    tensor: str  # its output tensor
    graph: str  # "unrolled" or "channel"
    n_vertices: int
    n_components: int
    n_edges: int
    h0: np.ndarray
    neural_persistence: float
    normalized: float  # neural persistence / (n_vertices − n_components)^(1/p), in [0, 1]; 0 without edges

    def summary(self) -> dict:
        return {"name": self.name, "op_type": self.op_type, "rule": self.rule, "layer": self.layer,
                "tensor": self.tensor, "graph": self.graph, "vertices": self.n_vertices,
                "components": self.n_components, "edges": self.n_edges, "h0_points": len(self.h0),
                "neural_persistence": self.neural_persistence, "normalized_neural_persistence": self.normalized}


@dataclass(frozen=True)
class WholeNetwork:
    """The static graph of every edge step at once, as one filtration.

    ``persistence`` holds its H0 diagram (normalized units, as the layers') and its persistent
    subgraph (the maximum spanning forest; ``phi`` normalized, ``edge`` the position of the edge
    in the graph's order: step by step, pattern order within a step). ``scale`` is the largest
    edge weight of this graph, which every weight is divided by.
    """

    scale: float
    n_vertices: int
    n_components: int
    n_edges: int
    persistence: Persistence
    neural_persistence: float
    normalized: float

    @property
    def h0(self) -> np.ndarray:
        return self.persistence.h0

    def summary(self) -> dict:
        return {"scale": self.scale, "vertices": self.n_vertices, "components": self.n_components,
                "edges": self.n_edges, "h0_points": len(self.h0), "neural_persistence": self.neural_persistence,
                "normalized_neural_persistence": self.normalized}


@dataclass(frozen=True)
class StaticPersistence:
    """Neural persistence of a model: its layers with learned weights and the whole network.

    ``scale`` is the largest absolute weight over the layers' graphs (Rieck et al. divide every
    layer's weights by it). ``layers`` are in plan order; ``layer(name)`` finds one by node or
    output tensor name. ``whole`` is None when it was not asked for.
    """

    model: str
    p: float
    graph: str
    channel_norm: str
    engine: str
    scale: float
    layers: tuple[LayerPersistence, ...]
    whole: WholeNetwork | None
    start: str | None = None  # the sub-network analyzed (inspect's start and stop), if not the whole model
    stop: str | None = None

    @property
    def mean_normalized(self) -> float:
        """The network's mean normalized neural persistence (over its layers with learned weights)."""
        return float(np.mean([layer.normalized for layer in self.layers]))

    def layer(self, name: str) -> LayerPersistence:
        for layer in self.layers:
            if name in (layer.name, layer.tensor):
                return layer
        known = ", ".join(repr(layer.name) for layer in self.layers)
        raise KeyError(f"no layer with learned weights has node or tensor {name!r}; the layers are: {known}")

    def summary(self) -> dict:
        """Everything but the diagrams, as plain JSON types (``static.json``)."""
        return {"model": self.model, "p": json_number(self.p), "graph": self.graph,
                "channel_norm": self.channel_norm, "engine": self.engine, "start": self.start, "stop": self.stop,
                "scale": self.scale,
                "mean_normalized_neural_persistence": self.mean_normalized,
                "layers": [dict(layer.summary(), h0=f"layer-{i}-h0") for i, layer in enumerate(self.layers)],
                "whole": None if self.whole is None else self.whole.summary()}

    def arrays(self) -> dict[str, np.ndarray]:
        """The diagrams (``static.npz``): ``layer-<i>-h0`` per layer, ``whole_h0`` and the whole
        network's persistent subgraph ``whole_subgraph_{src,dst,phi,edge}``."""
        arrays = {f"layer-{i}-h0": layer.h0 for i, layer in enumerate(self.layers)}
        if self.whole is not None:
            sub = self.whole.persistence.subgraph
            arrays.update({"whole_h0": self.whole.h0, "whole_subgraph_src": sub.src, "whole_subgraph_dst": sub.dst,
                           "whole_subgraph_phi": sub.phi, "whole_subgraph_edge": sub.edge})
        return arrays

    def save(self, folder) -> None:
        """Write ``static.json`` and ``static.npz`` into ``folder`` (created), each atomically."""
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInputError(f"cannot use {str(folder)!r} as the output folder ({exc.strerror or exc})") from exc
        arrays = self.arrays()
        atomic_write(folder / "static.npz", lambda f: write_npz(f, arrays))
        write_json(folder / "static.json", self.summary())


def load(folder) -> StaticPersistence:
    """A StaticPersistence read back from the ``static.json`` and ``static.npz`` of ``folder``."""
    folder = Path(folder)
    try:
        summary = json.loads((folder / "static.json").read_text())
        with np.load(folder / "static.npz", allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
        layers = tuple(
            LayerPersistence(name=s["name"], op_type=s["op_type"], rule=s["rule"], layer=s["layer"], tensor=s["tensor"],
                             graph=s["graph"], n_vertices=s["vertices"], n_components=s["components"],
                             n_edges=s["edges"], h0=arrays[s["h0"]], neural_persistence=s["neural_persistence"],
                             normalized=s["normalized_neural_persistence"])
            for s in summary["layers"])
        whole = None
        if summary["whole"] is not None:
            w = summary["whole"]
            src, dst = arrays["whole_subgraph_src"], arrays["whole_subgraph_dst"]
            phi = arrays["whole_subgraph_phi"]
            subgraph = PersistentSubgraph(src=src, dst=dst, phi=phi, birth=np.ones(phi.size),
                                          edge=arrays["whole_subgraph_edge"])
            persistence = Persistence(arrays["whole_h0"], None, subgraph, w["vertices"] + w["edges"], w["edges"])
            whole = WholeNetwork(scale=w["scale"], n_vertices=w["vertices"], n_components=w["components"],
                                 n_edges=w["edges"], persistence=persistence, neural_persistence=w["neural_persistence"],
                                 normalized=w["normalized_neural_persistence"])
        return StaticPersistence(model=summary["model"], p=float(summary["p"]), graph=summary["graph"],
                                 channel_norm=summary["channel_norm"], engine=summary["engine"],
                                 scale=summary["scale"], layers=layers, whole=whole, start=summary["start"],
                                 stop=summary["stop"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BadInputError(f"{str(folder)!r} holds no readable static.json and static.npz of onnxtopo "
                            f"({type(exc).__name__}: {exc})") from exc


def static_persistence(model, *, p: float = 2.0, graph: str = "unrolled", channel_norm: str = "l2",
                       engine: str = "forest", whole: bool = True, memory_limit="auto", start: str | None = None,
                       stop: str | None = None, maxpool_rule: str = "window",
                       chunk_edges: int = DEFAULT_CHUNK_EDGES) -> StaticPersistence:
    """Neural persistence of ``model`` (a path, bytes, an onnx.ModelProto or a Plan), no input.

    ``p``: the norm of the diagrams (> 0; inf gives the largest persistence). ``graph``:
    "unrolled" (conv layers as the induced view enumerates them) or "channel" (one vertex per
    channel, edges weighing ``channel_norm`` of the kernel slices). ``whole``: also the
    whole-network static graph. ``engine``: "forest" or "dionysus", as for ``analyze``.
    ``memory_limit`` (bytes, "auto" or None) refuses a model whose static graph is estimated not
    to fit; ``chunk_edges`` bounds the edges the forest engine holds at once. ``start``, ``stop``
    and ``maxpool_rule`` are ``inspect``'s; the static view has no maximum to pick, so only the
    "window" rule applies.
    """
    if not p > 0:
        raise ValueError(f"p must be positive, got {p!r}")
    if graph not in GRAPHS:
        raise ValueError(f"graph must be one of {GRAPHS}, got {graph!r}")
    if channel_norm not in CHANNEL_NORMS:
        raise ValueError(f"channel_norm must be one of {CHANNEL_NORMS}, got {channel_norm!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if chunk_edges < 1:
        raise ValueError(f"chunk_edges must be at least 1, got {chunk_edges}")
    plan = _plan(model, start, stop, maxpool_rule)
    name = str(model) if isinstance(model, (str, Path)) else "(plan)" if isinstance(model, Plan) else "(in memory)"
    learned = [i for i, step in enumerate(plan.steps) if _learned(step)]
    if not learned:
        raise UnsupportedOpError("the model has no layer with learned weights (Conv, ConvTranspose, Gemm, or MatMul "
                                 "or Einsum with a constant operand) between its start and stop: neural "
                                 "persistence needs one")
    # No activation is zero here, so every candidate edge is made: refused before any is.
    require_memory(static_estimate(plan, engine=engine, chunk_edges=chunk_edges, whole=whole),
                   default_limit() if memory_limit == "auto" else memory_limit,
                   subject="the static graphs of this model need",
                   remedies="Use smaller chunks (--chunk-edges), the forest engine, skip the whole-network graph "
                            "(--no-whole), analyze a sub-network (--start/--stop), or raise the limit (--memory-limit)")

    # Every step's persistence in raw |w| units with all vertices present from the start (+inf,
    # which pairs exactly as Rieck et al.'s 1 once weights are divided by the scale).
    by_channel = {i for i in learned if graph == "channel" and _has_channels(plan.steps[i])}
    # The forest engine builds the whole-network graph from every step's forest (_whole_from_forests).
    wanted = [i for i in range(len(plan.steps))
              if (i in learned and i not in by_channel) or (whole and engine == "forest")]
    unrolled = _steps_persistence(plan, wanted, engine, chunk_edges)
    layer_raw = {i: _channel_persistence(plan, plan.steps[i], channel_norm, engine) if i in by_channel else unrolled[i]
                 for i in learned}
    scale = max(_largest(r) for r in layer_raw.values())
    if scale == 0:
        raise UnsupportedOpError("every weight of the model's layers with learned weights is 0: there is no graph")
    layers = tuple(_layer(plan, i, layer_raw[i], scale, p, graph) for i in learned)
    whole_network = None
    if whole:
        raw = (_whole_from_forests(plan, unrolled, chunk_edges) if engine == "forest" else
               _dionysus(plan, _all_blocks(plan, chunk_edges)))
        whole_network = _whole(raw, p)
    return StaticPersistence(model=name, p=float(p), graph=graph, channel_norm=channel_norm, engine=engine,
                             scale=scale, layers=layers, whole=whole_network, start=plan.options.start,
                             stop=plan.options.stop)


def static_graph(model, *, start: str | None = None, stop: str | None = None,
                 maxpool_rule: str = "window") -> InducedGraph:
    """The whole-network static graph of ``model`` (or a Plan) as an InducedGraph: every edge
    of every step, ``phi`` the raw static weight |s · w| (not divided by any scale), ``step``
    each edge's edge step. Held whole: for small and medium models."""
    plan = _plan(model, start, stop, maxpool_rule)
    return _graph(tuple(plan.layers), list(_all_blocks(plan, DEFAULT_CHUNK_EDGES)))


def _plan(model, start, stop, maxpool_rule) -> Plan:
    if isinstance(model, Plan):
        plan = model
    else:
        from .model import load_model

        plan = build_plan(load_model(model), PlanOptions(maxpool_rule=maxpool_rule, start=start, stop=stop))
    if plan.options.maxpool_rule != "window":
        raise ValueError('the static view has no input, hence no maximum to pick: use maxpool_rule="window"')
    return plan


def static_estimate(plan: Plan, *, engine: str = "forest", chunk_edges: int = DEFAULT_CHUNK_EDGES,
                    whole: bool = True) -> Estimate:
    """Memory the static view of ``plan`` needs: the induced view's estimate for one input (a
    static graph keeps every candidate edge, which that estimate already counts), plus the
    maximum spanning forests of the steps kept for the whole-network graph."""
    need = estimate(plan, engine=engine, chunk_edges=chunk_edges)
    if not whole or engine != "forest":
        return need
    forests = sum(step.input_vertices.size + plan.layers[step.target].size for step in plan.steps)
    return replace(need, bytes=need.bytes + FOREST_BYTES_PER_VERTEX * forests)


def _learned(step) -> bool:
    return step.rule.rule_name in LEARNED_RULES or (step.rule.rule_name == "einsum" and bool(step.rule.others))


def _has_channels(step) -> bool:
    return step.rule.rule_name in ("conv", "conv-transpose")


def _input_dependent(rule) -> bool:
    """Whether a rule's ∂v/∂u depends on the input (so that its pattern weight is only the
    derivative's constant factor): rules reading other tensors, softmax and normalizations."""
    return bool(rule.reads) or isinstance(rule, (GroupRule, LRNRule))


def _static_blocks(plan: Plan, step, max_edges: int):
    """(src, dst, weight) blocks of one step's static graph: global vertex ids, weight > 0.

    A linear rule's edges are its induced edges at h = 1 (the same compiled loops, the same ids,
    the folded scales applied); an input-dependent rule's weigh its pattern's constant factor.
    """
    from . import _compiled

    rule = step.rule
    if not _input_dependent(rule):
        ones = np.ones(step.input_vertices.size)
        for src, dst, values in step_edges(plan, step, ones, {}, max_edges, plan.n_vertices):
            yield src, dst, np.abs(values, out=values)
        return
    offset = plan.layers[step.target].offset
    scale = plan.scales.get(step.target, _compiled.NO_SCALE)
    for pattern in rule.chunks(None if step.repeats else max_edges):
        src, dst, values = _compiled.global_edges(pattern.src, pattern.dst, np.ascontiguousarray(pattern.weight, float),
                                                  _compiled.NO_H, step.input_vertices, offset, scale, True)
        if step.repeats:  # a neuron entering one output through several elements: its largest factor
            yield merge_repeats(src, dst, values, plan.n_vertices, "max")
        else:
            yield src, dst, np.abs(values)


def _all_blocks(plan: Plan, max_edges: int):
    for i, step in enumerate(plan.steps):
        for src, dst, weight in _static_blocks(plan, step, max_edges):
            yield i, src, dst, weight


def _steps_persistence(plan: Plan, indices: list, engine: str, chunk_edges: int) -> dict:
    """``_step_persistence`` of the steps at ``indices``, by index. With the forest engine, the
    steps reduced in place run in REDUCING_THREADS threads (their compiled passes release the
    GIL) while this thread streams the others' edges one step at a time, as before: the memory
    of streamed chunks is never doubled."""
    if engine != "forest":
        return {i: _step_persistence(plan, plan.steps[i], engine, chunk_edges) for i in indices}
    in_place = [i for i in indices if _in_place(plan.steps[i])]
    with ThreadPoolExecutor(max_workers=REDUCING_THREADS) as pool:
        running = {i: pool.submit(_step_persistence, plan, plan.steps[i], engine, chunk_edges) for i in in_place}
        streamed = {i: _step_persistence(plan, plan.steps[i], engine, chunk_edges)
                    for i in indices if i not in running}
        reduced = {i: future.result() for i, future in running.items()}
    return {i: streamed[i] if i in streamed else reduced[i] for i in indices}


def _in_place(step) -> bool:
    """Whether the forest engine reduces a step's static graph in place (``graph.step_forest_block``
    at h = 1) rather than streaming its edges: a step the induced view reduces so (a large
    Conv, Gemm or MatMul), whose static edges are its induced edges at h = 1."""
    return reduces_in_place(step) and not _input_dependent(step.rule)


def _step_persistence(plan: Plan, step, engine: str, chunk_edges: int) -> Persistence:
    """One step's persistence (see ``_persistence``). The forest engine sees only the ids from
    the step's lowest input vertex to its last target vertex, shifted to start at 0: its
    per-vertex arrays, made for every chunk it reduces, then span a layer or two, not the whole
    network (ResNet-50 has 10.9 million vertices). Shifting keeps the vertices' order, hence
    the entry order and the pairing; the subgraph's ids are shifted back.

    A step reduced in place gives the forest engine one ForestBlock: the maximum spanning forest
    of exactly the edges ``_static_blocks`` would stream (the same |k · 1 · s| per edge, none
    from a constant input or of weight 0, the same positions), so the results are the same,
    byte for byte; ``step_forest_block`` returns None where too many weights tie, and the edges
    are streamed then."""
    if engine != "forest":
        return _dionysus(plan, ((0, *block) for block in _static_blocks(plan, step, chunk_edges)))
    target = plan.layers[step.target]
    inputs = step.input_vertices[step.input_vertices >= 0]
    first = int(inputs.min()) if inputs.size else target.offset

    forest = step_forest_block(plan, step, np.ones(step.input_vertices.size)) if _in_place(step) else None
    if forest is not None:
        blocks = [forest._replace(src=forest.src - first, dst=forest.dst - first)]
    else:
        blocks = ((src - first, dst - first, weight)
                  for src, dst, weight in _static_blocks(plan, step, chunk_edges))
    raw = forest_persistence(blocks, target.offset + target.size - first, vertices="inf", chunk_edges=chunk_edges)
    sub = raw.subgraph
    return replace(raw, subgraph=replace(sub, src=sub.src + first, dst=sub.dst + first))


def _dionysus(plan: Plan, blocks) -> Persistence:
    """The dionysus engine's persistence of the graph of ``blocks`` ((step, src, dst, weight)),
    in raw weight units, every vertex present from the start (value +inf)."""
    return dionysus_persistence(superlevel_filtration(_graph(tuple(plan.layers), list(blocks)), "inf"))


def _graph(layers: tuple, blocks: list) -> InducedGraph:
    if not blocks:
        empty = np.empty(0, np.int64)
        return InducedGraph(layers, empty, empty, np.empty(0), np.empty(0, np.int32))
    steps, src, dst, weight = zip(*blocks)
    step = np.concatenate([np.full(s.size, i, np.int32) for i, s in zip(steps, src)])
    return InducedGraph(layers, np.concatenate(src), np.concatenate(dst), np.concatenate(weight), step)


def _channel_persistence(plan: Plan, step, norm: str, engine: str) -> Persistence:
    """Persistence of a convolution's channel graph: input channels are vertices 0 … C−1,
    output channels C … C+M−1; channel c → m weighs ``norm`` of the kernel slice that carries
    c into m, times the output channel's folded scale (its largest where it varies)."""
    src, dst, weight, n_in, n_out = channel_edges(step.rule, norm)
    scale = plan.scales.get(step.target)
    if scale is not None:
        weight = weight * np.abs(scale).reshape(n_out, -1).max(axis=1)[dst - n_in]
    keep = weight > 0
    src, dst, weight = src[keep], dst[keep], weight[keep]
    if engine == "forest":
        return forest_persistence([(src, dst, weight)], n_in + n_out, vertices="inf")
    graph = InducedGraph.from_edges([(n_in,), (n_out,)], src, dst, weight)
    return dionysus_persistence(superlevel_filtration(graph, "inf"))


def channel_edges(rule, norm: str = "l2") -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """(src, dst, weight, input channels, output channels) of a Conv or ConvTranspose rule's
    channel graph: input channel c is vertex c, output channel m vertex C + m, and the edge
    between them weighs ``norm`` ("l2": Frobenius, "l1", "max") of the kernel slice joining them.
    Grouped convolutions join only the channels of a group."""
    kernel = rule.kernel.reshape(*rule.kernel.shape[:2], -1)
    slices = {"l2": lambda k: np.sqrt((k * k).sum(axis=2)), "l1": lambda k: np.abs(k).sum(axis=2),
              "max": lambda k: np.abs(k).max(axis=2)}[norm](kernel)
    first, second = kernel.shape[:2]  # Conv: (M, C/group); ConvTranspose: (C, M/group)
    per_group = first // rule.group
    group_start = (np.arange(first) // per_group)[:, None] * second + np.arange(second)[None, :]
    own = np.broadcast_to(np.arange(first)[:, None], slices.shape)
    if rule.rule_name == "conv":
        n_in, n_out = second * rule.group, first
        src, dst = group_start, own
    else:
        n_in, n_out = first, second * rule.group
        src, dst = own, group_start
    return (src.ravel().astype(np.int64), (dst.ravel() + n_in).astype(np.int64), slices.ravel(), n_in, n_out)


def _largest(raw: Persistence) -> float:
    """The largest edge weight of a graph: the first edge of its maximum spanning forest."""
    return float(raw.subgraph.phi.max()) if len(raw.subgraph) else 0.0


def _normalized_diagram(raw: Persistence, scale: float) -> np.ndarray:
    """Rieck et al.'s diagram: births 1, deaths weight / scale, points of persistence 0 dropped."""
    death = raw.h0[:, 1] / scale
    keep = death != 1.0
    return sort_diagram(np.stack([np.ones(int(keep.sum())), death[keep]], axis=1))


def _neural_persistence(h0: np.ndarray, n_vertices: int, n_components: int, p: float) -> tuple[float, float]:
    """NP, the p-norm of the finite points' persistence, and NP over its bound (forest edges)^(1/p)."""
    finite = np.isfinite(h0[:, 1])
    persistence = h0[finite, 0] - h0[finite, 1]
    value = float(np.linalg.norm(persistence, ord=p)) if persistence.size else 0.0
    forest_edges = n_vertices - n_components
    bound = forest_edges ** (1.0 / p) if forest_edges else 0.0
    return value, (value / bound if bound else 0.0)


def _counts(raw: Persistence) -> tuple[int, int]:
    """Vertices in the complex and connected components of a raw persistence."""
    return raw.n_simplices - raw.n_edges, int(np.isinf(raw.h0[:, 1]).sum())


def _layer(plan: Plan, index: int, raw: Persistence, scale: float, p: float, graph: str) -> LayerPersistence:
    step = plan.steps[index]
    h0 = _normalized_diagram(raw, scale)
    n_vertices, n_components = _counts(raw)
    value, normalized = _neural_persistence(h0, n_vertices, n_components, p)
    return LayerPersistence(name=step.node, op_type=step.op_type, rule=step.rule.rule_name, layer=step.target,
                            tensor=plan.layers[step.target].tensor,
                            graph=graph if _has_channels(step) else "unrolled", n_vertices=n_vertices,
                            n_components=n_components, n_edges=raw.n_edges, h0=h0, neural_persistence=value,
                            normalized=normalized)


def _whole_from_forests(plan: Plan, unrolled: dict, chunk_edges: int) -> Persistence:
    """The whole-network persistence from each step's maximum spanning forest.

    The maximum spanning forest of a union of graphs is that of the union of their forests
    (an edge left out of its step's forest is the last to enter on a cycle there, so on the
    same cycle of the whole graph), under the same entry order: weight decreasing, then
    position in the whole graph. Each step's forest, in its own graph order, keeps that
    position: the pairing, hence the diagram, is the whole graph's, for the cost of one
    pass over the steps' edges that the layers need anyway.
    """
    parts, first = [], 0
    for i in range(len(plan.steps)):
        raw = unrolled[i]
        sub = raw.subgraph
        order = np.argsort(sub.edge, kind="stable")
        parts.append((sub.src[order], sub.dst[order], sub.phi[order], sub.edge[order] + first))
        first += raw.n_edges
    positions = np.concatenate([part[3] for part in parts])
    raw = forest_persistence(((src, dst, phi) for src, dst, phi, _ in parts), plan.n_vertices, vertices="inf",
                             chunk_edges=chunk_edges)
    sub = raw.subgraph
    subgraph = replace(sub, edge=positions[sub.edge])
    n_vertices = raw.n_simplices - raw.n_edges
    return replace(raw, subgraph=subgraph, n_simplices=n_vertices + first, n_edges=first)


def _whole(raw: Persistence, p: float) -> WholeNetwork:
    scale = _largest(raw)
    if scale == 0:
        raise UnsupportedOpError("the model's static graph has no edge: every weight is 0")
    h0 = _normalized_diagram(raw, scale)
    n_vertices, n_components = _counts(raw)
    value, normalized = _neural_persistence(h0, n_vertices, n_components, p)
    sub = raw.subgraph
    subgraph = replace(sub, phi=sub.phi / scale, birth=np.ones(len(sub)))
    persistence = Persistence(h0, None, subgraph, raw.n_simplices, raw.n_edges)
    return WholeNetwork(scale=scale, n_vertices=n_vertices, n_components=n_components, n_edges=raw.n_edges,
                        persistence=persistence, neural_persistence=value, normalized=normalized)


__all__ = [
    "LayerPersistence",
    "StaticPersistence",
    "WholeNetwork",
    "channel_edges",
    "load",
    "static_estimate",
    "static_graph",
    "static_persistence",
]
