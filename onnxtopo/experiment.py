"""The paper's experiment (design notes §6): how much of what the network knows about an input
its persistent subgraph carries, and whether that survives adversarial attacks.

* subgraph SVM accuracy: a linear SVM on the persistent-subgraph features of the clean inputs,
  k-fold cross-validated (stratified, shuffled with a seed), predicting the true class;
* network accuracy: the model's own accuracy on the same inputs;
* recovery accuracy: the SVM fitted on all clean inputs predicts the adversarial inputs; the
  share of them for which it predicts the true class;
* adversary retention: the share for which it predicts the network's adversarial prediction.

"Adversarial inputs" are the attacked inputs that fool the network (its prediction differs
from the true class); the figures over all attacked inputs are reported too.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .errors import BadInputError


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


def run_experiment(model, x, y, *, x_adv=None, attack: str | None = None, eps: float = 0.1,
                   folds: int = 10, seed: int = 0, features=None, analysis=None, svm_c: float = 1.0,
                   progress=None) -> ExperimentResult:
    """Run the experiment on labelled inputs ``x``, ``y``.

    ``x_adv`` are adversarial versions of ``x`` brought by the user, or ``attack`` ("fgsm" or
    "pgd", L∞ radius ``eps``) computes them on the ONNX model. ``analysis`` is a configured
    ``InducedPersistence`` (its model is set to ``model``; default: the default analysis) and
    ``features`` a configured ``SubgraphFeatures`` (default: all persistent-subgraph edges).
    Each input, clean or adversarial, is analyzed once.
    """
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.svm import LinearSVC

    from .attacks import OnnxClassifier, attack_stats, fgsm, pgd
    from .features import InducedPersistence, SubgraphFeatures

    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(x):
        raise BadInputError(f"labels have shape {y.shape}; expected one label per input ({len(x)})")
    if x_adv is not None and attack is not None:
        raise ValueError("give adversarial inputs or an attack, not both")
    classifier = OnnxClassifier(model)
    analyzer = clone(analysis).set_params(model=model) if analysis is not None else InducedPersistence(model)
    extractor = clone(features) if features is not None else SubgraphFeatures()
    extractor._check_params()  # a bad selection fails now, not after every input is analyzed
    analyzer.fit(x)
    clean = extractor.fit_transform(analyzer.transform(x))
    svm = LinearSVC(C=svm_c, max_iter=20000, random_state=seed)
    counts = np.bincount(np.unique(y, return_inverse=True)[1])
    folds_used = int(min(folds, counts.min()))
    if folds_used < 2:
        raise BadInputError("each class needs at least 2 inputs for cross-validation")
    scores = cross_val_score(svm, clean, y, cv=StratifiedKFold(folds_used, shuffle=True, random_state=seed))
    network = float((classifier.predict(x) == y).mean())
    result = {"n_inputs": len(y), "subgraph_svm_accuracy": float(scores.mean()),
              "subgraph_svm_accuracy_std": float(scores.std()), "network_accuracy": network,
              "n_features": clean.shape[1], "folds": folds_used}
    if attack is not None:
        if attack not in ("fgsm", "pgd"):
            raise ValueError(f"attack must be 'fgsm' or 'pgd', got {attack!r}")
        run_attack = fgsm if attack == "fgsm" else pgd
        x_adv = run_attack(classifier, x, y, eps, progress=progress)
        result["attack"] = f"{attack.upper()} eps={eps:g}"
    elif x_adv is not None:
        result["attack"] = "inputs given"
    if x_adv is not None:
        x_adv = np.asarray(x_adv)
        if x_adv.shape != np.shape(x):
            raise BadInputError(f"adversarial inputs have shape {x_adv.shape}; the clean ones {np.shape(x)}")
        stats = attack_stats(classifier, x, x_adv, y)
        svm.fit(clean, y)
        svm_adv = svm.predict(extractor.transform(analyzer.transform(x_adv)))
        net_adv = classifier.predict(x_adv)
        fooled = net_adv != y
        result.update(
            n_attacked=len(y), n_adversarial=int(fooled.sum()), attack_success_rate=stats.success_rate,
            recovery_accuracy=float((svm_adv[fooled] == y[fooled]).mean()) if fooled.any() else float("nan"),
            adversary_retention=float((svm_adv[fooled] == net_adv[fooled]).mean()) if fooled.any() else float("nan"),
            recovery_accuracy_all=float((svm_adv == y).mean()),
        )
    return ExperimentResult(**result)
