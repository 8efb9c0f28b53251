"""Drift detectors: is `current` drawn from the same distribution as `reference`?

Two-sample tests on (n, d) float arrays (table columns, or embeddings), fast enough for
windows of served inputs and whole tables alike: the per-feature tests cost one sort per
column, the multivariate tests look at most at `max_rows` rows per side, and no n x n
matrix is ever built, so memory stays bounded whatever n is.

    from gradwise.auditing.drift import DriftSettings, detect, prepare
    report = detect(x_train, x_new, DriftSettings(alpha=0.05), categorical=[3, 7])
    report.drifted                    # did any detector flag drift?
    report["psi"].effect              # the largest PSI over the features
    report["ks"].features.drifted     # per-feature verdicts, a bool array
    ref = prepare(x_train, categorical=[3, 7])  # sort the reference once ...
    detect(ref, window)                          # ... and reuse it for every window

Missing values are NaN (any non-finite value counts as missing); categorical columns hold
category codes as floats. Each detector returns a `DriftResult`:

    ks           numeric columns: Kolmogorov-Smirnov D, asymptotic p-value (as scipy's
                 ks_2samp(method="asymp")); effect: D.
    chi2         categorical columns: chi-squared test on the category counts (missing is
                 a category of its own; categories expected to hold fewer than 5 rows of
                 the smaller sample pooled; no continuity correction); effect: Cramer's V.
    psi          every column: population stability index over `bins` bins cut at the
                 reference's quantiles (the categories for categorical columns; missing
                 values in a bin of their own; proportions floored at 1e-4); its p-value
                 is the chi-squared test on the same bins.
    wasserstein  numeric columns: W1 distance divided by the reference's std; its
                 p-value is that column's KS test.
    (in gradwise.auditing.drift_multivariate, on at most `max_rows` rows per side:)
    mmd          all columns, standardised by the reference: unbiased MMD^2 with an RBF
                 kernel whose bandwidth is the median distance between pooled rows,
                 approximated with `rff_features` random Fourier features; p-value from
                 `permutations` random relabellings (valid for any kernel approximation).
    domain_auc   all columns: a classifier that tells reference rows from current rows
                 (`classifier`: quadratic = logistic regression on x and x^2, or hgb =
                 histogram gradient boosting), cross-validated over `folds`; effect: the
                 ROC-AUC of its out-of-fold scores; p-value: one-sided Mann-Whitney U.

A detector flags drift when its p-value is below `alpha` AND its effect size reaches its
threshold. At large n a p-value flags any difference, however small, so the effect size
decides; at small n the p-value holds the false-alarm rate at `alpha`. Per-feature p-values
are corrected for testing many features (`correction`: Benjamini-Hochberg by default, or
Holm): with no drift at all, the chance that any feature is flagged stays at or below
`alpha`. A per-feature detector reports its largest effect over the features, its largest
statistic and its smallest corrected p-value.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from gradwise.auditing.drift_multivariate import domain_classifier_test, mmd_test
from gradwise.auditing.drift_stats import (
    CHUNK,
    adjust_p_values,
    chi2_statistic,
    ks_p_values,
    ks_w1,
    population_stability_index,
    sorted_columns,
    sorted_quantiles,
)
from gradwise.auditing.drift_types import (
    DETECTORS,
    Detector,
    DriftReport,
    DriftResult,
    DriftSettings,
    FeatureDrift,
    Reference,
    check_current,
    prepare,
)
from gradwise.errors import DataError

__all__ = [
    "DETECTORS",
    "DriftReport",
    "DriftResult",
    "DriftSettings",
    "FeatureDrift",
    "Reference",
    "adjust_p_values",
    "chi2_test",
    "detect",
    "ks_test",
    "prepare",
    "psi_test",
    "wasserstein_test",
]


def detect(
    reference: Any,
    current: Any,
    settings: DriftSettings = DriftSettings(),
    *,
    categorical: Any = (),
    seed: int | np.random.Generator = 0,
) -> DriftReport:
    """Run `settings.detectors` on reference vs current.

    Args:
        reference: a `Reference` (from `prepare`) or an (n, d) array-like.
        current: (m, d) array-like with the reference's columns.
        categorical: columns holding category codes (ignored for a prepared Reference).
        seed: seeds the subsamples, the random features, permutations and folds.

    Raises:
        DataError: the inputs are not 2-D, have too few rows, or differ in columns.
    """
    ref = reference if isinstance(reference, Reference) else prepare(reference, categorical)
    cur = check_current(ref, current)
    rng = np.random.default_rng(seed)
    wanted = settings.detectors
    results = list(_univariate(ref, cur, settings, wanted).values())
    if "mmd" in wanted:
        results.append(mmd_test(ref, cur, settings, seed=rng))
    if "domain_auc" in wanted:
        results.append(domain_classifier_test(ref, cur, settings, seed=rng))
    order: dict[str, int] = {name: i for i, name in enumerate(DETECTORS)}
    results.sort(key=lambda r: order[r.detector])
    return DriftReport(tuple(results), len(ref), len(cur), ref.x.shape[1], settings)


# ---------------------------------------------------------------- per-feature detectors


def ks_test(reference: Any, current: Any, settings: DriftSettings = DriftSettings()) -> DriftResult:
    """Kolmogorov-Smirnov test of each numeric column (see the module docstring)."""
    return _one(reference, current, settings, "ks")


def chi2_test(
    reference: Any, current: Any, settings: DriftSettings = DriftSettings(), categorical: Any = ()
) -> DriftResult:
    """Chi-squared test of each categorical column's category counts."""
    ref = reference if isinstance(reference, Reference) else prepare(reference, categorical)
    return _one(ref, current, settings, "chi2")


def psi_test(
    reference: Any, current: Any, settings: DriftSettings = DriftSettings(), categorical: Any = ()
) -> DriftResult:
    """Population stability index of each column over reference-quantile bins."""
    ref = reference if isinstance(reference, Reference) else prepare(reference, categorical)
    return _one(ref, current, settings, "psi")


def wasserstein_test(
    reference: Any, current: Any, settings: DriftSettings = DriftSettings()
) -> DriftResult:
    """W1 distance of each numeric column in reference standard deviations."""
    return _one(reference, current, settings, "wasserstein")


def _one(reference: Any, current: Any, settings: DriftSettings, name: Detector) -> DriftResult:
    ref = reference if isinstance(reference, Reference) else prepare(reference)
    found = _univariate(ref, check_current(ref, current), settings, (name,))
    if name not in found:
        kind = "categorical" if name == "chi2" else "numeric"
        raise DataError(f"{name} tests {kind} columns and the input has none.")
    return found[name]


def _univariate(
    ref: Reference, cur: np.ndarray, settings: DriftSettings, wanted: tuple[Detector, ...]
) -> dict[str, DriftResult]:
    """The per-feature detectors in `wanted`, sharing one pass over the columns."""
    out: dict[str, DriftResult] = {}
    num = np.array(ref.numeric, dtype=np.int64)
    cat = np.array(ref.categorical, dtype=np.int64)
    need_cdf = ("ks" in wanted or "wasserstein" in wanted) and len(num) > 0
    need_bins = "psi" in wanted or "chi2" in wanted
    if len(num) and (need_cdf or "psi" in wanted):
        ks_d, ks_p, w1, num_psi, num_chi2, num_df = _numeric_scores(ref, cur, settings.bins)
        ks_p = adjust_p_values(ks_p, settings.correction)
        if "ks" in wanted:
            out["ks"] = _per_feature("ks", num, ks_d, ks_p, ks_d, settings.ks_threshold, settings)
        if "wasserstein" in wanted:
            w = w1 / _reference_scale(ref, cur, num)
            out["wasserstein"] = _per_feature(
                "wasserstein", num, w, ks_p, w, settings.wasserstein_threshold, settings
            )
    else:
        num_psi = num_chi2 = num_df = np.zeros(0)
    if need_bins:
        cat_psi, cat_chi2, cat_df = _categorical_scores(ref.x[:, cat], cur[:, cat])
        if "chi2" in wanted and len(cat):
            p = adjust_p_values(stats.chi2.sf(cat_chi2, np.maximum(cat_df, 1)), settings.correction)
            p = np.where(cat_df > 0, p, 1.0)
            v = np.sqrt(cat_chi2 / (len(ref) + len(cur)))
            out["chi2"] = _per_feature(
                "chi2", cat, cat_chi2, p, v, settings.chi2_threshold, settings
            )
        if "psi" in wanted:
            cols = np.concatenate([num, cat])
            chi = np.concatenate([num_chi2, cat_chi2])
            df = np.concatenate([num_df, cat_df])
            p = np.where(df > 0, stats.chi2.sf(chi, np.maximum(df, 1)), 1.0)
            p = adjust_p_values(p, settings.correction)
            psi = np.concatenate([num_psi, cat_psi])
            order = np.argsort(cols)
            out["psi"] = _per_feature(
                "psi",
                cols[order],
                psi[order],
                p[order],
                psi[order],
                settings.psi_threshold,
                settings,
            )
    return out


def _reference_scale(ref: Reference, cur: np.ndarray, num: np.ndarray) -> np.ndarray:
    """The reference std of each numeric column; for a constant reference column, the
    pooled std (1 when both samples are constant)."""
    scale = ref.std[num].copy()
    for i in np.flatnonzero(scale == 0):
        pooled = np.concatenate([ref.x[:, num[i]], cur[:, num[i]]])
        sd = float(np.std(pooled[np.isfinite(pooled)])) if np.isfinite(pooled).any() else 0.0
        scale[i] = sd if sd > 0 else 1.0
    return scale


def _per_feature(
    name: str,
    columns: np.ndarray,
    statistic: np.ndarray,
    p: np.ndarray,
    effect: np.ndarray,
    threshold: float,
    settings: DriftSettings,
) -> DriftResult:
    drifted = (p < settings.alpha) & (effect >= threshold)
    features = FeatureDrift(columns, statistic, p, effect, drifted)
    return DriftResult(
        name,
        float(statistic.max()),
        float(p.min()),
        float(effect.max()),
        threshold,
        bool(drifted.any()),
        features,
    )


def _numeric_scores(ref: Reference, cur: np.ndarray, bins: int) -> tuple[np.ndarray, ...]:
    """Per numeric column: KS D and its asymptotic p, W1, PSI, chi-squared and its df."""
    k = len(ref.numeric)
    ks_d, en, w1, psi, chi, df = (np.zeros(k) for _ in range(6))
    n, m = len(ref), len(cur)
    probs = np.linspace(0, 1, bins + 1)[1:-1]
    step = max(1, CHUNK // max(1, m))
    for j in range(len(ref.numeric)):
        if j % step == 0:  # sort the next block of current columns (missing last, as inf)
            block = sorted_columns(cur, ref.numeric[j : j + step])
        b = block[j % step]
        b = b[: np.searchsorted(b, np.inf)]
        na, nb = int(ref.n_valid[j]), len(b)
        a = ref.sorted_numeric[j, :na]
        if na and nb:
            ks_d[j], w1[j] = ks_w1(a, b)
            en[j] = round(na * nb / (na + nb))
        edges = np.unique(sorted_quantiles(a, probs)) if na else np.zeros(0)
        count_a = np.diff(np.searchsorted(a, edges, side="right"), prepend=0, append=na)
        count_b = np.diff(np.searchsorted(b, edges, side="right"), prepend=0, append=nb)
        count_a = np.append(count_a, n - na)  # the missing values' bin
        count_b = np.append(count_b, m - nb)
        psi[j] = population_stability_index(count_a, count_b)
        chi[j], df[j] = chi2_statistic(count_a, count_b)
    return ks_d, ks_p_values(ks_d, en), w1, psi, chi, df


def _categorical_scores(
    ref: np.ndarray, cur: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per categorical column: PSI, chi-squared and its df over the categories (missing is
    one more)."""
    k = ref.shape[1]
    psi, chi, df = np.zeros(k), np.zeros(k), np.zeros(k)
    for j in range(k):
        a, b = ref[:, j], cur[:, j]
        fa, fb = np.isfinite(a), np.isfinite(b)
        cats = np.unique(np.concatenate([a[fa], b[fb]]))
        count_a = np.bincount(np.searchsorted(cats, a[fa]), minlength=len(cats))
        count_b = np.bincount(np.searchsorted(cats, b[fb]), minlength=len(cats))
        count_a = np.append(count_a, (~fa).sum())
        count_b = np.append(count_b, (~fb).sum())
        psi[j] = population_stability_index(count_a, count_b)
        chi[j], df[j] = chi2_statistic(count_a, count_b)
    return psi, chi, df
