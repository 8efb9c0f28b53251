"""The accuracy of the groups a user names, measured from feedback and held against the audit.

Which columns: `monitor.groups`, else the run's `audit.fairness.groups` (the fairness
audit's); an empty list tracks none. Each column is tracked alone (the audit's intersection
of several is not: its many small groups would multiply the tests).

Where a served instance's group comes from: its input, as the store kept the request body.
A column among the model's inputs is a field of the request. A column the model does not
read (`data.drop`) is not in the request schema, but a table's (and labelled text's) request
keeps keys it does not know (the model ignores them; the answer's `warnings` name them) and
the store keeps the body as it went over the wire: clients that send the column with each
instance make it trackable. An instance without the column is counted as `absent`, in no
group; a column absent from every stored instance is named in the report's notes.

The groups are the audit's: a number column with more than 10 values is cut at the quartile
edges of its test values, and served values are typed like the test column ("1", not "1.0"),
so a group's name matches its name in RUN/audit/fairness.json.

Per window and over the whole watch, for each group: its served and labelled instances, the
accuracy among the labelled ones with a 95% Clopper-Pearson (exact) interval, and the gap to
the group's audited test accuracy: RUN/audit/fairness.json's when it audited this column on
the run's current test split, else measured now on the test split. A window alerts
`group_accuracy_drop` for a group with at least `min_labels` labels whose accuracy is
significantly below its audited accuracy minus `accuracy_drop`: a one-sided exact binomial
test, at the monitor's alpha divided by the groups tested in the window (Bonferroni), so a
window with no drop in any group alerts with probability at most alpha. The whole watch's
numbers are reported without a test (a test repeated at every pass would false-alarm more
often than its level).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel
from scipy.stats import binomtest

from gradwise.artifacts import read_json
from gradwise.auditing.base import NotApplicable, task_name
from gradwise.auditing.fairness_measures import Grouping, groupings
from gradwise.config import MonitorSettings
from gradwise.errors import ConfigError
from gradwise.monitoring.alerts import Alert
from gradwise.run import Run

LEVEL = 0.95  # of the Clopper-Pearson intervals
INTERVAL = "95% Clopper-Pearson (exact binomial) interval of each group's accuracy"
TEST = (
    "one-sided exact binomial test of 'the group's accuracy is at least its audited accuracy "
    "minus accuracy_drop', per window, for groups with at least min_labels labels, at alpha "
    "divided by the groups tested in the window (Bonferroni); the whole watch is not tested"
)


@dataclass(frozen=True)
class GroupWatch:
    """The group columns the monitor tracks, and each group's audited accuracy.

    Attributes:
        groupings: one per tracked column, cut as the fairness audit cuts it.
        dtypes: per column, the test column's dtype (served values are typed like it).
        audited: per column, per group: (accuracy, test rows).
        sources: per column, where its audited accuracies come from.
        notes: what is not tracked, and why.
    """

    groupings: tuple[Grouping, ...] = ()
    dtypes: dict[str, Any] = field(default_factory=dict)
    audited: dict[str, dict[str, tuple[float, int]]] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def columns(self) -> list[str]:
        return [g.columns[0] for g in self.groupings]

    def labels(self, instances: Sequence[BaseModel | None]) -> dict[str, list[str | None]]:
        """Per column, each instance's group (None: the instance does not carry the column)."""
        dumps = [{} if i is None else i.model_dump(by_alias=True) for i in instances]
        out: dict[str, list[str | None]] = {c: [] for c in self.columns}
        if not dumps:
            return out
        for g in self.groupings:
            (column,) = g.columns
            values = _typed([d.get(column) for d in dumps], self.dtypes[column], g.edges[0])
            names = g.labels(pd.DataFrame({column: values}))
            out[column] = [str(n) if column in d else None for n, d in zip(names, dumps)]
        return out


def watch_groups(run: Run, settings: MonitorSettings) -> GroupWatch | None:
    """The groups to track (None: none are named).

    Raises:
        ConfigError: a named column is not a column of the run's data.
        DataError: the run's data is not at hand.
    """
    names = settings.groups if settings.groups is not None else run.config.audit.fairness.groups
    if not names:
        return None
    names = list(dict.fromkeys(names))
    if run.schema.task != "classification":
        why = f"group accuracy is tracked for classifiers; this run is {task_name(run.schema.task)}"
        return GroupWatch(notes=(f"{why}: {', '.join(names)} not tracked",))
    test = run.split("test")
    if isinstance(test.raw, pd.DataFrame):
        _check_columns(list(map(str, test.raw.columns)), names, run, settings)
    try:
        found = [groupings(test.raw, [n], run.config.data.source)[0] for n in names]
    except NotApplicable as exc:
        return GroupWatch(notes=(f"{exc} Not tracked: {', '.join(names)}.",))
    audited, sources = _audited(run, found, test.raw, test.y.numpy(), _test_predictions(run, test))
    dtypes = {n: test.raw[n].dtype for n in names}
    return GroupWatch(tuple(found), dtypes, audited, sources)


def _check_columns(columns: list[str], names: list[str], run: Run, s: MonitorSettings) -> None:
    import difflib

    unknown = [n for n in names if n not in columns]
    if not unknown:
        return
    hints = [
        f"{n!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
        for n in unknown
        for close in [difflib.get_close_matches(n, columns, n=1, cutoff=0.6)]
    ]
    where = "monitor.groups"
    if s.groups is None:
        where = "audit.fairness.groups (which the monitor follows: monitor.groups is null)"
    raise ConfigError(
        f"{where} names {', '.join(hints)}, not a column of {run.config.data.source}. "
        f"Columns: {', '.join(columns)}."
    )


def _test_predictions(run: Run, test: Any) -> np.ndarray:
    """(N,) the class the run predicts for each test row (the argmax the server answers)."""
    from gradwise.run_conformal import class_probabilities

    return class_probabilities(run, test.x, run.calibration.temperature).argmax(axis=1)


def _audited(
    run: Run, found: list[Grouping], raw: pd.DataFrame, y: np.ndarray, pred: np.ndarray
) -> tuple[dict[str, dict[str, tuple[float, int]]], dict[str, str]]:
    """Per column, per group: the audited test accuracy and test rows, from fairness.json
    when it audited the column on this test split, else measured on the test split now."""
    stored = _stored_audit(Path(run.path) / "audit" / "fairness.json", len(y))
    audited, sources = {}, {}
    for g in found:
        (column,) = g.columns
        if column in stored:
            audited[column] = stored[column]
            sources[column] = "RUN/audit/fairness.json, test split"
            continue
        labels = g.labels(raw)
        audited[column] = {
            str(name): (float(np.mean(pred[labels == name] == y[labels == name])), int(n))
            for name, n in zip(*np.unique(labels, return_counts=True))
        }
        sources[column] = "measured now on the test split (no fairness audit of it stored)"
    return audited, sources


def _stored_audit(path: Path, n_test: int) -> dict[str, dict[str, tuple[float, int]]]:
    """The fairness audit's per-group accuracy of each single column it audited, when it ran
    on a test split of `n_test` rows; empty when there is none."""
    if not path.is_file():
        return {}
    try:
        metrics = read_json(path)["metrics"]
        if int(metrics["n_test"]) != n_test:
            return {}
        return {
            m["grouping"]: {
                str(g["group"]): (float(g["accuracy"]["value"]), int(g["n"])) for g in m["groups"]
            }
            for m in metrics["groupings"]
            if " & " not in m["grouping"]
        }
    except (KeyError, TypeError, ValueError):
        return {}


def _typed(values: list[Any], like: Any, edges: np.ndarray | None) -> pd.Series:
    """Served values typed like the test column, so they fall in the groups the audit named
    (a column of integers names group "1", not "1.0"; text stays text)."""
    series = pd.Series(values, dtype=object)
    if pd.api.types.is_bool_dtype(like) or not pd.api.types.is_numeric_dtype(like):
        return series
    numbers = pd.to_numeric(series, errors="coerce")  # not a number: missing
    whole = bool((numbers.dropna() % 1 == 0).all())
    if edges is None and pd.api.types.is_integer_dtype(like) and whole:
        return numbers.astype("Int64")
    return numbers.astype(np.float64)


# ---------------------------------------------------------------- the numbers


def correct_answers(predictions: list[Any], truths: list[Any]) -> list[bool | None]:
    """Whether each served class was the label fed back (None: no label arrived)."""
    return [None if t is None else str(p) == str(t) for p, t in zip(predictions, truths)]


def group_numbers(
    watch: GroupWatch,
    labels: dict[str, list[str | None]],
    correct: list[bool | None],
    settings: MonitorSettings | None = None,
) -> dict[str, Any]:
    """Per column: instances without it (`absent`), and per group its numbers.

    Args:
        labels: per column, each instance's group (`GroupWatch.labels`).
        correct: each instance's answer was right (None: unlabelled).
        settings: a window's: also test each group against its audited accuracy (p_value,
            level, dropped); None: the numbers alone (the whole watch).
    """
    out: dict[str, Any] = {}
    for column, groups in labels.items():
        rows = [_group(column, name, groups, correct, watch) for name in _names(groups)]
        out[column] = {"absent": sum(g is None for g in groups), "groups": rows}
    if settings is not None:
        _test(out, settings)
    return out


def _names(groups: list[str | None]) -> list[str]:
    return sorted({g for g in groups if g is not None})


def _group(
    column: str, name: str, groups: list[str | None], correct: list[bool | None], w: GroupWatch
) -> dict[str, Any]:
    mine = [c for g, c in zip(groups, correct) if g == name]
    right = [c for c in mine if c is not None]
    n, k = len(right), int(sum(right))
    audited, n_test = w.audited[column].get(name, (None, 0))
    low = high = accuracy = None
    if n:
        accuracy = k / n
        ci = binomtest(k, n).proportion_ci(confidence_level=LEVEL, method="exact")
        low, high = float(ci.low), float(ci.high)
    return {
        "group": name,
        "n": len(mine),
        "n_labelled": n,
        "correct": k,
        "accuracy": accuracy,
        "low": low,
        "high": high,
        "audited_accuracy": audited,
        "n_test": n_test,
        "gap": None if accuracy is None or audited is None else accuracy - audited,
    }


def _test(numbers: dict[str, Any], s: MonitorSettings) -> None:
    """Add each group's test (p_value, level, floor, dropped) in place."""
    rows = [r for c in numbers.values() for r in c["groups"]]
    tested = [r for r in rows if r["n_labelled"] >= s.min_labels and r["audited_accuracy"]]
    level = s.alpha / max(len(tested), 1)
    for r in rows:
        r.update(p_value=None, level=None, floor=None, dropped=False)
    for r in tested:
        floor = min(max(r["audited_accuracy"] - s.accuracy_drop, 0.0), 1.0)
        p = binomtest(r["correct"], r["n_labelled"], floor, alternative="less").pvalue
        r.update(p_value=float(p), level=level, floor=floor, dropped=bool(p < level))


def group_alerts(index: int, numbers: dict[str, Any] | None, s: MonitorSettings) -> list[Alert]:
    """The `group_accuracy_drop` alerts of window `index` (`numbers`: its `group_numbers`)."""
    if numbers is None:
        return []
    return [
        Alert(
            "group_accuracy_drop",
            index,
            f"accuracy of {column} = {r['group']} is {r['accuracy']:.3f} (95% interval "
            f"{r['low']:.3f}-{r['high']:.3f}) on {r['n_labelled']} labelled instances, below "
            f"its audited {r['audited_accuracy']:.3f} (test, "
            f"n={r['n_test']}) - {s.accuracy_drop:g} (one-sided exact binomial test p = "
            f"{r['p_value']:.2g} < {r['level']:.2g}: alpha {s.alpha:g} over the groups tested)",
            r["accuracy"],
            r["floor"],
        )
        for column, c in numbers.items()
        for r in c["groups"]
        if r["dropped"]
    ]


def groups_section(
    watch: GroupWatch | None, numbers: dict[str, Any] | None, n_served: int
) -> dict[str, Any] | None:
    """report.json's `groups`: the whole watch's numbers, how they were made, what is not
    tracked (a column no stored instance carries); None when no groups are named."""
    if watch is None:
        return None
    notes = list(watch.notes)
    for column, c in (numbers or {}).items():
        if n_served and c["absent"] == n_served:
            notes.append(
                f"{column!r} is in none of the {n_served} stored instances: the model does not "
                "read it, so the requests do not need it; to track it, clients send it with "
                "each instance (the server keeps it in the stored body, ignored by the model)"
            )
    return {
        "columns": watch.columns,
        "audited": watch.sources,
        "interval": INTERVAL,
        "test": TEST,
        "groups": numbers or {},
        "notes": notes,
    }


def groups_line(section: dict[str, Any] | None) -> str | None:
    """One line for people: "groups: sex: Female 91% (n=120), Male 80% (n=230)" (n: the
    labelled instances); None when no groups are named."""
    if section is None:
        return None
    parts = []
    for column, c in section["groups"].items():
        shown = [
            f"{r['group']} {r['accuracy']:.0%} (n={r['n_labelled']})"
            for r in c["groups"]
            if r["n_labelled"]
        ]
        parts.append(f"{column}: {', '.join(shown) or 'no labels yet'}")
    parts += section["notes"]
    return "groups: " + ("; ".join(parts) or "none tracked")
