"""The statistics under the drift detectors, on plain arrays: KS p-values and distances,
PSI, chi-squared with sparse bins pooled, multiple-testing adjustment, blocked sorting."""

from __future__ import annotations

from typing import Literal

import numpy as np
from scipy import stats

PSI_FLOOR = 1e-4  # proportions below this count as this in the PSI's logarithm
MIN_EXPECTED = 5.0  # chi-squared bins expected to hold fewer rows than this are pooled
KS_LIMIT_N = 10_000  # above this effective size, KS p-values use Kolmogorov's limit
CHUNK = 1 << 22  # elements per block of the column-wise and permutation work


def adjust_p_values(p: np.ndarray, method: Literal["bh", "holm"]) -> np.ndarray:
    """Multiple-testing adjusted p-values: Benjamini-Hochberg (false discovery rate) or Holm
    (family-wise error); a column is significant when its adjusted p is below alpha."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    if p.size == 0:
        return p
    if method == "bh":
        return np.asarray(stats.false_discovery_control(p, method="bh"))
    order = np.argsort(p)
    k = p.size
    stepped = np.maximum.accumulate((k - np.arange(k)) * p[order])
    out = np.empty_like(p)
    out[order] = np.minimum(stepped, 1.0)
    return out


def ks_p_values(d: np.ndarray, en: np.ndarray) -> np.ndarray:
    """Asymptotic two-sample KS p-values, as scipy's ks_2samp(method="asymp"): Kolmogorov's
    distribution for n = en = na * nb / (na + nb); above en = 10,000, where that costs
    ~10 ms a column, its limit (within 1% of it there, and never smaller)."""
    p = np.ones_like(d)
    small = (en > 0) & (en <= KS_LIMIT_N)
    large = en > KS_LIMIT_N
    p[small] = stats.kstwo.sf(d[small], en[small])
    p[large] = stats.kstwobign.sf(d[large] * np.sqrt(en[large]))
    return p


def ks_w1(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """KS D and W1 distance of two sorted samples, from their CDFs on the pooled values."""
    na, nb = len(a), len(b)
    both = np.concatenate([a, b])
    order = np.argsort(both, kind="stable")  # merges two sorted runs: linear time
    pooled = both[order]
    # F_a - F_b, scaled by na * nb, steps up by nb at an a-value, down by na at a b-value;
    # integers below 2^53 are exact in float64
    gap = np.abs(np.cumsum((order < na) * float(na + nb) - na))
    dx = np.diff(pooled)
    scale = float(na) * float(nb)
    ks = float(gap[:-1][dx > 0].max(initial=0.0))  # CDFs hold at a tie's last copy
    return ks / scale, float(np.dot(gap[:-1], dx)) / scale


def population_stability_index(count_a: np.ndarray, count_b: np.ndarray) -> float:
    p = np.maximum(count_a / count_a.sum(), PSI_FLOOR)
    q = np.maximum(count_b / count_b.sum(), PSI_FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def chi2_statistic(count_a: np.ndarray, count_b: np.ndarray) -> tuple[float, int]:
    """Pearson's chi-squared of the 2 x bins table and its degrees of freedom.

    Bins empty on both sides are dropped; bins whose expected count in the smaller sample
    is below 5 (Cochran's rule) are pooled into one, and that pool, if still too small,
    into the smallest other bin: sparse categories would otherwise flag too often.
    """
    a, b = count_a.astype(np.float64), count_b.astype(np.float64)
    keep = (a + b) > 0
    a, b = a[keep], b[keep]
    n, m = a.sum(), b.sum()
    share = min(n, m) / (n + m)
    sparse = (a + b) * share < MIN_EXPECTED
    if sparse.any() and len(a) > 1:
        a = np.append(a[~sparse], a[sparse].sum())
        b = np.append(b[~sparse], b[sparse].sum())
        if (a[-1] + b[-1]) * share < MIN_EXPECTED and len(a) > 2:
            j = int(np.argmin((a + b)[:-1]))
            a[j], b[j] = a[j] + a[-1], b[j] + b[-1]
            a, b = a[:-1], b[:-1]
    if len(a) < 2:
        return 0.0, 0
    total = a + b
    ea, eb = total * n / (n + m), total * m / (n + m)
    return float(((a - ea) ** 2 / ea).sum() + ((b - eb) ** 2 / eb).sum()), len(a) - 1


def sorted_quantiles(s: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """np.quantile (linear interpolation) of an already sorted sample."""
    pos = probs * (len(s) - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(s) - 1)
    return s[lo] + (pos - lo) * (s[hi] - s[lo])


def sorted_columns(x: np.ndarray, columns: tuple[int, ...]) -> np.ndarray:
    """(len(columns), n): each column sorted ascending, non-finite values last as +inf;
    sorted a block of columns at a time, so the working copy stays small."""
    out = np.empty((len(columns), len(x)))
    step = max(1, CHUNK // max(1, len(x)))
    cols = list(columns)
    for s in range(0, len(cols), step):
        block = x[:, cols[s : s + step]].T
        out[s : s + step] = np.sort(np.where(np.isfinite(block), block, np.inf), axis=1)
    return out
