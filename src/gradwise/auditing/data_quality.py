"""Data quality: are the labels and the data themselves the ceiling?

    gradwise audit RUN --checks data_quality

Measured on the run's own splits (`gradwise.auditing.quality_scans` holds the measurements):

- likely label errors: cleanlab's confident learning over out-of-fold probabilities that
  gradwise makes itself, retraining the run's config on `folds` folds of the training split
  (classification);
- exact duplicates (equal raw samples) and near duplicates (cosine of the model's centred
  embeddings at least `near_duplicate_cosine`) within the training split;
- leakage: validation and test samples that are exact or near copies of training samples,
  and windows (N, T, F) that share half their steps, in order, with a training window (no
  scan for a timeseries: source, split in time order by construction);
- class imbalance (largest / smallest class in training), constant and missing-heavy
  columns (tables, raw training rows), constant input features (arrays);
- outliers: IsolationForest on the training embeddings.

Every listing names samples by their row number: the 0-based position among the source's
samples (for a CSV file, the data row after the header), as `Run.split(...).rows` gives it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from gradwise.auditing.base import AuditContext, CheckResult, NotApplicable, Verdict, grade
from gradwise.auditing.head_retrain import TRADE, head_record, retrain_mode
from gradwise.auditing.quality_scans import (
    Pairs,
    duplicate_groups,
    fold_plan,
    head_out_of_fold_probabilities,
    label_issues,
    near_duplicate_pairs,
    out_of_fold_probabilities,
    outlier_scores,
    row_keys,
)
from gradwise.auditing.retrain_budget import FOLD_PLANS, FoldPlan
from gradwise.config import DataQualityAudit, DiffusionConfig
from gradwise.data.leakage import block_length, cross_split, window_blocks
from gradwise.run import Run, SplitView

_ORDER = {"pass": 0, "warn": 1, "fail": 2}
_USED = {  # settings key: labels key, what the out-of-fold retrains used
    "folds": "folds",
    "epochs": "epochs_per_fold",
    "retrain_used": "retrain_used",
    "head": "head",
    "trade": "trade",
    "retrains_on": "retrains_on",
}
_WEAK = 0.9  # out-of-fold accuracy below which the summary warns that flags are unreliable
_OVERLAPPING = "the windows of a series share all but one step with their neighbours"


def check(run: Run, settings: DataQualityAudit, ctx: AuditContext) -> CheckResult:
    """The data-quality check (see the module docstring)."""
    if isinstance(run.config.model, DiffusionConfig):
        raise NotApplicable("a diffusion model has no embeddings or labels to check")
    if run.schema.task == "lm":
        raise NotApplicable(
            "a language model's samples are overlapping windows of one text: duplicates and "
            "labels do not apply"
        )
    splits = {name: run.split(name) for name in ("train", "val", "test")}
    train = splits["train"]
    emb = {name: run.embed(s.x).numpy().astype(np.float64) for name, s in splits.items()}
    centre = emb["train"].mean(axis=0)
    emb = {name: e - centre for name, e in emb.items()}
    keys = {name: row_keys(_inputs(run, s)) for name, s in splits.items()}
    findings: list[tuple[Verdict, str]] = []
    metrics: dict[str, Any] = {"n_train": len(train), "row_numbers": "0-based source rows"}
    if run.schema.task == "classification":
        metrics["labels"], found = _labels(run, train, emb["train"], settings, ctx)
        findings.append(found)
        metrics["classes"], found = _imbalance(run, train, settings)
        findings.append(found)
    if run.schema.series is None:
        metrics["duplicates"], found = _duplicates(train, keys["train"], emb["train"], settings)
        findings.append(found)
        metrics["leakage"], found = _leakage(splits, keys, emb, settings)
        findings.append(found)
        if _are_windows(train):
            metrics["window_overlap"], found = _window_overlap(splits, settings)
            findings.append(found)
    else:  # a series' windows overlap their neighbours by construction
        metrics["duplicates"] = metrics["leakage"] = {"skipped": _OVERLAPPING}
        findings.append(("pass", f"no duplicate or leakage scan: {_OVERLAPPING}"))
    metrics["features"], found = _features(run, train, settings)
    findings.append(found)
    metrics["outliers"], found = _outliers(train, emb["train"], settings, ctx.seed)
    findings.append(found)
    verdict: Verdict = max((v for v, _ in findings), key=_ORDER.__getitem__)
    said = [text for _, text in sorted(findings, key=lambda f: -_ORDER[f[0]]) if text]
    overlap = metrics.get("window_overlap") or {}
    exact_leak = (metrics.get("leakage") or {}).get("exact_share") or 0.0
    if overlap.get("n"):  # leakage first: it makes every held-out number optimistic
        headline = f"{overlap['share']:.0%} of val/test windows overlap training"
    elif exact_leak >= settings.leakage_fail:
        headline = f"{exact_leak:.1%} of val/test samples copy training"
    elif "labels" in metrics:
        headline = f"label issues {metrics['labels']['share']:.1%}"
    elif "n_exact_rows" in metrics["duplicates"]:
        headline = f"{metrics['duplicates']['n_exact_rows']} duplicates"
    else:
        headline = f"{metrics['outliers']['n_outliers']} outliers"
    return CheckResult(
        check="data_quality",
        verdict=verdict,
        headline=headline,
        summary="; ".join(said) + ".",
        metrics=metrics,
        settings={  # the folds and epochs the retrains used, in place of null (auto)
            **settings.model_dump(mode="json"),
            **{k: metrics["labels"][m] for k, m in _USED.items() if m in metrics.get("labels", {})},
        },
    )


def _inputs(run: Run, split: SplitView) -> Any:
    """The raw inputs of a split, without the target: what duplicates are judged on."""
    schema = run.schema
    if isinstance(split.raw, pd.DataFrame):
        if schema.tabular is not None:
            return split.raw[schema.tabular.columns]
        if schema.text_column is not None:
            return split.raw[[schema.text_column]]
    if isinstance(split.raw, np.ndarray) and len(split.raw) == len(split):
        return split.raw
    return split.x.numpy()


def _labels(
    run: Run, train: SplitView, emb: np.ndarray, settings: DataQualityAudit, ctx: AuditContext
) -> tuple[dict[str, Any], tuple[Verdict, str]]:
    """Likely label errors from out-of-fold probabilities: full retrains of the run's
    config (through ctx.retrains: here, or as Ray tasks), or fresh heads on the frozen
    training embeddings `emb` (settings.retrain)."""
    y, seed = train.y.numpy(), ctx.seed
    mode = retrain_mode(run, settings.retrain, "audit.data_quality.retrain")
    if mode == "head":  # heads cost next to nothing: all settings.folds (null: 5), no epochs
        plan = FoldPlan(settings.folds or FOLD_PLANS[0], 0, 0.0)
        probs, _ = head_out_of_fold_probabilities(run, emb, plan.folds, seed)
    else:
        plan = fold_plan(run, settings)  # fewer folds or epochs when 5 would not fit budget_s
        probs, _ = out_of_fold_probabilities(
            run, plan.folds, plan.epochs, seed, plan.fold_s, ctx.retrains
        )
    issues = label_issues(y, probs)
    share = len(issues) / len(y)
    decode = run.schema.target.decode
    listed = [
        {
            "row": int(train.rows[i]),
            "label": _plain(decode(np.array([y[i]]))[0]),
            "suggested": _plain(decode(np.array([probs[i].argmax()]))[0]),
            "p_label": round(float(probs[i, y[i]]), 4),
        }
        for i in issues[: settings.max_listed]
    ]
    oof_accuracy = float((probs.argmax(axis=1) == y).mean())
    # a weak fold model flags its own mistakes too: say how good the folds were
    metrics = {
        "n_issues": len(issues),
        "share": share,
        "out_of_fold_accuracy": oof_accuracy,
        "folds": plan.folds,
        "epochs_per_fold": plan.epochs if mode == "full" else None,
        "retrains_on": ctx.retrains.where if mode == "full" else "this process (head fits)",
        **head_record(mode),
        "reduced": plan.reduced,
        "method": "cleanlab find_label_issues (prune_by_noise_rate, ranked by self_confidence)",
        "rows": [int(train.rows[i]) for i in issues],
        "worst": listed,
    }
    verdict = grade(share, settings.label_issue_warn, settings.label_issue_fail)
    if oof_accuracy < _WEAK and verdict == "fail":
        verdict = "warn"  # weak folds: the flags are evidence of little, not of bad labels
    rows = ", ".join(str(r["row"]) for r in listed[:5])
    text = (
        f"{share:.1%} of training labels look wrong ({len(issues)} of {len(y)}"
        + (f"; rows {rows}" if rows else "")
        + f"; out-of-fold accuracy {oof_accuracy:.1%})"
    )
    if oof_accuracy < _WEAK:
        text += (
            f" - the fold models are weak (under {_WEAK:.0%}), so many flags are their own "
            "mistakes and the verdict is at most warn"
        )
    if plan.reduced:
        text += f" (out-of-fold retrains: {plan.reduced})"
    if mode == "head":
        text += f" (head-only out-of-fold retrains: {TRADE})"
    return metrics, (verdict, text)


def _imbalance(
    run: Run, train: SplitView, settings: DataQualityAudit
) -> tuple[dict[str, Any], tuple[Verdict, str]]:
    counts = np.bincount(train.y.numpy(), minlength=run.schema.n_outputs)
    classes = run.schema.classes or list(range(len(counts)))
    ratio = float(counts.max() / max(counts.min(), 1))
    metrics = {
        "counts": {str(c): int(n) for c, n in zip(classes, counts)},
        "ratio": ratio,
        "smallest_share": float(counts.min() / counts.sum()),
    }
    if ratio >= settings.imbalance_warn:
        small = classes[int(counts.argmin())]
        return metrics, (
            "warn",
            f"classes are imbalanced {ratio:.0f}:1 (class {small!s} has {counts.min()} rows)",
        )
    return metrics, ("pass", "")


def _duplicates(
    train: SplitView, keys: np.ndarray, emb: np.ndarray, settings: DataQualityAudit
) -> tuple[dict[str, Any], tuple[Verdict, str]]:
    """Exact copies within the training split (a warning when copies disagree on the
    label) and near copies in the model's view (listed for a look, not graded)."""
    y = train.y.numpy()
    groups = duplicate_groups(keys)
    conflicts = [y.ndim == 1 and len(np.unique(y[g])) > 1 for g in groups]
    order = sorted(range(len(groups)), key=lambda i: not conflicts[i])  # conflicts first
    near = near_duplicate_pairs(emb, None, settings.near_duplicate_cosine)
    not_exact = keys[near.a] != keys[near.b]
    n_conflicting = int(sum(conflicts))
    metrics = {
        "n_exact_groups": len(groups),
        "n_exact_rows": int(sum(len(g) for g in groups)),
        "n_conflicting_groups": n_conflicting,
        "exact": [
            {"rows": train.rows[groups[i]].tolist(), "conflicting_labels": conflicts[i]}
            for i in order[: settings.max_listed]
        ],
        "n_near_pairs": int(not_exact.sum()),
        "near": _pair_rows(near, not_exact, train.rows, train.rows, settings.max_listed),
    }
    parts = []
    if groups:
        parts.append(
            f"{metrics['n_exact_rows']} training rows have exact copies in training"
            + (f" ({n_conflicting} groups disagree on the label)" if n_conflicting else "")
        )
    if metrics["n_near_pairs"]:
        parts.append(f"{metrics['n_near_pairs']} near-duplicate training pairs")
    return metrics, ("warn" if n_conflicting else "pass", ", ".join(parts))


def _leakage(
    splits: dict[str, SplitView],
    keys: dict[str, np.ndarray],
    emb: dict[str, np.ndarray],
    settings: DataQualityAudit,
) -> tuple[dict[str, Any], tuple[Verdict, str]]:
    """Val and test samples that are exact copies of training samples (graded against
    leakage_fail) or near copies in the model's view (listed)."""
    train = splits["train"]
    train_row_of = dict(zip(keys["train"].tolist(), train.rows.tolist()))
    metrics: dict[str, Any] = {}
    n_exact = n_near = n_held = 0
    for name in ("val", "test"):
        part, k = splits[name], keys[name]
        exact = np.flatnonzero(np.isin(k, keys["train"]))
        near = near_duplicate_pairs(emb[name], emb["train"], settings.near_duplicate_cosine)
        not_exact = k[near.a] != keys["train"][near.b]
        near_samples = len(np.unique(near.a[not_exact]))
        metrics[name] = {
            "n_exact": len(exact),
            "n_near": near_samples,
            "exact": [
                {"row": int(part.rows[i]), "train_row": train_row_of[int(k[i])]}
                for i in exact[: settings.max_listed]
            ],
            "near": _pair_rows(near, not_exact, part.rows, train.rows, settings.max_listed),
        }
        n_exact, n_near, n_held = n_exact + len(exact), n_near + near_samples, n_held + len(part)
    share = n_exact / max(n_held, 1)
    metrics["exact_share"] = share
    near_text = ""
    if n_near:
        name = "test" if metrics["test"]["near"] else "val"
        first = metrics[name]["near"][0]
        near_text = (
            f"{n_near} are near copies (cosine >= {settings.near_duplicate_cosine} in the "
            f"model's view; e.g. {name} row {first['row']} ~ train row {first['other_row']})"
        )
    if n_exact == 0:
        text = "no val/test sample is an exact copy of a training sample"
        return metrics, ("pass", text + (f" ({near_text})" if near_text else ""))
    verdict: Verdict = "fail" if share >= settings.leakage_fail else "warn"
    text = f"leakage: {n_exact} val/test samples ({share:.1%}) are exact copies of training ones"
    return metrics, (verdict, text + (f", {near_text}" if near_text else ""))


def _are_windows(train: SplitView) -> bool:
    raw = train.raw
    return isinstance(raw, np.ndarray) and raw.ndim == 3 and raw.shape[1] >= 2


def _window_overlap(
    splits: dict[str, SplitView], settings: DataQualityAudit
) -> tuple[dict[str, Any], tuple[Verdict, str]]:
    """Val and test windows that share at least half their steps, in order, with a training
    window (one a shifted copy of the other): graded against leakage_fail like exact copies."""
    names = ("train", "val", "test")
    raw = np.concatenate([splits[n].raw for n in names])
    sizes = np.cumsum([0] + [len(splits[n]) for n in names])
    rows = np.concatenate([splits[n].rows for n in names])
    positions = {n: np.arange(sizes[i], sizes[i + 1]) for i, n in enumerate(names)}
    crossing = cross_split(window_blocks(raw), positions, "overlapping windows")
    steps = raw.shape[1]
    found = crossing.to_dict(limit=settings.max_listed)
    for example in found["examples"]:  # positions in the concatenation -> source rows
        example["row"], example["train_row"] = (
            int(rows[example["row"]]),
            int(rows[example["train_row"]]),
        )
    metrics = {**found, "shared_steps": block_length(steps), "steps": steps}
    if crossing.n == 0:
        return metrics, ("pass", "no val/test window overlaps a training window")
    first = found["examples"][0]
    text = (
        f"leakage: {crossing.n} of {crossing.n_held} val/test windows ({crossing.share:.1%}) "
        f"share at least {block_length(steps)} of their {steps} steps with a training window "
        f"(e.g. {first['split']} row {first['row']} and train row {first['train_row']}); "
        "split by groups or in time order (data.split.by, data.split.order)"
    )
    verdict: Verdict = "fail" if crossing.share >= settings.leakage_fail else "warn"
    return metrics, (verdict, text)


def _features(
    run: Run, train: SplitView, settings: DataQualityAudit
) -> tuple[dict[str, Any], tuple[Verdict, str]]:
    from gradwise.auditing.quality_scans import feature_health

    prep = run.schema.tabular
    if prep is not None and isinstance(train.raw, pd.DataFrame):
        constant, heavy = feature_health(train.raw, prep.columns, settings.missing_warn)
        metrics: dict[str, Any] = {"constant": constant, "missing_heavy": heavy}
        parts = []
        if constant:
            parts.append(f"constant columns: {', '.join(constant)}")
        if heavy:
            parts.append("mostly missing: " + ", ".join(f"{c} ({v:.0%})" for c, v in heavy.items()))
        return metrics, ("warn" if parts else "pass", "; ".join(parts))
    if isinstance(train.raw, np.ndarray) and train.raw.dtype.kind in "iuf":
        flat = train.raw.reshape(len(train.raw), -1)
        constant_count = int((flat.std(axis=0) == 0).sum())
        return {"constant_inputs": constant_count, "n_inputs": flat.shape[1]}, ("pass", "")
    return {}, ("pass", "")


def _outliers(
    train: SplitView, emb: np.ndarray, settings: DataQualityAudit, seed: int
) -> tuple[dict[str, Any], tuple[Verdict, str]]:
    scores, flagged = outlier_scores(emb, seed)
    worst = np.argsort(-scores)[: settings.max_listed]
    listed = [{"row": int(train.rows[i]), "score": round(float(scores[i]), 4)} for i in worst]
    metrics = {
        "method": "IsolationForest on training embeddings (100 trees, contamination auto)",
        "n_outliers": int(flagged.sum()),
        "share": float(flagged.mean()),
        "worst": listed,
    }
    rows = ", ".join(str(r["row"]) for r in listed[:3])
    return metrics, ("pass", f"{flagged.sum()} outliers by IsolationForest (most: rows {rows})")


def _pair_rows(
    pairs: Pairs, keep: np.ndarray, rows_a: np.ndarray, rows_b: np.ndarray, limit: int
) -> list[dict[str, Any]]:
    idx = np.flatnonzero(keep)[:limit]
    return [
        {
            "row": int(rows_a[pairs.a[i]]),
            "other_row": int(rows_b[pairs.b[i]]),
            "cosine": round(float(pairs.cosine[i]), 5),
        }
        for i in idx
    ]


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
