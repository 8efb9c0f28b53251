"""The confidence sequence of the answered error rate and the abstention test, checked against
hand computations, a brute-force search and simulation (Ville's bound on false alarms)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import hypergeom

from gradwise.monitoring.guarantee import (
    BET_MEMORY,
    BET_PRIOR,
    MAX_BET,
    ErrorSequence,
    abstention_p_value,
    bets,
    log_wealth,
)
from gradwise.monitoring.selective import Answers

ALPHA, DELTA = 0.05, 0.1


def test_bets_are_kelly_sized_from_the_labels_before_each_one():
    errors = np.array([1, 1, 0, 1, 1, 1], dtype=bool)
    lam = bets(errors, ALPHA)
    for i in range(len(errors)):  # by hand: the shrunk error rate of errors[:i]
        q = (errors[:i].sum() + BET_PRIOR * ALPHA) / (i + BET_PRIOR)
        kelly = (q - ALPHA) / (ALPHA * (1 - ALPHA))
        assert lam[i] == pytest.approx(min(max(kelly, 0.0), MAX_BET / ALPHA))
    assert lam[0] == 0 and lam[1] > 0  # nothing seen, nothing bet
    flipped = errors.copy()
    flipped[-1] = ~flipped[-1]
    np.testing.assert_array_equal(bets(flipped, ALPHA), lam)  # the last label is not used


def test_bets_forget_labels_older_than_the_memory():
    errors = np.zeros(BET_MEMORY + 30, dtype=bool)
    errors[:20] = True  # a bad start, long forgotten by the last bet
    assert bets(errors, ALPHA)[25] > 0 and bets(errors, ALPHA)[-1] == 0


def test_log_wealth_is_the_product_of_the_bets_payoffs():
    rng = np.random.default_rng(0)
    errors = rng.random(300) < 0.2
    lam = bets(errors, ALPHA)
    for m in (0.01, ALPHA, 0.3):
        wealth, expected = 1.0, []
        for x, b in zip(errors, lam):
            wealth *= 1 + min(b, MAX_BET / m) * (float(x) - m)
            expected.append(math.log(wealth))
        np.testing.assert_allclose(log_wealth(errors, lam, m), expected, rtol=1e-10)


def test_the_lower_bound_matches_a_brute_force_search_over_rates():
    rng = np.random.default_rng(1)
    errors = np.concatenate([rng.random(200) < 0.02, rng.random(150) < 0.25])
    seq = ErrorSequence(errors, ALPHA, DELTA)
    lam = bets(errors, ALPHA)
    grid = np.linspace(1e-4, 0.9999, 5000)
    wealth = np.array([log_wealth(errors, lam, m) for m in grid])  # (rates, t)
    looks = np.array([0, 50, 200, 230, 260, 350])
    bounds = seq.lower_bounds(looks)
    level = math.log(1 / DELTA)
    for t, bound in zip(looks, bounds):
        rejected = wealth[:, t - 1] >= level if t else np.zeros(len(grid), bool)
        below = grid[rejected]  # the rates the sequence rules out after t labels
        assert np.all(np.diff(rejected.astype(int)) <= 0)  # K_t(m) nonincreasing in m
        if below.size == 0:
            assert bound == 0
        else:
            assert below.max() - 1e-4 <= bound <= grid[~rejected].min()
    assert bounds[-1] > ALPHA > bounds[1]  # the rate rose from 2% to 25% after label 200


def test_the_bound_reaches_alpha_exactly_where_the_alert_fires():
    rng = np.random.default_rng(2)
    errors = np.concatenate([rng.random(300) < 0.02, rng.random(200) < 0.3])
    seq = ErrorSequence(errors, ALPHA, DELTA)
    t = seq.crossing()
    assert t is not None and t > 300
    bounds = seq.lower_bounds(np.arange(seq.n + 1))
    assert np.all(bounds[:t] < ALPHA) and bounds[t] >= ALPHA


@pytest.mark.parametrize("p", [0.01, ALPHA, 0.2])
def test_a_constant_error_rate_is_above_the_bound_at_every_look_with_chance_1_minus_delta(p):
    """Ville: over 1000 streams of 2000 labels, the share whose bound ever exceeds the true
    rate p is at most delta (counted as K_t(p) >= 1/delta at some t, which every bound above
    p implies: K_t is nonincreasing in the rate, as the brute-force test checks)."""
    rng = np.random.default_rng(3)
    level = math.log(1 / DELTA)
    missed = 0
    for _ in range(1000):
        errors = rng.random(2000) < p
        missed += bool(np.any(log_wealth(errors, bets(errors, ALPHA), p) >= level))
    assert missed / 1000 <= DELTA


def test_a_changing_rate_is_above_the_bound_at_every_look_with_chance_1_minus_delta():
    """Where the rate changes, the bound stays at or below the highest rate so far: 2% for 500
    labels, 8% for 500, 2% again for 1000; over 1000 streams the share whose bound ever
    exceeds the highest rate up to then is at most delta."""
    rng = np.random.default_rng(6)
    rates = np.repeat([0.02, 0.08, 0.02], [500, 500, 1000])
    highest = np.maximum.accumulate(rates)
    level = math.log(1 / DELTA)
    missed = 0
    for _ in range(1000):
        errors = rng.random(len(rates)) < rates
        lam = bets(errors, ALPHA)
        above = [log_wealth(errors, lam, m)[highest == m] >= level for m in np.unique(highest)]
        missed += bool(any(a.any() for a in above))
    assert missed / 1000 <= DELTA


def test_false_alarms_without_a_drop_stay_below_delta_however_long_the_stream():
    """At the hardest rate still within the guarantee (exactly alpha), over 400 streams of
    10,000 labelled answers each, the alert fires in at most a share delta of them."""
    rng = np.random.default_rng(4)
    alarms = sum(
        ErrorSequence(rng.random(10_000) < ALPHA, ALPHA, DELTA).crossing() is not None
        for _ in range(400)
    )
    assert alarms / 400 <= DELTA


def test_a_rise_after_a_long_good_stretch_is_caught_within_a_hundred_labels():
    rng = np.random.default_rng(5)
    delays = []
    for _ in range(100):
        errors = np.concatenate([rng.random(5000) < 0.02, rng.random(1000) < 0.3])
        t = ErrorSequence(errors, ALPHA, DELTA).crossing()
        assert t is not None and t > 5000
        delays.append(t - 5000)
    assert np.percentile(delays, 90) <= 100


def test_the_labels_counted_at_a_window_end_stop_at_the_first_label_of_a_later_instance():
    errors = np.array([0, 0, 1, 0, 0], dtype=bool)
    answers = Answers(np.array([0, 5, 2, 12, 7]), ErrorSequence(errors, ALPHA, DELTA), None)
    assert [answers.look(end) for end in (1, 6, 10, 13)] == [1, 3, 3, 5]
    assert answers.at(3)["errors"] == 1 and answers.at(3)["recent"] == 3


def test_the_abstention_p_value_is_fishers_one_sided_hypergeometric_tail():
    for k, n, kv, nv in [(84, 150, 115, 270), (60, 150, 115, 270), (10, 10, 0, 30)]:
        # P(at least k of the window's n among the k + kv abstentions of all n + nv rows)
        oracle = hypergeom.sf(k - 1, n + nv, k + kv, n)
        assert abstention_p_value(k, n, kv, nv) == pytest.approx(oracle, rel=1e-9)
    assert abstention_p_value(120, 150, 115, 270) < 1e-6 < abstention_p_value(60, 150, 115, 270)
