"""Our certified abstention threshold against MAPIE's Learn-then-Test controllers (mapie 1.6,
`mapie.risk_control`) on the same scores.

Both sides test, for each threshold lambda, "the error rate among the m answered rows exceeds
alpha" and walk the thresholds with fixed-sequence testing from the strictest down, keeping
every threshold until the first p-value above delta. Given the same thresholds in the same
order (the ones `certify` tests: `thresholds(...)` from the first that accepts enough rows to
pass at all) the two agree exactly, up to one documented difference in MAPIE:

- MAPIE's p-value (`compute_hoeffding_bentkus_p_value`, binary=True) is min(Hoeffding,
  P(Binomial(m, alpha) <= ceil(m * r_hat))), r_hat the empirical risk as a float. The
  Hoeffding (Chernoff) bound is never below the binomial tail, so with exact arithmetic the
  minimum is our `binomial_p_values`: P(Binomial(m, alpha) <= k).
- But m * r_hat is not always exactly k in floating point: r_hat = k / m for the error among
  answered, 1 - (m - k) / m for precision, and e.g. 49 * (1 - 48 / 49) = 1.0000000000000009,
  whose ceiling counts a second error. There MAPIE's p-value is larger than ours (the minimum
  of the Hoeffding bound and the tail at k + 1), never smaller; elsewhere they are equal.

So the tests check: MAPIE's p-values equal ours wherever ceil(m * r_hat) = k and exceed them
only where it is k + 1; MAPIE's valid thresholds are exactly the prefix of the sequence before
its first p-value above delta; our threshold equals MAPIE's lowest valid threshold, except
where a rounded count flips a decision, and then MAPIE's is the stricter one. Each data set
must give several certified cases where the two are equal, so the comparison is not vacuous.

MAPIE's controllers pick the direction of their fixed sequence from the calibration risks
(`ltt_procedure`): over the parameters in the order given, a risk that is monotone increasing,
or not monotone with a positive mean step, is walked from the first parameter, otherwise from
the last. Given in increasing order (as its default grid is), that is from the strictest
threshold whenever the strictest tested threshold's risk is below the loosest's, which is
nearly always; where it is not, the controller walks from answering everything instead (a
choice made with the labels). The tests compute which way it walks, check its valid set is
that walk, and compare our threshold with MAPIE's own `control_fwer(..., "fixed_sequence")`
run from the strictest on the controller's p-values. The selective risk is not monotone in the
threshold, so MAPIE warns about it; fixed-sequence testing is valid without monotonicity,
which only affects its power.
"""

from __future__ import annotations

import importlib.util
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
    fewest_accepted,
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


def _tested_thresholds(s: np.ndarray, alpha: float, delta: float) -> np.ndarray:
    """The thresholds `certify` walks, strictest first: from the first that accepts enough
    rows to pass at all (the ones above it are never tested)."""
    lams = thresholds(s, MAX_THRESHOLDS)
    m, _ = accepted_and_errors(s, np.zeros(len(s), bool), lams)
    return lams[int(np.searchsorted(m, fewest_accepted(alpha, delta), side="left")) :]


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
    rounding_flips: int = 0  # MAPIE's float rounding made it stricter
    loosest_first: int = 0  # the controller walked from answering everything


def _walks_from_strictest(r_hat: np.ndarray) -> bool:
    """The direction rule of MAPIE's `ltt_procedure`, for parameters given in increasing order
    (`r_hat` here strictest first, so reversed)."""
    steps = np.diff(r_hat[::-1])
    if np.all(steps >= -1e-6):
        return False  # "increasing": walked from the first given, the loosest
    if np.all(steps <= 1e-6):
        return True
    return not steps.mean() > 0


def _agree(
    s: np.ndarray,
    e: np.ndarray,
    alpha: float,
    delta: float,
    lams: np.ndarray,
    controller: Any,
    r_hat: np.ndarray,
    tally: Tally,
) -> None:
    """The checks of the module docstring for one (alpha, delta). `lams` and `r_hat` are
    strictest first; the controller was given `lams` in increasing order."""
    from mapie.risk_control.fwer_control import control_fwer

    m, k = accepted_and_errors(s, e, lams)
    ours = binomial_p_values(k, m, alpha)
    mapie_p = controller.p_values[::-1, 0]
    k_mapie = np.ceil(m * r_hat).astype(int)  # MAPIE's count, float rounding included
    assert set(np.unique(k_mapie - k)) <= {0, 1}
    same = k_mapie == k
    np.testing.assert_allclose(mapie_p[same], ours[same], rtol=1e-9, atol=0)
    assert np.all(mapie_p[~same] >= ours[~same])

    def stop(p: np.ndarray) -> int:  # thresholds certified before the first failure
        failed = np.flatnonzero(p > delta)
        return int(failed[0]) if len(failed) else len(p)

    stop_ours, stop_mapie = stop(ours), stop(mapie_p)
    from_strictest = control_fwer(mapie_p, delta, "fixed_sequence")
    np.testing.assert_array_equal(from_strictest, np.arange(stop_mapie))
    valid = np.sort(controller.valid_predict_params)
    if _walks_from_strictest(r_hat):
        np.testing.assert_array_equal(valid, np.sort(lams[:stop_mapie]))
    else:
        from_loosest = control_fwer(mapie_p[::-1], delta, "fixed_sequence")
        np.testing.assert_array_equal(valid, np.sort(lams[::-1][from_loosest]))
        tally.loosest_first += 1
    cert = certify(s, e, alpha, delta)
    assert cert.threshold == (lams[stop_ours - 1] if stop_ours else None)
    mapie_threshold = float(lams[stop_mapie - 1]) if stop_mapie else None
    if stop_mapie == stop_ours:
        assert cert.threshold == mapie_threshold
        tally.certified_equal += cert.certified
    else:  # only a rounded count can part them, and it makes MAPIE the stricter one
        assert stop_mapie < stop_ours and not same[stop_mapie]
        assert mapie_threshold is None or mapie_threshold > cert.threshold
        tally.rounding_flips += 1


@pytest.mark.parametrize("data", ["digits", "blobs"])
def test_multiclass_abstention_equals_mapies_ltt_controller(data):
    from mapie.risk_control import BinaryRisk, MultiClassificationLTTController

    error_among_answered = BinaryRisk(
        risk_occurrence=lambda y_true, y_pred: y_pred != y_true,
        risk_condition=lambda y_true, y_pred: y_pred == y_pred,  # not NaN: not abstained
        higher_is_better=False,
    )
    tally = Tally()
    for seed in range(3):
        x_cal, y_cal, clf = _fits(data, seed)
        probs = clf.predict_proba(x_cal)
        s = probs.max(axis=1)
        e = clf.classes_[probs.argmax(axis=1)] != y_cal
        for alpha, delta in PAIRS:
            controller = MultiClassificationLTTController(
                predict_function=clf.predict_proba,
                risks=[error_among_answered],
                target_level=[alpha],
                confidence_level=1 - delta,
                list_predict_params=(lams := _tested_thresholds(s, alpha, delta))[::-1].copy(),
                classes=clf.classes_,
                fwer_method="fixed_sequence",
            ).calibrate(x_cal, y_cal)
            mapie_delta = 1 - (1 - delta)  # the float MAPIE tests at
            m, k = accepted_and_errors(s, e, lams)
            _agree(s, e, alpha, mapie_delta, lams, controller, k / m, tally)
    assert tally.certified_equal >= 6, tally


@pytest.mark.parametrize("data", ["digits_high", "breast_cancer", "binary_blobs"])
def test_binary_precision_control_equals_mapies_binary_controller(data):
    """Precision among predicted positives (p >= lambda) is one minus the error among answered
    when the score is p and a "wrong answer" is a negative label: certify(p, y == 0) controls
    exactly the risk MAPIE's `risk="precision"` controls, over the same lambdas."""
    from mapie.risk_control import BinaryClassificationController

    tally = Tally()
    for seed in range(3):
        x_cal, y_cal, clf = _fits(data, seed)
        s = clf.predict_proba(x_cal)[:, 1]
        e = y_cal == 0
        for alpha, delta in PAIRS:
            target = 1 - alpha
            a, d = 1 - target, 1 - (1 - delta)  # the floats MAPIE tests at
            lams = _tested_thresholds(s, a, d)
            controller = BinaryClassificationController(
                predict_function=clf.predict_proba,
                risk="precision",
                target_level=target,
                confidence_level=1 - delta,
                list_predict_params=lams[::-1].copy(),
                fwer_method="fixed_sequence",
            ).calibrate(x_cal, y_cal)
            m, k = accepted_and_errors(s, e, lams)
            _agree(s, e, a, d, lams, controller, 1 - (m - k) / m, tally)
            if len(controller.valid_predict_params):  # MAPIE's pick maximises recall
                assert controller.best_predict_param == np.min(controller.valid_predict_params)
    assert tally.certified_equal >= 4, tally
