"""The Learn-then-Test math of `auditing/risk_control.py` against references: scipy's binomial
tail, brute-force loops over thresholds and along each chain, the definition of the
Clopper-Pearson interval, and the guarantee itself over many random calibration draws of a
model whose true selective error is known in closed form, with and without the model's own
expected errors, and whether those are right, five times too sure, or noise."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
from scipy.stats import beta as beta_dist
from scipy.stats import binom

from gradwise.auditing.risk_control import (
    MAX_THRESHOLDS,
    accepted_and_errors,
    aurc,
    binomial_p_values,
    certify,
    chain_starts,
    clopper_pearson,
    coverage_at,
    fewest_accepted,
    risk_coverage,
    thresholds,
)

HAS_STATSMODELS = importlib.util.find_spec("statsmodels") is not None


def _tied_scores(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores rounded to two decimals (many ties) and errors more likely at low scores."""
    rng = np.random.default_rng(seed)
    s = np.round(rng.uniform(size=n), 2)
    e = rng.uniform(size=n) < 0.4 * (1 - s) ** 2
    return s, e


def _brute_counts(s: np.ndarray, e: np.ndarray, lam: float) -> tuple[int, int]:
    answered = [i for i in range(len(s)) if s[i] >= lam]
    return len(answered), sum(bool(e[i]) for i in answered)


def _first_tested(s: np.ndarray, e: np.ndarray, expected: np.ndarray | None) -> tuple[int, int]:
    """(accepted rows, errors) at the strict chain's first threshold, at 5% / 90%."""
    lams = thresholds(s, MAX_THRESHOLDS)
    m, k = accepted_and_errors(s, e, lams)
    start = chain_starts(s, lams, 0.05, 0.1, expected)[0]
    return int(m[start]), int(k[start])


# ---------------------------------------------------------------- the pieces


def test_binomial_p_values_are_scipys_binomial_tail_and_1_when_nothing_is_accepted():
    m = np.array([0, 1, 10, 45, 200, 1000, 3])
    k = np.array([0, 0, 1, 0, 7, 30, 3])
    for alpha in (0.01, 0.05, 0.2):
        expected = [binom.cdf(ki, mi, alpha) if mi else 1.0 for ki, mi in zip(k, m)]
        np.testing.assert_allclose(binomial_p_values(k, m, alpha), expected, rtol=1e-12)
    assert binomial_p_values(np.array([0]), np.array([0]), 0.05)[0] == 1.0


@pytest.mark.parametrize(
    ("alpha", "delta"), [(0.05, 0.1), (0.01, 0.1), (0.02, 0.05), (0.5, 0.25), (0.1, 0.9**5)]
)
def test_fewest_accepted_is_the_smallest_m_with_no_errors_that_passes(alpha, delta):
    m = 1
    while (1 - alpha) ** m > delta * (1 + 1e-12):  # the edge cases are exact powers
        m += 1
    assert fewest_accepted(alpha, delta) == m
    assert binom.cdf(0, m, alpha) <= delta * (1 + 1e-12)
    assert binom.cdf(0, m - 1, alpha) > delta


def test_accepted_and_errors_equal_a_brute_force_count_with_ties_and_odd_thresholds():
    s, e = _tied_scores(300, seed=0)
    lams = np.concatenate([np.unique(s), [2.0, -1.0, 0.505, s.max(), s.min()]])
    m, k = accepted_and_errors(s, e, lams)
    for lam, mi, ki in zip(lams, m, k):
        assert (mi, ki) == _brute_counts(s, e, lam), lam


def test_thresholds_are_the_distinct_scores_highest_first_and_thinned_by_rows_accepted():
    s, _ = _tied_scores(500, seed=1)  # 101 distinct values at most
    np.testing.assert_array_equal(thresholds(s, MAX_THRESHOLDS), np.unique(s)[::-1])
    many = np.random.default_rng(2).uniform(size=5000)
    lams = thresholds(many, 100)
    assert len(lams) <= 100 and np.all(np.diff(lams) < 0)
    assert lams[0] == many.max() and lams[-1] == many.min()
    assert np.isin(lams, many).all()
    m, _ = accepted_and_errors(many, np.zeros(5000, bool), lams)
    steps = np.diff(m)  # evenly spaced in the number of rows each accepts
    assert steps.max() - steps.min() <= 1


def test_risk_coverage_equals_a_brute_force_loop_over_the_distinct_scores():
    s, e = _tied_scores(250, seed=3)
    coverage, risk = risk_coverage(s, e)
    lams = sorted(set(s.tolist()), reverse=True)
    assert len(coverage) == len(lams)
    for lam, cov, r in zip(lams, coverage, risk):
        m, k = _brute_counts(s, e, lam)
        assert cov == pytest.approx(m / len(s)) and r == pytest.approx(k / m)
    assert np.all(np.diff(coverage) > 0) and coverage[-1] == 1.0


def test_aurc_is_the_mean_selective_risk_over_ranks_with_tied_rows_sharing_their_groups_risk():
    s, e = _tied_scores(200, seed=4)
    per_rank = []
    for i in range(len(s)):  # rank i answers every row scoring at least row i's score
        m, k = _brute_counts(s, e, s[i])
        per_rank.append(k / m)
    assert aurc(s, e) == pytest.approx(np.mean(per_rank), rel=1e-12)
    # no ties: the plain definition, the risk of the top k for k = 1..n
    u = np.random.default_rng(5).permutation(100) / 100.0
    err = np.random.default_rng(6).uniform(size=100) < 0.3
    ranked = err[np.argsort(-u)]
    plain = np.mean([ranked[:k].mean() for k in range(1, 101)])
    assert aurc(u, err) == pytest.approx(plain, rel=1e-12)


def test_aurc_of_a_perfect_ranking_is_the_documented_closed_form():
    r, n = 0.2, 20000
    s = np.linspace(1, 0, n)
    e = np.arange(n) >= n * (1 - r)  # the errors are exactly the least sure rows
    assert aurc(s, e) == pytest.approx(r + (1 - r) * math.log(1 - r), abs=1e-3)


def test_coverage_at_is_the_widest_threshold_within_alpha_and_reproduces_its_coverage():
    s, e = _tied_scores(400, seed=7)
    for alpha in (0.0, 0.02, 0.05, 0.1, 1.0):
        best = 0.0
        for lam in set(s.tolist()):
            m, k = _brute_counts(s, e, lam)
            if k <= alpha * m:
                best = max(best, m / len(s))
        coverage, lam = coverage_at(s, e, alpha)
        assert coverage == pytest.approx(best)
        assert np.mean(s >= lam) == pytest.approx(coverage)  # inf when nothing qualifies
    assert coverage_at(s, np.ones(len(s), bool), 0.05) == (0.0, float("inf"))


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (10, 10), (17, 250), (1, 2000)])
def test_clopper_pearson_is_the_exact_interval(k, n):
    lo, hi = clopper_pearson(k, n)
    if HAS_STATSMODELS:
        from statsmodels.stats.proportion import proportion_confint

        ref = proportion_confint(k, n, alpha=0.05, method="beta")
    else:  # the Clopper-Pearson bounds as beta quantiles
        ref = (
            beta_dist.ppf(0.025, k, n - k + 1) if k > 0 else 0.0,
            beta_dist.ppf(0.975, k + 1, n - k) if k < n else 1.0,
        )
    np.testing.assert_allclose([lo, hi], ref, rtol=1e-8, atol=1e-12)
    # the defining property: each bound leaves 2.5% of the binomial tail beyond k
    if k > 0:
        assert binom.sf(k - 1, n, lo) == pytest.approx(0.025, rel=1e-6)
    if k < n:
        assert binom.cdf(k, n, hi) == pytest.approx(0.025, rel=1e-6)
    assert clopper_pearson(0, 0) == (0.0, 1.0)


# ---------------------------------------------------------------- certify


def _expected_errors(kind: str | None, s: np.ndarray, seed: int) -> np.ndarray | None:
    """What a model might say its chance of being wrong is, per row, for `_tied_scores`-like
    data (true chance 0.4 (1 - s)^2), labels unseen: right, five times too sure, or noise."""
    match kind:
        case "calibrated":
            return 0.4 * (1 - s) ** 2
        case "overconfident":
            return 0.2 * 0.4 * (1 - s) ** 2
        case "noise":
            return np.random.default_rng(seed + 100).uniform(0, 0.3, size=len(s))
    return None


def _reference_starts(
    s: np.ndarray, alpha: float, delta: float, expected: np.ndarray | None
) -> list[int]:
    """The chains' first thresholds as the module's docstring states them, by plain loops:
    the strict chain's is the first threshold with enough rows to pass at its level with no
    errors ((1 - alpha)^m <= level); with expected errors, a second chain starts at the
    threshold, from the first that can pass at delta / 2, whose p-value would be smallest if
    its errors were the expected ones among its rows (the binomial tail made smooth in the
    error count: the beta distribution's cdf, equal to it at whole counts). One chain at delta when
    that is the first or no threshold can pass at delta / 2."""
    lams = thresholds(s, MAX_THRESHOLDS)
    accepted = [int((s >= lam).sum()) for lam in lams]

    def first_passing(level: float) -> int:
        return next((j for j, m in enumerate(accepted) if (1 - alpha) ** m <= level), len(lams))

    first = first_passing(delta / 2)
    if expected is None or first == len(lams):
        return [first_passing(delta)]
    predicted = [
        beta_dist.cdf(1 - alpha, m - min(x, m - 1e-9), min(x, m - 1e-9) + 1)
        for x, m in (
            (expected[s >= lam].sum(), m) for lam, m in zip(lams[first:], accepted[first:])
        )
    ]
    best = first + int(np.argmin(predicted))
    return [first, best] if best > first else [first_passing(delta)]


def _reference_ltt(
    s: np.ndarray, e: np.ndarray, alpha: float, delta: float, expected: np.ndarray | None
) -> tuple[float | None, float]:
    """Fixed-sequence Learn-then-Test along each chain, as plain loops: from the chain's first
    threshold, certify while P(Bin(m, alpha) <= k) <= level (delta over the number of
    chains). The loosest certified threshold, and the level."""
    lams = thresholds(s, MAX_THRESHOLDS)
    starts = _reference_starts(s, alpha, delta, expected)
    level = delta / len(starts)
    certified = []
    for start in starts:
        for lam in lams[start:]:
            answered = s >= lam
            if binom.cdf(e[answered].sum(), answered.sum(), alpha) > level:
                break
            certified.append(float(lam))
    return min(certified, default=None), level


@pytest.mark.parametrize("expected", [None, "calibrated", "overconfident", "noise"])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("alpha", "delta"), [(0.05, 0.1), (0.1, 0.05), (0.02, 0.2)])
def test_certify_equals_plain_fixed_sequence_loops_along_its_chains(seed, alpha, delta, expected):
    s, e = _tied_scores(600, seed=seed)
    exp = _expected_errors(expected, s, seed)
    cert = certify(s, e, alpha, delta, exp)
    starts = _reference_starts(s, alpha, delta, exp)
    assert chain_starts(s, thresholds(s, MAX_THRESHOLDS), alpha, delta, exp) == starts
    assert (cert.threshold, cert.level) == _reference_ltt(s, e, alpha, delta, exp)
    if cert.certified:
        m, k = _brute_counts(s, e, cert.threshold)
        assert (cert.accepted, cert.errors, cert.n) == (m, k, len(s))
        assert cert.coverage == pytest.approx(m / len(s))
        assert cert.p_value == pytest.approx(binom.cdf(k, m, alpha)) and cert.p_value <= cert.level
        assert cert.reason == "" and cert.rows_needed is None


def test_one_error_among_the_surest_rows_stops_the_strict_chain_but_not_the_second():
    n = 1000
    s = np.linspace(1, 0, n)
    e = (np.arange(n) % 50 == 49) | (np.arange(n) == 0)  # 2% wrong, and the surest row
    expected = np.full(n, 0.02)  # what a model wrong 2% of the time everywhere would say
    strict = certify(s, e, 0.05, 0.1)
    assert not strict.certified and strict.tested == 1 and strict.level == 0.1
    first, wrong = _first_tested(s, e, None)
    assert wrong == 1 and f"the surest {first} rows, 1 of them wrong)" in strict.reason
    both = certify(s, e, 0.05, 0.1, expected)
    assert both.certified and both.level == 0.05 and both.coverage > 0.9


def test_a_model_wrong_4_percent_everywhere_is_certified_at_5_percent_when_it_says_so():
    rng = np.random.default_rng(15)
    n, draws = 5000, 40
    strict, both = [], []
    for _ in range(draws):
        s, e = rng.uniform(size=n), rng.uniform(size=n) < 0.04
        strict.append(certify(s, e, 0.05, 0.1))
        both.append(certify(s, e, 0.05, 0.1, np.full(n, 0.04)))
    # from the strictest threshold, an error among the first 45 or so rows ends the walk
    assert np.mean([c.certified for c in strict]) < 0.3
    # from where 4% expected errors predict a pass (answering nearly everything), it passes
    # unless the draw holds more than about 224 errors (4.5%) among the 5000 rows: rarely
    assert np.mean([c.certified for c in both]) > 0.8
    assert np.mean([c.coverage for c in both if c.certified]) > 0.9


def _synthetic(n: int, rng: np.random.Generator, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Scores uniform on [0, 1]; an answer is wrong with probability scale * (1 - s)^2, so
    the true error among answers with s >= lam is scale * (1 - lam)^2 / 3."""
    s = rng.uniform(size=n)
    return s, rng.uniform(size=n) < scale * (1 - s) ** 2


@pytest.mark.parametrize("told", [None, 1.0, 0.2])
@pytest.mark.parametrize(("alpha", "delta"), [(0.05, 0.1), (0.02, 0.2)])
def test_the_guarantee_holds_over_300_calibration_draws_and_answers_near_the_oracle(
    alpha, delta, told
):
    """`told`: the expected errors are told * the true chance of being wrong (1: calibrated,
    0.2: five times too sure); None: none given, one chain."""
    rng = np.random.default_rng(11)
    scale, draws, n = 0.3, 300, 2000
    true_risk = []
    coverage = []
    for _ in range(draws):
        s, e = _synthetic(n, rng, scale)
        expected = None if told is None else told * scale * (1 - s) ** 2
        cert = certify(s, e, alpha, delta, expected)
        lam = cert.threshold if cert.certified else 1.0
        true_risk.append(scale * (1 - lam) ** 2 / 3)
        coverage.append(1 - lam)
    violated = np.mean(np.array(true_risk) > alpha)
    assert violated <= delta + 2 * math.sqrt(delta * (1 - delta) / draws)
    # the coverage whose true error is exactly alpha; the certified threshold keeps a margin
    # below it (the binomial test on about 2000 rows), so it answers less, but not much less
    oracle = math.sqrt(3 * alpha / scale)
    assert 2 / 3 * oracle < np.mean(coverage) < oracle


@pytest.mark.parametrize("told", [None, "calibrated", "overconfident", "noise"])
def test_a_model_wrong_just_above_alpha_everywhere_is_certified_at_most_delta_of_the_time(told):
    """Every certificate here is a broken promise: the error rate is 5.1% at every threshold.
    The scores sit on 5 levels (few thresholds keep the not-certified reasons quick), sized so
    that each chain's first threshold passes about as often as its level allows: the first
    level holds the 45 rows that pass at delta = 10% with no errors (where one chain starts),
    the first two the 59 that pass at delta / 2 (where the strict chain starts when there are
    two); constant expected errors start the second chain at 400 or all 1000 rows. Run with
    both chains at delta, the five-times-too-sure case broke about 15% of these promises, above
    the bound: the test can tell."""
    rng = np.random.default_rng(12)
    alpha, delta, draws, rate = 0.05, 0.1, 400, 0.051
    s = np.repeat(np.linspace(1, 0, 5), [45, 14, 41, 300, 600])
    assert [fewest_accepted(alpha, d) for d in (delta, delta / 2)] == [45, 59]
    n = len(s)
    certified, levels = [], set()
    for _ in range(draws):
        e = rng.uniform(size=n) < rate
        expected = {
            None: None,
            "calibrated": np.full(n, rate),
            "overconfident": np.full(n, 0.2 * rate),
            "noise": rng.uniform(0, 2 * rate, size=n),
        }[told]
        cert = certify(s, e, alpha, delta, expected)
        certified.append(cert.certified)
        levels.add(cert.level)
    assert np.mean(certified) <= delta + 2 * math.sqrt(delta * (1 - delta) / draws)
    if told is None:
        assert levels == {delta}
    elif told != "noise":  # constant expected errors start a second chain: two, each at half
        assert levels == {delta / 2}


# ---------------------------------------------------------------- when nothing is certified


def test_too_few_rows_is_not_certified_and_the_reason_names_the_rows_needed():
    s = np.linspace(1, 0, 30)
    e = np.zeros(30, bool)  # a perfect model, but 30 rows cannot show 5% at 90%
    least = fewest_accepted(0.05, 0.1)
    for expected in (None, np.zeros(30)):  # too few for delta / 2 too: one chain, at delta
        cert = certify(s, e, 0.05, 0.1, expected)
        assert not cert.certified and cert.threshold is None and cert.coverage == 0.0
        assert cert.level == 0.1
        assert "30 validation rows are too few" in cert.reason
        assert f"needs {least} answered rows" in cert.reason
        assert cert.rows_needed == least and f"about {least:,} validation rows" in cert.reason
    # and that many rows like these do certify, answering everything
    enough = certify(np.linspace(1, 0, least), np.zeros(least, bool), 0.05, 0.1)
    assert enough.certified and enough.accepted == least


@pytest.mark.parametrize("expected", [None, 0.04])
def test_rates_too_close_to_alpha_are_not_certified_and_the_reason_says_so(expected):
    s = np.linspace(1, 0, 300)
    e = np.arange(300) % 25 == 12  # 4% errors everywhere: 300 rows cannot show "at most 5%"
    m, k = accepted_and_errors(s, e, thresholds(s, MAX_THRESHOLDS))
    assert binomial_p_values(k, m, 0.05).min() > 0.1  # no threshold passes, even on its own
    cert = certify(s, e, 0.05, 0.1, None if expected is None else np.full(300, expected))
    chains = 1 if expected is None else 2
    assert not cert.certified and cert.tested == chains and cert.level == 0.1 / chains
    assert cert.rows_needed is not None and cert.rows_needed > 300
    assert "on 300 validation rows no threshold passes" in cert.reason
    assert "too close to 5.0% for 90% confidence" in cert.reason


@pytest.mark.parametrize("expected", [None, 0.03])
def test_rows_needed_never_asks_for_fewer_rows_than_were_given(expected):
    s = np.linspace(1, 0, 300)
    e = np.arange(300) % 33 == 10  # 3% errors; two among the surest rows end the strict walk
    m, k = accepted_and_errors(s, e, thresholds(s, MAX_THRESHOLDS))
    assert binomial_p_values(k, m, 0.05).min() <= 0.1  # later thresholds pass on their own
    told = None if expected is None else np.full(300, expected)
    cert = certify(s, e, 0.05, 0.1, told)
    assert not cert.certified and cert.tested == (1 if expected is None else 2)
    assert cert.rows_needed is None or cert.rows_needed > cert.n, cert.reason
    first, wrong = _first_tested(s, e, told)
    assert wrong == 2 and f"the surest {first} rows, 2 of them wrong)" in cert.reason


def test_the_rows_the_reason_names_about_certify_when_the_rates_hold():
    s = np.linspace(1, 0, 300)
    e = np.arange(300) % 25 == 12
    cert = certify(s, e, 0.05, 0.1, np.full(300, 0.04))
    assert cert.rows_needed is not None and cert.rows_needed > 300
    n = round(1.1 * cert.rows_needed)  # "about" that many: the same 4% spread evenly
    again = certify(np.linspace(1, 0, n), np.arange(n) % 25 == 12, 0.05, 0.1, np.full(n, 0.04))
    assert again.certified and again.coverage > 0.9


def test_a_model_wrong_4_percent_everywhere_is_certified_at_5_percent_on_20000_rows():
    rng = np.random.default_rng(15)
    s, e = rng.uniform(size=20000), rng.uniform(size=20000) < 0.04
    # answering everything would pass its own test by a wide margin
    assert binom.cdf(e.sum(), 20000, 0.05) < 1e-6
    cert = certify(s, e, 0.05, 0.1, np.full(20000, 0.04))
    assert cert.certified and cert.coverage > 0.9 and cert.level == 0.05


@pytest.mark.parametrize("expected", [None, 0.5, "noise"])
def test_a_weak_model_gets_the_no_threshold_can_reason_and_no_row_count(expected):
    rng = np.random.default_rng(14)
    s = rng.uniform(size=500)
    e = rng.uniform(size=500) < 0.5  # wrong half the time, whatever the score
    told = {None: None, 0.5: np.full(500, 0.5), "noise": rng.uniform(0, 0.1, size=500)}
    cert = certify(s, e, 0.05, 0.1, told[expected])
    assert not cert.certified and cert.rows_needed is None
    assert cert.reason.startswith("no threshold can promise at most 5.0% errors")
    first, wrong = _first_tested(s, e, told[expected])
    assert f"(the surest {first}: {wrong / first:.1%})" in cert.reason
    assert "a stronger model" in cert.reason and "not more rows" in cert.reason


def test_the_smooth_tail_that_picks_the_second_start_equals_the_binomial_tail_at_whole_counts():
    from gradwise.auditing.risk_control import _smooth_p_values

    m = np.array([50, 200, 1000, 1000])
    k = np.array([0, 3, 20, 60])
    np.testing.assert_allclose(_smooth_p_values(k, m, 0.05), binom.cdf(k, m, 0.05), rtol=1e-10)
    between = _smooth_p_values(np.array([20.5]), np.array([1000]), 0.05)[0]
    assert binom.cdf(20, 1000, 0.05) < between < binom.cdf(21, 1000, 0.05)
