"""Weak-slice discovery with statistical control: candidate slices and their two-half test.

A slice is a set of held-out rows named by a rule a person can read ("marital_status =
Separated and hours_per_week <= 35") or, for images, text and sequences, a cluster of the
model's own embeddings (the conditions are in `auditing/slice_conditions.py`). The search is
a leaf: rows, per-row errors and conditions in, tested candidates out; the check
(`auditing/slices.py`) brings the run.

    1. halves       the held-out rows split in two with the seed (stratified by label where
                    every class has two rows): discovery and confirmation.
    2. candidates   conditions (a category value, a range of a number between its quantile
                    edges, a missing value; or a cluster) and, optionally, pairs of them on two
                    different columns. A candidate is tested only if the discovery half holds
                    at least `min_size` rows in it and `min_size` outside it; at most
                    `max_candidates`: every single condition first, then the largest pairs.
    3. discovery    each candidate's one-sided p-value (its error above the rest of the half):
                    0/1 errors, Fisher's exact test (the hypergeometric tail); other errors,
                    Welch's t on the per-row error. Benjamini-Hochberg at q over all tested.
    4. confirmation the discovered candidates alone, on the other half, Benjamini-Hochberg
                    at q again; a slice is reported only if it passes both.
    5. listing      of two nested confirmed slices, the better supported one is listed, the
                    other only if it adds evidence of its own (`redundant`).

Why two halves: the search picks its rules by looking at the discovery half's errors, so a
p-value on those rows would be too small; the confirmation half has not been looked at, so
its p-values are honest. Under the global null (no slice is weaker) the two halves' rows are
independent and a slice must pass both steps, each of which reports something with
probability at most q where Benjamini-Hochberg holds (independent or positively dependent
tests; overlapping slices' tests are mostly positively dependent, and
benchmarks/slices_planted.py measures the rate on tables with no weak slice).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from gradwise.audit_config import SlicesAudit
from gradwise.auditing.slice_conditions import Conditions

CHUNK = 512  # candidates whose rows are materialised at once
MAX_PARENTS = 1500  # pairs are formed from the largest conditions only (memory: P^2 counts)
NO_SECOND = -1


# ---------------------------------------------------------------- candidates


@dataclass(frozen=True)
class Candidates:
    """The slices tested: one condition, or two (`second` >= 0) that must both hold.

    Attributes:
        first, second: (M,) condition indices; `second` is -1 for a single condition.
        n_pairs_possible: pairs big enough to test, before the cap.
    """

    first: np.ndarray
    second: np.ndarray
    n_pairs_possible: int = 0

    def __len__(self) -> int:
        return len(self.first)

    def rule(self, conds: Conditions, i: int) -> str:
        a, b = int(self.first[i]), int(self.second[i])
        return conds.rules[a] if b == NO_SECOND else f"{conds.rules[a]} and {conds.rules[b]}"

    def kind(self, conds: Conditions, i: int) -> str:
        return "pair" if self.second[i] != NO_SECOND else conds.kinds[int(self.first[i])]

    def masks(self, conds: Conditions, idx: np.ndarray, rows: np.ndarray | slice) -> np.ndarray:
        """(len(idx), R) which of `rows` each candidate in `idx` holds."""
        a = conds.masks[self.first[idx]][:, rows]
        second = self.second[idx]
        paired = second != NO_SECOND
        a[paired] &= conds.masks[second[paired]][:, rows]
        return a


def candidate_slices(
    conds: Conditions, in_discovery: np.ndarray, settings: SlicesAudit
) -> Candidates:
    """The candidates to test: every single condition, then pairs of conditions on different
    columns (of the `MAX_PARENTS` largest conditions), largest first; each with at least
    `min_size` discovery rows in and out; at most `max_candidates` in all. A pair as big as
    one of its conditions is that condition again and is left out."""
    d = conds.masks[:, in_discovery].astype(np.float32)  # (C, Nd); counts are exact in float32
    n_half, size = d.shape[1], d.sum(axis=1)
    testable = (size >= settings.min_size) & (n_half - size >= settings.min_size)
    singles = np.flatnonzero(testable)
    singles = singles[np.argsort(-size[singles], kind="stable")][: settings.max_candidates]
    first, second = singles, np.full(len(singles), NO_SECOND)
    room = settings.max_candidates - len(singles)
    if not settings.pairs or room <= 0:
        return Candidates(first, second)
    parents = np.flatnonzero(size >= settings.min_size)
    parents = parents[np.argsort(-size[parents], kind="stable")][:MAX_PARENTS]
    both = d[parents] @ d[parents].T  # (P, P) rows meeting both conditions
    i, j = np.triu_indices(len(parents), k=1)
    n = both[i, j]
    cols = np.asarray(conds.columns)
    ok = (
        (cols[parents[i]] != cols[parents[j]])
        & (n >= settings.min_size)
        & (n_half - n >= settings.min_size)
        & (n < np.minimum(size[parents[i]], size[parents[j]]))
    )
    i, j, n = i[ok], j[ok], n[ok]
    top = np.argsort(-n, kind="stable")[:room]
    return Candidates(
        np.concatenate([first, parents[i[top]]]),
        np.concatenate([second, parents[j[top]]]),
        n_pairs_possible=int(ok.sum()),
    )


# ---------------------------------------------------------------- the test of one half


@dataclass(frozen=True)
class HalfTest:
    """Candidates tested on one half of the held-out rows (arrays aligned with the
    candidates tested).

    Attributes:
        n: rows in the slice; error, rest_error: mean per-row error in it and outside it.
        p: one-sided p-value (slice worse than the rest); p_bh: Benjamini-Hochberg adjusted.
        passed: p_bh <= q.
    """

    n: np.ndarray
    error: np.ndarray
    rest_error: np.ndarray
    p: np.ndarray
    p_bh: np.ndarray
    passed: np.ndarray


def benjamini_hochberg(p: np.ndarray, q: float) -> tuple[np.ndarray, np.ndarray]:
    """(rejected, adjusted p-values) of the Benjamini-Hochberg step-up procedure at level q
    (scipy's `false_discovery_control`; p_adjusted <= q is the step-up rejection)."""
    p = np.asarray(p, dtype=np.float64)
    if len(p) == 0:
        return np.zeros(0, dtype=bool), p
    adjusted = stats.false_discovery_control(p, method="bh")
    return adjusted <= q, adjusted


Sums = tuple[np.ndarray, np.ndarray, np.ndarray] | tuple[int, float, float]


def one_sided_p(
    n: np.ndarray, s1: np.ndarray, s2: np.ndarray, total: Sums, binary: bool
) -> np.ndarray:
    """p-values that the mean error inside each slice exceeds the mean outside it.

    Args:
        n, s1, s2: (M,) rows, sum of errors and sum of squared errors inside each slice.
        total: (rows, sum, sum of squares) of the rows the slice is compared within (the
            slice and the rest): three numbers, or three (M,) arrays, one per slice.
        binary: 0/1 errors: Fisher's exact test (P(X >= errors in the slice), X
            hypergeometric); otherwise Welch's t-test on the per-row errors.

    Returns:
        (M,) p-values; 1 where the slice or the rest holds fewer than two rows.
    """
    n_all, s1_all, s2_all = (np.asarray(t, dtype=np.float64) for t in total)
    m = n_all - n
    if binary:
        p = stats.hypergeom.sf(np.rint(s1) - 1, n_all, np.rint(s1_all), n)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            mean_in, mean_out = s1 / n, (s1_all - s1) / m
            var_in = np.clip(s2 - n * mean_in**2, 0, None) / (n - 1)
            var_out = np.clip((s2_all - s2) - m * mean_out**2, 0, None) / (m - 1)
            sd_in, sd_out = np.sqrt(var_in), np.sqrt(var_out)
            p = stats.ttest_ind_from_stats(
                mean_in, sd_in, n, mean_out, sd_out, m, equal_var=False, alternative="greater"
            ).pvalue
    p = np.asarray(p, dtype=np.float64)
    # too few rows on a side, or no spread in either group: no evidence
    return np.where((n >= 2) & (m >= 2) & np.isfinite(p), p, 1.0)


def score_half(
    conds: Conditions,
    cands: Candidates,
    idx: np.ndarray,
    half: np.ndarray,
    errors: np.ndarray,
    settings: SlicesAudit,
    binary: bool,
) -> HalfTest:
    """Test candidates `idx` on the rows where `half` is True; BH at q over them. A slice
    with fewer than `min_size` rows in or out of this half gets p = 1."""
    e = np.asarray(errors, dtype=np.float64)[half]
    n, s1, s2 = (np.zeros(len(idx)) for _ in range(3))
    for start in range(0, len(idx), CHUNK):
        part = slice(start, start + CHUNK)
        m = cands.masks(conds, idx[part], half).astype(np.float64)  # (chunk, Nh)
        n[part], s1[part], s2[part] = m.sum(axis=1), m @ e, m @ (e * e)
    total = (len(e), float(e.sum()), float((e * e).sum()))
    big = (n >= settings.min_size) & (len(e) - n >= settings.min_size)
    p = np.ones(len(idx))
    if big.any():
        p[big] = one_sided_p(n[big], s1[big], s2[big], total, binary)
    passed, adjusted = benjamini_hochberg(p, settings.q)
    with np.errstate(divide="ignore", invalid="ignore"):
        error, rest = s1 / n, (total[1] - s1) / (len(e) - n)
    return HalfTest(n.astype(np.int64), error, rest, p, adjusted, passed)


# ---------------------------------------------------------------- the two-half search


@dataclass(frozen=True)
class SliceSearch:
    """Discovery on one half, confirmation of the discovered on the other.

    Attributes:
        candidates: every candidate tested (discovery holds one entry per candidate).
        discovered: (D,) indices of the candidates that passed discovery; confirmation
            holds one entry per discovered candidate, in this order.
        in_discovery: (N,) True for the discovery half of the held-out rows.
    """

    candidates: Candidates
    discovery: HalfTest
    discovered: np.ndarray
    confirmation: HalfTest
    in_discovery: np.ndarray

    @property
    def confirmed(self) -> np.ndarray:
        """Indices (into `candidates`) of the slices that passed both halves."""
        return self.discovered[self.confirmation.passed]


def halves(n: int, strata: np.ndarray | None, seed: int) -> np.ndarray:
    """(n,) True for the discovery half: a seeded half of the rows, stratified by `strata`
    (labels) when every stratum holds at least two rows."""
    from sklearn.model_selection import train_test_split

    if strata is not None and np.unique(strata, return_counts=True)[1].min() < 2:
        strata = None
    picked, _ = train_test_split(np.arange(n), test_size=0.5, random_state=seed, stratify=strata)
    in_discovery = np.zeros(n, dtype=bool)
    in_discovery[picked] = True
    return in_discovery


def search(
    conds: Conditions,
    errors: np.ndarray,
    in_discovery: np.ndarray,
    settings: SlicesAudit,
    binary: bool,
) -> SliceSearch:
    """Discover weak slices on one half and confirm them on the other (module docstring)."""
    cands = candidate_slices(conds, in_discovery, settings)
    every = np.arange(len(cands))
    found = score_half(conds, cands, every, in_discovery, errors, settings, binary)
    discovered = every[found.passed]
    confirmed = score_half(conds, cands, discovered, ~in_discovery, errors, settings, binary)
    return SliceSearch(cands, found, discovered, confirmed, in_discovery)


def redundant(
    masks: np.ndarray, p: np.ndarray, errors: np.ndarray, q: float, binary: bool
) -> np.ndarray:
    """Which confirmed slices to leave unlisted. Of two nested slices (one holds all of the
    other's rows: a pair inside its condition, a range inside a wider one), the one with the smaller
    p-value is listed, and the other only if it adds evidence of its own: a smaller slice
    that errs more than the rest of the larger one, or a larger slice whose rows outside the
    smaller one err more than the rows outside it (one-sided tests on the confirmation half,
    p <= q). Of two with the same rows and p-value, the earlier is listed.

    Args:
        masks: (S, Nc) the confirmed slices' rows in the confirmation half.
        p: (S,) their confirmation p-values; errors: (Nc,) the half's per-row errors.

    Returns:
        (S,) for each slice, a slice that makes it redundant, or -1 where it is listed.
    """
    m = masks.astype(np.float32)  # counts are exact in float32
    both, n = m @ m.T, m.sum(axis=1)
    e = np.asarray(errors, dtype=np.float64)
    s1, s2 = masks @ e, masks @ (e * e)
    # (a, b): b holds all of a's rows; of two with the same rows, the pair is taken once
    a, b = np.nonzero((both == n[:, None]) & (n[None, :] >= n[:, None]))
    once = (a != b) & ((n[b] > n[a]) | (b < a))
    a, b = a[once], b[once]
    a_better = (p[a] < p[b]) | ((p[a] == p[b]) & (a < b))
    extra = (n[b] - n[a], s1[b] - s1[a], s2[b] - s2[a])  # b's rows outside a
    outside_a = (len(e) - n[a], e.sum() - s1[a], (e * e).sum() - s2[a])
    # a better: do b's other rows err more than the rows outside b? else: does a err more
    # than b's other rows?
    p_extra = np.where(
        a_better,
        one_sided_p(*extra, outside_a, binary),
        one_sided_p(n[a], s1[a], s2[a], (n[b], s1[b], s2[b]), binary),
    )
    out = np.full(len(masks), -1)
    for i, j, better in zip(a[p_extra > q], b[p_extra > q], a_better[p_extra > q]):
        loser, winner = (j, i) if better else (i, j)
        if out[loser] < 0:
            out[loser] = winner
    return out


def tested_list(conds: Conditions, found: SliceSearch) -> list[dict[str, Any]]:
    """Every candidate tested with its discovery numbers and, if discovered, its
    confirmation numbers: enough to redo both Benjamini-Hochberg steps."""
    d, c = found.discovery, found.confirmation
    position = {int(i): k for k, i in enumerate(found.discovered)}
    out = []
    for i in range(len(found.candidates)):
        entry: dict[str, Any] = {
            "rule": found.candidates.rule(conds, i),
            "kind": found.candidates.kind(conds, i),
            "n": int(d.n[i]),
            "error": float(d.error[i]),
            "rest_error": float(d.rest_error[i]),
            "p": float(d.p[i]),
            "p_bh": float(d.p_bh[i]),
            "discovered": bool(d.passed[i]),
        }
        if i in position:
            k = position[i]
            entry["confirmation"] = {
                "n": int(c.n[k]),
                "error": float(c.error[k]),
                "rest_error": float(c.rest_error[k]),
                "p": float(c.p[k]),
                "p_bh": float(c.p_bh[k]),
                "confirmed": bool(c.passed[k]),
            }
        out.append(entry)
    return out
