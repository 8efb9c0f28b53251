"""The fairness check: the model's numbers for each group a user names (`audit.fairness.groups:
[sex, race]`), the gaps between groups with bootstrap intervals, a verdict against the user's
thresholds, and group thresholds that would narrow the gaps, written as a variant run, never
applied to the run.

The group column is read from the test split's raw rows (`Run.split("test").raw`: every column
of the source table, including those `data.drop` keeps out of the model's inputs). A number
column with more than 10 values is cut into quartiles of its test values. Several columns are
compared one at a time, then by their intersection (sex & race).

    classification  per group: accuracy, selection rate (predicted `positive`: the second class
                    of two, the rarest of several, one against the rest), true- and
                    false-positive rates, ECE of the run's calibrated probabilities and the
                    conformal coverage (once the uncertainty check has stored its quantile);
                    between groups: the accuracy gap, demographic-parity, equal-opportunity
                    and equalised-odds differences and ratios, as `fairlearn.metrics` defines
                    them; graded by the accuracy gap, parity and odds differences
    regression      per group: MAE and RMSE in the target's units, and their gaps; graded by
                    the relative MAE gap (largest minus smallest group MAE over the MAE of all
                    test rows)

The measures live in `fairness_measures`; the group thresholds (binary classifiers, `audit.
fairness.mitigation`), and the variant RUN/artifacts/fair-<constraint>/ that holds them, in
`fairness_mitigation`. Run on such a variant, the check measures the variant's own decisions.
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from gradwise.auditing.base import (
    AuditContext,
    CheckResult,
    NotApplicable,
    task_name,
)
from gradwise.auditing.fairness_measures import (
    CORRECT,
    MAX_CATEGORIES,
    Finding,
    Graded,
    Grouping,
    Measured,
    classification_columns,
    classification_measures,
    disparities,
    findings,
    graded_measures,
    groupings,
    measure,
    regression_columns,
    regression_gaps,
    regression_measures,
)
from gradwise.auditing.fairness_mitigation import mitigate, mitigation_sentence
from gradwise.errors import ConfigError

if TYPE_CHECKING:
    from gradwise.config import FairnessAudit
    from gradwise.run import Run, SplitView

PLOT = "fairness.png"

# ---------------------------------------------------------------- the check


def check(run: Run, settings: FairnessAudit, ctx: AuditContext) -> CheckResult:
    """Per-group numbers on the test split, the gaps between groups, a verdict against the
    thresholds, and (binary classifiers) group thresholds proposed to narrow the gaps.

    Raises:
        NotApplicable: no groups are named, the run neither classifies nor regresses, or its
            data have no columns.
        ConfigError: a group or `positive` names no column or class.
    """
    from gradwise.config import DiffusionConfig

    if not settings.groups:
        raise NotApplicable(
            "no groups to compare: name the groups with audit.fairness.groups: [column, ...] "
            "(e.g. --set 'audit.fairness.groups=[sex]'), kept among the model's inputs or not."
        )
    task = run.schema.task
    if isinstance(run.config.model, DiffusionConfig):
        raise NotApplicable("a diffusion model generates images; it answers no one.")
    if task not in ("classification", "regression"):
        raise NotApplicable(
            "fairness compares a classifier's or a regression's answers between groups; this "
            f"run is {task_name(task)}."
        )
    test = run.split("test")
    found = groupings(test.raw, settings.groups, run.config.data.source)
    labels = [g.labels(test.raw) for g in found]
    rng = np.random.default_rng(ctx.seed)
    if task == "regression":
        return _regression(run, settings, ctx, test, found, labels, rng)
    return _classifier(run, settings, ctx, test, found, labels, rng)


def positive_class(run: Run, settings: FairnessAudit) -> int:
    """The index of the class counted as selected: `settings.positive`, else the second of
    two classes, else the rarest in the training split.

    Raises:
        ConfigError: `positive` is not one of the classes.
    """
    classes = [str(c) for c in run.schema.classes or []]
    if settings.positive is not None:
        if settings.positive not in classes:
            raise ConfigError(
                f"audit.fairness.positive is {settings.positive!r}, not a class of "
                f"{run.schema.target.name or 'the target'}; the classes are {', '.join(classes)}."
            )
        return classes.index(settings.positive)
    if len(classes) == 2:
        return 1
    return int(np.argmin(np.bincount(run.split("train").y.numpy(), minlength=len(classes))))


def _classifier(
    run: Run,
    settings: FairnessAudit,
    ctx: AuditContext,
    test: SplitView,
    found: list[Grouping],
    labels: list[np.ndarray],
    rng: np.random.Generator,
) -> CheckResult:
    from gradwise.run_conformal import class_probabilities, group_threshold_classes

    positive, t = positive_class(run, settings), run.calibration.temperature
    probs, y = class_probabilities(run, test.x, t), test.y.numpy()
    covered = _covered(run, test, y)
    n_bins = run.config.audit.calibration.bins
    own = run.calibration.group_thresholds  # a fairness variant: its decisions are measured
    selected = None if own is None else group_threshold_classes(run, test.raw) == positive

    def measures(sums: np.ndarray) -> dict[str, np.ndarray]:
        m = classification_measures(sums, n_bins)
        return m if covered is not None else {k: v for k, v in m.items() if k != "coverage"}

    columns = classification_columns(y, probs, positive, covered, n_bins, selected)
    measured = [
        measure(columns, lab, g.name, measures, disparities, settings, rng)
        for g, lab in zip(found, labels, strict=True)
    ]
    singles = len(dict.fromkeys(settings.groups))  # the intersection, if any, comes last
    graded = graded_measures(settings, "classification")
    graded_findings = [f for m in measured[:singles] for f in findings(m, graded)]
    worst = min(graded_findings, key=Finding.severity, default=None)  # the verdict's
    pos_name = str((run.schema.classes or [])[positive])
    mitigation = _mitigation(
        run, settings, test, list(zip(found, labels, measured))[:singles], probs, positive, worst
    )
    sentences = [_class_sentence(m, pos_name, settings) for m in measured[:singles]]
    sentences += [_intersection_sentence(m) for m in measured[singles:]]
    sentences += [_verdict_sentence(graded_findings, worst, graded)]
    summary = " ".join(s for s in sentences if s) + _ungraded_sentence(measured, settings)
    if own is not None:
        summary += (
            f" Decisions: this run's group thresholds by {own['column']} "
            f"({own['constraint']}, fitted {own['fitted_at']}), not the argmax."
        )
    _plot(ctx.out / PLOT, measured, f"selected: predicted {pos_name}")
    return CheckResult(
        check="fairness",
        verdict=worst.verdict if worst else "n/a",
        headline=f"{worst.name} {worst.value:.2f} ({worst.grouping})"
        if worst
        else f"fewer than 2 groups of {settings.min_group}+ test rows",
        summary=summary + mitigation_sentence(mitigation, run),
        metrics={
            "groupings": [m.to_dict() for m in measured],
            "graded": [dataclasses.asdict(f) for f in graded_findings],
            "positive": pos_name,
            "accuracy": float(columns[:, CORRECT].mean()),
            "n_test": len(y),
            "temperature": t,
            "decisions": "argmax" if own is None else "the run's group thresholds",
            "mitigation": mitigation,
        },
        settings=_stated(
            settings,
            positive=pos_name,
            ece=f"{n_bins} equal-width bins (audit.calibration.bins) of the "
            + ("probabilities at the run's temperature" if t else "uncalibrated probabilities"),
            coverage="the label is in the row's conformal set (the stored quantile)"
            if covered is not None
            else "not measured: no conformal quantile is stored (run the uncertainty check)",
            differences="demographic parity: largest minus smallest selection rate; equal "
            "opportunity: the TPR difference; equalised odds: the larger of the TPR and FPR "
            "differences; ratios: smallest over largest (fairlearn.metrics), over the groups "
            "of at least min_group test rows",
        ),
        plots=(PLOT,),
    )


def _mitigation(
    run: Run,
    settings: FairnessAudit,
    test: SplitView,
    singles: list[tuple[Grouping, np.ndarray, Measured]],
    probs: np.ndarray,
    positive: int,
    worst: Finding | None,
) -> dict[str, Any]:
    """Group thresholds for binary classifiers (see `fairness_mitigation.mitigate`); the
    variant is written for the grouping the verdict names."""
    constraint = settings.mitigation
    if len(run.schema.classes or []) != 2 or worst is None:
        return {}
    if constraint == "off":
        return {"off": "audit.fairness.mitigation is off: no group thresholds fitted"}
    if run.calibration.group_thresholds is not None:
        return {"skipped": "this run decides by group thresholds already (a fairness variant)"}
    return mitigate(
        run, test, singles, probs, positive, constraint, settings.min_group, worst.grouping
    )


def _covered(run: Run, test: SplitView, y: np.ndarray) -> np.ndarray | None:
    """(N,) the label is in the row's conformal set, or None when no quantile is stored."""
    from gradwise.run_conformal import prediction_sets

    conformal = run.calibration.conformal
    if not conformal or conformal.get("task") != "classification":
        return None
    return np.asarray(prediction_sets(run, test.x)[np.arange(len(y)), y], dtype=bool)


def _regression(
    run: Run,
    settings: FairnessAudit,
    ctx: AuditContext,
    test: SplitView,
    found: list[Grouping],
    labels: list[np.ndarray],
    rng: np.random.Generator,
) -> CheckResult:
    from gradwise.auditing.conformal import target_values
    from gradwise.run_conformal import regression_outputs

    columns = regression_columns(regression_outputs(run, test.x), target_values(run, test.y))
    mae = float(columns[:, 1].mean())
    gaps = partial(regression_gaps, overall_mae=mae)
    measured = [
        measure(columns, lab, g.name, regression_measures, gaps, settings, rng)
        for g, lab in zip(found, labels, strict=True)
    ]
    singles = len(dict.fromkeys(settings.groups))  # the intersection, if any, comes last
    graded = graded_measures(settings, "regression")
    graded_findings = [f for m in measured[:singles] for f in findings(m, graded)]
    worst = min(graded_findings, key=Finding.severity, default=None)  # the verdict's
    sentences = [_regression_sentence(m, settings, mae) for m in measured]
    sentences += [_verdict_sentence(graded_findings, worst, graded)]
    _plot(ctx.out / PLOT, measured, "errors in the target's units")
    return CheckResult(
        check="fairness",
        verdict=worst.verdict if worst else "n/a",
        headline=f"{worst.name} {worst.value:.2f} ({worst.grouping})"
        if worst
        else f"fewer than 2 groups of {settings.min_group}+ test rows",
        summary=" ".join(s for s in sentences if s) + _ungraded_sentence(measured, settings),
        metrics={
            "groupings": [m.to_dict() for m in measured],
            "graded": [dataclasses.asdict(f) for f in graded_findings],
            "mae": mae,
            "n_test": len(columns),
        },
        settings=_stated(
            settings,
            units="MAE and RMSE in the target's units",
            relative_mae_gap="largest minus smallest group MAE over the MAE of all test rows "
            "(its interval: the gap's, over that same MAE), over the groups of at least "
            "min_group test rows",
        ),
        plots=(PLOT,),
    )


def _stated(settings: FairnessAudit, **extra: Any) -> dict[str, Any]:
    return {
        **settings.model_dump(mode="json"),
        "reported_on": "test",
        "groups_from": "the test split's raw rows (every column of the source table)",
        "number_columns": f"quartiles of the test values when more than {MAX_CATEGORIES} "
        "distinct values",
        "intersection": "with several columns, their intersection too, measured, not graded: "
        "its many small groups widen the largest gap by chance",
        "intervals": f"95% percentile bootstrap, {settings.bootstrap} resamples of the test "
        "rows within each group (group sizes held), seeded with the run's seed; ECE and the "
        "largest-minus-smallest gaps are biased upward on resamples, so their interval can "
        "sit above the value",
        **extra,
    }


# ---------------------------------------------------------------- verdict and sentences


def _verdict_sentence(found: list[Finding], worst: Finding | None, graded: Graded) -> str:
    if worst is None:
        return ""
    if worst.verdict == "pass":
        warns = ", ".join(f"{name} {warn:g}" for name, _, warn, _ in graded.values())
        return f"Every graded difference is under its warn threshold ({warns})."
    more = sum(f.verdict != "pass" for f in found) - 1
    return (
        f"{worst.verdict.capitalize()}: the {worst.name} by {worst.grouping}, "
        f"{worst.value:.3f}, is at or above audit.fairness.{worst.setting} ({worst.threshold:g})"
        + (f"; {more} more past a threshold (fairness.json: graded)." if more else ".")
    )


def _too_few(m: Measured, settings: FairnessAudit) -> str:
    return (
        f"By {m.grouping}: fewer than 2 groups hold {settings.min_group} test rows "
        "(audit.fairness.min_group); not compared."
    )


def _class_sentence(m: Measured, positive: str, settings: FairnessAudit) -> str:
    if not m.between:
        return _too_few(m, settings)
    g, b = m.graded, m.between
    return (
        f"By {m.grouping} ({_sizes(g)}): accuracy {_spread(g, 'accuracy', '.1%')} "
        f"(gap {_interval(b['accuracy_gap'])}); selected as {positive} "
        f"{_spread(g, 'selection_rate', '.0%')} (demographic-parity difference "
        f"{_interval(b['demographic_parity_difference'])}); true-positive rate "
        f"{_spread(g, 'true_positive_rate', '.0%')}, false-positive rate "
        f"{_spread(g, 'false_positive_rate', '.0%')} (equalised-odds difference "
        f"{_interval(b['equalized_odds_difference'])})."
    )


def _intersection_sentence(m: Measured) -> str:
    if not m.between:
        return ""
    return (
        f"By {m.grouping} ({_sizes(m.graded)}; measured, not graded): accuracy "
        f"{_spread(m.graded, 'accuracy', '.1%')} (gap {_interval(m.between['accuracy_gap'])})."
    )


def _regression_sentence(m: Measured, settings: FairnessAudit, mae: float) -> str:
    if not m.between:
        return _too_few(m, settings)
    g, b = m.graded, m.between
    return (
        f"By {m.grouping} ({_sizes(g)}): mean absolute error {_spread(g, 'mae', '.4g')} "
        f"(gap {_interval(b['mae_gap'], '.3g')}; {_interval(b['relative_mae_gap'])} of the "
        f"MAE of all test rows, {mae:.4g}), RMSE {_spread(g, 'rmse', '.4g')} "
        f"(gap {_interval(b['rmse_gap'], '.3g')})."
    )


def _sizes(groups: list[dict[str, Any]]) -> str:
    if len(groups) <= 3:
        return "test rows: " + ", ".join(f"{g['group']} n={g['n']:,}" for g in groups)
    sizes = [g["n"] for g in groups]
    return f"{len(groups)} groups of {min(sizes):,} to {max(sizes):,} test rows"


def _spread(groups: list[dict[str, Any]], key: str, fmt: str) -> str:
    """`a vs b` for two groups, else `from low (group) to high (group)`."""
    values = [g[key]["value"] for g in groups]
    if len(groups) == 2:
        return f"{values[0]:{fmt}} vs {values[1]:{fmt}}"
    lo, hi = int(np.argmin(values)), int(np.argmax(values))
    return (
        f"from {values[lo]:{fmt}} ({groups[lo]['group']}) to {values[hi]:{fmt}} "
        f"({groups[hi]['group']})"
    )


def _interval(d: dict[str, Any], fmt: str = ".2f") -> str:
    lo, hi = d["low"], d["high"]
    if lo is None:
        return f"{d['value']:{fmt}}"
    return f"{d['value']:{fmt}}, 95% interval {lo:{fmt}}-{hi:{fmt}}"


def _ungraded_sentence(measured: list[Measured], settings: FairnessAudit) -> str:
    small = [
        f"{m.grouping}: {g['group']} (n={g['n']})"
        for m in measured
        for g in m.groups
        if not g["graded"]
    ]
    if not small:
        return ""
    more = f" and {len(small) - 6} more" if len(small) > 6 else ""
    return (
        f" Listed, not compared (under {settings.min_group} test rows): "
        f"{', '.join(small[:6])}{more}."
    )


# ---------------------------------------------------------------- the plot


def _plot(path: Any, measured: list[Measured], note: str) -> None:
    """Per grouping, each measure of each group with its interval (hollow: not compared)."""
    from gradwise.artifacts import new_figure, write_png

    fig = new_figure(8.0, 2.6 * len(measured) + 0.4)
    for ax, m in zip(fig.subplots(len(measured), 1, squeeze=False)[:, 0], measured, strict=True):
        groups = sorted(m.groups, key=lambda g: -g["n"])[:12]
        keys = [k for k, v in groups[0].items() if isinstance(v, dict)]
        width = 0.8 / len(groups)
        for i, g in enumerate(groups):
            x = np.arange(len(keys)) - 0.4 + width * (i + 0.5)
            v, lo, hi = (
                np.array([np.nan if g[k][f] is None else g[k][f] for k in keys], dtype=float)
                for f in ("value", "low", "high")
            )
            (dot,) = ax.plot(x, v, "o", markersize=4, label=f"{g['group']} (n={g['n']:,})")
            ax.vlines(x, lo, hi, color=dot.get_color(), linewidth=1)
            if not g["graded"]:
                dot.set_markerfacecolor("white")
        ax.set_xticks(np.arange(len(keys)), [SHORT.get(k, k) for k in keys], fontsize=8)
        ax.set_title(f"by {m.grouping}: 95% intervals; {note}", fontsize=9)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), framealpha=0.9)
    write_png(path, fig)


SHORT = {
    "selection_rate": "selected",
    "true_positive_rate": "TPR",
    "false_positive_rate": "FPR",
    "ece": "ECE",
    "mae": "MAE",
    "rmse": "RMSE",
}
