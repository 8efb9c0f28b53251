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

Per class (Mondrian, Vovk 2003; `audit.uncertainty.per_class: true`): one quantile per class,
from the validation rows of that class alone, and class k enters a set when its score is at
most q_k. The guarantee then holds within every class (a new sample of class k is covered
with probability at least `coverage`), not only on average over classes; the price is larger
sets, most of all for rare classes, and a class with too few validation rows for a finite
quantile (fewer than coverage / (1 - coverage)) enters every set.

This module holds the scores, the quantile rule and the fit of the difficulty estimate. The
check (`gradwise.auditing.uncertainty`) fits q on the validation split, reports coverage
and sizes on the test split and stores q in the run (`Run.set_conformal`); applying a stored
q to new inputs, as `predict --intervals` and the server do, is `gradwise.run_conformal`'s.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from gradwise.run_conformal import Difficulty, aps_class_scores

if TYPE_CHECKING:
    from torch import Tensor

    from gradwise.run import Run

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


def class_quantiles(
    scores: np.ndarray, labels: np.ndarray, n_classes: int, coverage: float
) -> list[float | None]:
    """Mondrian quantiles: the split-conformal quantile of each class's own validation scores.

    Args:
        scores: (n,) validation scores of the true classes.
        labels: (n,) the validation labels, 0..n_classes - 1.

    Returns:
        K quantiles; None where a class has too few validation rows for a finite quantile at
        `coverage` (that class then enters every set, which keeps its coverage).
    """
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    found = [float(conformal_quantile(scores[labels == k], coverage)) for k in range(n_classes)]
    return [None if math.isinf(q) else q for q in found]


def absolute_scores(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """|y - prediction|, in the target's units."""
    return np.abs(np.asarray(y, dtype=np.float64) - np.asarray(pred, dtype=np.float64))


def normalised_scores(pred: np.ndarray, y: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """|y - prediction| / sigma(x): residuals in units of the difficulty estimate."""
    return absolute_scores(pred, y) / sigma


def aps_scores(probs: np.ndarray, labels: np.ndarray, u: np.ndarray | None) -> np.ndarray:
    """(N,) APS scores of the true classes."""
    return aps_class_scores(probs, u)[np.arange(len(labels)), np.asarray(labels)]


def lac_scores(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) 1 - p(true class)."""
    return 1.0 - np.asarray(probs, dtype=np.float64)[np.arange(len(labels)), np.asarray(labels)]


# ---------------------------------------------------------------- the difficulty estimate


def fit_difficulty(features: np.ndarray, residuals: np.ndarray) -> Difficulty:
    """Fit the difficulty estimate on (N, D) features and (N, m) absolute residuals (the
    regularisation is chosen by leave-one-out cross-validation, RidgeCV)."""
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


def target_values(run: Run, y: Tensor) -> np.ndarray:
    """(N, m) encoded (standardised) targets back in the target's units."""
    enc = y.double().numpy().reshape(len(y), -1)
    return np.asarray(run.schema.target.decode(enc), dtype=np.float64)
