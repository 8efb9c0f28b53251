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

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import stats

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
from gradwise.errors import ConfigError, DataError

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

Detector = Literal["ks", "chi2", "psi", "wasserstein", "mmd", "domain_auc"]
DETECTORS: tuple[Detector, ...] = ("ks", "chi2", "psi", "wasserstein", "mmd", "domain_auc")


@dataclass(frozen=True)
class DriftSettings:
    """How the detectors test and when they flag drift.

    Attributes:
        alpha: false-alarm rate of every test (after the per-feature correction).
        correction: per-feature multiple-testing correction: bh (Benjamini-Hochberg) or holm.
        bins: PSI / chi-squared bins of a numeric column (cut at reference quantiles).
        ks_threshold: smallest KS D that counts as drift.
        chi2_threshold: smallest Cramer's V that counts as drift.
        psi_threshold: smallest PSI that counts as drift (0.1: "some shift", 0.25: "major").
        wasserstein_threshold: smallest W1 distance, in reference standard deviations.
        mmd_threshold: smallest unbiased MMD^2 (RBF kernel, median bandwidth).
        auc_threshold: smallest domain-classifier ROC-AUC.
        permutations: relabellings of the MMD permutation test.
        rff_features: random Fourier features approximating the MMD's kernel.
        classifier: the domain classifier: quadratic (logistic regression on x and x^2;
            mean and spread changes) or hgb (gradient boosting; also interactions).
        folds: cross-validation folds of the domain classifier.
        max_rows: rows per side the MMD and the domain classifier use (a random sample
            of larger inputs); the per-feature tests use every row.
        detectors: which detectors `detect` runs.
    """

    alpha: float = 0.05
    correction: Literal["bh", "holm"] = "bh"
    bins: int = 10
    ks_threshold: float = 0.1
    chi2_threshold: float = 0.1
    psi_threshold: float = 0.1
    wasserstein_threshold: float = 0.1
    mmd_threshold: float = 0.002
    auc_threshold: float = 0.6
    permutations: int = 200
    rff_features: int = 256
    classifier: Literal["quadratic", "hgb"] = "quadratic"
    folds: int = 3
    max_rows: int = 10_000
    detectors: tuple[Detector, ...] = DETECTORS

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise ConfigError(f"alpha must be in (0, 1), got {self.alpha}.")
        for name, low in (("bins", 2), ("permutations", 1), ("rff_features", 1), ("folds", 2)):
            if getattr(self, name) < low:
                raise ConfigError(f"{name} must be at least {low}, got {getattr(self, name)}.")
        if self.max_rows < 2 * self.folds:
            raise ConfigError(f"max_rows must be at least 2 * folds, got {self.max_rows}.")
        unknown = [d for d in self.detectors if d not in DETECTORS]
        if unknown:
            raise ConfigError(
                f"unknown detectors {', '.join(unknown)}; choose from {', '.join(DETECTORS)}."
            )


@dataclass(frozen=True)
class FeatureDrift:
    """Per-feature scores of a per-feature detector, one entry per column it tested.

    Attributes:
        columns: the columns' positions in the input.
        statistic, effect: the test statistic and the effect size of each column.
        p_value: p-values after the multiple-testing correction.
        drifted: corrected p below alpha and effect at or above the threshold.
    """

    columns: np.ndarray
    statistic: np.ndarray
    p_value: np.ndarray
    effect: np.ndarray
    drifted: np.ndarray


@dataclass(frozen=True)
class DriftResult:
    """One detector's verdict on reference vs current.

    Attributes:
        detector: ks, chi2, psi, wasserstein, mmd or domain_auc.
        statistic: the test statistic (per-feature detectors: the largest over features).
        p_value: the (smallest corrected) p-value, or None where no test ran.
        effect: the effect size the verdict compares with `threshold`.
        drifted: p below alpha and effect at or above the threshold.
        features: per-feature scores (per-feature detectors only).
    """

    detector: str
    statistic: float
    p_value: float | None
    effect: float
    threshold: float
    drifted: bool
    features: FeatureDrift | None = None

    @property
    def n_drifted(self) -> int | None:
        """Features flagged (per-feature detectors), else None."""
        return None if self.features is None else int(self.features.drifted.sum())

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            k: getattr(self, k)
            for k in ("detector", "statistic", "p_value", "effect", "threshold", "drifted")
        }
        if self.features is not None:
            f = self.features
            out.update(n_features=len(f.columns), n_drifted=self.n_drifted)
            out["features"] = {k.name: getattr(f, k.name).tolist() for k in dataclasses.fields(f)}
        return out


@dataclass(frozen=True)
class DriftReport:
    """Every detector's result on one pair of samples, with the settings used."""

    results: tuple[DriftResult, ...]
    n_reference: int
    n_current: int
    n_features: int
    settings: DriftSettings

    @property
    def drifted(self) -> bool:
        return any(r.drifted for r in self.results)

    def get(self, detector: str) -> DriftResult | None:
        return next((r for r in self.results if r.detector == detector), None)

    def __getitem__(self, detector: str) -> DriftResult:
        found = self.get(detector)
        if found is None:
            ran = ", ".join(r.detector for r in self.results)
            raise KeyError(f"{detector} did not run; these did: {ran}")
        return found

    def to_dict(self) -> dict[str, Any]:
        return {
            "drifted": self.drifted,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "n_features": self.n_features,
            "settings": dataclasses.asdict(self.settings),
            "detectors": {r.detector: r.to_dict() for r in self.results},
        }


@dataclass(frozen=True)
class Reference:
    """A reference sample prepared once: each numeric column sorted (missing values last,
    as +inf), its finite count, and per-column mean and std (of finite values)."""

    x: np.ndarray  # (n, d) float64
    categorical: tuple[int, ...]
    numeric: tuple[int, ...]
    sorted_numeric: np.ndarray  # (len(numeric), n)
    n_valid: np.ndarray  # (len(numeric),)
    mean: np.ndarray  # (d,)
    std: np.ndarray  # (d,), 0 where a column is constant

    def __len__(self) -> int:
        return len(self.x)


def prepare(reference: Any, categorical: Any = ()) -> Reference:
    """Sort and summarise a reference sample once, for many `detect` calls.

    Args:
        reference: (n, d) array-like of floats; NaN marks a missing value.
        categorical: positions of the columns that hold category codes.

    Raises:
        DataError: the input is not a 2-D numeric array with at least 2 rows.
    """
    x = as_matrix(reference, "reference")
    d = x.shape[1]
    cats = tuple(sorted({int(c) for c in categorical}))
    if any(not 0 <= c < d for c in cats):
        raise DataError(f"categorical columns {cats} must lie in 0..{d - 1}.")
    numeric = tuple(j for j in range(d) if j not in cats)
    sorted_numeric = sorted_columns(x, numeric)
    counts, mean, std = np.zeros(d, dtype=np.int64), np.zeros(d), np.zeros(d)
    step = max(1, CHUNK // len(x))
    for s in range(0, d, step):  # a block of columns at a time: small working copies
        block = x[:, s : s + step]
        finite = np.isfinite(block)
        counts[s : s + step] = finite.sum(axis=0)
        k = np.maximum(counts[s : s + step], 1)
        mean[s : s + step] = np.where(finite, block, 0.0).sum(axis=0) / k
        dev = np.where(finite, block - mean[s : s + step], 0.0)
        std[s : s + step] = np.sqrt((dev * dev).sum(axis=0) / k)
    n_valid = counts[list(numeric)] if numeric else np.zeros(0, dtype=np.int64)
    return Reference(x, cats, numeric, sorted_numeric, n_valid, mean, std)


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
    if "mmd" in wanted or "domain_auc" in wanted:
        from gradwise.auditing.drift_multivariate import domain_classifier_test, mmd_test
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


# ---------------------------------------------------------------- input checks


def as_matrix(x: Any, what: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"The {what} sample must be numeric: {exc}.") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(f"The {what} sample must be an (n, d) array; got shape {arr.shape}.")
    if len(arr) < 2:
        raise DataError(f"The {what} sample has {len(arr)} rows; drift tests need at least 2.")
    return arr


def check_current(ref: Reference, current: Any) -> np.ndarray:
    cur = as_matrix(current, "current")
    if cur.shape[1] != ref.x.shape[1]:
        raise DataError(
            f"The current sample has {cur.shape[1]} columns and the reference "
            f"{ref.x.shape[1]}; give both the same columns in the same order."
        )
    return cur
