"""Uncertainty: split-conformal prediction intervals (regression) and prediction sets
(classification), with a coverage guarantee that holds for any model.

Split conformal (Vovk et al. 2005; Angelopoulos & Bates 2021): a score measures how badly
the model did on each validation sample; the ceil((n + 1) * coverage)-th smallest of the n
scores is the quantile q; a new sample's set holds every answer whose score would be at most
q. If validation and new data are exchangeable, the set holds the truth with probability at
least `coverage` (and below coverage + 1 / (n + 1) for continuous scores).

Scores:
    absolute (regression): |y - prediction|, in the target's units: intervals of one width.
    normalised (regression): |y - prediction| / sigma(x), where sigma(x), the difficulty
        estimate, is a ridge regression of log |training residual| on the model's
        penultimate features: intervals narrow where the model is usually right.
    aps (classification, adaptive prediction sets, Romano et al. 2020): the probability mass
        of the classes ranked above the true one plus U * p(true); randomised: U is uniform
        in [0, 1], drawn as a hash of the row's probabilities, so the same input always gets
        the same set. Unrandomised (`randomised: false`): U = 1, and a set keeps every class
        up to the one that crosses q (never empty, coverage at or above the target).
    lac (classification, least ambiguous sets, Sadinle et al. 2019): 1 - p(true class): the
        smallest sets on average; a set can be empty when no class is likely enough.

The check fits q on the validation split, reports coverage and sizes on the test split and
stores q in the run (`Run.set_conformal`), so `predict --intervals` and the server return
sets and intervals with the same guarantee: `prediction_intervals`, `prediction_sets`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gradwise.auditing.base import AuditContext, CheckResult, NotApplicable, Verdict, task_name
from gradwise.errors import GradwiseError

if TYPE_CHECKING:
    from torch import Tensor

    from gradwise.config import UncertaintyAudit
    from gradwise.run import Run

PLOT = "uncertainty.png"
DIFFICULTY_MAX_ROWS = 50_000  # training rows the difficulty model is fitted on (seeded)

# ---------------------------------------------------------------- the conformal core


def conformal_quantile(scores: np.ndarray, coverage: float) -> np.ndarray:
    """The split-conformal quantile: the ceil((n + 1) * coverage)-th smallest score.

    Args:
        scores: (n,) or (n, m) validation scores (m outputs, each its own quantile).
        coverage: target probability that a new sample's score is at most the quantile.

    Returns:
        () or (m,) quantiles; inf where n is too small for the coverage
        (ceil((n + 1) * coverage) > n).
    """
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    # the tiny slack keeps (n + 1) * 0.9 = 90.00000000000001 from asking for rank 91
    k = math.ceil((n + 1) * coverage - 1e-9)
    if k > n or n == 0:
        return np.full(scores.shape[1:], np.inf)
    return np.partition(scores, k - 1, axis=0)[k - 1]


def absolute_scores(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """|y - prediction|, in the target's units."""
    return np.abs(np.asarray(y, dtype=np.float64) - np.asarray(pred, dtype=np.float64))


def normalised_scores(pred: np.ndarray, y: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """|y - prediction| / sigma(x): residuals in units of the difficulty estimate."""
    return absolute_scores(pred, y) / sigma


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


def aps_scores(probs: np.ndarray, labels: np.ndarray, u: np.ndarray | None) -> np.ndarray:
    """(N,) APS scores of the true classes."""
    return aps_class_scores(probs, u)[np.arange(len(labels)), np.asarray(labels)]


def aps_sets(probs: np.ndarray, q: float, u: np.ndarray | None) -> np.ndarray:
    """(N, K) membership of APS sets. Randomised: the classes whose score is at most q.
    Unrandomised: the classes ranked before the one that crosses q, and that one."""
    probs = np.asarray(probs, dtype=np.float64)
    if u is None:
        return _mass_above(probs) < q
    return aps_class_scores(probs, u) <= q


def lac_scores(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) 1 - p(true class)."""
    return 1.0 - np.asarray(probs, dtype=np.float64)[np.arange(len(labels)), np.asarray(labels)]


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

    @staticmethod
    def fit(features: np.ndarray, residuals: np.ndarray) -> Difficulty:
        """Fit on (N, D) features and (N, m) absolute residuals (the regularisation is
        chosen by leave-one-out cross-validation, RidgeCV)."""
        from sklearn.linear_model import RidgeCV

        f = np.asarray(features, dtype=np.float64)
        r = np.abs(np.asarray(residuals, dtype=np.float64)).reshape(len(f), -1)
        mean, std = f.mean(axis=0), f.std(axis=0)
        std[std < 1e-12] = 1.0
        # a floor keeps log finite for exact predictions; it is tiny next to typical residuals
        floor = 1e-3 * np.maximum(np.median(r, axis=0), 1e-12)
        ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit((f - mean) / std, np.log(r + floor))
        coef = np.asarray(ridge.coef_, dtype=np.float64).reshape(r.shape[1], -1)
        intercept = np.asarray(ridge.intercept_, dtype=np.float64).reshape(r.shape[1])
        return Difficulty(mean, std, coef, intercept)

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


def target_values(run: Run, y: Tensor) -> np.ndarray:
    """(N, m) encoded (standardised) targets back in the target's units."""
    enc = y.double().numpy().reshape(len(y), -1)
    return np.asarray(run.schema.target.decode(enc), dtype=np.float64)


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


# ---------------------------------------------------------------- the check


def check(run: Run, settings: UncertaintyAudit, ctx: AuditContext) -> CheckResult:
    """Split-conformal intervals or sets fitted on validation, measured on test.

    Raises:
        NotApplicable: the run neither classifies nor regresses.
    """
    from gradwise.config import DiffusionConfig

    if isinstance(run.config.model, DiffusionConfig):
        raise NotApplicable("a diffusion model generates images; it predicts no targets.")
    match run.schema.task:
        case "regression":
            from gradwise.auditing.conformal_check import regression_check

            return regression_check(run, settings, ctx)
        case "classification":
            from gradwise.auditing.conformal_check import classification_check

            return classification_check(run, settings, ctx)
    raise NotApplicable(
        "conformal sets need a classifier or a regression; this run is "
        f"{task_name(run.schema.task)} "
        "(for a language model, the calibration check scores its next-token probabilities)."
    )


def check_calibration_size(n: int, coverage: float) -> None:
    """Raise NotApplicable when n validation samples cannot give a finite quantile at
    `coverage` (it needs ceil((n + 1) * coverage) <= n, that is n >= coverage / (1 -
    coverage))."""
    need = math.ceil(coverage / (1 - coverage) - 1e-9)
    if n < need:
        raise NotApplicable(
            f"the validation split holds {n} samples, too few for {coverage:.0%} conformal "
            f"sets: it needs at least {need}; lower audit.uncertainty.coverage or enlarge "
            "data.split.val."
        )


def coverage_verdict(coverage: float, settings: UncertaintyAudit) -> Verdict:
    """pass when test coverage reaches the target less the tolerance; fail when it falls
    short by more than `coverage_fail`."""
    short = settings.coverage - coverage
    if short > settings.coverage_fail:
        return "fail"
    return "warn" if short > settings.coverage_tolerance else "pass"
