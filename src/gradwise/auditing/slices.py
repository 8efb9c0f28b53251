"""The slices check: groups of held-out rows where the model errs more than elsewhere, each
found on one half of the held-out rows and confirmed on the other, with the false-discovery
rate of the search controlled (the procedure is in `auditing/slice_candidates.py`, the
conditions in `auditing/slice_conditions.py`, the words in `auditing/slice_words.py`).

    tables                  candidates from the source's columns: each category value,
                            ranges of numbers between quantile edges, missing values, and
                            pairs of them; a slice reads as a rule ("marital_status =
                            Separated and hours_per_week <= 35")
    images, text, sequences k-means clusters of the run's own embeddings; a slice is
                            described by its most typical rows, the labels, words or values
                            over-represented in it, and its row numbers

Held-out rows are the validation and test splits (the model never trained on them). Each
reported slice also gets, on its test rows in the confirmation half (the temperature and the
conformal quantile were fitted on validation), its conformal coverage and calibration error;
so does each class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from gradwise.auditing.base import AuditContext, CheckResult, NotApplicable, grade, task_name
from gradwise.auditing.calibration import expected_calibration_error
from gradwise.auditing.conformal import target_values
from gradwise.auditing.slice_candidates import SliceSearch, halves, redundant, search, tested_list
from gradwise.auditing.slice_conditions import (
    Conditions,
    cluster_conditions,
    column_conditions,
    distinct_inputs,
    over_represented_labels,
    over_represented_words,
)
from gradwise.auditing.slice_words import headline, stated, summary
from gradwise.run_conformal import (
    class_probabilities,
    prediction_intervals,
    prediction_sets,
    regression_outputs,
)

if TYPE_CHECKING:
    from gradwise.audit_config import SlicesAudit
    from gradwise.run import Run

PLOT = "slices.png"
MAX_ROWS = 1000  # row numbers listed per reported slice
N_TYPICAL = 5  # most typical rows named per cluster


@dataclass(frozen=True)
class HeldOut:
    """The validation rows then the test rows, with the model's error on each.

    Attributes:
        raw: the rows as read (a DataFrame, or an array of images or windows).
        x: model-ready inputs; y: (N,) encoded labels or (N, m) standardised targets.
        rows: (N,) source row numbers; is_test: (N,) True for test-split rows.
        errors: (N,) 0/1 (classification: top class wrong) or |y - prediction| in the
            target's units, averaged over outputs (regression).
        probs: (N, K) calibrated class probabilities (classification), else None.
        covered: (N,) share of outputs inside the stored conformal set or interval; None
            where the run has none stored.
    """

    raw: Any
    x: torch.Tensor
    y: torch.Tensor
    rows: np.ndarray
    is_test: np.ndarray
    errors: np.ndarray
    probs: np.ndarray | None
    covered: np.ndarray | None

    def __len__(self) -> int:
        return len(self.rows)


def check(run: Run, settings: SlicesAudit, ctx: AuditContext) -> CheckResult:
    """Find, confirm and describe the held-out slices where the model errs most.

    Raises:
        NotApplicable: the run neither classifies nor regresses, or no candidate slice holds
            `min_size` rows in each half of the held-out rows.
    """
    from gradwise.config import DiffusionConfig

    if isinstance(run.config.model, DiffusionConfig):
        raise NotApplicable("a diffusion model generates images; it has no per-row error.")
    if run.schema.task not in ("classification", "regression"):
        raise NotApplicable(
            "slices compare the per-row errors of a classifier or a regression; this run is "
            f"{task_name(run.schema.task)}."
        )
    held = held_out(run)
    binary = run.schema.task == "classification"
    strata = held.y.numpy() if binary else None
    in_discovery = halves(len(held), strata, ctx.seed)
    distance = None  # clusters: each row's distance to its cluster's centre
    if run.schema.kind == "tabular":
        frame = _frame(run, held.raw)
        conds = column_conditions(frame, _kinds(run, frame), settings.bins, settings.min_size)
    else:
        emb = run.embed(held.x).double().numpy()
        conds, distance = cluster_conditions(emb, settings.clusters, ctx.seed)
    found = search(conds, held.errors, in_discovery, settings, binary)
    if len(found.candidates) == 0:
        raise NotApplicable(
            f"no candidate slice holds {settings.min_size} rows in each half of the "
            f"{len(held):,} held-out rows (and {settings.min_size} outside it); lower "
            "audit.slices.min_size or hold out more rows (data.split.val, data.split.test)."
        )
    slices = _reported(run, held, conds, found, settings, ctx.seed, distance)
    weak = [s for s in slices if "redundant_with" not in s]
    listed = weak[: settings.max_listed]
    plots = (PLOT,) if listed else ()
    if listed:
        _plot(ctx.out / PLOT, listed, settings, binary)
    verdict = (
        grade(listed[0]["graded_gap"], settings.gap_warn, settings.gap_fail) if listed else "pass"
    )
    return CheckResult(
        check="slices",
        verdict=verdict,
        headline=headline(listed, len(weak), binary, len(found.candidates)),
        summary=summary(listed, len(weak), found, len(held), settings, binary),
        metrics={
            "n_heldout": len(held),
            "n_discovery": int(in_discovery.sum()),
            "n_confirmation": int((~in_discovery).sum()),
            "confirmation_rows": np.sort(held.rows[~in_discovery]).tolist(),
            "error": float(held.errors.mean()),
            "n_conditions": len(conds),
            "n_candidates": len(found.candidates),
            "n_pairs_possible": found.candidates.n_pairs_possible,
            "n_discovered": len(found.discovered),
            "n_confirmed": len(found.confirmed),
            "n_weak": len(weak),
            "slices": slices,
            "listed": [s["rule"] for s in listed],
            "per_class": _per_class(run, held) if binary else {},
            "candidates": tested_list(conds, found),
        },
        settings=stated(run, settings, ctx.seed, binary, distance is not None, MAX_ROWS),
        plots=plots,
    )


# ---------------------------------------------------------------- the held-out rows


def held_out(run: Run) -> HeldOut:
    """The validation and test rows with the model's per-row error (see `HeldOut`)."""
    val, test = run.split("val"), run.split("test")
    if isinstance(val.raw, pd.DataFrame):
        raw: Any = pd.concat([val.raw, test.raw], ignore_index=True)
    else:
        raw = np.concatenate([np.asarray(val.raw), np.asarray(test.raw)])
    x, y = torch.cat([val.x, test.x]), torch.cat([val.y, test.y])
    is_test = np.r_[np.zeros(len(val), dtype=bool), np.ones(len(test), dtype=bool)]
    rows = np.concatenate([val.rows, test.rows])
    probs = None
    if run.schema.task == "classification":
        probs = class_probabilities(run, x, run.calibration.temperature)
        errors = (probs.argmax(axis=1) != y.numpy()).astype(np.float64)
    else:
        errors = np.abs(regression_outputs(run, x) - target_values(run, y)).mean(axis=1)
    return HeldOut(raw, x, y, rows, is_test, errors, probs, _covered(run, x, y))


def _covered(run: Run, x: torch.Tensor, y: torch.Tensor) -> np.ndarray | None:
    conformal = run.calibration.conformal
    if not conformal or conformal.get("task") != run.schema.task:
        return None
    if run.schema.task == "classification":
        sets = prediction_sets(run, x)
        return sets[np.arange(len(y)), y.numpy()].astype(np.float64)
    _, lower, upper = prediction_intervals(run, x)
    truth = target_values(run, y)
    inside = (truth >= lower.reshape(len(y), -1)) & (truth <= upper.reshape(len(y), -1))
    return inside.mean(axis=1)


def _frame(run: Run, raw: Any) -> pd.DataFrame:
    if isinstance(raw, pd.DataFrame):
        return raw
    names = run.schema.feature_names or [f"x{i}" for i in range(np.asarray(raw).shape[1])]
    return pd.DataFrame(np.asarray(raw), columns=names)


def _kinds(run: Run, frame: pd.DataFrame) -> dict[str, str]:
    """Every column of the source but the target: number or category, as the model read it
    (or, for columns it does not read, by their values); dates are left out."""
    tab = run.schema.tabular
    kinds: dict[str, str] = {}
    if tab is not None:
        kinds = {c: "number" for c in tab.numeric} | {c: "category" for c in tab.categorical}
    for col in frame.columns:
        if col in kinds or col == run.schema.target.name:
            continue
        dtype = frame[col].dtype
        if dtype.kind in "iufb":
            kinds[col] = "number"
        elif dtype.kind not in "Mm":
            kinds[col] = "category"
    return kinds


# ---------------------------------------------------------------- the reported slices


def _reported(
    run: Run,
    held: HeldOut,
    conds: Conditions,
    found: SliceSearch,
    settings: SlicesAudit,
    seed: int,
    distance: np.ndarray | None,
) -> list[dict[str, Any]]:
    """One entry per confirmed slice, worst first; one that a nested, better supported slice
    explains is marked `redundant_with` it (`slice_candidates.redundant`)."""
    cands, conf = found.candidates, found.confirmation
    binary = held.probs is not None
    out = []
    for pos in np.flatnonzero(conf.passed):
        i = int(found.discovered[pos])
        gap = float(conf.error[pos] - conf.rest_error[pos])
        entry: dict[str, Any] = {
            "rule": cands.rule(conds, i),
            "kind": cands.kind(conds, i),
            "n": int(conf.n[pos]),
            "error": float(conf.error[pos]),
            "rest_error": float(conf.rest_error[pos]),
            "gap": gap,
            "graded_gap": gap if binary else gap / max(float(conf.rest_error[pos]), 1e-12),
            "p": float(conf.p[pos]),
            "p_bh": float(conf.p_bh[pos]),
        }
        out.append((i, entry))
    out.sort(key=lambda pair: -pair[1]["graded_gap"])
    half = ~found.in_discovery
    masks = cands.masks(conds, np.array([i for i, _ in out], dtype=np.int64), half)
    p = np.array([e["p"] for _, e in out])
    for (_, entry), by in zip(out, redundant(masks, p, held.errors[half], settings.q, binary)):
        if by >= 0:
            entry["redundant_with"] = out[by][1]["rule"]
    listed = 0
    for i, entry in out:
        if "redundant_with" in entry or listed >= settings.max_listed:
            continue
        listed += 1
        mask = cands.masks(conds, np.array([i]), slice(None))[0]
        entry.update(_evidence(run, held, mask, found.in_discovery, settings, seed))
        if distance is not None:
            entry["about"] = _cluster_about(run, held, mask, distance)
    return [entry for _, entry in out]


def _evidence(
    run: Run,
    held: HeldOut,
    mask: np.ndarray,
    in_discovery: np.ndarray,
    settings: SlicesAudit,
    seed: int,
) -> dict[str, Any]:
    """The gap's bootstrap interval (confirmation half), the slice's held-out row numbers, and
    its error, coverage and calibration error on its test rows in the confirmation half."""
    from scipy import stats

    half = ~in_discovery
    inside, outside = held.errors[mask & half], held.errors[~mask & half]
    boot = stats.bootstrap(
        (inside, outside),
        lambda a, b, axis: a.mean(axis=axis) - b.mean(axis=axis),
        n_resamples=settings.bootstrap,
        method="percentile",
        batch=100,
        random_state=np.random.default_rng(seed),
    )
    rows = np.sort(held.rows[mask])
    test = mask & half & held.is_test
    return {
        "gap_interval": [float(boot.confidence_interval.low), float(boot.confidence_interval.high)],
        "n_heldout": int(mask.sum()),
        "rows": rows[:MAX_ROWS].tolist(),
        "test": _measures(run, held, test),
    }


def _measures(run: Run, held: HeldOut, rows: np.ndarray) -> dict[str, Any]:
    """n, error, conformal coverage (if stored) and ECE (classifiers) of `rows`."""
    n = int(rows.sum())
    out: dict[str, Any] = {"n": n}
    if n == 0:
        return out
    out["error"] = float(held.errors[rows].mean())
    if held.covered is not None:
        out["coverage"] = float(held.covered[rows].mean())
    if held.probs is not None:
        bins = run.config.audit.calibration.bins
        out["ece"] = expected_calibration_error(held.probs[rows], held.y.numpy()[rows], bins)
    return out


def _per_class(run: Run, held: HeldOut) -> dict[str, dict[str, Any]]:
    """Each class's n, error, coverage and ECE on the test split."""
    y = held.y.numpy()
    classes = run.schema.classes or []
    return {
        str(c): _measures(run, held, held.is_test & (y == k))
        for k, c in enumerate(classes)
        if (held.is_test & (y == k)).any()
    }


# ---------------------------------------------------------------- describing a cluster


def _cluster_about(
    run: Run, held: HeldOut, mask: np.ndarray, distance: np.ndarray
) -> dict[str, Any]:
    """What sets a cluster apart: its most typical rows, the labels and the words or input
    values over-represented in it (against all held-out rows), as numbers and in words."""
    members = np.flatnonzero(mask)
    typical = held.rows[members[np.argsort(distance[members])[:N_TYPICAL]]]
    about: dict[str, Any] = {"typical_rows": typical.tolist()}
    said = []
    if held.probs is not None:
        about["labels"] = over_represented_labels(held.y.numpy(), mask, run.schema.classes or [])
        said += [
            f"{lab['share']:.0%} {lab['label']} vs {lab['overall']:.0%} overall"
            for lab in about["labels"]
        ]
    if run.schema.text_column and isinstance(held.raw, pd.DataFrame):
        texts = held.raw[run.schema.text_column].astype(str).tolist()
        about["words"] = over_represented_words(texts, mask)
        if about["words"]:
            said.append("words " + ", ".join(w["word"] for w in about["words"]))
    elif not isinstance(held.raw, pd.DataFrame):
        raw = np.asarray(held.raw, dtype=np.float64)
        about["inputs"] = distinct_inputs(raw, mask, run.schema.feature_names)
        said += [
            f"{v['name']} {v['mean']:.3g} vs {v['overall']:.3g} overall" for v in about["inputs"]
        ]
    said.append("typical rows " + ", ".join(str(r) for r in typical))
    about["text"] = "; ".join(said)
    return about


# ---------------------------------------------------------------- the plot


def _plot(path: Any, listed: list[dict[str, Any]], settings: SlicesAudit, binary: bool) -> None:
    """Each listed slice's gap (confirmation half) with its 95% bootstrap interval; the
    classifier's gap_warn and gap_fail as lines."""
    from gradwise.artifacts import new_figure, write_png

    scale = 100.0 if binary else 1.0  # classifiers: percentage points
    fig = new_figure(9.0, 1.4 + 0.4 * len(listed))
    ax = fig.subplots()
    ys = np.arange(len(listed))[::-1]
    gaps = scale * np.array([s["gap"] for s in listed])
    lo = scale * np.array([s["gap_interval"][0] for s in listed])
    hi = scale * np.array([s["gap_interval"][1] for s in listed])
    ax.errorbar(gaps, ys, xerr=[gaps - lo, hi - gaps], fmt="o", color="tab:red", capsize=3)
    ax.axvline(0, color="black", linewidth=1)
    if binary:
        ax.axvline(scale * settings.gap_warn, color="tab:orange", linestyle="--", label="gap_warn")
        ax.axvline(scale * settings.gap_fail, color="tab:red", linestyle="--", label="gap_fail")
        ax.legend(fontsize=8, loc="lower right")
    fmt = (lambda v: f"{v:.0%}") if binary else (lambda v: f"{v:.3g}")
    labels = [
        f"{s['rule'][:60]} (n={s['n']}): {fmt(s['error'])} vs {fmt(s['rest_error'])}"
        for s in listed
    ]
    ax.set_yticks(ys, labels, fontsize=8)
    ax.set_ylim(-0.7, len(listed) - 0.3)
    unit = "points" if binary else "target's units"
    ax.set_xlabel(f"error in the slice minus the rest ({unit}), 95% bootstrap interval")
    ax.set_title("weak slices, measured on the confirmation half", fontsize=9)
    write_png(path, fig)
