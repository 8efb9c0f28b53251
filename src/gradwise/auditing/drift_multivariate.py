"""Multivariate drift detectors: the MMD kernel test and the domain classifier.

Both look at all columns at once, standardised by the reference, on at most
`DriftSettings.max_rows` rows per side; neither builds an n x n matrix. See
`gradwise.auditing.drift` for the API (`detect` runs them with the per-feature detectors).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from scipy import stats

from gradwise.auditing.drift_stats import CHUNK
from gradwise.auditing.drift_types import (
    DriftResult,
    DriftSettings,
    Reference,
    check_current,
    prepare,
)

__all__ = ["domain_classifier_test", "median_distance", "mmd_test", "random_fourier_features"]

_BANDWIDTH_ROWS = 500  # pooled rows that set the median-heuristic bandwidth


def mmd_test(
    reference: Any,
    current: Any,
    settings: DriftSettings = DriftSettings(),
    *,
    seed: int | np.random.Generator = 0,
) -> DriftResult:
    """Kernel two-sample test (MMD, RBF kernel) with a permutation p-value.

    The kernel is approximated with random Fourier features, so memory and time grow with
    rows x features, never rows squared; the p-value stays exact for that approximate kernel.
    """
    ref = reference if isinstance(reference, Reference) else prepare(reference)
    rng = np.random.default_rng(seed)
    z_ref, z_cur = _standardised(ref, check_current(ref, current), settings.max_rows, rng)
    pooled = np.vstack([z_ref, z_cur])
    n, m = len(z_ref), len(z_cur)
    sigma = median_distance(pooled, rng)
    phi = random_fourier_features(pooled, sigma, settings.rff_features, rng)
    q = np.einsum("ij,ij->i", phi, phi)
    labels = np.r_[np.ones(n), np.zeros(m)]
    observed = _mmd2(labels[None], phi, q, n, m)[0]
    exceed = 0
    step = max(1, CHUNK // len(pooled))
    for s in range(0, settings.permutations, step):
        c = min(step, settings.permutations - s)
        perm = rng.permuted(np.broadcast_to(labels, (c, n + m)), axis=1)
        exceed += int((_mmd2(perm, phi, q, n, m) >= observed).sum())
    p = (1 + exceed) / (1 + settings.permutations)
    t = settings.mmd_threshold
    observed = float(observed)
    return DriftResult("mmd", observed, p, observed, t, bool(p < settings.alpha and observed >= t))


def _mmd2(labels: np.ndarray, phi: np.ndarray, q: np.ndarray, n: int, m: int) -> np.ndarray:
    """Unbiased MMD^2 of each (P, N) 0/1 labelling (1: first sample) in feature space."""
    sx = labels @ phi  # (P, D)
    sy = phi.sum(axis=0) - sx
    qx = labels @ q
    qy = q.sum() - qx
    xx = (np.einsum("pd,pd->p", sx, sx) - qx) / (n * (n - 1))
    yy = (np.einsum("pd,pd->p", sy, sy) - qy) / (m * (m - 1))
    return np.asarray(xx + yy - 2 * np.einsum("pd,pd->p", sx, sy) / (n * m))


def median_distance(x: np.ndarray, rng: np.random.Generator) -> float:
    """Median Euclidean distance between rows (of at most 500 random rows): the RBF
    bandwidth by the median heuristic; 1.0 when the rows coincide."""
    from scipy.spatial.distance import pdist

    rows = x[_sample(len(x), _BANDWIDTH_ROWS, rng)]
    d = float(np.median(pdist(rows))) if len(rows) > 1 else 0.0
    return d if d > 0 else 1.0


def random_fourier_features(
    x: np.ndarray, sigma: float, n_features: int, rng: np.random.Generator
) -> np.ndarray:
    """(N, n_features) features whose dot products approximate exp(-|x-y|^2 / (2 sigma^2))
    (Rahimi and Recht, 2007), computed a block of rows at a time. The cosine runs in
    float32 (20x faster here): that changes the feature map by about 1e-7, the same map
    for every row, so the permutation test stays exact."""
    omega = rng.standard_normal((x.shape[1], n_features)) / sigma
    shift = rng.uniform(0, 2 * np.pi, n_features)
    out = np.empty((len(x), n_features))
    step = max(1, CHUNK // n_features)
    for s in range(0, len(x), step):
        out[s : s + step] = np.cos((x[s : s + step] @ omega + shift).astype(np.float32))
    out *= math.sqrt(2.0 / n_features)
    return out


def domain_classifier_test(
    reference: Any,
    current: Any,
    settings: DriftSettings = DriftSettings(),
    *,
    seed: int | np.random.Generator = 0,
) -> DriftResult:
    """Can a classifier tell current rows from reference rows?

    Each fold's model scores rows it never saw; the effect is the mean of the folds'
    ROC-AUCs (0.5: no better than chance; 1: always right). Each fold's one-sided
    Mann-Whitney p-value is exact, but the folds share training rows, so pooling them
    would flag too often (we measured 12% at alpha 0.05); the p-value is the smallest
    fold's times the number of folds (Bonferroni), valid whatever their dependence.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    ref = reference if isinstance(reference, Reference) else prepare(reference)
    rng = np.random.default_rng(seed)
    z_ref, z_cur = _standardised(ref, check_current(ref, current), settings.max_rows, rng)
    x = np.vstack([z_ref, z_cur])
    y = np.r_[np.zeros(len(z_ref)), np.ones(len(z_cur))]
    random_state = int(rng.integers(2**31))
    model: Any
    if settings.classifier == "quadratic":
        model = make_pipeline(
            FunctionTransformer(_with_squares),
            StandardScaler(),
            LogisticRegression(C=0.1, tol=1e-3, max_iter=200),
        )
    else:
        model = HistGradientBoostingClassifier(
            max_iter=100, early_stopping=False, random_state=random_state
        )
    folds = min(settings.folds, len(z_ref), len(z_cur))
    cv = StratifiedKFold(folds, shuffle=True, random_state=random_state)
    aucs, ps = [], []
    for train, held_out in cv.split(x, y):
        with warnings.catch_warnings():
            # an unconverged model still scores held-out rows honestly: the p-value stays exact
            warnings.simplefilter("ignore", ConvergenceWarning)
            scores = model.fit(x[train], y[train]).predict_proba(x[held_out])[:, 1]
        is_cur = y[held_out] == 1
        test = stats.mannwhitneyu(scores[is_cur], scores[~is_cur], alternative="greater")
        aucs.append(float(test.statistic) / (is_cur.sum() * (~is_cur).sum()))
        ps.append(float(test.pvalue))
    auc = float(np.mean(aucs))
    p = min(1.0, folds * min(ps))
    t = settings.auc_threshold
    return DriftResult("domain_auc", auc, p, auc, t, bool(p < settings.alpha and auc >= t))


def _with_squares(x: np.ndarray) -> np.ndarray:
    return np.hstack([x, x * x])


def _standardised(
    ref: Reference, cur: np.ndarray, max_rows: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Both samples (at most max_rows rows each) in standard units of the pooled rows,
    missing values at the pooled mean (0). Pooled, not reference, statistics: they do not
    change when rows swap sides, which keeps the permutation and fold p-values exact."""
    x, y = ref.x[_sample(len(ref), max_rows, rng)], cur[_sample(len(cur), max_rows, rng)]
    pooled = np.vstack([x, y])
    finite = np.isfinite(pooled)
    counts = np.maximum(finite.sum(axis=0), 1)
    mean = np.where(finite, pooled, 0.0).sum(axis=0) / counts
    dev = np.where(finite, pooled - mean, 0.0)
    std = np.sqrt((dev * dev).sum(axis=0) / counts)
    z = dev / np.where(std > 0, std, 1.0)
    return z[: len(x)], z[len(x) :]


def _sample(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, k, replace=False)) if n > k else np.arange(n)
