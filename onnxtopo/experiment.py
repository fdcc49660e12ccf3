"""The paper's experiment (design notes §6): how much of what the network knows about an input
its persistent subgraph carries, and whether that survives adversarial attacks.

* subgraph SVM accuracy: an SVM on the persistent-subgraph features of the clean inputs,
  k-fold cross-validated, predicting the true class;
* network accuracy: the model's own accuracy on the same inputs;
* recovery accuracy: an SVM fitted on clean features predicts the adversarial inputs; the share
  of them for which it predicts the true class;
* adversary retention: the share for which it predicts the network's adversarial prediction.

"Adversarial inputs" are the attacked inputs that fool the network (its prediction differs
from the true class); the figures over all attacked inputs are reported too.

How each step is done is a ``Protocol``: ``ONNXTOPO`` (the default) or ``SEED``, the protocol
of Gebhart & Schrater's public code, run on onnxtopo's correct induced graph.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import scipy.sparse

from .errors import BadInputError

ATTACKS = ("fgsm", "pgd", "pgd_min")
KERNELS = ("linear_svc", "linear", "cosine")


@dataclass(frozen=True)
class Protocol:
    """How ``run_experiment`` computes each figure; override a field with ``dataclasses.replace``.

    Graph
        ``graph``: "full" (the induced graph as the analysis gives it) or "seed" (the seed's
        per-step thresholds, ``seed_thresholds``: the input→first-layer edges left out, conv
        steps cut at (1/(l+1)) × the ``percentile``-th percentile of the step's output
        activations, dense steps at that percentile of the step's |w·h|). ``percentile`` None: 90
        for ReLU networks, 95 for Sigmoid ones; ``conv_thresholds`` None: on for ReLU, off (0)
        for Sigmoid (the seed's notebooks).
    Subgraph SVM accuracy
        ``features``: "indicators" (0/1 per persistent-subgraph edge id, the selection of the
        ``features`` argument of ``run_experiment``) or "lifetimes" (per edge id, the lifetime of
        its piece over the input's largest lifetime, ``lifetime_features``); ``pieces``: the piece
        rule (``subgraph_pieces``). ``kernel``: "linear_svc" (``LinearSVC``), "linear"
        (``SVC(kernel="linear")``, one-vs-one) or "cosine" (``SVC(kernel="precomputed")`` on
        1 − cosine distance); ``svm_c``: C. ``folds``-fold stratified cross-validation,
        ``shuffle``d with ``seed`` or not.
    Attack
        ``attack``: None (no attack unless adversarial inputs are given), "fgsm", "pgd" (radius
        ``eps``) or "pgd_min" (``attacks.pgd_min``, its search starting at ``eps``), on the first
        ``n_attack`` inputs (None: all).
    Recovery
        ``recovery_features``: "subgraph" (the SVM accuracy's features) or "counts" (per edge id,
        how many times it lies in the first ``recovery_take`` pieces; each edge of a forest lies
        in one piece, so 0 or 1), classified with ``recovery_kernel``. ``recovery_fit``: "cross"
        (each adversarial input is classified by the fold's SVM that never saw its clean image;
        the folds of the subgraph SVM accuracy) or "same" (one SVM fitted on every clean input,
        the adversarial inputs' own clean versions included). The adversarial features are
        multiplied by ``count_factor``.
    """

    name: str
    graph: str = "full"
    percentile: float | None = None
    conv_thresholds: bool | None = None
    features: str = "indicators"
    pieces: str = "anchored"
    kernel: str = "linear_svc"
    svm_c: float = 1.0
    folds: int = 10
    shuffle: bool = True
    seed: int = 0
    attack: str | None = None
    eps: float = 0.1
    n_attack: int | None = None
    recovery_features: str = "subgraph"
    recovery_take: int = 3
    recovery_kernel: str = "linear_svc"
    recovery_fit: str = "cross"
    count_factor: float = 1.0

    def __post_init__(self):
        choices = {"graph": ("full", "seed"), "features": ("indicators", "lifetimes"),
                   "pieces": ("anchored", "components"), "kernel": KERNELS, "recovery_kernel": KERNELS,
                   "recovery_features": ("subgraph", "counts"), "recovery_fit": ("cross", "same")}
        for name, options in choices.items():
            if getattr(self, name) not in options:
                raise ValueError(f"Protocol {name} must be one of {options}, got {getattr(self, name)!r}")
        if self.attack is not None and self.attack not in ATTACKS:
            raise ValueError(f"Protocol attack must be None or one of {ATTACKS}, got {self.attack!r}")
        if self.features == "lifetimes" and self.pieces != "anchored":
            raise ValueError('lifetime features need pieces="anchored" (a piece is then one H0 class)')
        if self.features == "lifetimes" and self.recovery_features == "subgraph":
            raise ValueError('recovery_features="subgraph" needs features="indicators"; use "counts"')
        if self.graph == "full" and (self.percentile is not None or self.conv_thresholds is not None):
            raise ValueError('Protocol percentile and conv_thresholds set the seed\'s graph (graph="seed"); '
                             "the full graph's filters are the analysis' threshold and percentile")
        if self.percentile is not None and not 0 <= self.percentile <= 100:
            raise ValueError(f"Protocol percentile must lie in [0, 100], got {self.percentile}")
        for name in ("folds", "recovery_take"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 1:
                raise ValueError(f"Protocol {name} must be a positive integer, got {getattr(self, name)}")
        if self.n_attack is not None and (int(self.n_attack) != self.n_attack or self.n_attack < 1):
            raise ValueError(f"Protocol n_attack must be None or a positive integer, got {self.n_attack}")
        if not (math.isfinite(self.eps) and self.eps > 0 and math.isfinite(self.count_factor)
                and self.count_factor > 0 and self.svm_c > 0):
            raise ValueError(f"Protocol eps, count_factor and svm_c must be positive, got eps={self.eps}, "
                             f"count_factor={self.count_factor}, svm_c={self.svm_c}")

    def describe(self) -> str:
        """``name (field=value, ...)``: the fields that differ from the named protocol's."""
        base = PROTOCOLS.get(self.name) or Protocol(self.name)
        changed = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                   if getattr(self, f.name) != getattr(base, f.name)]
        return f"{self.name} ({', '.join(changed)})" if changed else self.name


# Ours: the induced graph as analyzed, 0/1 edge indicators, a linear SVM, shuffled folds, and a
# cross-fitted recovery.
ONNXTOPO = Protocol("onnxtopo")

# The seed's, as its public code runs it (tgebhart/pt_activation: notebooks "Subgraph
# Prediction-CCFF Relu MNIST.ipynb" and "... Sigmoid MNIST.ipynb", models/all_attacks.py).
SEED = Protocol(
    "seed",
    graph="seed",  # CCFF.compute_dynamic_filtration2 (pt_activation/models/ccff.py)
    features="lifetimes", kernel="cosine",  # cells 19 and 22-23: compute_kernel_matrix, SVC(kernel="precomputed")
    shuffle=False,  # cell 23: cross_val_score(clf, X, y, cv=10), unshuffled stratified folds
    attack="pgd_min", eps=0.3,  # all_attacks.py: foolbox 2's ProjectedGradientDescentAttack, defaults
    recovery_features="counts", recovery_take=3, recovery_kernel="linear",  # cells 26-30
    recovery_fit="same", count_factor=10.0,  # cell 30 fits on every clean image; cell 32 adds 10 per edge
)

PROTOCOLS = {"onnxtopo": ONNXTOPO, "seed": SEED}


@dataclass(frozen=True)
class ExperimentResult:
    n_inputs: int
    subgraph_svm_accuracy: float
    subgraph_svm_accuracy_std: float
    network_accuracy: float
    n_features: int
    folds: int
    n_attacked: int | None = None
    n_adversarial: int | None = None  # attacked inputs that fool the network
    attack_success_rate: float | None = None
    recovery_accuracy: float | None = None
    adversary_retention: float | None = None
    recovery_accuracy_all: float | None = None  # over every attacked input
    attack: str | None = None
    protocol: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    def table(self) -> str:
        """The seed's table row for this model, with sample counts."""
        def pct(v):
            return "n/a" if v is None or math.isnan(v) else f"{100 * v:.1f} %"

        rows = [
            ("subgraph SVM accuracy", f"{pct(self.subgraph_svm_accuracy)} ± {100 * self.subgraph_svm_accuracy_std:.1f}",
             f"{self.n_inputs} clean inputs, {self.folds}-fold CV, {self.n_features} edge features"),
            ("network accuracy", pct(self.network_accuracy), f"{self.n_inputs} clean inputs"),
        ]
        if self.n_attacked is not None:
            rows += [
                ("attack success rate", pct(self.attack_success_rate), f"{self.attack}, {self.n_attacked} inputs"),
                ("recovery accuracy", pct(self.recovery_accuracy), f"{self.n_adversarial} adversarial inputs"),
                ("adversary retention", pct(self.adversary_retention), f"{self.n_adversarial} adversarial inputs"),
                ("recovery (all attacked)", pct(self.recovery_accuracy_all), f"{self.n_attacked} attacked inputs"),
            ]
        width = max(len(r[0]) for r in rows)
        return "\n".join(f"{name:<{width}}  {value:>14}  ({note})" for name, value, note in rows)


# ----------------------------------------------------------------------------------------------
# The seed's graph

def _activation_kind(plan) -> str:
    ops = {node.op_type for node in plan.model.graph.node}
    if "Sigmoid" in ops and "Relu" not in ops:
        return "sigmoid"
    if "Relu" in ops and "Sigmoid" not in ops:
        return "relu"
    raise BadInputError("the seed's graph thresholds are defined for networks with ReLU or with Sigmoid "
                        "activations; this model has " + ("both" if {"Relu", "Sigmoid"} <= ops else "neither")
                        + ": give Protocol percentile and conv_thresholds explicitly")


def seed_settings(plan, protocol: Protocol) -> tuple[float, bool]:
    """(percentile P, whether conv steps are thresholded) of the seed's graph for ``plan``."""
    percentile, conv = protocol.percentile, protocol.conv_thresholds
    if percentile is None or conv is None:
        kind = _activation_kind(plan)
        # PERCENTILE = 90 in the ReLU notebooks, 95 in the Sigmoid ones, whose model
        # (pt_activation/models/ccff_sigmoid.py) keeps every conv edge.
        percentile = (90.0 if kind == "relu" else 95.0) if percentile is None else percentile
        conv = (kind == "relu") if conv is None else conv
    return float(percentile), bool(conv)


def seed_thresholds(plan, graph, activations: dict, sample: int, percentile: float,
                    conv_thresholds: bool) -> np.ndarray:
    """Per edge step of ``plan``: the seed's threshold (an edge is kept when φ > it).

    CCFF.compute_dynamic_filtration2 (pt_activation/models/ccff.py): the input layer is not in
    the graph (step 0: +inf); conv step l is cut at (1/(l+1)) × the P-th percentile of its
    output's |activations| (after the nonlinearity: the seed's ``hiddens[l]``, here the next
    step's input), or 0 without conv thresholds; a dense step at the P-th percentile of |w·h|
    over all of its products, zeros included (``graph`` holds the nonzero ones).
    """
    from .rules.op_conv import ConvRule
    from .rules.op_gemm import DenseRule

    steps = plan.steps
    cuts = np.full(len(steps), np.inf)
    for i, step in enumerate(steps[1:], start=1):
        if isinstance(step.rule, ConvRule):
            if not conv_thresholds:
                cuts[i] = 0.0
                continue
            if i + 1 >= len(steps):
                raise BadInputError("the seed's graph needs a step after each conv layer (its activations)")
            out = np.abs(activations[steps[i + 1].input_tensor][sample]).ravel()
            cuts[i] = np.percentile(out, percentile) / (i + 1)
        elif isinstance(step.rule, DenseRule):
            phi = graph.phi[graph.step == i]
            products = np.zeros(step.rule.candidate_count)
            products[:phi.size] = phi
            cuts[i] = np.percentile(products, percentile)
        else:
            raise BadInputError(f"the seed's graph thresholds are defined for conv and dense layers; step {i} "
                                f"is a {type(step.rule).__name__} (use the onnxtopo protocol)")
    return cuts


def seed_graph(plan, activations: dict, sample: int, percentile: float, conv_thresholds: bool):
    """The induced graph of one sample of a batch of activations, cut by ``seed_thresholds``."""
    from dataclasses import replace

    from .graph import build_graph

    graph = build_graph(plan, activations, sample)
    keep = graph.phi > seed_thresholds(plan, graph, activations, sample, percentile, conv_thresholds)[graph.step]
    return replace(graph, src=graph.src[keep], dst=graph.dst[keep], phi=graph.phi[keep], step=graph.step[keep])


def seed_analyses(analyzer, x: np.ndarray, protocol: Protocol, *, batch_size: int = 32, vertices="max",
                  engine: str = "forest") -> list:
    """The analysis (``AnalysisResult``) of each input's induced graph cut by ``seed_thresholds``."""
    from .api import AnalysisResult, persistence

    plan = analyzer.plan
    percentile, conv = seed_settings(plan, protocol)
    results = []
    for batch in analyzer.batches(x, batch_size):
        activations = analyzer.runner.run(batch)
        for sample in range(len(batch)):
            kept = seed_graph(plan, activations, sample, percentile, conv)
            result = persistence(kept, vertices=vertices, engine=engine)
            results.append(AnalysisResult(len(results), plan.n_vertices, kept.n_edges, result))
    return results


# ----------------------------------------------------------------------------------------------
# Features and classifiers

def piece_lifetimes(analysis) -> tuple[np.ndarray, np.ndarray]:
    """(anchored piece of each subgraph edge, lifetime of each piece).

    A piece starts at an edge whose anchor (the endpoint on the elder side) is a lone vertex;
    the piece belongs to the H0 class born at that vertex, and its lifetime is that class's
    birth − death, or its birth if it never dies (the seed's ``create_lifetimes``). Needs a
    filtration with vertices="max": a lone vertex enters with its first forest edge, so the
    class's birth is that edge's φ.
    """
    from .subgraph import anchored_walk, as_subgraph

    sub = as_subgraph(analysis)
    phi = np.asarray(sub.phi, dtype=np.float64)
    if phi.size == 0:
        return np.empty(0, np.int64), np.empty(0)
    if not np.isfinite(sub.birth).all():
        raise BadInputError('lifetime features need an analysis with vertices="max"')
    piece, killed = anchored_walk(sub)
    src, dst = np.asarray(sub.src, np.int64), np.asarray(sub.dst, np.int64)
    n = int(max(src.max(), dst.max())) + 1
    first_edge = np.full(n, phi.size)
    np.minimum.at(first_edge, np.concatenate([src, dst]), np.tile(np.arange(phi.size), 2))
    starts = np.unique(piece, return_index=True)[1]  # pieces are numbered in the order they start
    s, d = src[starts], dst[starts]
    s_new, d_new = first_edge[s] == starts, first_edge[d] == starts
    # The anchor is lone when its piece starts; when both endpoints are, the younger one is killed.
    anchor = np.where(s_new & d_new, np.where(killed[starts] == s, d, s), np.where(s_new, s, d))
    death = np.zeros(n)
    death[killed] = phi
    return piece, phi[starts] - death[anchor]


def lifetime_features(analyses) -> scipy.sparse.csr_matrix:
    """Per input, per edge id (src, dst) seen in any input: its piece's lifetime / the input's largest.

    The seed's ``lifetime_weighted_edge_distance`` vectors (notebook cell 19), over every piece:
    its ``compute_kernel_matrix(take=-1)`` drops the last piece of each input, a slicing slip
    this does not copy.
    """
    from .subgraph import as_subgraph

    rows, keys, values = [], [], []
    n_vertices = max(int(a.n_vertices) for a in analyses)
    for i, analysis in enumerate(analyses):
        sub = as_subgraph(analysis)
        piece, lifetime = piece_lifetimes(sub)
        if not piece.size:
            continue
        top = lifetime.max()
        rows.append(np.full(piece.size, i))
        keys.append(np.asarray(sub.src, np.int64) * n_vertices + np.asarray(sub.dst, np.int64))
        values.append(lifetime[piece] / top if top > 0 else np.zeros(piece.size))
    if not rows:
        return scipy.sparse.csr_matrix((len(analyses), 0))
    _, column = np.unique(np.concatenate(keys), return_inverse=True)
    return scipy.sparse.csr_matrix((np.concatenate(values), (np.concatenate(rows), column.ravel())),
                                   shape=(len(analyses), int(column.max()) + 1))


def cosine_kernel(a, b) -> np.ndarray:
    """1 − cosine distance between the rows of ``a`` and of ``b`` (0 against an all-zero row)."""
    from sklearn.preprocessing import normalize

    gram = normalize(a) @ normalize(b).T
    return gram.toarray() if scipy.sparse.issparse(gram) else np.asarray(gram)


def _classifier(kernel: str, c: float, seed: int):
    from sklearn.svm import SVC, LinearSVC

    if kernel == "linear_svc":
        return LinearSVC(C=c, max_iter=20000, random_state=seed)
    return SVC(kernel="linear" if kernel == "linear" else "precomputed", C=c, decision_function_shape="ovo")


def _fit_predict(kernel: str, protocol: Protocol, train, y_train, tests: list) -> list[np.ndarray]:
    """Fit a ``kernel`` SVM and predict each of ``tests``: feature matrices, or with the cosine
    kernel, kernel matrices against the training inputs (``train`` then the training gram)."""
    clf = _classifier(kernel, protocol.svm_c, protocol.seed).fit(train, y_train)
    return [clf.predict(t) if t.shape[0] else np.empty(0, y_train.dtype) for t in tests]


def _folds(y: np.ndarray, protocol: Protocol) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(np.unique(y, return_inverse=True)[1])
    folds = int(min(protocol.folds, counts.min()))
    if folds < 2:
        raise BadInputError("each class needs at least 2 inputs for cross-validation")
    splitter = StratifiedKFold(folds, shuffle=protocol.shuffle, random_state=protocol.seed if protocol.shuffle else None)
    return list(splitter.split(np.zeros(len(y)), y))


def _cross_fitted(kernel, protocol, folds, clean, y, adversarial=None, attacked: int = 0):
    """(accuracy on each fold, prediction of each adversarial input by the fold SVM not fitted on it)."""
    if kernel == "cosine":  # one kernel matrix for every fold: a pair's cosine does not depend on it
        gram = cosine_kernel(clean, clean)
        adv_gram = cosine_kernel(adversarial, clean) if adversarial is not None else None

        def rows(train, test, held):
            tests = [gram[np.ix_(test, train)]] + ([adv_gram[np.ix_(held, train)]] if adv_gram is not None else [])
            return gram[np.ix_(train, train)], tests
    else:
        def rows(train, test, held):
            return clean[train], [clean[test]] + ([adversarial[held]] if adversarial is not None else [])

    scores = []
    adv_pred = np.empty(attacked, dtype=y.dtype)
    for train, test in folds:
        held = test[test < attacked]
        fit_rows, tests = rows(train, test, held)
        predictions = _fit_predict(kernel, protocol, fit_rows, y[train], tests)
        scores.append(float((predictions[0] == y[test]).mean()))
        if adversarial is not None:
            adv_pred[held] = predictions[1]
    return np.array(scores), adv_pred


# ----------------------------------------------------------------------------------------------
# The experiment

def run_experiment(model, x, y, *, protocol: Protocol = ONNXTOPO, x_adv=None, features=None, analysis=None,
                   progress=None) -> ExperimentResult:
    """Run the experiment on labelled inputs ``x``, ``y`` by ``protocol`` (``ONNXTOPO``, ``SEED``).

    ``x_adv`` are adversarial versions of ``x`` brought by the user (same shape), or the
    protocol's ``attack`` computes them on the ONNX model. ``analysis`` is a configured
    ``InducedPersistence`` (its model is set to ``model``; default: the default analysis) and
    ``features`` a configured ``SubgraphFeatures`` (default: all persistent-subgraph edges), the
    features of ``features="indicators"``. Each input, clean or adversarial, is analyzed once.
    """
    from sklearn.base import clone

    from .attacks import OnnxClassifier, attack_stats, fgsm, pgd, pgd_min
    from .features import InducedPersistence, SubgraphFeatures

    x, y = np.asarray(x), np.asarray(y)
    if y.ndim != 1 or len(y) != len(x):
        raise BadInputError(f"labels have shape {y.shape}; expected one label per input ({len(x)})")
    if x_adv is not None and protocol.attack is not None:
        raise ValueError(f"give adversarial inputs or a protocol with an attack ({protocol.attack}), not both")
    if features is not None and protocol.features != "indicators":
        raise ValueError(f"the {protocol.name} protocol's features are piece lifetimes, not subgraph edges: "
                         "give no features (no --selection), or a protocol with features=\"indicators\"")
    classifier = OnnxClassifier(model)
    analyzer = clone(analysis).set_params(model=model) if analysis is not None else InducedPersistence(model)
    extractor = clone(features) if features is not None else SubgraphFeatures(pieces=protocol.pieces)
    extractor._check_params()  # a bad selection fails now, not after every input is analyzed
    analyzer.fit(x)
    if protocol.graph == "seed" and (analyzer.threshold is not None or analyzer.percentile is not None):
        raise BadInputError("the seed protocol sets its own graph thresholds: give no threshold or percentile")

    def analyze(inputs):
        if protocol.graph == "full":
            return analyzer.transform(inputs)
        return seed_analyses(analyzer.analyzer_, inputs, protocol, batch_size=analyzer.batch_size,
                             vertices=analyzer.vertices, engine=analyzer.engine)

    clean_analyses = analyze(x)
    if protocol.features == "indicators":
        clean = extractor.fit_transform(clean_analyses)
    else:
        clean = lifetime_features(clean_analyses)
    folds = _folds(y, protocol)
    network = float((classifier.predict(x) == y).mean())
    result = {"n_inputs": len(y), "network_accuracy": network, "n_features": clean.shape[1], "folds": len(folds),
              "protocol": protocol.describe()}

    n_attack = len(y) if protocol.n_attack is None else min(protocol.n_attack, len(y))
    if protocol.attack is not None:
        x_att, y_att = x[:n_attack], y[:n_attack]
        if protocol.attack == "pgd_min":
            x_adv = pgd_min(classifier, x_att, y_att, eps=protocol.eps, progress=progress).x_adv
            result["attack"] = f"PGD minimal-eps search from eps={protocol.eps:g}"
        else:
            run_attack = fgsm if protocol.attack == "fgsm" else pgd
            x_adv = run_attack(classifier, x_att, y_att, protocol.eps, progress=progress)
            result["attack"] = f"{protocol.attack.upper()} eps={protocol.eps:g}"
    elif x_adv is not None:
        x_adv = np.asarray(x_adv)
        if x_adv.shape != np.shape(x):
            raise BadInputError(f"adversarial inputs have shape {x_adv.shape}; the clean ones {np.shape(x)}")
        x_adv = x_adv[:n_attack]
        result["attack"] = "inputs given"

    if x_adv is None:
        scores, _ = _cross_fitted(protocol.kernel, protocol, folds, clean, y)
    else:
        adv_analyses = analyze(x_adv)
        if protocol.recovery_features == "subgraph":
            recovery_clean, adversarial = clean, extractor.transform(adv_analyses)
        else:
            counts = SubgraphFeatures(selection="take", take=protocol.recovery_take, pieces=protocol.pieces)
            recovery_clean, adversarial = counts.fit_transform(clean_analyses), counts.transform(adv_analyses)
        adversarial = adversarial * protocol.count_factor
        shared = protocol.recovery_features == "subgraph" and protocol.recovery_kernel == protocol.kernel
        if protocol.recovery_fit == "cross" and shared:  # the accuracy's fold SVMs classify the attacks too
            scores, svm_adv = _cross_fitted(protocol.kernel, protocol, folds, clean, y, adversarial, n_attack)
        else:
            scores, _ = _cross_fitted(protocol.kernel, protocol, folds, clean, y)
            if protocol.recovery_fit == "cross":
                _, svm_adv = _cross_fitted(protocol.recovery_kernel, protocol, folds, recovery_clean, y,
                                           adversarial, n_attack)
            else:
                train, test = recovery_clean, adversarial
                if protocol.recovery_kernel == "cosine":
                    train, test = cosine_kernel(train, train), cosine_kernel(test, train)
                svm_adv = _fit_predict(protocol.recovery_kernel, protocol, train, y, [test])[0]
        y_att = y[:n_attack]
        stats = attack_stats(classifier, x[:n_attack], x_adv, y_att)
        net_adv = classifier.predict(x_adv)
        fooled = net_adv != y_att
        result.update(
            n_attacked=n_attack, n_adversarial=int(fooled.sum()), attack_success_rate=stats.success_rate,
            recovery_accuracy=float((svm_adv[fooled] == y_att[fooled]).mean()) if fooled.any() else float("nan"),
            adversary_retention=float((svm_adv[fooled] == net_adv[fooled]).mean()) if fooled.any() else float("nan"),
            recovery_accuracy_all=float((svm_adv == y_att).mean()),
        )
    result.update(subgraph_svm_accuracy=float(scores.mean()), subgraph_svm_accuracy_std=float(scores.std()))
    return ExperimentResult(**result)
