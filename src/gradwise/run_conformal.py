"""Conformal sets and intervals from the quantiles stored in a run: what `Run.predict_sets`,
`Run.predict_intervals` and the server apply.

The uncertainty audit (`gradwise.auditing.uncertainty`) fits the split-conformal quantile on
the validation split and stores it, with its score and settings, in model.json
(`Run.set_conformal`); this module, beside the Run, turns a stored quantile into sets and
intervals for new inputs, with the same guarantee (see `gradwise.auditing.conformal` for the
scores and the quantile rule):

    regression       prediction +- q (absolute score) or +- q * sigma(x) (normalised score,
                     sigma the stored `Difficulty`), in the target's units;
    classification   APS sets (the classes whose adaptive score is at most q; randomised by
                     `row_uniforms`, or not) or LAC sets (the classes with 1 - p <= q).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gradwise.errors import GradwiseError

if TYPE_CHECKING:
    from gradwise.run import Run

# ---------------------------------------------------------------- sets from probabilities


def row_uniforms(probs: np.ndarray, seed: int) -> np.ndarray:
    """(N,) numbers uniform in [0, 1), each a hash of its row of probabilities (rounded to
    2^-24) and `seed`: the same row always gets the same number, whatever else is in the
    batch."""
    q = np.round(np.asarray(probs, dtype=np.float64) * 2**24).astype(np.uint64)
    h = np.full(len(q), np.uint64(seed) ^ np.uint64(0x9E3779B97F4A7C15), dtype=np.uint64)
    for k in range(q.shape[1]):
        h = _splitmix64(h ^ q[:, k])
    return (h >> np.uint64(11)).astype(np.float64) / float(2**53)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _mass_above(probs: np.ndarray) -> np.ndarray:
    """(N, K) for each class, the probability of the classes ranked above it (ties: lower
    class index first)."""
    order = np.argsort(-probs, axis=1, kind="stable")
    sorted_p = np.take_along_axis(probs, order, axis=1)
    above_sorted = np.cumsum(sorted_p, axis=1) - sorted_p
    above = np.empty_like(above_sorted)
    np.put_along_axis(above, order, above_sorted, axis=1)
    return above


def aps_class_scores(probs: np.ndarray, u: np.ndarray | None) -> np.ndarray:
    """(N, K) the APS score every class would have: mass above it + U * its probability
    (U = 1 unrandomised)."""
    probs = np.asarray(probs, dtype=np.float64)
    weight = 1.0 if u is None else np.asarray(u)[:, None]
    return _mass_above(probs) + weight * probs


def aps_sets(probs: np.ndarray, q: float, u: np.ndarray | None) -> np.ndarray:
    """(N, K) membership of APS sets. Randomised: the classes whose score is at most q.
    Unrandomised: the classes ranked before the one that crosses q, and that one."""
    probs = np.asarray(probs, dtype=np.float64)
    if u is None:
        return _mass_above(probs) < q
    return aps_class_scores(probs, u) <= q


def lac_sets(probs: np.ndarray, q: float) -> np.ndarray:
    """(N, K) membership: the classes with 1 - p <= q."""
    return 1.0 - np.asarray(probs, dtype=np.float64) <= q


# ---------------------------------------------------------------- the difficulty estimate


@dataclass(frozen=True)
class Difficulty:
    """sigma(x) = exp(standardised features @ coef.T + intercept), per output: a ridge
    regression of log |residual| on the model's penultimate features.

    Attributes:
        mean, std: (D,) standardisation of the features.
        coef: (m, D) one row per output; intercept: (m,).
    """

    mean: np.ndarray
    std: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray

    def sigma(self, features: np.ndarray) -> np.ndarray:
        """(N, m) difficulty estimates, positive."""
        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.std
        return np.exp(np.clip(z @ self.coef.T + self.intercept, -50.0, 50.0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "ridge regression of log |training residual| on the penultimate features",
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Difficulty:
        return Difficulty(*(np.asarray(d[k], dtype=np.float64) for k in _DIFFICULTY_KEYS))


_DIFFICULTY_KEYS = ("mean", "std", "coef", "intercept")


# ---------------------------------------------------------------- the run's outputs


def regression_outputs(run: Run, x: Any) -> np.ndarray:
    """(N, m) predictions in the target's units."""
    out = run.logits(x).double().numpy()
    return np.asarray(run.schema.target.decode(out), dtype=np.float64).reshape(len(out), -1)


def class_probabilities(run: Run, x: Any, temperature: float | None) -> np.ndarray:
    """(N, K) float64 class probabilities of softmax(logits / temperature) (None: 1)."""
    logits = run.logits(x).double()
    if temperature is not None:
        logits = logits / temperature
    return run.probabilities(logits, calibrated=False)


def _stored(run: Run, task: str) -> dict[str, Any]:
    conformal = run.calibration.conformal
    what = "intervals" if task == "regression" else "prediction sets"
    if run.schema.task != task:
        other = {"regression": " (it has intervals)", "classification": " (it has sets)"}
        raise GradwiseError(
            f"conformal {what} need a {task} run; {run.path} is {run.schema.task}"
            f"{other.get(run.schema.task, '')}."
        )
    if not conformal or conformal.get("task") != task:
        raise GradwiseError(
            f"{run.path} has no conformal quantiles for {what}; fit them with "
            f"`gradwise audit {run.path} --checks uncertainty` (it stores them in the run)."
        )
    return conformal


def prediction_intervals(run: Run, x: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predictions and split-conformal intervals from the quantiles stored in the run.

    Args:
        x: raw inputs (as `Run.predict` takes) or model-ready tensors.

    Returns:
        (prediction, lower, upper), each (N,) for one output or (N, m) for m outputs, in the
        target's units.

    Raises:
        GradwiseError: the run is no regression, or the uncertainty check has not stored
            its quantiles.
    """
    conformal = _stored(run, "regression")
    xt = x if _is_tensor(x) else run.transform(x)
    pred = regression_outputs(run, xt)
    q = np.asarray(conformal["quantile"], dtype=np.float64)
    if conformal["score"] == "normalised":
        difficulty = Difficulty.from_dict(conformal["difficulty"])
        half = q * difficulty.sigma(run.embed(xt).double().numpy())
    else:
        half = np.broadcast_to(q, pred.shape)
    lower, upper = pred - half, pred + half
    if pred.shape[1] == 1:
        return pred[:, 0], lower[:, 0], upper[:, 0]
    return pred, lower, upper


def prediction_sets(run: Run, x: Any) -> np.ndarray:
    """(N, K) booleans: which classes (columns in the order of `schema.classes`) are in each
    input's split-conformal prediction set, from the quantile stored in the run.

    Raises:
        GradwiseError: the run is no classifier, or the uncertainty check has not stored
            its quantile.
    """
    conformal = _stored(run, "classification")
    probs = class_probabilities(run, x, conformal.get("temperature"))
    return conformal_sets(probs, conformal["method"], conformal["quantile"], conformal)


def conformal_sets(
    probs: np.ndarray, method: str, q: float, conformal: dict[str, Any]
) -> np.ndarray:
    """(N, K) set membership for `method` (aps or lac) at quantile q; `conformal` holds
    `randomised` and `seed` (APS)."""
    if method == "lac":
        return lac_sets(probs, q)
    u = row_uniforms(probs, conformal["seed"]) if conformal["randomised"] else None
    return aps_sets(probs, q, u)


def _is_tensor(x: Any) -> bool:
    import torch

    return isinstance(x, torch.Tensor)


# ---------------------------------------------------------------- selective prediction


@dataclass(frozen=True)
class SelectivePrediction:
    """What a run with a certified abstention threshold says about each input.

    Attributes:
        prediction: (N,) labels (or values in the target's units; (N, m) for m outputs): the
            model's answer, given also where it abstains, so a person sees what it thought.
        answer: (N,) booleans: True where the score reaches the certified threshold (answer),
            False where the input goes to a person (abstain).
        score: (N,) the score compared with the threshold (higher: surer).
        probabilities: (N, K) calibrated class probabilities (classifiers), else None.
        guarantee: the guarantee in force: alpha, delta, threshold, n, score, fitted_at.
    """

    prediction: np.ndarray
    answer: np.ndarray
    score: np.ndarray
    probabilities: np.ndarray | None
    guarantee: dict[str, Any]

    @property
    def decision(self) -> np.ndarray:
        """(N,) "answer" or "abstain"."""
        return np.where(self.answer, "answer", "abstain")


GUARANTEE_KEYS = ("alpha", "delta", "threshold", "n", "score", "coverage", "fitted_at")


def selective_guarantee(run: Run) -> dict[str, Any]:
    """The certified abstention threshold stored in the run, checked against what it was
    fitted with.

    Raises:
        GradwiseError: none is stored, nothing could be certified, or the temperature or
            conformal quantile it was fitted with has been refitted since.
    """
    stored = run.calibration.selective
    fix = f"certify one with `gradwise audit {run.path} --checks selective`"
    if not stored:
        raise GradwiseError(f"{run.path} has no certified abstention threshold; {fix}.")
    if stored.get("threshold") is None:
        raise GradwiseError(
            f"{run.path} has no certified abstention threshold: {stored.get('reason', '')} "
            f"({fix} once that changes)."
        )
    if stored["task"] == "classification":
        now = run.calibration.temperature
        if stored.get("temperature") != now:
            raise GradwiseError(
                f"the abstention threshold of {run.path} was certified on probabilities with "
                f"temperature {stored.get('temperature')}, and the run's temperature is now "
                f"{now} (refitted since): the threshold no longer means what was certified; "
                f"re-{fix[0].lower()}{fix[1:]}."
            )
        if stored["score"] == "set_size":
            conformal = run.calibration.conformal or {}
            if conformal.get("quantile") != stored.get("conformal_quantile"):
                raise GradwiseError(
                    f"the abstention threshold of {run.path} was certified on conformal sets "
                    "whose quantile has been refitted since; " + fix + "."
                )
    return stored


def selective_scores(
    run: Run, x: Any, stored: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(prediction, score, probabilities or None) of inputs under a stored guarantee's score.

    Args:
        x: raw inputs (as `Run.predict` takes) or model-ready tensors.
    """
    xt = x if _is_tensor(x) else run.transform(x)
    if stored["task"] == "regression":
        pred = regression_outputs(run, xt)
        sigma = Difficulty.from_dict(stored["difficulty"]).sigma(run.embed(xt).double().numpy())
        out = pred[:, 0] if pred.shape[1] == 1 else pred
        return out, -sigma.max(axis=1), None
    probs = class_probabilities(run, xt, stored.get("temperature"))
    labels = run.schema.target.decode(probs.argmax(axis=1))
    return labels, classifier_score(probs, stored["score"], stored), probs


def classifier_score(probs: np.ndarray, score: str, stored: dict[str, Any]) -> np.ndarray:
    """(N,) how sure a classifier is, higher: surer: the top-class probability, the margin
    between the top two, or minus the size of the conformal set (`stored` holds its method,
    quantile, seed and randomisation)."""
    p = np.asarray(probs, dtype=np.float64)
    if score == "probability":
        return p.max(axis=1)
    if score == "margin":
        top2 = -np.partition(-p, 1, axis=1)[:, :2] if p.shape[1] > 1 else np.c_[p, 0 * p]
        return top2[:, 0] - top2[:, 1]
    sets = conformal_sets(p, stored["conformal_method"], stored["conformal_quantile"], stored)
    return -sets.sum(axis=1).astype(np.float64)


def predict_selective(run: Run, x: Any) -> SelectivePrediction:
    """Predictions, each with a decision (answer or abstain) under the run's certified
    threshold, and the guarantee in force."""
    stored = selective_guarantee(run)
    pred, score, probs = selective_scores(run, x, stored)
    answer = score >= stored["threshold"]
    guarantee = {k: stored.get(k) for k in GUARANTEE_KEYS}
    return SelectivePrediction(pred, answer, score, probs, guarantee)
