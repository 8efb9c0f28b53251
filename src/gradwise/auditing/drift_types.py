"""The types the drift detectors share: their settings, a prepared reference sample, each
detector's result and the report of a run of several (see `drift.py` for the detectors and
the API, `drift_multivariate.py` for the MMD and the domain classifier)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from gradwise.auditing.drift_stats import CHUNK, sorted_columns
from gradwise.errors import ConfigError, DataError

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
