"""Our certified abstention threshold against MAPIE's Learn-then-Test controllers (mapie 1.6,
`mapie.risk_control`) on the same scores.

`certify` walks one or two chains of thresholds (`chain_starts`: the strict chain, and, given
the model's expected errors, a second one from where they predict a pass), each with
fixed-sequence testing at its level (delta, or delta / 2 with two chains): from the chain's
first threshold towards looser ones, every threshold is kept until the first p-value above
the level; lambda is the loosest threshold any chain keeps. MAPIE, given exactly one chain's
thresholds (`lams[start:]`) and confidence level 1 - level, tests the same hypotheses with
fixed-sequence testing, so chain by chain the two agree exactly, up to one documented
difference in MAPIE:

- MAPIE's p-value (`compute_hoeffding_bentkus_p_value`, binary=True) is min(Hoeffding,
  P(Binomial(m, alpha) <= ceil(m * r_hat))), r_hat the empirical risk as a float. The
  Hoeffding (Chernoff) bound is never below the binomial tail, so with exact arithmetic the
  minimum is our `binomial_p_values`: P(Binomial(m, alpha) <= k).
- But m * r_hat is not always exactly k in floating point: r_hat = k / m for the error among
  answered, 1 - (m - k) / m for precision, and e.g. 49 * (1 - 48 / 49) = 1.0000000000000009,
  whose ceiling counts a second error. There MAPIE's p-value is larger than ours (the minimum
  of the Hoeffding bound and the tail at k + 1), never smaller; elsewhere they are equal.

So the tests check, chain by chain: MAPIE's p-values equal ours wherever ceil(m * r_hat) = k
and exceed them only where it is k + 1; MAPIE's valid thresholds are exactly the prefix of the
chain before its first p-value above the level; `certify` keeps the same prefix, except where
a rounded count flips a decision, and then MAPIE's is the shorter. And per (alpha, delta): our
threshold is the loosest of the chains' lowest valid thresholds in MAPIE, except where a
rounded count flipped a decision, and then MAPIE's is the stricter one. Both with one chain
(no expected errors, as for a regression) and with two (expected errors 1 - p, as the
selective check passes them). Each data set must give several certified cases where the two
are equal, and with two chains several second chains on which both keep the same thresholds,
so the comparison is not vacuous.

MAPIE's controllers pick the direction of their fixed sequence from the calibration risks
(`ltt_procedure`): over the parameters in the order given, a risk that is monotone increasing,
or not monotone with a positive mean step, is walked from the first parameter, otherwise from
the last. Given in increasing order (as its default grid is), that is from the chain's
strictest threshold whenever its risk is below the loosest's, which is nearly always; where it
is not, the controller walks from answering everything instead (a choice made with the
labels). The tests compute which way it walks, check its valid set is that walk, and compare
the chain with MAPIE's own `control_fwer(..., "fixed_sequence")` run from the chain's first
threshold on the controller's p-values. The selective risk is not monotone in the threshold,
so MAPIE warns about it; fixed-sequence testing is valid without monotonicity, which only
affects its power.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_digits, make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from gradwise.auditing.risk_control import (
    MAX_THRESHOLDS,
    accepted_and_errors,
    binomial_p_values,
    certify,
    chain_starts,
    thresholds,
)

HAS_MAPIE = importlib.util.find_spec("mapie") is not None
pytestmark = [
    pytest.mark.skipif(not HAS_MAPIE, reason="mapie is not installed (pip install -e '.[dev]')"),
    pytest.mark.filterwarnings("ignore:Fixed sequence testing requires a monotonic risk"),
    pytest.mark.filterwarnings("ignore:No predict parameters were found"),
    pytest.mark.filterwarnings("ignore:All provided predict_params control"),
]
PAIRS = [(0.05, 0.1), (0.1, 0.1), (0.02, 0.2), (0.1, 0.05)]
# a MAPIE controller calibrated on one chain: (its thresholds strictest first, its level)
Fit = Callable[[np.ndarray, float], Any]
# MAPIE's empirical risk per threshold from (accepted, errors), as the controller computes it
RiskHat = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _fits(data: str, seed: int) -> tuple[np.ndarray, np.ndarray, Any]:
    """(x_cal, y_cal, a logistic regression fitted on the other third of the rows)."""
    match data:
        case "digits":
            x, y = load_digits(return_X_y=True)
        case "blobs":  # 4 well separated classes, no flipped labels
            x, y = make_classification(
                3000, n_features=10, n_informative=6, n_classes=4, n_clusters_per_class=1,
                class_sep=2.0, flip_y=0.0, random_state=seed,
            )  # fmt: skip
        case "digits_high":  # binary: is the digit 5 or more
            x, y = load_digits(return_X_y=True)
            y = (y >= 5).astype(int)
        case "breast_cancer":
            x, y = load_breast_cancer(return_X_y=True)
        case "binary_blobs":
            x, y = make_classification(
                3000, n_features=10, n_informative=5, class_sep=1.5, flip_y=0.0,
                random_state=seed,
            )  # fmt: skip
    idx = np.random.default_rng(seed).permutation(len(y))
    train, cal = idx[: len(y) // 3], idx[len(y) // 3 :]
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(x[train], y[train])
    return x[cal], y[cal], clf


@dataclass
class Tally:
    certified_equal: int = 0  # both certified the same threshold
    second_chains_equal: int = 0  # second chains where both keep the same thresholds (> 0)
    second_chain_looser: int = 0  # certified equal, the second chain's threshold the looser
    rounding_flips: int = 0  # chains where MAPIE's float rounding made it stop sooner
    loosest_first: int = 0  # chains the controller walked from answering everything


def _walks_from_strictest(r_hat: np.ndarray) -> bool:
    """The direction rule of MAPIE's `ltt_procedure`, for parameters given in increasing order
    (`r_hat` here strictest first, so reversed)."""
    steps = np.diff(r_hat[::-1])
    if np.all(steps >= -1e-6):
        return False  # "increasing": walked from the first given, the loosest
    if np.all(steps <= 1e-6):
        return True
    return not steps.mean() > 0


def _agree_on_chain(
    s: np.ndarray,
    e: np.ndarray,
    alpha: float,
    level: float,
    chain: np.ndarray,
    controller: Any,
    r_hat: np.ndarray,
    tally: Tally,
) -> tuple[int, int]:
    """The per-chain checks of the module docstring. Returns how many of the chain's
    thresholds we keep and MAPIE keeps, walking from its first. `chain` and `r_hat` are
    strictest first; the controller was given `chain` in increasing order."""
    from mapie.risk_control.fwer_control import control_fwer

    m, k = accepted_and_errors(s, e, chain)
    ours = binomial_p_values(k, m, alpha)
    mapie_p = controller.p_values[::-1, 0]
    k_mapie = np.ceil(m * r_hat).astype(int)  # MAPIE's count, float rounding included
    assert set(np.unique(k_mapie - k)) <= {0, 1}
    same = k_mapie == k
    np.testing.assert_allclose(mapie_p[same], ours[same], rtol=1e-9, atol=0)
    assert np.all(mapie_p[~same] >= ours[~same])

    mapie_level = 1 - (1 - level)  # the float MAPIE tests at

    def stop(p: np.ndarray, at: float) -> int:  # thresholds kept before the first failure
        failed = np.flatnonzero(p > at)
        return int(failed[0]) if len(failed) else len(p)

    stop_ours, stop_mapie = stop(ours, level), stop(mapie_p, mapie_level)
    from_first = control_fwer(mapie_p, mapie_level, "fixed_sequence")
    np.testing.assert_array_equal(from_first, np.arange(stop_mapie))
    valid = np.sort(controller.valid_predict_params)
    if _walks_from_strictest(r_hat):
        np.testing.assert_array_equal(valid, np.sort(chain[:stop_mapie]))
    else:
        from_loosest = control_fwer(mapie_p[::-1], mapie_level, "fixed_sequence")
        np.testing.assert_array_equal(valid, np.sort(chain[::-1][from_loosest]))
        tally.loosest_first += 1
    if stop_mapie != stop_ours:  # only a rounded count can part them, and MAPIE stops sooner
        assert stop_mapie < stop_ours and not same[stop_mapie]
        tally.rounding_flips += 1
    return stop_ours, stop_mapie


def _agree(
    s: np.ndarray,
    e: np.ndarray,
    alpha: float,
    delta: float,
    expected: np.ndarray | None,
    fit: Fit,
    risk_hat: RiskHat,
    tally: Tally,
) -> None:
    """Certify (alpha, delta), compare each chain with MAPIE on exactly that chain, then our
    threshold with the loosest of MAPIE's chains."""
    cert = certify(s, e, alpha, delta, expected)
    flips = tally.rounding_flips
    lams = thresholds(s, MAX_THRESHOLDS)
    starts = chain_starts(s, lams, alpha, delta, expected)
    assert cert.level == delta / len(starts) and len(starts) <= (1 if expected is None else 2)
    ours: list[float] = []  # every threshold a chain keeps
    theirs: list[float] = []  # ... and MAPIE keeps, walking each chain from its first
    loosest_per_chain = []
    for i, start in enumerate(starts):
        chain = lams[start:]
        m, k = accepted_and_errors(s, e, chain)
        stop_ours, stop_mapie = _agree_on_chain(
            s, e, alpha, cert.level, chain, fit(chain, cert.level), risk_hat(m, k), tally
        )
        tally.second_chains_equal += i == 1 and stop_mapie == stop_ours > 0
        ours += chain[:stop_ours].tolist()
        theirs += chain[:stop_mapie].tolist()
        loosest_per_chain.append(chain[stop_ours - 1] if stop_ours else np.inf)
    assert cert.threshold == (min(ours) if ours else None)
    mapie_threshold = min(theirs) if theirs else None
    if cert.threshold == mapie_threshold:
        tally.certified_equal += cert.certified
        if cert.certified and len(starts) == 2:
            tally.second_chain_looser += bool(loosest_per_chain[1] < loosest_per_chain[0])
    else:  # a rounded count made MAPIE stop sooner on some chain: it is the stricter
        assert tally.rounding_flips > flips
        assert mapie_threshold is None or mapie_threshold > cert.threshold


def _multiclass_controller(clf: Any, x_cal: np.ndarray, y_cal: np.ndarray, alpha: float) -> Fit:
    """MAPIE's multiclass LTT controller of the error among answered (not abstained) rows."""
    from mapie.risk_control import BinaryRisk, MultiClassificationLTTController

    error_among_answered = BinaryRisk(
        risk_occurrence=lambda y_true, y_pred: y_pred != y_true,
        risk_condition=lambda y_true, y_pred: y_pred == y_pred,  # not NaN: not abstained
        higher_is_better=False,
    )

    def fit(chain: np.ndarray, level: float) -> Any:
        return MultiClassificationLTTController(
            predict_function=clf.predict_proba,
            risks=[error_among_answered],
            target_level=[alpha],
            confidence_level=1 - level,
            list_predict_params=chain[::-1].copy(),
            classes=clf.classes_,
            fwer_method="fixed_sequence",
        ).calibrate(x_cal, y_cal)

    return fit


def _precision_controller(clf: Any, x_cal: np.ndarray, y_cal: np.ndarray, target: float) -> Fit:
    """MAPIE's binary controller of the precision among predicted positives."""
    from mapie.risk_control import BinaryClassificationController

    def fit(chain: np.ndarray, level: float) -> Any:
        controller = BinaryClassificationController(
            predict_function=clf.predict_proba,
            risk="precision",
            target_level=target,
            confidence_level=1 - level,
            list_predict_params=chain[::-1].copy(),
            fwer_method="fixed_sequence",
        ).calibrate(x_cal, y_cal)
        if len(controller.valid_predict_params):  # MAPIE's pick maximises recall
            assert controller.best_predict_param == np.min(controller.valid_predict_params)
        return controller

    return fit


@pytest.mark.parametrize("chains", ["one", "two"])
@pytest.mark.parametrize("data", ["digits", "blobs"])
def test_multiclass_abstention_equals_mapies_ltt_controller(data, chains):
    tally = Tally()
    for seed in range(3):
        x_cal, y_cal, clf = _fits(data, seed)
        probs = clf.predict_proba(x_cal)
        s = probs.max(axis=1)
        e = clf.classes_[probs.argmax(axis=1)] != y_cal
        expected = 1 - s if chains == "two" else None  # as the selective check passes it
        for alpha, delta in PAIRS:
            fit = _multiclass_controller(clf, x_cal, y_cal, alpha)
            _agree(s, e, alpha, delta, expected, fit, lambda m, k: k / m, tally)
    assert tally.certified_equal >= 6, tally
    if chains == "two":
        assert tally.second_chains_equal >= 6, tally


@pytest.mark.parametrize("chains", ["one", "two"])
@pytest.mark.parametrize("data", ["digits_high", "breast_cancer", "binary_blobs"])
def test_binary_precision_control_equals_mapies_binary_controller(data, chains):
    """Precision among predicted positives (p >= lambda) is one minus the error among answered
    when the score is p and a "wrong answer" is a negative label: certify(p, y == 0) controls
    exactly the risk MAPIE's `risk="precision"` controls, over the same lambdas. The model's
    own chance that such an answer is wrong is 1 - p."""
    tally = Tally()
    for seed in range(5):  # precision's rounded counts flip many chains: more seeds
        x_cal, y_cal, clf = _fits(data, seed)
        s = clf.predict_proba(x_cal)[:, 1]
        e = y_cal == 0
        expected = 1 - s if chains == "two" else None
        for alpha, delta in PAIRS:
            target = 1 - alpha
            fit = _precision_controller(clf, x_cal, y_cal, target)
            a = 1 - target  # the float alpha MAPIE tests at
            _agree(s, e, a, delta, expected, fit, lambda m, k: 1 - (m - k) / m, tally)
    assert tally.certified_equal >= 4, tally
    if chains == "two":  # and in some, the second chain's threshold is the one certified
        assert tally.second_chains_equal >= 4 and tally.second_chain_looser >= 1, tally
