"""Selective prediction with a certified error rate: Learn-then-Test on the validation split.

A model answers when its score (higher: more sure) reaches a threshold lambda and hands the
rest to a person. Learn-then-Test (Angelopoulos, Bates, Candes, Jordan & Lei 2021, "Learn then
Test: calibrating predictive algorithms to achieve risk control") picks lambda so that, with
probability at least 1 - delta over the validation rows, the error rate among the answered
inputs is at most alpha:

    1. thresholds: the distinct validation scores, from the highest down, thinned to at most
       `MAX_THRESHOLDS` by the share of rows they accept (the labels are not looked at);
    2. for each threshold, the null hypothesis "the error rate among accepted inputs exceeds
       alpha" is tested with the exact binomial p-value P(Binomial(m, alpha) <= k), m the
       accepted validation rows and k the errors among them (valid conditionally on m, so
       also unconditionally: given m, the accepted rows are m independent draws from the
       inputs the threshold accepts);
    3. fixed-sequence testing, along one or two chains fixed before the labels are seen: from
       a chain's first threshold towards looser ones, every threshold whose p-value is at
       most its level is certified, and the chain stops at its first failure; no correction
       for the number of thresholds is needed within a chain.
       - the strict chain starts at the strictest threshold where a pass is possible at all
         (m with (1 - alpha)^m <= level): a model right on its surest rows is certified there;
       - for classifiers, a second chain starts where the model's own probabilities predict
         the test is surest to pass (the smallest p-value if the expected errors among the m
         accepted rows were the sum of 1 - p(top class)): the strict chain alone certifies
         nothing when one error sits among the few surest rows, though a looser threshold
         would pass easily. With two chains each runs at delta / 2 (Bonferroni), so the
         chance that any certified threshold is wrong stays at most delta;
    4. lambda is the loosest certified threshold (the most inputs answered).

The assumption is the one every split-conformal method rests on: validation rows and future
inputs are exchangeable (drawn from one distribution, in no particular order). Under shift
the guarantee is void, which is why the monitor watches the accepted error rate.

For binary losses this p-value is the one MAPIE's `BinaryClassificationController` and
`MultiClassificationLTTController` use (their Hoeffding bound is never below the binomial
tail, so the minimum they take is the tail); with `fwer_method="fixed_sequence"` over one
chain's thresholds at its level they certify the same set, except where MAPIE counts
ceil(m * k / m) in floating point one error too many (tests/auditing/test_selective_mapie.py).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

MAX_THRESHOLDS = 200  # thresholds tested, at most (evenly spaced in the share accepted)
CURVE_POINTS = 200  # points of the risk-coverage curve kept for plots and JSON
METHOD = (
    "Learn-then-Test (Angelopoulos et al. 2021): exact binomial p-value of the errors among the "
    "accepted validation rows, fixed-sequence testing from the strictest threshold down"
)
ASSUMPTION = (
    "validation rows and future inputs are exchangeable (one distribution, no order); under "
    "shift the guarantee does not hold"
)


@dataclass(frozen=True)
class Certificate:
    """The outcome of certifying one (alpha, delta) pair on the validation rows.

    Attributes:
        alpha: the error rate promised among answered inputs, at most.
        delta: the chance that the promise is wrong (over the draw of validation rows).
        threshold: lambda: answer when the score is at least this; None: no threshold could
            be certified.
        n: validation rows.
        accepted: validation rows the threshold answers; errors: wrong among them.
        coverage: accepted / n, the share answered on validation.
        p_value: the binomial p-value at lambda (at most delta).
        tested: thresholds tested before the chains stopped (certified ones and the first
            that failed in each).
        level: the level each threshold's p-value was held to: delta, or delta / 2 with two
            chains.
        rows_needed: when nothing is certified and the model's error rate among its surest
            rows is below alpha, about how many validation rows would certify it (if the
            rates seen here hold); None otherwise.
        reason: when nothing is certified, why, in one sentence; "" otherwise.
    """

    alpha: float
    delta: float
    threshold: float | None
    n: int
    accepted: int
    errors: int
    coverage: float
    p_value: float
    tested: int
    level: float = 0.0
    rows_needed: int | None = None
    reason: str = ""

    @property
    def certified(self) -> bool:
        return self.threshold is not None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "certified": self.certified}


def binomial_p_values(errors: np.ndarray, accepted: np.ndarray, alpha: float) -> np.ndarray:
    """P(Binomial(m, alpha) <= k) per threshold: small when k errors among m accepted rows
    would be unlikely if the error rate were alpha or more. 1 where nothing is accepted."""
    from scipy.stats import binom

    k, m = np.asarray(errors), np.asarray(accepted)
    p = binom.cdf(k, np.maximum(m, 1), alpha)
    return np.where(m > 0, p, 1.0)


def fewest_accepted(alpha: float, delta: float) -> int:
    """The fewest accepted rows with which a threshold can pass at all: (1 - alpha)^m <= delta
    (no errors among m rows)."""
    return math.ceil(math.log(delta) / math.log1p(-alpha) - 1e-12)


def thresholds(scores: np.ndarray, max_thresholds: int) -> np.ndarray:
    """The thresholds tested, highest first: distinct validation scores, thinned to at most
    `max_thresholds`, evenly in the number of rows each accepts (labels unseen)."""
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    distinct = np.unique(s)[::-1]
    if len(distinct) <= max_thresholds:
        return distinct
    ranks = np.unique(np.linspace(0, len(s) - 1, max_thresholds).round().astype(int))
    return np.unique(s[ranks])[::-1]


def accepted_and_errors(
    scores: np.ndarray, errors: np.ndarray, lambdas: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per threshold (score >= lambda answers): how many rows it accepts and how many of
    those are wrong."""
    s = np.asarray(scores, dtype=np.float64)
    e = np.asarray(errors, dtype=bool)
    order = np.argsort(-s, kind="stable")
    s_sorted, cum_err = s[order], np.concatenate([[0], np.cumsum(e[order])])
    # rows with score >= lambda: the count of sorted (descending) scores >= lambda
    m = np.searchsorted(-s_sorted, -np.asarray(lambdas, dtype=np.float64), side="right")
    return m, cum_err[m]


def certify(
    scores: np.ndarray,
    errors: np.ndarray,
    alpha: float,
    delta: float,
    expected: np.ndarray | None = None,
) -> Certificate:
    """Learn-then-Test with fixed-sequence testing (see the module's docstring).

    Args:
        scores: (n,) validation scores, higher: surer.
        errors: (n,) booleans: the model's answer on that row is wrong.
        alpha: the error rate to promise among answered inputs.
        delta: the chance the promise may be wrong.
        expected: (n,) the model's own chance of being wrong on each row (1 - p(top class)),
            labels unseen: where given, a second chain starts where these predict a pass.
    """
    s = np.asarray(scores, dtype=np.float64)
    e = np.asarray(errors, dtype=bool)
    n = len(s)
    lams = thresholds(s, MAX_THRESHOLDS)
    m, k = accepted_and_errors(s, e, lams)
    starts = chain_starts(s, lams, alpha, delta, expected)
    level = delta / len(starts)
    p = binomial_p_values(k, m, alpha)
    certified, tested = [], 0
    for start in starts:
        for j in range(start, len(lams)):
            tested += 1
            if p[j] > level:
                break
            certified.append(j)
    if certified:
        last = max(certified)
        return Certificate(
            alpha, delta, float(lams[last]), n, int(m[last]), int(k[last]),
            float(m[last] / n), float(p[last]), tested, level,
        )  # fmt: skip
    needed, reason = _why_not(n, alpha, delta, level, m, k, starts[0])
    return Certificate(alpha, delta, None, n, 0, 0, 0.0, 1.0, tested, level, needed, reason)


def chain_starts(
    scores: np.ndarray,
    lams: np.ndarray,
    alpha: float,
    delta: float,
    expected: np.ndarray | None = None,
) -> list[int]:
    """The first threshold (index into `lams`, strictest first) of each chain, chosen without
    labels: the strict chain's, and with `expected`, the one where the expected errors
    predict the smallest p-value. One chain (at delta) when the two would coincide or there
    is no `expected`; else two (each at delta / 2)."""
    m, _ = accepted_and_errors(scores, np.zeros(len(scores), dtype=bool), lams)
    strict = int(np.searchsorted(m, fewest_accepted(alpha, delta), side="left"))
    if expected is None:
        return [strict]
    first = int(np.searchsorted(m, fewest_accepted(alpha, delta / 2), side="left"))
    if first >= len(lams):
        return [strict]
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    cum = np.concatenate([[0.0], np.cumsum(np.asarray(expected, dtype=np.float64)[order])])
    predicted = _smooth_p_values(cum[m[first:]], m[first:], alpha)
    best = first + int(np.argmin(predicted))
    if best <= first:
        return [strict]
    return [first, best]


def _smooth_p_values(expected: np.ndarray, m: np.ndarray, alpha: float) -> np.ndarray:
    """P(Binomial(m, alpha) <= x) for a real expected error count x, through the regularised
    incomplete beta function (equal to the binomial tail at whole x, smooth between them, so
    the predicted best start does not jump to where alpha * m happens to be whole)."""
    from scipy.special import betainc

    m = np.asarray(m, dtype=np.float64)
    x = np.clip(np.asarray(expected, dtype=np.float64), 0.0, m - 1e-9)
    return np.asarray(betainc(m - x, x + 1.0, 1.0 - alpha), dtype=np.float64)


def _why_not(
    n: int,
    alpha: float,
    delta: float,
    level: float,
    m: np.ndarray,
    k: np.ndarray,
    start: int,
) -> tuple[int | None, str]:
    """Why no threshold passed, and, where more rows would help, about how many.

    Args:
        level: the level each p-value was held to (delta, or delta / 2 with two chains).
        m, k: accepted rows and errors per threshold (strictest first); start: the first
            threshold of the strict chain (len(m) when even all rows are too few to pass).
    """
    least = fewest_accepted(alpha, level)
    promise = f"at most {alpha:.1%} errors at {1 - delta:.0%} confidence"
    needed = _rows_needed(n, alpha, level, m, k)
    if start >= len(m):
        why = (
            f"{n} validation rows are too few: even with no errors, a promise of {promise} "
            f"needs {least} answered rows"
        )
        if needed is None:
            return None, f"{why} (and the model is wrong on {k[-1] / max(m[-1], 1):.1%} of them)"
        return needed, f"{why}; about {needed:,} validation rows would do if the rates seen hold"
    m0, k0 = int(m[start]), int(k[start])
    if needed is None:
        return None, (
            f"no threshold can promise {promise}: at every threshold at least {alpha:.1%} of "
            f"the answered validation rows are wrong (the surest {m0}: {k0 / m0:.1%}); a "
            "stronger model or a looser alpha is needed, not more rows"
        )
    if needed > n:
        return needed, (
            f"on {n} validation rows no threshold passes the test: the error rates among the "
            f"answered rows are too close to {alpha:.1%} for {1 - delta:.0%} confidence; about "
            f"{needed:,} validation rows would do if the rates seen here hold"
        )
    return None, (
        f"on {n} validation rows no threshold passes the test at {1 - delta:.0%} confidence, "
        f"though some answer fewer than {alpha:.1%} wrongly: each chain of the test walks from "
        f"its first threshold (the strict one from the surest {m0} rows, {k0} of them wrong) "
        "and stops at its first failure; a looser alpha or more validation rows may help"
    )


def _rows_needed(n: int, alpha: float, delta: float, m: np.ndarray, k: np.ndarray) -> int | None:
    """About how many validation rows would let one of these thresholds pass, if the error
    rate and share answered seen at it held: the fewest over (at most 25, evenly spread) of
    the thresholds whose rate is below alpha; None when none is."""
    usable = np.flatnonzero((m > 0) & (k < alpha * m))
    if not len(usable):
        return None
    picked = usable[np.unique(np.linspace(0, len(usable) - 1, 25).round().astype(int))]
    return min(math.ceil(_rows_to_pass(k[j] / m[j], alpha, delta) / (m[j] / n)) for j in picked)


def _rows_to_pass(rate: float, alpha: float, delta: float) -> int:
    """The fewest accepted rows m with P(Binomial(m, alpha) <= floor(m * rate)) <= delta."""
    from scipy.special import bdtr  # the binomial tail, without scipy.stats' overhead

    lo, hi = 1, 1
    while bdtr(math.floor(hi * rate), hi, alpha) > delta:
        lo, hi = hi, hi * 2
        if hi > 10**9:
            return hi
    while lo < hi:
        mid = (lo + hi) // 2
        if bdtr(math.floor(mid * rate), mid, alpha) <= delta:
            hi = mid
        else:
            lo = mid + 1
    return hi


# ---------------------------------------------------------------- measuring on the test split


def risk_coverage(scores: np.ndarray, errors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The risk-coverage curve (Geifman & El-Yaniv 2017): for each distinct score, answering
    every row at or above it, the share answered (coverage) and the error rate among them
    (selective risk). Rows with equal scores enter together. Both (T,), coverage increasing."""
    s = np.asarray(scores, dtype=np.float64)
    lams = np.unique(s)[::-1]
    m, k = accepted_and_errors(s, errors, lams)
    return m / len(s), k / m


def aurc(scores: np.ndarray, errors: np.ndarray) -> float:
    """Area under the risk-coverage curve: the selective risk averaged over every coverage
    k / n, k = 1..n (rows ranked by score; tied rows share their group's risk). Lower is
    better; a perfect ranking of a model with error rate r gives about r + (1 - r) ln(1 - r)."""
    s = np.asarray(scores, dtype=np.float64)
    e = np.asarray(errors, dtype=np.float64)
    n = len(s)
    order = np.argsort(-s, kind="stable")
    s_sorted, e_sorted = s[order], e[order]
    # the risk at rank i counts every row tied with row i: rows enter a group at a time
    _, first, counts = np.unique(-s_sorted, return_index=True, return_counts=True)
    end = first + counts  # rows accepted once this group is in
    cum = np.concatenate([[0.0], np.cumsum(e_sorted)])
    group_risk = cum[end] / end
    per_row = np.repeat(group_risk, counts)
    return float(per_row.sum() / n)


def curve_points(coverage: np.ndarray, risk: np.ndarray, points: int = CURVE_POINTS) -> dict:
    """At most `points` points of a risk-coverage curve, for JSON and plots."""
    idx = np.unique(np.linspace(0, len(coverage) - 1, min(points, len(coverage))).round())
    idx = idx.astype(int)
    return {"coverage": coverage[idx].round(5).tolist(), "risk": risk[idx].round(5).tolist()}


def coverage_at(scores: np.ndarray, errors: np.ndarray, alpha: float) -> tuple[float, float]:
    """The oracle: the largest share of rows a threshold can answer while the error rate among
    them stays at most alpha, chosen with these rows' labels (what no deployed threshold can
    know), and that threshold (-inf when every threshold fails: coverage 0)."""
    s = np.asarray(scores, dtype=np.float64)
    lams = np.unique(s)[::-1]
    m, k = accepted_and_errors(s, errors, lams)
    ok = k <= alpha * m
    if not ok.any():
        return 0.0, float("inf")
    j = int(np.flatnonzero(ok)[-1])
    return float(m[j] / len(s)), float(lams[j])


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The exact (Clopper-Pearson) interval for a binomial rate k / n; (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def rows_hash(rows: np.ndarray, labels: np.ndarray) -> str:
    """A fingerprint of the validation rows a threshold was certified on: their row numbers
    and labels (the same for every variant of a run certified on the same rows)."""
    h = hashlib.sha256(np.asarray(rows, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(np.asarray(labels, dtype=np.float64)).tobytes())
    return h.hexdigest()
