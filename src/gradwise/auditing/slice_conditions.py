"""What a slice is: the conditions that name held-out rows, and what sets a cluster apart.

A condition is a rule a person can read over the source's columns (a category value, a range
of a number between its quantile edges, a missing value) or, for images, text and
sequences, a cluster of the model's own embeddings. The search (`auditing/slice_candidates.py`)
forms its candidates from these conditions and tests them; for a confirmed cluster, the
labels, words or input values over-represented in it say what the cluster holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

FEW_VALUES = 10  # a number column with at most this many distinct values: each is a category
N_WORDS = 8  # over-represented words named per text cluster
OVER = 1.5  # a label or word is over-represented at 1.5 times its overall share


# ---------------------------------------------------------------- conditions


@dataclass(frozen=True)
class Conditions:
    """Single conditions over the held-out rows.

    Attributes:
        rules: (C,) each condition as a person reads it ("age <= 35").
        columns: (C,) the column each reads (pairs join two different ones).
        kinds: (C,) category, range, missing or cluster.
        masks: (C, N) which held-out rows meet each condition.
    """

    rules: list[str]
    columns: list[str]
    kinds: list[str]
    masks: np.ndarray

    def __len__(self) -> int:
        return len(self.rules)


def column_conditions(
    frame: pd.DataFrame, kinds: dict[str, str], bins: int, min_rows: int
) -> Conditions:
    """Conditions on the columns of `frame`: each category value, ranges of each number
    column between its quantile edges, and "is missing" where a column has gaps.

    Args:
        frame: (N, ...) the held-out rows as read from the source.
        kinds: column -> "number" or "category"; other columns are ignored.
        bins: quantile bins per number column; its inner edges (rounded to 3 significant
            digits) bound the ranges: below or above one edge, or between two.
        min_rows: a condition held by fewer rows is left out (it could never be tested).
    """
    found: dict[bytes, tuple[str, str, str, np.ndarray]] = {}  # one condition per row set
    for col, kind in kinds.items():
        values = frame[col]
        listed = (
            _number_conditions(col, values, bins)
            if kind == "number"
            else _category_conditions(col, values, min_rows)
        )
        missing = values.isna().to_numpy()
        listed.append((f"{col} is missing", "missing", missing))
        for rule, what, mask in listed:
            n = int(mask.sum())
            if n >= min_rows and n < len(mask):  # a condition every row meets names no slice
                found.setdefault(np.packbits(mask).tobytes(), (rule, col, what, mask))
    kept = list(found.values())
    masks = np.array([k[3] for k in kept], dtype=bool).reshape(len(kept), len(frame))
    return Conditions([k[0] for k in kept], [k[1] for k in kept], [k[2] for k in kept], masks)


def _category_conditions(
    col: str, values: pd.Series, min_rows: int
) -> list[tuple[str, str, np.ndarray]]:
    """`col = value` for each value held by at least `min_rows` rows (an identifier column
    gives none)."""
    text = values.astype(str).str.strip().to_numpy()
    filled = values.notna().to_numpy()
    kept, counts = np.unique(text[filled], return_counts=True)
    return [(f"{col} = {v}", "category", filled & (text == v)) for v in kept[counts >= min_rows]]


def _number_conditions(col: str, values: pd.Series, bins: int) -> list[tuple[str, str, np.ndarray]]:
    x = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64)
    distinct = np.unique(x[~np.isnan(x)])
    if len(distinct) <= FEW_VALUES:
        return [(f"{col} = {_readable(v)}", "category", x == v) for v in distinct]
    inner = np.linspace(0, 1, bins + 1)[1:-1]
    edges = np.unique([_rounded(e) for e in np.nanquantile(x, inner)])
    names = [_readable(e) for e in edges]
    out = []
    for i, (lo, a) in enumerate(zip(edges, names)):  # every range between two edges
        out.append((f"{col} <= {a}", "range", x <= lo))
        out.append((f"{col} > {a}", "range", x > lo))
        for hi, b in zip(edges[i + 1 :], names[i + 1 :]):
            out.append((f"{a} < {col} <= {b}", "range", (x > lo) & (x <= hi)))
    return out


def _rounded(value: float) -> float:
    """`value` to 3 significant digits, so a rule reads 35 or 0.125, not 35.00000001."""
    return float(_readable(value))


def _readable(value: float) -> str:
    return np.format_float_positional(value, precision=3, fractional=False, trim="-")


def cluster_conditions(
    embeddings: np.ndarray, n_clusters: int, seed: int
) -> tuple[Conditions, np.ndarray]:
    """One condition per k-means cluster of the embeddings (scikit-learn, seeded, 4 starts).

    Returns:
        (conditions, distance (N,) of each row to its cluster's centre: the smallest are the
        most typical rows).
    """
    from sklearn.cluster import KMeans

    k = min(n_clusters, len(embeddings))
    km = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(embeddings)
    labels = km.labels_
    distance = np.linalg.norm(embeddings - km.cluster_centers_[labels], axis=1)
    masks = labels[None, :] == np.arange(k)[:, None]
    rules = [f"embedding cluster {c + 1} of {k}" for c in range(k)]
    return Conditions(rules, ["cluster"] * k, ["cluster"] * k, masks), distance


# ---------------------------------------------------------------- what sets a cluster apart


def over_represented_labels(
    y: np.ndarray, mask: np.ndarray, classes: list[Any]
) -> list[dict[str, Any]]:
    """The (at most 3) classes whose share in the cluster is at least 1.5 times their overall
    share, among those making up at least 10% of it; the most over-represented first."""
    inside = np.bincount(y[mask], minlength=len(classes)) / mask.sum()
    overall = np.bincount(y, minlength=len(classes)) / len(y)
    ratio = np.where(inside >= 0.1, inside / np.maximum(overall, 1e-12), 0.0)
    top = [k for k in np.argsort(-ratio)[:3] if ratio[k] >= OVER]
    return [
        {"label": f"class {classes[k]}", "share": float(inside[k]), "overall": float(overall[k])}
        for k in top
    ]


def over_represented_words(texts: list[str], mask: np.ndarray) -> list[dict[str, Any]]:
    """Words in at least 5% of the cluster's texts and in at least 1.5 times the share of
    texts there as overall, the most over-represented first (scikit-learn's
    CountVectorizer, lower case)."""
    from sklearn.feature_extraction.text import CountVectorizer

    try:
        counts = CountVectorizer(binary=True).fit(texts)
    except ValueError:  # no word at all (e.g. only punctuation)
        return []
    has = counts.transform(texts)
    inside = np.asarray(has[mask].mean(axis=0)).ravel()
    overall = np.asarray(has.mean(axis=0)).ravel()
    ratio = np.where(inside >= 0.05, inside / overall, 0.0)
    words = counts.get_feature_names_out()
    return [
        {"word": str(words[k]), "share": float(inside[k]), "overall": float(overall[k])}
        for k in np.lexsort((-inside, -ratio))[:N_WORDS]  # ties: the commoner word first
        if ratio[k] >= OVER
    ]


def distinct_inputs(
    raw: np.ndarray, mask: np.ndarray, names: list[str] | None
) -> list[dict[str, Any]]:
    """Images: pixel mean and spread; sequences: each feature's mean over the window; the (at
    most 3) whose cluster mean is at least half a standard deviation from the overall mean."""
    if raw.ndim == 4:  # (N, C, H, W)
        values = {"pixel mean": raw.mean(axis=(1, 2, 3)), "pixel spread": raw.std(axis=(1, 2, 3))}
    else:  # (N, T, F)
        names = names or [f"feature {f}" for f in range(raw.shape[2])]
        values = {f"mean {name}": raw[:, :, f].mean(axis=1) for f, name in enumerate(names)}
    found = []
    for name, v in values.items():
        z = (v[mask].mean() - v.mean()) / max(float(v.std()), 1e-12)
        if abs(z) >= 0.5:
            found.append((abs(z), name, float(v[mask].mean()), float(v.mean())))
    found.sort(reverse=True)
    return [{"name": n, "mean": m, "overall": o} for _, n, m, o in found[:3]]
