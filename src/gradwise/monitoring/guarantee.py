"""Anytime-valid evidence against a certified error rate, and a test for more abstentions.

The selective audit certifies, on the validation rows, that at most a share alpha of the
answered inputs are wrong (`auditing/risk_control.py`). In production the labels of answered
instances arrive one by one, and the monitor looks at them again and again; a test repeated
at every look would false-alarm far more often than its level. A confidence sequence does not:
its bound holds at every look at once.

The confidence sequence by betting (Waudby-Smith & Ramdas 2024, "Estimating means of bounded
random variables by betting", JRSS-B 86(1), arXiv:2010.09686; Shafer & Vovk's game-theoretic
testing). Let X_1, X_2, ... be the answered, labelled instances in the order their labels
arrive, X_i = 1 when the answer was wrong. For a candidate error rate m, a gambler starts
with wealth 1 and bets that errors are more frequent than m:

    K_t(m) = prod_{i <= t} (1 + lambda_i(m) (X_i - m)),   lambda_i(m) = min(lambda_i, c / m)

where the bet lambda_i >= 0 is chosen from X_1 .. X_{i-1} only (predictable) and c < 1 keeps
every factor at least 1 - c > 0. If each instance is wrong with probability at most m given
the ones before it, each factor has conditional mean 1 + lambda (p_i - m) <= 1, so K_t(m) is
a nonnegative supermartingale started at 1, and Ville's inequality (Ville 1939) gives

    P(K_t(m) >= 1/delta for some t) <= delta.

Each factor is nonincreasing in m, so {m : K_t(m) < 1/delta} is an interval (L_t, 1]; if the
error rate is a constant p, L_t > p only where K_t(p) >= 1/delta, hence

    P(L_t > p for some t) <= delta:

the lower bound L_t holds at every t simultaneously, whenever and however often one looks.
When the rate changes (p_i, the chance answer i is wrong given the ones before), L_t bounds
the highest rate so far, M_t = max_{i <= t} p_i: the product V_t with factor i taken at M_i is
a supermartingale (M_i is known before answer i and at least p_i), and K_t(M_t) <= V_t since
factors are nonincreasing in m and M_t >= M_i; so P(L_t > M_t for some t) <= delta. With
m = alpha: while no answered instance is wrong with probability above alpha, the alert
"L_t reached alpha" (K_t(alpha) >= 1/delta) fires with probability at most delta over the
whole stream, however long it runs; when it fires, the error rate rose above alpha somewhere
in the stream, even where the average over all labels is still below alpha.

The bet is Kelly's against alpha, lambda* = (q - alpha) / (alpha (1 - alpha)) (the bet that
maximises E log(1 + lambda (X - alpha)) when X ~ Bernoulli(q)), with q estimated from the
last `BET_MEMORY` labels shrunk towards alpha by `BET_PRIOR` pseudo-labels, and clipped to
[0, c / alpha]: the predictable plug-in of Waudby-Smith & Ramdas. While answers are right at
most at rate alpha it bets (nearly) nothing and loses (nearly) nothing; sized from recent labels
rather than all, it bets within about `BET_MEMORY` labels on an error rate that rose after a
long good stretch, where a bound on all labels (Robbins' beta-binomial mixture) must first
outweigh the whole good stretch: benchmarks/monitor_guarantee.py measures both.

The abstention rate needs no labels: the certified threshold answered a share `coverage` of
the validation rows; while inputs are exchangeable with them, a window abstains on the same
share. A rise is tested with Fisher's exact test (one-sided) of the window's abstentions
against the validation rows' counts, so the validation sample's own noise is accounted for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import fisher_exact

BET_MEMORY = 100  # the most recent labels the bet is sized from
BET_PRIOR = 20  # pseudo-labels at alpha: small bets on little evidence
MAX_BET = 0.5  # c: lambda(m) <= c / m, so each factor stays >= 1 - c
TOLERANCE = 1e-5  # resolution of the reported lower bound (rounded down: conservative)
METHOD = (
    "confidence sequence by betting (Waudby-Smith & Ramdas 2024) with Ville's inequality: "
    f"Kelly bets against alpha sized from the last {BET_MEMORY} labels"
)


def bets(errors: np.ndarray, alpha: float) -> np.ndarray:
    """(n,) lambda_i, the bet on instance i against the error rate alpha, from errors[:i] only.

    Kelly's bet (q - alpha) / (alpha (1 - alpha)) with q the error rate of the last
    `BET_MEMORY` labels shrunk towards alpha by `BET_PRIOR` pseudo-labels; within [0, c/alpha].
    """
    x = np.asarray(errors, dtype=np.float64)
    seen = np.concatenate([[0.0], np.cumsum(x)])
    i = np.arange(len(x))
    start = np.maximum(0, i - BET_MEMORY)
    recent = (seen[i] - seen[start] + BET_PRIOR * alpha) / (i - start + BET_PRIOR)
    return np.clip((recent - alpha) / (alpha * (1 - alpha)), 0.0, MAX_BET / alpha)


def log_wealth(errors: np.ndarray, lam: np.ndarray, m: float) -> np.ndarray:
    """(n,) log K_t(m) for t = 1..n: the gambler's log wealth against error rate m."""
    x = np.asarray(errors, dtype=np.float64)
    step = np.minimum(lam, MAX_BET / m) if m > 0 else lam
    return np.cumsum(np.log1p(step * (x - m)))


@dataclass(frozen=True)
class ErrorSequence:
    """The confidence sequence of the error rate among answered, labelled instances.

    Attributes:
        errors: (n,) True where the answer was wrong, in the order the labels arrived.
        alpha: the certified error rate the bets are sized against (and the alert compares).
        delta: the chance that the bound is ever above the true rate (the highest so far, if
            it changes): a false alarm.
    """

    errors: np.ndarray
    alpha: float
    delta: float

    @property
    def n(self) -> int:
        return len(self.errors)

    def recent(self, t: int) -> tuple[int, int]:
        """(labels, errors) among the last `BET_MEMORY` of the first t labels: the stretch the
        bet at t was sized from."""
        start = max(0, t - BET_MEMORY)
        return t - start, int(np.sum(self.errors[start:t]))

    def crossing(self) -> int | None:
        """The first count t (1-based) at which L_t reaches alpha (K_t(alpha) >= 1/delta);
        None while it never has."""
        if self.n == 0:
            return None
        wealth = log_wealth(self.errors, bets(self.errors, self.alpha), self.alpha)
        hits = np.nonzero(wealth >= math.log(1 / self.delta))[0]
        return int(hits[0]) + 1 if len(hits) else None

    def lower_bounds(self, looks: Sequence[int]) -> np.ndarray:
        """L_t at each count t in `looks` (0: no label yet, bound 0), by bisection to
        `TOLERANCE` and rounded down; L_t >= alpha exactly where K_t(alpha) >= 1/delta."""
        lam = bets(self.errors, self.alpha)
        bet = np.nonzero(lam > 0)[0]  # the factors without a bet are 1
        x, lam = np.asarray(self.errors, dtype=np.float64)[bet], lam[bet]
        level = math.log(1 / self.delta)
        out = np.zeros(len(looks))
        for j, t in enumerate(looks):
            k = int(np.searchsorted(bet, t))  # bets among the first t labels

            def rejected(m: float, k: int = k) -> bool:
                step = np.minimum(lam[:k], MAX_BET / m)
                return bool(np.log1p(step * (x[:k] - m)).sum() >= level)

            if k == 0 or not rejected(TOLERANCE):
                continue
            # K_t(m) is nonincreasing in m: bisect between a rejected rate and one that is not
            lo, hi = (self.alpha, 1.0) if rejected(self.alpha) else (TOLERANCE, self.alpha)
            while hi - lo > TOLERANCE:
                mid = (lo + hi) / 2
                lo, hi = (mid, hi) if rejected(mid) else (lo, mid)
            out[j] = lo
        return out


def abstention_p_value(abstained: int, n: int, val_abstained: int, val_n: int) -> float:
    """One-sided p-value of "this window abstains more often than validation did": Fisher's
    exact test of the 2x2 table (window, validation) x (abstained, answered)."""
    table = [[abstained, n - abstained], [val_abstained, val_n - val_abstained]]
    return float(fisher_exact(table, alternative="greater").pvalue)
