"""The uncertainty check: split-conformal quantiles fitted on validation, measured on test,
stored in the run (the scores and the quantile rule are in `auditing/conformal.py`; the Run
and the server apply a stored quantile through `gradwise.run_conformal`)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from gradwise.auditing.base import AuditContext, CheckResult, NotApplicable, Verdict, task_name
from gradwise.auditing.class_coverage import (
    CLASS_RULE,
    class_coverage,
    class_sentence,
    empty_sets_sentence,
    unfitted_classes_sentence,
)
from gradwise.auditing.conformal import (
    absolute_scores,
    aps_scores,
    class_quantiles,
    conformal_quantile,
    fit_difficulty,
    lac_scores,
    normalised_scores,
    target_values,
)
from gradwise.run_conformal import (
    Difficulty,
    class_probabilities,
    conformal_sets,
    regression_outputs,
    row_uniforms,
)

if TYPE_CHECKING:
    from gradwise.config import UncertaintyAudit
    from gradwise.run import Run

PLOT = "uncertainty.png"
DIFFICULTY_MAX_ROWS = 50_000  # training rows the difficulty model is fitted on (seeded)
QUANTILE_RULE = "the ceil((n + 1) * coverage)-th smallest of the n validation scores"


def _stated(settings: UncertaintyAudit, **extra: Any) -> dict[str, Any]:
    return {
        **settings.model_dump(mode="json"),
        "fitted_on": "val",
        "reported_on": "test",
        "quantile_rule": QUANTILE_RULE,
        **extra,
    }


def check(run: Run, settings: UncertaintyAudit, ctx: AuditContext) -> CheckResult:
    """Split-conformal intervals or sets fitted on validation, measured on test.

    Raises:
        NotApplicable: the run neither classifies nor regresses.
    """
    from gradwise.config import DiffusionConfig

    if isinstance(run.config.model, DiffusionConfig):
        raise NotApplicable("a diffusion model generates images; it predicts no targets.")
    match run.schema.task:
        case "regression":
            return regression_check(run, settings, ctx)
        case "classification":
            return classification_check(run, settings, ctx)
    raise NotApplicable(
        "conformal sets need a classifier or a regression; this run is "
        f"{task_name(run.schema.task)} "
        "(for a language model, the calibration check scores its next-token probabilities)."
    )


def check_calibration_size(n: int, coverage: float) -> None:
    """Raise NotApplicable when n validation samples cannot give a finite quantile at
    `coverage` (it needs ceil((n + 1) * coverage) <= n, that is n >= coverage / (1 -
    coverage))."""
    need = math.ceil(coverage / (1 - coverage) - 1e-9)
    if n < need:
        raise NotApplicable(
            f"the validation split holds {n} samples, too few for {coverage:.0%} conformal "
            f"sets: it needs at least {need}; lower audit.uncertainty.coverage or enlarge "
            "data.split.val."
        )


def coverage_verdict(coverage: float, settings: UncertaintyAudit) -> Verdict:
    """pass when test coverage reaches the target less the tolerance; fail when it falls
    short by more than `coverage_fail`."""
    short = settings.coverage - coverage
    if short > settings.coverage_fail:
        return "fail"
    return "warn" if short > settings.coverage_tolerance else "pass"


# ---------------------------------------------------------------- regression


def regression_check(run: Run, settings: UncertaintyAudit, ctx: AuditContext) -> CheckResult:
    train, val, test = run.split("train"), run.split("val"), run.split("test")
    check_calibration_size(len(val), settings.coverage)
    pred_val, y_val = regression_outputs(run, val.x), target_values(run, val.y)
    pred_test, y_test = regression_outputs(run, test.x), target_values(run, test.y)
    difficulty = fit_run_difficulty(run, train.x, train.y, ctx.seed)
    sigma_val = difficulty.sigma(run.embed(val.x).double().numpy())
    sigma_test = difficulty.sigma(run.embed(test.x).double().numpy())
    scores = {
        "absolute": (absolute_scores(pred_val, y_val), np.ones_like(pred_test)),
        "normalised": (normalised_scores(pred_val, y_val, sigma_val), sigma_test),
    }
    measured, quantiles = {}, {}
    for name, (val_scores, scale) in scores.items():
        q = conformal_quantile(val_scores, settings.coverage)  # (m,)
        quantiles[name] = q
        measured[name] = _interval_measures(pred_test, y_test, q * scale, sigma_test)
    chosen = settings.regression_score
    other = "absolute" if chosen == "normalised" else "normalised"
    if settings.store:
        run.set_conformal(
            {
                "task": "regression",
                "score": chosen,
                "coverage": settings.coverage,
                "quantile": quantiles[chosen].tolist(),
                "n_calibration": len(val),
                **({"difficulty": difficulty.to_dict()} if chosen == "normalised" else {}),
            }
        )
    _plot_regression(ctx.out / PLOT, pred_test, y_test, sigma_test, quantiles, settings.coverage)
    m, o = measured[chosen], measured[other]
    target = run.schema.target.name
    units = f"the units of {target}" if target and len(target) < 30 else "the target's units"
    summary = (
        f"{settings.coverage:.0%} intervals ({chosen} score, fitted on {len(val)} validation "
        f"samples) hold {m['coverage']:.1%} of the test targets with a mean width of "
        f"{m['mean_width']:.4g} in {units} (test std {y_test.std():.3g}); the {other} score "
        f"gives {o['mean_width']:.4g} at {o['coverage']:.1%} coverage."
    )
    verdict = coverage_verdict(m["coverage"], settings)
    if run.schema.series is not None and verdict != "pass":
        summary += (
            " The test windows come after the validation windows in time: a trend or drift "
            "breaks the exchangeability the coverage guarantee rests on."
        )
    return CheckResult(
        check="uncertainty",
        verdict=verdict,
        headline=f"coverage {m['coverage']:.1%}, width {m['mean_width']:.3g}",
        summary=summary,
        metrics={
            **{name: {**v, "quantile": quantiles[name].tolist()} for name, v in measured.items()},
            "chosen": chosen,
            "stored": settings.store,
            "target_std": float(y_test.std()),
            "n_val": len(val),
            "n_test": len(test),
        },
        settings=_stated(
            settings,
            absolute="|y - prediction| in the target's units",
            normalised="|y - prediction| / sigma(x); sigma: ridge regression of log |residual| "
            "on the penultimate features, fitted on the training split "
            f"(at most {DIFFICULTY_MAX_ROWS:,} rows, seeded)",
            width="upper - lower, in the target's units, averaged over test samples and outputs",
            coverage_by_difficulty="test samples in quartiles of sigma(x)",
        ),
        plots=(PLOT,),
    )


def fit_run_difficulty(run: Run, x: torch.Tensor, y: torch.Tensor, seed: int) -> Difficulty:
    if len(x) > DIFFICULTY_MAX_ROWS:
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(x), generator=g)[:DIFFICULTY_MAX_ROWS]
        x, y = x[idx], y[idx]
    residuals = absolute_scores(regression_outputs(run, x), target_values(run, y))
    return fit_difficulty(run.embed(x).double().numpy(), residuals)


def _interval_measures(
    pred: np.ndarray, y: np.ndarray, half: np.ndarray, sigma: np.ndarray
) -> dict[str, Any]:
    covered = np.abs(y - pred) <= half  # (N, m)
    width = 2 * half
    difficulty = sigma.mean(axis=1)
    edges = np.quantile(difficulty, [0.25, 0.5, 0.75])
    quartile = np.searchsorted(edges, difficulty, side="right")
    by_quartile = [float(covered[quartile == i].mean()) for i in range(4) if (quartile == i).any()]
    return {
        "coverage": float(covered.mean()),
        "coverage_per_output": covered.mean(axis=0).tolist(),
        "coverage_by_difficulty": by_quartile,
        "mean_width": float(width.mean()),
        "median_width": float(np.median(width)),
    }


def _plot_regression(
    path: Any,
    pred: np.ndarray,
    y: np.ndarray,
    sigma: np.ndarray,
    quantiles: dict[str, np.ndarray],
    coverage: float,
) -> None:
    from gradwise.artifacts import new_figure, write_png

    fig = new_figure(6.0, 4.0)
    ax = fig.subplots()
    s = sigma[:, 0]
    order = np.argsort(s)
    ax.scatter(s, np.abs(y - pred)[:, 0], s=8, alpha=0.5, label="test |residual|")
    ax.plot(s[order], quantiles["normalised"][0] * s[order], color="tab:red", label="normalised")
    ax.axhline(quantiles["absolute"][0], color="tab:gray", linestyle="--", label="absolute")
    ax.set_xlabel("difficulty estimate sigma(x)")
    ax.set_ylabel("|residual| and interval half-width")
    ax.set_title(f"{coverage:.0%} split-conformal intervals")
    ax.legend(fontsize=8)
    write_png(path, fig)


# ---------------------------------------------------------------- classification


def classification_check(run: Run, settings: UncertaintyAudit, ctx: AuditContext) -> CheckResult:
    val, test = run.split("val"), run.split("test")
    check_calibration_size(len(val), settings.coverage)
    t = run.calibration.temperature
    p_val, p_test = class_probabilities(run, val.x, t), class_probabilities(run, test.x, t)
    y_val, y_test = val.y.numpy(), test.y.numpy()
    n_classes = p_test.shape[1]
    classes = [str(c) for c in (run.schema.classes or range(n_classes))]
    u_val = row_uniforms(p_val, ctx.seed) if settings.randomised else None
    val_scores = {"aps": aps_scores(p_val, y_val, u_val), "lac": lac_scores(p_val, y_val)}
    fitted = {"seed": ctx.seed, "randomised": settings.randomised, "per_class": settings.per_class}
    measured: dict[str, dict[str, Any]] = {}
    quantiles: dict[str, float | list[float | None]] = {}
    for method, scores in val_scores.items():
        q = _fit_quantile(scores, y_val, n_classes, settings)
        quantiles[method] = q
        sets = conformal_sets(p_test, method, q, fitted)
        measured[method] = _set_measures(sets, y_test, classes, settings)
    chosen = settings.method
    n_val_per_class = np.bincount(y_val, minlength=n_classes).tolist()
    if settings.store:
        run.set_conformal(
            {
                "task": "classification",
                "method": chosen,
                "coverage": settings.coverage,
                "quantile": quantiles[chosen],
                "temperature": t,
                "n_calibration": len(val),
                **({"n_calibration_per_class": n_val_per_class} if settings.per_class else {}),
                **fitted,
            }
        )
    _plot_sets(ctx.out / PLOT, measured, classes, settings.coverage)
    m = measured[chosen]
    accuracy = float((p_test.argmax(axis=1) == y_test).mean())
    summary = _sets_sentence(measured, chosen, settings, len(val), len(test))
    summary += class_sentence(m["coverage_per_class"], settings)
    summary += unfitted_classes_sentence(quantiles[chosen], classes, settings.coverage)
    summary += empty_sets_sentence(m["empty"], accuracy, settings)
    verdict = coverage_verdict(m["coverage"], settings)
    if m["classes_under_covered"] and verdict == "pass":
        verdict = "warn"
    return CheckResult(
        check="uncertainty",
        verdict=verdict,
        headline=f"coverage {m['coverage']:.1%}, size {m['mean_size']:.2f}",
        summary=summary,
        metrics={
            **{k: {**v, "quantile": quantiles[k]} for k, v in measured.items()},
            "chosen": chosen,
            "stored": settings.store,
            "temperature": t,
            "accuracy": accuracy,
            "n_val": len(val),
            "n_val_per_class": dict(zip(classes, n_val_per_class)),
            "n_test": len(test),
        },
        settings=_classification_stated(settings, ctx.seed, t),
        plots=(PLOT,),
    )


def _classification_stated(
    settings: UncertaintyAudit, seed: int, temperature: float | None
) -> dict[str, Any]:
    return _stated(
        settings,
        aps="mass of the classes ranked above the true one + U * p(true); "
        + (
            "U uniform in [0, 1), a hash of the row's probabilities and the seed "
            f"({seed}): the same input gets the same set"
            if settings.randomised
            else "U = 1; a set keeps every class up to the one that crosses the quantile"
        ),
        lac="1 - p(true class); a set keeps the classes with 1 - p <= quantile",
        per_class_quantiles="one quantile per class from its own validation rows (Mondrian); "
        "class k enters a set when its score is at most q_k; null: too few rows of the class "
        "for a finite quantile, so it enters every set"
        if settings.per_class
        else "one quantile for all classes (marginal coverage)",
        class_coverage=CLASS_RULE,
        probabilities="with the run's stored temperature"
        if temperature is not None
        else "the model's own (no temperature stored)",
    )


def _fit_quantile(
    scores: np.ndarray, labels: np.ndarray, n_classes: int, settings: UncertaintyAudit
) -> float | list[float | None]:
    """One quantile for all classes, or one per class (`per_class`, Mondrian)."""
    if settings.per_class:
        return class_quantiles(scores, labels, n_classes, settings.coverage)
    return float(conformal_quantile(scores, settings.coverage))


def _method_name(method: str, randomised: bool) -> str:
    if method == "lac":
        return "LAC"
    return "APS, randomised" if randomised else "APS"


def _set_measures(
    sets: np.ndarray, y: np.ndarray, classes: list[str], settings: UncertaintyAudit
) -> dict[str, Any]:
    covered = sets[np.arange(len(y)), y]
    size = sets.sum(axis=1)
    per_class = class_coverage(covered, y, classes, settings.coverage, settings.min_class)
    return {
        "coverage": float(covered.mean()),
        "mean_size": float(size.mean()),
        "empty": float((size == 0).mean()),
        "singletons": float((size == 1).mean()),
        "size_counts": np.bincount(size, minlength=sets.shape[1] + 1).tolist(),
        "coverage_per_class": per_class,
        "classes_under_covered": [c for c, v in per_class.items() if v["under_covered"]],
        "classes_not_graded": [c for c, v in per_class.items() if not v["graded"]],
    }


def _sets_sentence(
    measured: dict[str, dict[str, Any]],
    chosen: str,
    settings: UncertaintyAudit,
    n_val: int,
    n_test: int,
) -> str:
    m = measured[chosen]
    other = "lac" if chosen == "aps" else "aps"
    name = _method_name(chosen, settings.randomised)
    if settings.per_class:
        name += ", one quantile per class"
    return (
        f"{settings.coverage:.0%} prediction sets ({name}, fitted on {n_val} validation "
        f"samples) hold the true class for {m['coverage']:.1%} of the {n_test} test samples "
        f"with {m['mean_size']:.2f} classes on average ({m['singletons']:.0%} single answers); "
        f"{other} sets average {measured[other]['mean_size']:.2f} classes."
    )


def _plot_sets(
    path: Any, measured: dict[str, dict[str, Any]], classes: list[str], coverage: float
) -> None:
    from gradwise.artifacts import new_figure, write_png

    fig = new_figure(9.0, 3.8)
    left, right = fig.subplots(1, 2)
    for i, (method, m) in enumerate(measured.items()):
        counts = np.asarray(m["size_counts"])
        sizes = np.arange(len(counts))
        left.bar(sizes + (i - 0.5) * 0.4, counts, width=0.4, label=method)
        per = m["coverage_per_class"]
        names = list(per)
        right.bar(
            np.arange(len(names)) + (i - 0.5) * 0.4,
            [per[c]["coverage"] for c in names],
            width=0.4,
            label=method,
        )
    left.set_xlabel("set size (classes)")
    left.set_ylabel("test samples")
    left.legend(fontsize=8)
    right.axhline(coverage, color="black", linestyle="--", linewidth=1, label="target")
    right.set_xticks(np.arange(len(classes)), classes, rotation=90 if len(classes) > 12 else 0)
    right.set_ylim(0, 1.02)
    right.set_ylabel("coverage")
    right.set_title("coverage per class")
    right.legend(fontsize=8, loc="lower right")
    write_png(path, fig)
