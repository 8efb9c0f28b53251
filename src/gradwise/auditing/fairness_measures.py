"""The fairness check's measures: the groups (a column, quartiles of a number column, or the
intersection of several), per-row values whose sums over a group give its numbers, the
between-group differences and ratios as `fairlearn.metrics` defines them, percentile
bootstrap intervals, and those differences graded against `audit.fairness`'s thresholds.

The measures are hand-written over per-row sums, because one matrix product then gives them
on every bootstrap resample at once (`MetricFrame` would loop over resamples); a test holds
them equal to `MetricFrame` and fairlearn's disparity functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gradwise.auditing.base import NotApplicable, Verdict, grade
from gradwise.errors import ConfigError
from gradwise.run_conformal import group_labels

if TYPE_CHECKING:
    import pandas as pd

    from gradwise.config import FairnessAudit

MAX_CATEGORIES = 10  # a number column with more distinct values is cut into quartiles
BOOTSTRAP_CELLS = 4_000_000  # resample weights held at once (resamples x rows)


# ---------------------------------------------------------------- the groups


@dataclass(frozen=True)
class Grouping:
    """One way to split the rows into groups: a column, or the intersection of several.

    Attributes:
        name: "sex", or "sex & race" for an intersection.
        columns: the columns it reads.
        edges: per column, quartile edges of a number column cut into bins, else None.
    """

    name: str
    columns: tuple[str, ...]
    edges: tuple[np.ndarray | None, ...]

    def labels(self, raw: pd.DataFrame) -> np.ndarray:
        parts = [group_labels(raw[c], e) for c, e in zip(self.columns, self.edges, strict=True)]
        out = parts[0]
        for part in parts[1:]:
            out = np.char.add(np.char.add(out, " & "), part)
        return np.asarray(out, dtype=str)


def groupings(raw: Any, names: list[str], source: str) -> list[Grouping]:
    """Each named column as a grouping, then their intersection when there are several.

    Raises:
        NotApplicable: the data are no table (no columns to group by).
        ConfigError: a name is not a column of the table.
    """
    import pandas as pd

    if not isinstance(raw, pd.DataFrame):
        raise NotApplicable(
            "fairness groups are columns of a table; this run's samples are "
            f"{type(raw).__name__} arrays with no named columns."
        )
    _check_columns(list(map(str, raw.columns)), names, source)
    single = [Grouping(c, (c,), (_quartile_edges(raw[c]),)) for c in dict.fromkeys(names)]
    if len(single) < 2:
        return single
    joint = Grouping(
        " & ".join(g.name for g in single),
        tuple(c for g in single for c in g.columns),
        tuple(e for g in single for e in g.edges),
    )
    return [*single, joint]


def _check_columns(columns: list[str], names: list[str], source: str) -> None:
    import difflib

    unknown = [n for n in names if n not in columns]
    if not unknown:
        return
    hints = []
    for n in unknown:
        close = difflib.get_close_matches(n, columns, n=1, cutoff=0.6)
        hints.append(f"{n!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    raise ConfigError(
        f"audit.fairness.groups names {', '.join(hints)}, not a column of {source}. "
        f"Columns: {', '.join(columns)}."
    )


def _quartile_edges(column: pd.Series) -> np.ndarray | None:
    """Quartile edges of a number column with more than MAX_CATEGORIES values, else None."""
    import pandas as pd

    values = pd.to_numeric(column, errors="coerce").dropna()
    if not pd.api.types.is_numeric_dtype(column) or values.nunique() <= MAX_CATEGORIES:
        return None
    return np.unique(np.quantile(values.to_numpy(dtype=np.float64), [0, 0.25, 0.5, 0.75, 1]))


# ---------------------------------------------------------------- per-row sums and measures

# classification columns: rows, correct, selected, actual, selected & actual,
# selected & not actual, covered, then confidence and correct in each ECE bin
_N, CORRECT, _SELECTED, _ACTUAL, _TP, _FP, _COVERED, _BINS = range(8)


def classification_columns(
    y: np.ndarray,
    probs: np.ndarray,
    positive: int,
    covered: np.ndarray | None,
    n_bins: int,
    selected: np.ndarray | None = None,
) -> np.ndarray:
    """(N, 7 + 2 * n_bins) per-row values whose sums over a group give its measures.

    Args:
        y: (N,) class indices; probs: (N, K) probabilities, whose argmax is the prediction.
        positive: the class counted as selected.
        covered: (N,) the label is in the row's conformal set, or None (no sets).
        n_bins: equal-width confidence bins of the ECE (as `expected_calibration_error`).
        selected: (N,) the rows predicted positive, when not the argmax (group thresholds).
    """
    from gradwise.auditing.calibration import bin_edges

    probs = np.asarray(probs, dtype=np.float64)
    pred = probs.argmax(axis=1)
    actual = np.asarray(y) == positive
    if selected is None:
        sel, correct = pred == positive, pred == y
    else:  # a binary decision by threshold: right when it selects exactly the positives
        sel = np.asarray(selected, dtype=bool)
        correct = sel == actual
    conf = probs.max(axis=1)
    which = np.clip(np.searchsorted(bin_edges(conf, n_bins, "width"), conf) - 1, 0, n_bins - 1)
    in_bin = np.eye(n_bins)[which]  # (N, n_bins)
    top_right = (pred == y)[:, None]  # the ECE reads the probabilities' top class
    cover = np.zeros(len(y)) if covered is None else np.asarray(covered, dtype=np.float64)
    head = np.stack([np.ones(len(y)), correct, sel, actual, sel & actual, sel & ~actual, cover])
    return np.concatenate([head.T, in_bin * conf[:, None], in_bin * top_right], axis=1)


def classification_measures(sums: np.ndarray, n_bins: int) -> dict[str, np.ndarray]:
    """Accuracy, selection rate, TPR, FPR, ECE and coverage from `classification_columns`
    sums (..., m); a rate with no rows to count (TPR of a group with no positives) is 0, as
    in scikit-learn's normalised confusion matrix that fairlearn reads."""
    n = sums[..., _N]
    negatives = n - sums[..., _ACTUAL]
    conf = sums[..., _BINS : _BINS + n_bins]
    hits = sums[..., _BINS + n_bins : _BINS + 2 * n_bins]
    return {
        "accuracy": sums[..., CORRECT] / n,
        "selection_rate": sums[..., _SELECTED] / n,
        "true_positive_rate": _safe_ratio(sums[..., _TP], sums[..., _ACTUAL]),
        "false_positive_rate": _safe_ratio(sums[..., _FP], negatives),
        "ece": np.abs(conf - hits).sum(axis=-1) / n,
        "coverage": sums[..., _COVERED] / n,
    }


def regression_columns(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N, 3) per-row values: 1, mean |error| and mean squared error over the outputs."""
    err = np.asarray(pred, dtype=np.float64).reshape(len(y), -1) - np.asarray(y).reshape(len(y), -1)
    return np.stack([np.ones(len(err)), np.abs(err).mean(axis=1), (err**2).mean(axis=1)], axis=1)


def regression_measures(sums: np.ndarray) -> dict[str, np.ndarray]:
    """MAE and RMSE (target's units) from `regression_columns` sums (..., 3)."""
    return {"mae": sums[..., 1] / sums[..., 0], "rmse": np.sqrt(sums[..., 2] / sums[..., 0])}


def regression_gaps(m: dict[str, np.ndarray], overall_mae: float) -> dict[str, np.ndarray]:
    """Largest minus smallest group MAE and RMSE, and the relative MAE gap: the MAE gap over
    `overall_mae` (the MAE of all test rows, held fixed on resamples); 0 when both are 0."""
    gaps = {f"{k}_gap": difference(v) for k, v in m.items()}
    mae_gap = gaps["mae_gap"]
    relative = np.divide(
        mae_gap, overall_mae, out=np.zeros_like(mae_gap, dtype=np.float64), where=overall_mae > 0
    )
    return {**gaps, "relative_mae_gap": relative}


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def difference(values: np.ndarray) -> np.ndarray:
    """Largest minus smallest over groups (last axis): `MetricFrame.difference()`."""
    return values.max(axis=-1) - values.min(axis=-1)


def ratio(values: np.ndarray) -> np.ndarray:
    """Smallest over largest over groups (last axis), NaN when the largest is 0:
    `MetricFrame.ratio()`."""
    low, high = values.min(axis=-1), values.max(axis=-1)
    return np.divide(low, high, out=np.full_like(low, np.nan, dtype=np.float64), where=high > 0)


def disparities(m: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The between-group numbers of per-group classification measures (..., G):
    fairlearn's demographic_parity_difference / _ratio, equal_opportunity_difference (TPR)
    and equalized_odds_difference / _ratio (worst case of TPR and FPR), and the accuracy gap."""
    tpr, fpr = m["true_positive_rate"], m["false_positive_rate"]
    return {
        "accuracy_gap": difference(m["accuracy"]),
        "demographic_parity_difference": difference(m["selection_rate"]),
        "demographic_parity_ratio": ratio(m["selection_rate"]),
        "equal_opportunity_difference": difference(tpr),
        "equalized_odds_difference": np.maximum(difference(tpr), difference(fpr)),
        "equalized_odds_ratio": np.minimum(ratio(tpr), ratio(fpr)),
    }


def group_sums(columns: np.ndarray, labels: np.ndarray, groups: list[str]) -> np.ndarray:
    """(G, m) the column sums of each group's rows."""
    return np.stack([columns[labels == g].sum(axis=0) for g in groups])


def bootstrap_sums(columns: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, m) the column sums of n_boot resamples (with replacement) of the rows."""
    n = len(columns)
    chunk = max(1, BOOTSTRAP_CELLS // max(n, 1))
    out = []
    for start in range(0, n_boot, chunk):
        b = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(b, n)) + n * np.arange(b)[:, None]
        weights = np.bincount(idx.ravel(), minlength=b * n).reshape(b, n)
        out.append(weights @ columns)
    return np.concatenate(out)


# ---------------------------------------------------------------- one grouping measured


@dataclass(frozen=True)
class Measured:
    """One grouping's numbers: per group, and between the graded groups.

    Attributes:
        groups: every group's name, n, graded (n >= min_group), measures with intervals.
        between: the between-group numbers over the graded groups, with intervals.
    """

    grouping: str
    groups: list[dict[str, Any]]
    between: dict[str, dict[str, Any]]

    @property
    def graded(self) -> list[dict[str, Any]]:
        return [g for g in self.groups if g["graded"]]

    def to_dict(self) -> dict[str, Any]:
        return {"grouping": self.grouping, "groups": self.groups, "between": self.between}


Measures = Callable[[np.ndarray], dict[str, np.ndarray]]  # column sums (..., m) -> each (...)
Between = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]  # per group (..., G) -> (...)


def measure(
    columns: np.ndarray,
    labels: np.ndarray,
    grouping: str,
    measures: Measures,
    between_groups: Between,
    settings: FairnessAudit,
    rng: np.random.Generator,
) -> Measured:
    """Per-group measures with 95% percentile bootstrap intervals (rows resampled within each
    group, group sizes held), and the between-group numbers (`between_groups` of the per-group
    measures, last axis: groups) over the groups of at least `min_group` rows."""
    names = sorted(set(labels.tolist()))
    point = measures(group_sums(columns, labels, names))  # each (G,)
    boot = measures(
        np.stack([bootstrap_sums(columns[labels == g], settings.bootstrap, rng) for g in names], 1)
    )  # each (B, G)
    sizes = [int((labels == g).sum()) for g in names]
    graded = np.array([n >= settings.min_group for n in sizes])
    groups = [
        {
            "group": g,
            "n": n,
            "graded": bool(graded[i]),
            **{k: with_interval(point[k][i], boot[k][:, i]) for k in point},
        }
        for i, (g, n) in enumerate(zip(names, sizes, strict=True))
    ]
    between: dict[str, dict[str, Any]] = {}
    if graded.sum() >= 2:
        p = between_groups({k: v[graded] for k, v in point.items()})
        b = between_groups({k: v[:, graded] for k, v in boot.items()})
        between = {k: with_interval(p[k], b[k]) for k in p}
    return Measured(grouping, groups, between)


def with_interval(value: Any, draws: np.ndarray) -> dict[str, float | None]:
    """The value and its 95% percentile interval (undefined draws, NaN ratios, left out)."""
    finite = draws[np.isfinite(draws)]
    lo, hi = np.percentile(finite, [2.5, 97.5]) if len(finite) else (np.nan, np.nan)
    return {"value": plain(value), "low": plain(lo), "high": plain(hi)}


def plain(x: Any) -> float | None:
    """A float for JSON; NaN (an undefined ratio) as None."""
    v = float(x)
    return v if np.isfinite(v) else None


# ---------------------------------------------------------------- graded


@dataclass(frozen=True)
class Finding:
    """A between-group difference graded against its thresholds."""

    grouping: str
    measure: str
    name: str
    value: float
    verdict: Verdict
    setting: str
    threshold: float

    def severity(self) -> tuple[int, float]:
        """Sorts the worst first: fail, warn, pass, then the value past its threshold."""
        return {"fail": 0, "warn": 1}.get(self.verdict, 2), -self.value / max(self.threshold, 1e-12)


Graded = dict[str, tuple[str, str, float, float]]  # measure: name, setting, warn, fail


def graded_measures(s: FairnessAudit, task: str) -> Graded:
    """The between-group numbers graded for `task`, with their names and thresholds."""
    if task == "regression":
        return {"relative_mae_gap": ("relative MAE gap", "error_gap", s.error_gap_warn,
                                     s.error_gap_fail)}  # fmt: skip
    return {
        "accuracy_gap": ("accuracy gap", "accuracy_gap", s.accuracy_gap_warn,
                         s.accuracy_gap_fail),
        "demographic_parity_difference": ("demographic-parity difference", "parity",
                                          s.parity_warn, s.parity_fail),
        "equalized_odds_difference": ("equalised-odds difference", "odds", s.odds_warn,
                                      s.odds_fail),
    }  # fmt: skip


def findings(m: Measured, graded: Graded) -> list[Finding]:
    """The graded differences of a grouping (none with fewer than 2 graded groups)."""
    out = []
    for key, (name, prefix, warn, fail) in graded.items():
        if key in m.between:
            value = m.between[key]["value"]
            verdict = grade(value, warn, fail)
            which = "fail" if verdict == "fail" else "warn"
            threshold = fail if verdict == "fail" else warn
            out.append(
                Finding(m.grouping, key, name, value, verdict, f"{prefix}_{which}", threshold)
            )
    return out
