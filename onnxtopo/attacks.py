"""Adversarial inputs computed on the ONNX model itself, through onnxruntime.

No training framework is needed: the gradient of the cross-entropy loss with respect to the input
is estimated by central finite differences, evaluating every perturbed copy ``x ± h·e_i`` of the
inputs in large onnxruntime batches. That costs two model evaluations per input coordinate and
per input (1,568 for a 28×28 image), which onnxruntime runs fast on small networks; it makes the
attacks work on any exported model, whatever framework trained it.

Step size ``h``: ``fd_step × (hi − lo)`` of the classifier's ``input_range``, by default
``1e-3`` for inputs in [0, 1]. The model computes in float32 (relative precision ≈ 6e-8), so
the loss carries a rounding error of about ``1e-7 × |loss|``; divided by ``2h`` that gives an
error near 1e-4 per gradient coordinate, while the truncation error of a central difference,
O(h²), stays far below it. Across a ReLU kink the central difference returns the mean of the two
one-sided slopes, which is as good a direction as any subgradient for FGSM and PGD. The divisor
is the difference between the float32 values actually evaluated, not ``2h``, so that rounding
of ``x ± h`` does not bias the estimate.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .errors import BadInputError, BadModelError
from .model import load_model
from .runtime import check_inputs, session

#: Finite-difference step relative to the width of the input range.
DEFAULT_FD_STEP = 1e-3
#: Upper bound on the input elements of one finite-difference chunk (float32: 64 MiB of copies),
#: so that large inputs get fewer perturbed copies per onnxruntime run.
FD_MAX_ELEMENTS = 1 << 24

_FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16}


class OnnxClassifier:
    """A classifier exported to ONNX, run by onnxruntime: scores, predictions, loss and its gradient.

    ``model`` is a path, serialized bytes or an onnx.ModelProto with one input whose first axis
    is the batch. ``output`` names the output holding the class scores (default: the model's
    first floating-point output). ``output_kind`` says what those scores are:

    * ``"logits"``: unnormalized scores (log-probabilities too: softmax leaves them unchanged);
    * ``"probabilities"``: already softmax-ed; the loss is then ``-log p[y]``;
    * ``"auto"`` (default): probabilities if the output is made by a Softmax node, or if the
      first scores computed are all non-negative with rows summing to 1 (a warning says so);
      logits otherwise. The decision is in ``self.output_kind``.

    ``input_range`` is the range valid inputs span (it scales the finite-difference step, see the
    module's docstring); ``batch_size`` bounds the samples of one onnxruntime run.
    """

    def __init__(self, model, output: str | None = None, *, output_kind: str = "auto",
                 input_range: tuple[float, float] = (0.0, 1.0), fd_step: float = DEFAULT_FD_STEP,
                 batch_size: int = 2048, threads: int | None = None):
        if output_kind not in ("auto", "logits", "probabilities"):
            raise ValueError(f'output_kind must be "auto", "logits" or "probabilities", got {output_kind!r}')
        lo, hi = (float(v) for v in input_range)
        if not hi > lo:
            raise ValueError(f"input_range must be (low, high) with high > low, got {input_range!r}")
        if not fd_step > 0:
            raise ValueError(f"fd_step must be positive, got {fd_step}")
        if batch_size < 2:
            raise ValueError(f"batch_size must be at least 2, got {batch_size}")
        # The checks analyze applies (custom domains, control flow, training mode, onnx.checker)
        # before anything runs; the normalized model computes the same scores.
        proto = load_model(model)
        self.session = session(proto, threads)

        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise BadModelError(f"the model has {len(inputs)} inputs ({[i.name for i in inputs]}); "
                                "attacks need a model with a single input")
        self.input_name = inputs[0].name
        if inputs[0].type not in _FLOAT_TYPES:
            raise BadModelError(f"the model's input {self.input_name!r} has type {inputs[0].type}; "
                                "gradient attacks need a floating-point input")
        self.input_dtype = np.dtype(_FLOAT_TYPES[inputs[0].type])
        shape = list(inputs[0].shape)
        if not shape:
            raise BadModelError("the model's input is a scalar; attacks need a batch axis first")
        # A fixed batch axis (exports traced with batch 1, say) forces runs of exactly that size.
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        # Per-sample dims that are symbolic are not checked.
        self.sample_shape = tuple(d if isinstance(d, int) else None for d in shape[1:])

        types = {o.name: o.type for o in self.session.get_outputs()}
        if output is None:
            # The first floating-point output: converters such as skl2onnx put an int64 label first.
            output = next((name for name, t in types.items() if t in _FLOAT_TYPES), None)
            if output is None:
                raise BadModelError(f"the model has no floating-point output to take class scores from "
                                    f"(outputs: {types})")
        elif output not in types:
            raise BadModelError(f"the model has no output {output!r}; its outputs are {list(types)}")
        elif types[output] not in _FLOAT_TYPES:
            raise BadModelError(f"output {output!r} has type {types[output]}; class scores must be floating-point")
        self.output_name = output
        producer = next((n for n in proto.graph.node if output in n.output), None)
        if output_kind == "auto" and producer is not None and producer.op_type == "Softmax":
            output_kind = "probabilities"
        self.output_kind = output_kind
        self.input_range = (lo, hi)
        self.fd_step = float(fd_step)
        self.batch_size = int(batch_size)
        if output_kind == "auto" and None not in self.sample_shape:
            # Decide now, on constant inputs at the ends and middle of the range, so that
            # ``output_kind`` is known before any attack; symbolic sample dims defer it to the
            # first run.
            probe = np.stack([np.full(self.sample_shape, v, dtype=self.input_dtype) for v in (lo, (lo + hi) / 2, hi)])
            self._run(probe)

    @property
    def h(self) -> float:
        """The finite-difference step, in input units."""
        return self.fd_step * (self.input_range[1] - self.input_range[0])

    # -- evaluation -----------------------------------------------------------------------------

    def validate(self, x) -> np.ndarray:
        """``x`` as a batch the model accepts (the model's float dtype), or a BadInputError."""
        return check_inputs(x, input_name=self.input_name, dtype=self.input_dtype, sample_shape=self.sample_shape,
                            allow_empty=True)

    def _run(self, x: np.ndarray) -> np.ndarray:
        """Raw scores of a validated batch, any length, as float64."""
        size = self.fixed_batch or self.batch_size
        out = []
        for start in range(0, len(x), size):
            chunk = x[start:start + size]
            pad = (self.fixed_batch or len(chunk)) - len(chunk)
            if pad:  # only with a fixed batch axis: fill the last run with copies
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            scores = self.session.run([self.output_name], {self.input_name: chunk})[0]
            out.append(np.asarray(scores, dtype=np.float64).reshape(len(chunk), -1)[:len(chunk) - pad])
        scores = np.concatenate(out) if out else np.zeros((0, 0))
        if self.output_kind == "auto":
            self._decide_kind(scores)
        return scores

    def _decide_kind(self, scores: np.ndarray) -> None:
        if len(scores) and (scores >= 0).all() and np.allclose(scores.sum(axis=1), 1.0, atol=1e-3):
            warnings.warn(
                f"output {self.output_name!r} looks like probabilities (non-negative, rows sum to 1): the "
                'loss is taken as -log p[y]. Pass output_kind="logits" or "probabilities" to decide.',
                stacklevel=2)
            self.output_kind = "probabilities"
        else:
            self.output_kind = "logits"

    def logits(self, x) -> np.ndarray:
        """The model's scores, (n, classes) float64, run in batches of ``batch_size``."""
        return self._run(self.validate(x))

    def predict(self, x) -> np.ndarray:
        """The predicted class of each input (argmax of the scores)."""
        return self.logits(x).argmax(axis=1)

    def _log_probs(self, scores: np.ndarray) -> np.ndarray:
        if self.output_kind == "probabilities":
            # log_softmax(log p) = log p − log Σp: exact for normalized p, tolerant of rounding.
            scores = np.log(np.maximum(scores, np.finfo(np.float64).tiny))
        shifted = scores - scores.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    def _loss_from_scores(self, scores: np.ndarray, y: np.ndarray) -> np.ndarray:
        return -self._log_probs(scores)[np.arange(len(scores)), y]

    def loss(self, x, y) -> np.ndarray:
        """Per-input cross-entropy ``-log softmax(logits)[y]`` (``-log p[y]`` for probabilities)."""
        x = self.validate(x)
        scores = self._run(x)
        return self._loss_from_scores(scores, self._labels(y, len(x), scores.shape[1]))

    def _labels(self, y, n: int, n_classes: int) -> np.ndarray:
        y = np.asarray(y)
        if y.shape != (n,) or y.dtype.kind not in "iu":
            raise BadInputError(f"labels must be {n} integers (one per input), got shape {y.shape} "
                                f"and dtype {y.dtype}")
        if n and (y.min() < 0 or y.max() >= n_classes):
            raise BadInputError(f"labels must lie in [0, {n_classes}) (the model has {n_classes} classes)")
        return y.astype(np.int64)

    # -- gradient -------------------------------------------------------------------------------

    def loss_gradient(self, x, y, *, progress=None) -> np.ndarray:
        """Gradient of the per-input cross-entropy with respect to each input, shaped like ``x``.

        Central finite differences, ``(L(x + h·e_i) − L(x − h·e_i)) / 2h`` for every coordinate
        ``i`` of every input, all perturbed copies evaluated by onnxruntime in large batches.
        ``progress``: None, True (a tqdm bar) or a callable ``progress(done, total)``, counted in
        gradient coordinates (inputs × input size).
        """
        x = self.validate(x)
        with _Progress(progress, len(x) * _size(x), "gradient") as bar:
            return self._gradient(x, y, bar.update)

    def _gradient(self, x: np.ndarray, y, tick) -> np.ndarray:
        n = len(x)
        if n == 0:
            return np.zeros_like(x)
        d = _size(x)
        # Chunks of (input, coordinate) pairs; each pair costs two rows of the onnxruntime batch.
        pairs = max(1, min(self.batch_size, FD_MAX_ELEMENTS // d) // 2)
        flat = x.reshape(n, d)
        grad = np.empty((n, d), dtype=np.float64)
        h = self.input_dtype.type(self.h)
        labels = None
        for start in range(0, n * d, pairs):
            jobs = np.arange(start, min(start + pairs, n * d))
            sample, coord = jobs // d, jobs % d
            rows = np.arange(len(jobs))
            plus = flat[sample]  # fancy indexing: a fresh copy per job
            minus = plus.copy()
            plus[rows, coord] += h
            minus[rows, coord] -= h
            scores = self._run(np.concatenate([plus, minus]).reshape(2 * len(jobs), *x.shape[1:]))
            if labels is None:
                labels = self._labels(y, n, scores.shape[1])
            loss = self._loss_from_scores(scores, np.concatenate([labels[sample]] * 2))
            step = plus[rows, coord].astype(np.float64) - minus[rows, coord].astype(np.float64)
            grad[sample, coord] = (loss[:len(jobs)] - loss[len(jobs):]) / step
            tick(len(jobs))
        return grad.reshape(x.shape)


def _size(x: np.ndarray) -> int:
    return int(np.prod(x.shape[1:], dtype=np.int64))


class _Progress:
    """Progress reports from ``progress``: None (silent), True (a tqdm bar) or a callable(done, total)."""

    def __init__(self, progress, total: int, desc: str):
        self.total, self.done, self.bar, self.callback = total, 0, None, None
        if progress is True:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="coord", unit_scale=True)
        elif callable(progress):
            self.callback = progress
        elif progress not in (None, False):
            raise TypeError(f"progress must be None, True or a callable(done, total), got {progress!r}")

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        if self.callback is not None:
            self.callback(self.done, self.total)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()


# -- attacks ------------------------------------------------------------------------------------


def _classifier(model) -> OnnxClassifier:
    return model if isinstance(model, OnnxClassifier) else OnnxClassifier(model)


def _targets(clf: OnnxClassifier, x: np.ndarray, y) -> np.ndarray:
    """Labels to attack: ``y``, or the model's own predictions when ``y`` is None."""
    return clf._run(x).argmax(axis=1) if y is None else np.asarray(y)


def _check_eps(eps: float, clip) -> tuple[float, tuple[float, float] | None]:
    eps = float(eps)
    if not (np.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be finite and non-negative, got {eps}")
    if clip is not None:
        lo, hi = (float(v) for v in clip)
        if not hi >= lo:
            raise ValueError(f"clip must be (low, high) with high ≥ low, got {clip!r}")
        clip = (lo, hi)
    return eps, clip


def _project(x_adv: np.ndarray, x: np.ndarray, eps: float, clip) -> np.ndarray:
    """Onto the L∞ ball of radius eps around x, then into the clip range (float64 arithmetic)."""
    x_adv = np.clip(x_adv, x - eps, x + eps)
    return x_adv if clip is None else np.clip(x_adv, *clip)


def _to_model_dtype(x_adv: np.ndarray, x: np.ndarray, eps: float, dtype: np.dtype) -> np.ndarray:
    """``x_adv`` rounded to the model's dtype, still within ``eps`` of ``x`` exactly.

    Rounding to float32 can push a coordinate on the ball's surface one half-ulp outside it; one
    step back towards ``x`` (itself a float32 value) brings it inside again. The clip range is
    kept too, unless its ends are not representable in ``dtype``.
    """
    out = x_adv.astype(dtype)
    over = np.abs(out.astype(np.float64) - x.astype(np.float64)) > eps
    out[over] = np.nextafter(out[over], x[over])
    return out


def fgsm(model, x, y, eps: float, clip=(0.0, 1.0), *, progress=None) -> np.ndarray:
    """Fast gradient sign method: ``clip(x + eps · sign(∇x loss(x, y)))``.

    ``model`` is an OnnxClassifier (or anything it accepts), ``y`` the true labels (None: the
    model's predictions), ``clip`` the valid input range (None: no clipping). Coordinates whose
    estimated gradient is exactly 0 do not move. Returns the adversarial inputs in the model's
    dtype; they lie within ``eps`` of ``x`` and within ``clip``.
    """
    clf = _classifier(model)
    x = clf.validate(x)
    eps, clip = _check_eps(eps, clip)
    y = _targets(clf, x, y)
    with _Progress(progress, len(x) * _size(x), "FGSM") as bar:
        grad = clf._gradient(x, y, bar.update)
    x64 = x.astype(np.float64)
    return _to_model_dtype(_project(x64 + eps * np.sign(grad), x64, eps, clip), x, eps, clf.input_dtype)


def pgd(model, x, y, eps: float, step: float | None = None, steps: int = 10, clip=(0.0, 1.0),
        random_start: bool = True, seed=0, *, progress=None) -> np.ndarray:
    """Projected gradient descent in L∞ (Madry et al.): signed-gradient ascent steps on the loss.

    Starts from ``x`` plus uniform noise in [−eps, eps] (``random_start``, drawn from
    ``numpy.random.default_rng(seed)``; the same seed gives the same result), then ``steps``
    times: ``x ← project(x + step · sign(∇x loss(x, y)))``, where project clips onto the eps-ball
    around the clean ``x`` and into ``clip``. ``step`` defaults to ``eps / 4``. Returns the last
    iterate, in the model's dtype. ``progress`` counts gradient coordinates over all steps.
    """
    clf = _classifier(model)
    x = clf.validate(x)
    eps, clip = _check_eps(eps, clip)
    step = eps / 4 if step is None else float(step)
    if not (np.isfinite(step) and step >= 0):
        raise ValueError(f"step must be finite and non-negative, got {step}")
    if int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps}")
    y = _targets(clf, x, y)
    x64 = x.astype(np.float64)
    x_adv = x64
    if random_start:
        rng = np.random.default_rng(seed)
        x_adv = _project(x64 + rng.uniform(-eps, eps, size=x.shape), x64, eps, clip)
    with _Progress(progress, int(steps) * len(x) * _size(x), "PGD") as bar:
        for _ in range(int(steps)):
            grad = clf._gradient(x_adv.astype(clf.input_dtype), y, bar.update)
            x_adv = _project(x_adv + step * np.sign(grad), x64, eps, clip)
    return _to_model_dtype(x_adv, x, eps, clf.input_dtype)


@dataclass(frozen=True)
class MinimalAttack:
    """What ``pgd_min`` found for each input.

    ``x_adv``: the kept adversarial input (the clean one where none was found, or where the model
    already misclassifies it); ``eps``: the smallest radius at which a try fooled the model (0 for
    inputs already misclassified, NaN where none was found); ``found``: whether the model
    misclassifies ``x_adv``. The kept input is the successful iterate of least mean squared
    perturbation over all tries, so its own L∞ distance may differ from ``eps`` by a step.
    """

    x_adv: np.ndarray
    eps: np.ndarray
    found: np.ndarray


def pgd_min(model, x, y=None, *, eps: float = 0.3, growth: float = 1.5, searches: int = 20,
            relative_step: float = 1 / 30, steps: int = 40, clip=(0.0, 1.0), progress=None) -> MinimalAttack:
    """L∞ projected gradient descent searching for the smallest radius that fools the model.

    The search of foolbox 2's projected gradient descent attack with its default arguments (the
    attack the seed's experiments call without arguments): try radius ``eps``; while the try
    fails, multiply the radius by ``growth`` (at most ``searches`` tries); then bisect
    ``searches`` times between 0 and the smallest radius that worked. One try at radius ε is PGD
    from the clean input (no random start): ``steps`` signed-gradient steps of ``relative_step ×
    ε``, each projected onto the ε-ball and into ``clip``, stopping at the first iterate the model
    misclassifies. Among every successful iterate of every try, the one with the smallest mean
    squared perturbation is kept. Inputs the model already misclassifies are kept unchanged.
    All inputs search together, each at its own radius, in shared onnxruntime batches.
    ``progress`` counts search tries (at most ``2 × searches``).
    """
    clf = _classifier(model)
    x = clf.validate(x)
    eps, clip = _check_eps(eps, clip)
    if not (eps > 0 and growth > 1 and relative_step > 0):
        raise ValueError(f"eps and relative_step must be positive and growth > 1, got eps={eps}, "
                         f"relative_step={relative_step}, growth={growth}")
    for name, value in (("searches", searches), ("steps", steps)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    if not len(x):
        return MinimalAttack(x.copy(), np.zeros(0), np.zeros(0, bool))
    scores = clf._run(x)
    y = scores.argmax(axis=1) if y is None else clf._labels(y, len(x), scores.shape[1])
    wrong = scores.argmax(axis=1) != y
    x64 = x.astype(np.float64)
    n, flat = len(x), (-1,) + (1,) * (x.ndim - 1)  # ``flat`` broadcasts one radius per input
    best = x.copy()
    best_mse = np.full(n, np.inf)
    best_mse[wrong] = 0.0

    def attempt(rows: np.ndarray, radius: np.ndarray) -> np.ndarray:
        """PGD on inputs ``rows`` at their radii; True where an iterate fooled the model."""
        origin = x64[rows]
        ball = radius.reshape(flat)
        current = origin.copy()
        running = np.arange(rows.size)
        fooled = np.zeros(rows.size, bool)
        for _ in range(int(steps)):
            live = rows[running]
            grad = clf._gradient(current[running].astype(clf.input_dtype), y[live], lambda k: None)
            current[running] = _project(current[running] + relative_step * ball[running] * np.sign(grad),
                                        origin[running], ball[running], clip)
            candidate = _to_model_dtype(current[running], x[live], ball[running], clf.input_dtype)
            hit = clf._run(candidate).argmax(axis=1) != y[live]
            mse = ((candidate.astype(np.float64) - origin[running]) ** 2).reshape(running.size, -1).mean(axis=1)
            better = hit & (mse < best_mse[live])
            best[live[better]], best_mse[live[better]] = candidate[better], mse[better]
            fooled[running[hit]] = True
            running = running[~hit]
            if not running.size:
                break
        return fooled

    radius = np.full(n, eps)
    good = np.full(n, np.nan)  # the smallest radius that worked so far
    with _Progress(progress, 2 * int(searches), "PGD search") as bar:
        growing = np.flatnonzero(~wrong)
        for _ in range(int(searches)):
            if growing.size:
                fooled = attempt(growing, radius[growing])
                good[growing[fooled]] = radius[growing[fooled]]
                radius[growing[~fooled]] *= growth
                growing = growing[~fooled]
            bar.update(1)
        bisecting = np.flatnonzero(np.isfinite(good) & ~wrong)
        bad = np.zeros(n)
        for _ in range(int(searches)):
            if bisecting.size:
                middle = (good[bisecting] + bad[bisecting]) / 2
                fooled = attempt(bisecting, middle)
                good[bisecting[fooled]] = middle[fooled]
                bad[bisecting[~fooled]] = middle[~fooled]
            bar.update(1)
    good[wrong] = 0.0
    return MinimalAttack(best, good, np.isfinite(best_mse))


@dataclass(frozen=True)
class AttackStats:
    """How an attack did on a set of labelled inputs.

    ``success_rate`` = (inputs the model classifies correctly when clean but wrongly when
    attacked) / (inputs it classifies correctly when clean); NaN when no clean input is correct.
    Inputs already misclassified when clean are left out of it, so an attack is not credited
    with the model's own mistakes. The accuracies are over all ``n`` inputs.
    """

    n: int
    clean_correct: int
    adversarial_correct: int
    flipped: int  # correct when clean, wrong when attacked

    @property
    def success_rate(self) -> float:
        return self.flipped / self.clean_correct if self.clean_correct else float("nan")

    @property
    def clean_accuracy(self) -> float:
        return self.clean_correct / self.n if self.n else float("nan")

    @property
    def adversarial_accuracy(self) -> float:
        return self.adversarial_correct / self.n if self.n else float("nan")


def attack_stats(model, x_clean, x_adv, y) -> AttackStats:
    """The attack's success rate and the clean and adversarial accuracies (see AttackStats)."""
    clf = _classifier(model)
    x_clean, x_adv = clf.validate(x_clean), clf.validate(x_adv)
    if x_clean.shape != x_adv.shape:
        raise BadInputError(f"clean inputs {x_clean.shape} and adversarial inputs {x_adv.shape} differ in shape")
    scores = clf._run(x_clean)
    y = clf._labels(y, len(x_clean), scores.shape[1])
    clean, adv = scores.argmax(axis=1), clf._run(x_adv).argmax(axis=1)
    ok_clean, ok_adv = clean == y, adv == y
    return AttackStats(len(y), int(ok_clean.sum()), int(ok_adv.sum()), int((ok_clean & ~ok_adv).sum()))


#: ``attack_stats``'s former name, which the README promised: it still imports.
attack_success_rate = attack_stats
