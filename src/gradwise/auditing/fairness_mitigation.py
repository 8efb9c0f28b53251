"""Group thresholds that would narrow the fairness check's gaps (binary classifiers), fitted on
the validation split, measured on test, and written as a variant run, never applied to the run.

One threshold per group on the calibrated probability of `positive`, fitted as fairlearn's
`ThresholdOptimizer` does (the common selection rate, or true-positive rate, that maximises
validation accuracy), but deterministic: `ThresholdOptimizer` mixes two thresholds at random
to hit a rate exactly, and a served model should answer the same input the same way.
Equalised odds needs that randomisation, so the constraints offered (`audit.fairness.
mitigation`) are demographic parity and true-positive-rate parity (equal opportunity).

The thresholds for the grouping the verdict names are written as RUN/artifacts/fair-
<constraint>/, a run directory like `gradwise optimize`'s variants (same weights and engine,
config, splits) whose model.json calibration slot holds `group_thresholds`: `gradwise.load`
of it gives a Run whose `predict` decides by them (see `run_conformal.group_threshold_classes`)
and whose probabilities are the run's. Its test numbers are measured through that loaded
variant; the base run is left as it was.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from gradwise.artifacts import atomic_write_bytes, read_json, write_json
from gradwise.auditing.fairness_measures import (
    CORRECT,
    Grouping,
    Measured,
    classification_columns,
    classification_measures,
    disparities,
    group_sums,
    plain,
)
from gradwise.data.dataset import SPLITS_FILE
from gradwise.engines.loader import MODEL_FILES
from gradwise.run import Run
from gradwise.run_conformal import (
    apply_group_thresholds,
    class_probabilities,
    group_threshold_classes,
)
from gradwise.run_files import ENCODER_FOLDER

if TYPE_CHECKING:
    from gradwise.run import SplitView

RATE_GRID = 201  # common rates tried by the mitigation, 0 to 1
ARTIFACTS = "artifacts"  # RUN/artifacts/, where variants live (as gradwise.deploy writes them)
Constraint = Literal["demographic_parity", "true_positive_rate_parity"]
RATE_GAP = {  # the between-group difference each constraint narrows, and its name
    "demographic_parity": ("demographic_parity_difference", "demographic-parity difference"),
    "true_positive_rate_parity": ("equal_opportunity_difference", "true-positive-rate difference"),
}
DECISIONS = (
    "val and test above: the model's own metrics (argmax, the run's weights); variant.test: "
    "the decisions under the group thresholds, measured through this variant"
)


def fit_group_thresholds(
    scores: np.ndarray, positive: np.ndarray, labels: np.ndarray, constraint: Constraint
) -> tuple[dict[str, float], float]:
    """One threshold per group (select where score >= threshold) giving every group the same
    selection rate (demographic parity) or true-positive rate (TPR parity), at the common
    rate, of RATE_GRID from 0 to 1, that maximises accuracy on these rows.

    Args:
        scores: (N,) probability of the positive class; positive: (N,) the label is it.
        labels: (N,) each row's group.

    Returns:
        (threshold per group, the common rate chosen).
    """
    grid = np.linspace(0.0, 1.0, RATE_GRID)
    correct = np.zeros(RATE_GRID)
    picks = {}
    for g in sorted(set(labels.tolist())):
        order = np.argsort(-scores[labels == g], kind="stable")
        s, a = scores[labels == g][order], positive[labels == g][order]
        hits = np.concatenate([[0], np.cumsum(a)])  # positives among the top k, k = 0..n
        n, p = len(s), int(hits[-1])
        if constraint == "demographic_parity":
            k = np.rint(grid * n).astype(np.int64)
        else:  # the fewest top rows whose positives reach the rate
            k = np.searchsorted(hits, np.ceil(grid * p - 1e-9), side="left")
        correct += hits[k] + (n - p) - (k - hits[k])
        picks[g] = (s, k)
    best = int(np.argmax(correct))
    return {g: _threshold(s, int(k[best])) for g, (s, k) in picks.items()}, float(grid[best])


def _threshold(desc: np.ndarray, k: int) -> float:
    """A threshold that selects the top k of scores sorted high to low."""
    if k == 0:
        return float(np.nextafter(desc[0], np.inf))
    if k == len(desc):
        return float(desc[-1])
    return float((desc[k - 1] + desc[k]) / 2)


def mitigate(
    run: Run,
    test: SplitView,
    singles: list[tuple[Grouping, np.ndarray, Measured]],
    probs: np.ndarray,
    positive: int,
    constraint: Constraint,
    min_group: int,
    variant_grouping: str,
) -> dict[str, Any]:
    """Group thresholds for `constraint`, fitted on the validation split for each
    single-column grouping (given with its test labels and measures), with the test numbers
    under them beside the original's; those of `variant_grouping` are written as a variant
    run and measured through it.

    Args:
        probs: (N, 2) the test split's probabilities at the run's temperature.
    """
    t = run.calibration.temperature
    val = run.split("val")
    p_val = class_probabilities(run, val.x, t)[:, positive]
    on_test = OnTest(test.y.numpy(), probs, positive, run.config.audit.calibration.bins)
    argmax, overall = probs.argmax(axis=1) == positive, on_test.overall
    proposals, written = [], None
    for g, labels, m in singles:
        if not m.between:
            continue
        stored = _fit(run, g, val, p_val, positive, constraint, min_group)
        graded = [x["group"] for x in m.graded]
        if g.name == variant_grouping:
            name = f"fair-{constraint}"
            measure = partial(
                _through_variant, on_test=on_test, raw=test.raw, labels=labels, graded=graded
            )
            after = write_variant(run, name, stored, measure)
            written = {"name": name, "path": f"{ARTIFACTS}/{name}", "grouping": g.name}
        else:
            selected = apply_group_thresholds(
                probs[:, positive], labels, stored["thresholds"], argmax
            )
            after = on_test.measure(selected, labels, graded)
        proposals.append(
            {
                "grouping": g.name,
                **{k: stored[k] for k in ("constraint", "common_rate", "thresholds", "n_val")},
                "test": after,
                "original": {
                    "accuracy": overall["accuracy"],
                    **{k: v["value"] for k, v in m.between.items()},
                },
            }
        )
    return {
        "proposals": proposals,
        "variant": written,
        "score": f"probability of class {(run.schema.classes or [])[positive]!r} "
        + (f"at temperature {t:g}" if t else "(no temperature stored)"),
        "temperature": t,
        "rule": "select (predict the positive class) where score >= the row's group's threshold",
        "fitted_on": "val",
        "reported_on": "test",
        "ece": overall["ece"],
        "unchanged": "ECE and conformal coverage: thresholds change the decision, not the "
        "probabilities or the sets",
        "applied": False,
    }


def _fit(
    run: Run,
    grouping: Grouping,
    val: SplitView,
    p_val: np.ndarray,
    positive: int,
    constraint: Constraint,
    min_group: int,
) -> dict[str, Any]:
    """The thresholds of one single-column grouping, as a variant's model.json stores them.
    Groups with fewer than `min_group` validation rows get none: they keep the argmax."""
    labels = grouping.labels(val.raw)
    names, counts = np.unique(labels, return_counts=True)
    fit = np.isin(labels, names[counts >= min_group])
    is_positive = val.y.numpy() == positive
    thresholds, rate = fit_group_thresholds(p_val[fit], is_positive[fit], labels[fit], constraint)
    edges = grouping.edges[0]
    return {
        "column": grouping.columns[0],
        "edges": None if edges is None else edges.tolist(),
        "thresholds": thresholds,
        "fallback": "argmax: a group with no threshold (unseen, or under "
        f"{min_group} validation rows) gets the model's own decision",
        "positive": positive,
        "positive_class": str((run.schema.classes or [])[positive]),
        "temperature": run.calibration.temperature,
        "constraint": constraint,
        "common_rate": rate,
        "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "n_val": {k: int((labels == k).sum()) for k in thresholds},
    }


@dataclass(frozen=True)
class OnTest:
    """The test split's labels and probabilities, on which decisions are measured."""

    y: np.ndarray
    probs: np.ndarray
    positive: int
    n_bins: int

    @property
    def overall(self) -> dict[str, float]:
        """The argmax decisions' accuracy, and the ECE (which no threshold changes)."""
        cols = classification_columns(self.y, self.probs, self.positive, None, self.n_bins)
        m = classification_measures(cols.sum(axis=0), self.n_bins)
        return {"accuracy": float(m["accuracy"]), "ece": float(m["ece"])}

    def measure(
        self, selected: np.ndarray, labels: np.ndarray, graded: list[str]
    ) -> dict[str, Any]:
        """Accuracy, the between-group numbers and the per-group rates of the decisions
        `selected` (N,) (predicted positive), over the `graded` groups of `labels`."""
        cols = classification_columns(
            self.y, self.probs, self.positive, None, self.n_bins, selected
        )
        after = classification_measures(group_sums(cols, labels, graded), self.n_bins)
        keys = ("accuracy", "selection_rate", "true_positive_rate", "false_positive_rate")
        return {
            "accuracy": float(cols[:, CORRECT].mean()),
            **{k: plain(v) for k, v in disparities(after).items()},
            "groups": {g: {k: float(after[k][i]) for k in keys} for i, g in enumerate(graded)},
        }


def _through_variant(
    variant: Run, on_test: OnTest, raw: Any, labels: np.ndarray, graded: list[str]
) -> dict[str, Any]:
    """The test numbers of the variant's own `predict` on the test split's raw rows."""
    return on_test.measure(
        group_threshold_classes(variant, raw) == on_test.positive, labels, graded
    )


def write_variant(
    run: Run, name: str, group_thresholds: dict[str, Any], measure: Callable[[Run], dict[str, Any]]
) -> dict[str, Any]:
    """Write RUN/artifacts/<name>/: the run's model file(s), config and splits, its model.json
    with `group_thresholds` in the calibration slot (the selective threshold left out: it
    certified the argmax's errors), and metrics.json with `measure` of the loaded variant
    (its test numbers); a variant of the same name is replaced.

    Returns:
        What `measure` gave.
    """
    folder = run.path / ARTIFACTS / name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    try:
        files = MODEL_FILES[run.backend["name"]] if run.backend else ["model.safetensors"]
        for file in [*files, "config.yaml", SPLITS_FILE]:
            if (run.path / file).is_file():
                atomic_write_bytes(folder / file, (run.path / file).read_bytes())
        if (run.path / ENCODER_FOLDER).is_dir():
            shutil.copytree(run.path / ENCODER_FOLDER, folder / ENCODER_FOLDER)
        meta = read_json(run.path / "model.json")
        calibration = {**asdict(run.calibration), "selective": None}
        meta["calibration"] = {**calibration, "group_thresholds": group_thresholds}
        write_json(folder / "model.json", meta)
        after = measure(Run.load(folder))
        summary = run.metrics
        summary["variant"] = {
            "name": name,
            "lever": "group thresholds (the fairness check)",
            "source": str(run.path),
            "group_thresholds": group_thresholds,
            "test": after,
            "decisions": DECISIONS,
        }
        write_json(folder / "metrics.json", summary)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # no half-made variant for bench or serve
        raise
    return after


def mitigation_sentence(mitigation: dict[str, Any], run: Run) -> str:
    """Where the variant was written and what its thresholds do on test, beside the run."""
    written = mitigation.get("variant")
    if not written:
        return ""
    p = next(p for p in mitigation["proposals"] if p["grouping"] == written["grouping"])
    key, name = RATE_GAP[p["constraint"]]
    before, after = p["original"][key], p["test"][key]
    rate = "selection" if p["constraint"] == "demographic_parity" else "true-positive"
    return (
        f" A variant with group thresholds by {p['grouping']} ({run.path / written['path']}; "
        f"equal {rate} rates, fitted on validation) "
        f"{'narrows' if after < before else 'changes'} the {name} on test from {before:.2f} "
        f"to {after:.2f} at accuracy {p['test']['accuracy']:.3f} vs "
        f"{p['original']['accuracy']:.3f} — not applied to this run."
    )
