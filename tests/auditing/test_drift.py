"""Drift detectors: agreement with scipy and hand computations, false-alarm rate on unshifted
samples, power against a known shift, effect sizes deciding at large n."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import cdist

from gradwise.auditing.drift import (
    DriftSettings,
    chi2_test,
    detect,
    ks_test,
    prepare,
    psi_test,
    wasserstein_test,
)
from gradwise.auditing.drift_multivariate import (
    domain_classifier_test,
    median_distance,
    mmd_test,
    random_fourier_features,
)
from gradwise.auditing.drift_stats import PSI_FLOOR, adjust_p_values
from gradwise.errors import ConfigError, DataError

# every threshold at 0: the verdict is the p-value alone
PURE = DriftSettings(
    ks_threshold=0,
    chi2_threshold=0,
    psi_threshold=0,
    wasserstein_threshold=0,
    mmd_threshold=-1,
    auc_threshold=0,
)


def _binomial_ceiling(rate: float, repeats: int) -> float:
    """The rate plus three binomial standard deviations: what chance allows."""
    return rate + 3 * np.sqrt(rate * (1 - rate) / repeats)


# ---------------------------------------------------------------- against references


def test_ks_and_wasserstein_equal_scipy_with_missing_values_and_ties():
    rng = np.random.default_rng(0)
    a = np.c_[rng.standard_normal(700), rng.integers(0, 5, 700), rng.exponential(size=700)]
    b = np.c_[rng.standard_normal(450) + 0.2, rng.integers(0, 6, 450), rng.exponential(size=450)]
    a[rng.random(a.shape) < 0.05] = np.nan
    settings = DriftSettings(correction="holm")
    ks, w = ks_test(a, b, settings), wasserstein_test(a, b, settings)
    raw_p = []
    for j in range(3):
        aj = a[:, j][np.isfinite(a[:, j])]
        ref = stats.ks_2samp(aj, b[:, j], method="asymp")
        assert ks.features.statistic[j] == pytest.approx(ref.statistic, abs=1e-12)
        raw_p.append(ref.pvalue)
        w_ref = stats.wasserstein_distance(aj, b[:, j]) / aj.std()
        assert w.features.effect[j] == pytest.approx(w_ref, rel=1e-10)
    assert ks.features.p_value == pytest.approx(adjust_p_values(np.array(raw_p), "holm"))


def test_chi2_equals_scipy_contingency_with_a_missing_category():
    rng = np.random.default_rng(1)
    a = rng.choice([0.0, 1.0, 2.0, np.nan], size=(500, 1), p=[0.5, 0.3, 0.15, 0.05])
    b = rng.choice([0.0, 1.0, 2.0, 3.0], size=(300, 1), p=[0.4, 0.3, 0.2, 0.1])
    result = chi2_test(a, b, categorical=[0])
    table = [
        [np.sum(a == v) for v in (0, 1, 2, 3)] + [np.isnan(a).sum()],
        [np.sum(b == v) for v in (0, 1, 2, 3)] + [np.isnan(b).sum()],
    ]
    ref = stats.chi2_contingency(table, correction=False)
    assert result.statistic == pytest.approx(ref.statistic)
    assert result.p_value == pytest.approx(ref.pvalue)
    assert result.effect == pytest.approx(np.sqrt(ref.statistic / 800))  # Cramer's V


def test_psi_equals_a_hand_computation_over_reference_deciles():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal(1000), rng.standard_normal(800) * 1.3 + 0.3
    edges = np.unique(np.quantile(a, np.linspace(0, 1, 11)[1:-1]))
    p = np.bincount(np.searchsorted(edges, a), minlength=10) / len(a)
    q = np.bincount(np.searchsorted(edges, b), minlength=10) / len(b)
    p, q = np.maximum(p, PSI_FLOOR), np.maximum(q, PSI_FLOOR)
    expected = np.sum((q - p) * np.log(q / p))
    assert psi_test(a, b).effect == pytest.approx(expected, rel=1e-12)


def test_adjusted_p_values_match_hand_computed_holm_and_bh():
    p = np.array([0.01, 0.04, 0.03, 0.2])
    # Holm: sorted 0.01, 0.03, 0.04, 0.2 times 4, 3, 2, 1, made non-decreasing
    assert adjust_p_values(p, "holm") == pytest.approx([0.04, 0.09, 0.09, 0.2])
    # BH: p * 4 / rank, made non-increasing from the top
    assert adjust_p_values(p, "bh") == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.2])


def _exact_mmd2(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """Unbiased MMD^2 from the full kernel matrices (small samples only)."""

    def k(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return np.exp(-cdist(u, v, "sqeuclidean") / (2 * sigma**2))

    kxx, kyy = k(x, x), k(y, y)
    n, m = len(x), len(y)
    return float(
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        + (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        - 2 * k(x, y).mean()
    )


def test_random_feature_mmd_approaches_the_exact_kernel_mmd():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((300, 4)), rng.standard_normal((200, 4)) + 0.4
    # the detector standardises by the reference; under 1000 pooled rows the median
    # bandwidth uses every pair, so it is the same here
    xs, ys = (x - x.mean(0)) / x.std(0), (y - x.mean(0)) / x.std(0)
    sigma = median_distance(np.vstack([xs, ys]), rng)
    phi = random_fourier_features(np.vstack([xs, ys]), sigma, 20_000, rng)
    kernel = np.exp(-cdist(xs, ys, "sqeuclidean") / (2 * sigma**2))
    assert np.abs(phi[:300] @ phi[300:].T - kernel).max() < 0.05
    exact = _exact_mmd2(xs, ys, sigma)
    result = mmd_test(x, y, DriftSettings(rff_features=20_000, permutations=20), seed=4)
    assert exact > 0.01
    assert result.statistic == pytest.approx(exact, rel=0.1)


# ---------------------------------------------------------------- false alarms


def test_per_feature_detectors_hold_the_false_alarm_rate_on_random_splits_of_digits():
    """Random halves of one table (pixel counts: many ties). The verdicts are checked with
    every threshold at 0; the default thresholds only flag fewer."""
    from sklearn.datasets import load_digits

    x = load_digits().data
    x = x[:, x.std(axis=0) > 0]
    rng = np.random.default_rng(5)
    repeats, names = 100, ("ks", "psi", "wasserstein")
    hits = np.zeros(len(names) + 1)
    for _ in range(repeats):
        order = rng.permutation(len(x))
        report = detect(x[order[:900]], x[order[900:]], dataclasses.replace(PURE, detectors=names))
        hits += [report[n].drifted for n in names] + [report.drifted]
    assert (hits / repeats <= _binomial_ceiling(0.05, repeats)).all(), hits / repeats


def test_p_values_are_calibrated_on_gaussian_samples():
    """With every threshold at 0 the verdict is the test alone: about 5% of unshifted pairs
    flagged, not far below (a uselessly conservative test) and not above."""
    rng = np.random.default_rng(6)
    repeats = 200
    names = ("ks", "chi2", "psi", "wasserstein")
    settings = dataclasses.replace(PURE, detectors=names)
    hits = np.zeros(len(names))
    for _ in range(repeats):
        a, b = rng.standard_normal((1000, 12)), rng.standard_normal((1000, 12))
        a[:, 10:], b[:, 10:] = rng.integers(0, 4, (1000, 2)), rng.integers(0, 4, (1000, 2))
        report = detect(a, b, settings, categorical=[10, 11])
        hits += [report[n].drifted for n in names]
    rates = hits / repeats
    assert (rates <= _binomial_ceiling(0.05, repeats)).all(), rates
    assert (rates >= 0.01).all(), rates


def test_mmd_and_domain_classifier_hold_the_false_alarm_rate():
    rng = np.random.default_rng(7)
    repeats = 100
    settings = dataclasses.replace(PURE, permutations=50, rff_features=64)
    mmd_hits = auc_hits = 0
    for r in range(repeats):
        a, b = rng.standard_normal((150, 5)), rng.standard_normal((150, 5))
        mmd_hits += mmd_test(a, b, settings, seed=r).drifted
        auc_hits += domain_classifier_test(a, b, settings, seed=r).drifted
    ceiling = _binomial_ceiling(0.05, repeats)
    assert mmd_hits / repeats <= ceiling
    assert auc_hits / repeats <= ceiling


# ---------------------------------------------------------------- power and effect sizes


def test_half_sd_shift_in_a_tenth_of_the_features_is_detected_at_n_1000():
    rng = np.random.default_rng(8)
    repeats, d = 20, 50
    names = ("ks", "psi", "wasserstein", "mmd", "domain_auc")
    hits = dict.fromkeys(names, 0)
    settings = DriftSettings(permutations=100)
    for r in range(repeats):
        a, b = rng.standard_normal((1000, d)), rng.standard_normal((1000, d))
        b[:, : d // 10] += 0.5
        report = detect(a, b, settings, seed=r)
        for n in names:
            hits[n] += report[n].drifted
        assert set(np.flatnonzero(report["ks"].features.drifted)) <= set(range(d // 10))
    power = {n: h / repeats for n, h in hits.items()}
    assert min(power.values()) >= 0.9, power


def test_at_large_n_a_tiny_shift_is_significant_but_not_drift():
    rng = np.random.default_rng(9)
    a, b = rng.standard_normal((50_000, 3)), rng.standard_normal((50_000, 3)) + 0.04
    report = detect(a, b, DriftSettings(detectors=("ks", "psi", "wasserstein")))
    assert report["ks"].p_value < 1e-6  # the test sees the difference ...
    assert not report.drifted  # ... the effect sizes say it does not matter


def test_domain_classifier_tells_a_spread_change_apart():
    rng = np.random.default_rng(10)
    a, b = rng.standard_normal((500, 4)), rng.standard_normal((500, 4)) * 2.0
    result = domain_classifier_test(a, b, seed=0)
    assert result.drifted and result.effect > 0.75
    hgb = domain_classifier_test(a, b, DriftSettings(classifier="hgb"), seed=0)
    assert hgb.drifted


# ---------------------------------------------------------------- the API


def test_a_prepared_reference_gives_the_same_report():
    rng = np.random.default_rng(11)
    a, b = rng.standard_normal((400, 6)), rng.standard_normal((300, 6)) + 0.3
    a[:, 5], b[:, 5] = rng.integers(0, 3, 400), rng.integers(0, 3, 300)
    direct = detect(a, b, categorical=[5], seed=1).to_dict()
    reused = detect(prepare(a, categorical=[5]), b, seed=1).to_dict()
    assert direct == reused
    assert direct["detectors"]["chi2"]["n_features"] == 1
    assert direct["detectors"]["ks"]["n_features"] == 5


def test_bad_inputs_are_named():
    a = np.zeros((10, 3))
    with pytest.raises(DataError, match="3 columns"):
        detect(np.zeros((10, 4)), a)
    with pytest.raises(DataError, match="at least 2"):
        detect(a, np.zeros((1, 3)))
    with pytest.raises(ConfigError, match="unknown detectors"):
        DriftSettings(detectors=("ks", "kl"))  # type: ignore[arg-type]
    with pytest.raises(DataError, match="no"):
        chi2_test(a, a)


def test_sparse_categories_are_pooled_before_the_chi2_test():
    # categories 3 and 4 are expected to hold under 5 rows of the smaller sample: one bin
    a = np.repeat([0.0, 1.0, 2.0, 3.0, 4.0], [200, 150, 100, 8, 6])[:, None]
    b = np.repeat([0.0, 1.0, 2.0, 3.0, 4.0], [90, 80, 40, 4, 3])[:, None]
    result = chi2_test(a, b, categorical=[0])
    ref = stats.chi2_contingency([[200, 150, 100, 14], [90, 80, 40, 7]], correction=False)
    assert result.statistic == pytest.approx(ref.statistic)
    assert result.p_value == pytest.approx(ref.pvalue)
