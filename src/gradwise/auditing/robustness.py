"""Robustness: how much does the model's accuracy fall under small, worst-case changes, and
under common corruptions?

What is attacked, how far and when is the threat model (`audit/threat.py`), shared with
`optimize`'s trade-off table: gradient attacks (FGSM, PGD in L-inf and L2; hand-written in
training/adversarial.py, checked against torchattacks in benchmarks/) by default on images
only; tables and series (forecasters, sensor sequences) are judged on corruptions and sensor
noise unless `audit.robustness.attacks: on`. Categorical columns are never attacked. Epsilon
is in the data's own units: the standardisation is undone first (`AttackBudget`), so eps 1
on 8x8 digits means one pixel level of 16.

Built-in sanity checks, each reported in the JSON: robust accuracy at eps 0 equals clean
accuracy; it never rises with eps (per sample, the worst over every attack at every radius
up to eps: a radius contains all smaller ones); every attacked input is re-scored by the
model and checked to lie within its radius, bounds and mask (the attack's own bookkeeping
is not trusted).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from torch import Tensor

from gradwise.auditing.base import AuditContext, CheckResult, NotApplicable, grade
from gradwise.auditing.corruptions import Corrupted, corruptions
from gradwise.auditing.robustness_plots import plot_corruptions, plot_curves
from gradwise.auditing.threat import (
    NORM_NAME,
    Scorer,
    attack_curve,
    attack_sample,
    attacks_apply,
    eps_grid,
    threat_model,
)
from gradwise.config import DiffusionConfig, RobustnessAudit
from gradwise.run import Run
from gradwise.training.adversarial import AttackBudget, Norm, fgsm, pgd

__all__ = ["check", "fgsm", "pgd", "running_worst", "eps_grid"]

CURVE_PNG = "robustness_curve.png"
CORRUPTIONS_PNG = "robustness_corruptions.png"


def running_worst(scores: np.ndarray, higher_is_worse: bool) -> np.ndarray:
    """(n_eps, N) per-sample scores at increasing radii -> each sample's worst so far.

    A radius contains every smaller one, so an input broken at a small eps is broken at all
    larger ones: the curve of this can never rise (accuracy) or fall (error).
    """
    accumulate = np.maximum.accumulate if higher_is_worse else np.minimum.accumulate
    return accumulate(scores, axis=0)


def check(run: Run, settings: RobustnessAudit, ctx: AuditContext) -> CheckResult:
    """Corruptions, and FGSM and PGD (L-inf, L2) robust accuracy against eps where the
    threat model includes attacks (see `audit/threat.py`).

    Raises:
        NotApplicable: the run generates (diffusion, language models) or translates text,
            or neither attacks nor corruptions are asked for.
    """
    _check_applies(run)
    attacking, why = attacks_apply(run.schema, settings)
    if run.schema.kind == "tokens" and not settings.corruptions:
        raise NotApplicable(
            "labelled text has no gradient attack (token ids are discrete); it is measured by "
            "character edits, which audit.robustness.corruptions: false turns off."
        )
    if not attacking and not settings.corruptions:
        raise NotApplicable(f"nothing to measure: audit.robustness.corruptions is false and {why}.")
    scorer = Scorer(run)
    x, y, raw, n_test = attack_sample(run, settings.max_samples, ctx.seed)
    clean = scorer.per_sample(x, y)
    metrics: dict[str, Any] = {
        "task": run.schema.task,
        "metric": scorer.metric,
        "n_samples": len(x),
        "n_test": n_test,
        "clean": scorer.total(clean),
    }
    resolved: dict[str, Any] = {"seed": ctx.seed, "n_samples": len(x), "attacks": why}
    plots: list[str] = []
    if attacking:
        threat = threat_model(run, settings, x)
        grid, reference = eps_grid(threat.budget, settings)
        attacks = _attack_curves(run, scorer, x, y, clean, threat.budget, grid, settings, ctx.seed)
        metrics.update(attacks)
        metrics["threat_model"] = threat.to_dict()
        resolved.update(_attack_settings(threat.budget, grid, reference, settings))
        plot_curves(metrics, ctx.out / CURVE_PNG, threat.budget, reference)
        plots.append(CURVE_PNG)
    if settings.corruptions:
        found, notes = corruptions(run, x, raw, ctx.seed)
        metrics["corruptions"] = [_score(scorer, c, y) for c in found]
        metrics["corruption_notes"] = notes
        if found:
            plot_corruptions(
                metrics["corruptions"], metrics["clean"], scorer.metric, ctx.out / CORRUPTIONS_PNG
            )
            plots.append(CORRUPTIONS_PNG)
    verdict, headline, summary = _judge(metrics, settings, scorer, resolved)
    return CheckResult(
        check="robustness",
        verdict=verdict,
        headline=headline,
        summary=summary,
        metrics=metrics,
        settings={**settings.model_dump(mode="json"), "resolved": resolved},
        plots=tuple(plots),
    )


def _check_applies(run: Run) -> None:
    if run.backend is not None:
        raise NotApplicable(
            f"{run.path} is an optimised variant (backend {run.backend['name']}), which "
            "has no gradients to attack with; `gradwise optimize` measures its robustness by "
            "transfer (attacks made on the torch run, scored on the variant) in its trade-off "
            "table, and `gradwise audit` on the run it was made from measures the rest."
        )
    if isinstance(run.config.model, DiffusionConfig):
        raise NotApplicable(
            "a diffusion model generates images and predicts nothing from an input, so there "
            "is no accuracy for an attack or a corruption to lower."
        )
    if run.schema.task in ("lm", "mlm", "seq2seq"):
        raise NotApplicable(
            f"task {run.schema.task} reads token ids and predicts tokens: gradient attacks need "
            "continuous inputs, and character edits are measured on text classifiers and "
            "regressors (csv: with data.text_column); not on generated or masked tokens."
        )


# ------------------------------------------------------------------ attacks


def _attack_curves(
    run: Run,
    scorer: Scorer,
    x: Tensor,
    y: Tensor,
    clean: np.ndarray,
    budget: AttackBudget,
    grid: list[float],
    settings: RobustnessAudit,
    seed: int,
) -> dict[str, Any]:
    """Per norm and attack, the score at each radius (raw, and as each sample's running
    worst), the worst over attacks, and the sanity checks."""
    norms: list[Norm] = ["linf", "l2"] if settings.norm == "both" else [settings.norm]
    root_d = math.sqrt(budget.n_attacked)
    higher_is_worse = scorer.is_regression
    curves: dict[str, dict[str, list[float]]] = {}
    raw_curves: dict[str, dict[str, list[float]]] = {}
    excess, eps0_ok, rises_raw = 0.0, True, False
    for norm in norms:
        measured = attack_curve(run, scorer, x, y, budget, norm, grid, settings, seed)
        excess = max(excess, measured.max_excess)
        eps0_ok = eps0_ok and measured.eps0_equals_clean
        stacked = dict(measured.scores)  # (n_eps, N) per attack
        worst = None
        for v in stacked.values():
            worst = v if worst is None else scorer.worst(worst, v)
        assert worst is not None
        stacked["worst"] = worst
        raw_curves[norm] = {a: [scorer.total(s) for s in v] for a, v in stacked.items()}
        curves[norm] = {
            a: [scorer.total(s) for s in running_worst(v, higher_is_worse)]
            for a, v in stacked.items()
        }
        order = np.diff(raw_curves[norm]["worst"])
        rises_raw = rises_raw or bool(
            (order > 1e-12).any() if not higher_is_worse else (order < -1e-12).any()
        )
    never_rises = all(_monotone(c["worst"], higher_is_worse) for c in curves.values())
    tolerance = 1e-4 * max(1.0, max(grid) * root_d)
    return {
        "eps": grid,
        "curves": curves,
        "curves_before_running_worst": raw_curves,
        "sanity": {
            "eps0_equals_clean": eps0_ok,
            "never_rises_with_eps": never_rises,
            "raw_scores_rose_with_eps": rises_raw,
            "within_budget": excess <= tolerance,
            "max_budget_excess": excess,
            "rescored_on_returned_inputs": True,
        },
    }


def _monotone(values: list[float], higher_is_worse: bool) -> bool:
    steps = np.diff(values)
    return bool((steps >= -1e-12).all() if higher_is_worse else (steps <= 1e-12).all())


def _attack_settings(
    budget: AttackBudget, grid: list[float], reference: float, settings: RobustnessAudit
) -> dict[str, Any]:
    step = "2.5 * eps / steps" if settings.step_size is None else f"{settings.step_size} * eps"
    return {
        "units": budget.units,
        "unit_name": budget.unit_name,
        "value_range": budget.value_range,
        "eps": grid,
        "reference_eps": reference,
        "default_grid": "0, 1/64, 1/32, 1/16, 1/8, 1/4 of the value range"
        if budget.units == "raw" and budget.value_range
        else "0, 0.05, 0.1, 0.25, 0.5, 1 standard deviations",
        "l2_radius": f"eps * sqrt(d), d = {budget.n_attacked} values per sample: at most eps "
        "root-mean-square change per value",
        "attacks": {
            "linf": "FGSM (one signed step of eps), PGD",
            "l2": "FGM (one normalised step of the radius), PGD",
            "pgd": f"{settings.steps} steps of {step}, {settings.restarts} run(s): the first "
            "from the clean input, the others from random starts (seeded)",
        },
        "masked": "categorical columns are not attacked" if budget.mask is not None else None,
        "bounds": "the raw value range (images, arrays) or each column's training range (tables)"
        if budget.low is not None
        else "none",
    }


# ------------------------------------------------------------------ corruptions and verdict


def _score(scorer: Scorer, c: Corrupted, y: Tensor) -> dict[str, Any]:
    return {
        "name": c.name,
        "severity": c.severity,
        "unit": c.unit,
        scorer.metric: scorer.total(scorer.per_sample(c.x, y)),
    }


def _judge(
    metrics: dict[str, Any], settings: RobustnessAudit, scorer: Scorer, resolved: dict[str, Any]
) -> tuple[Any, str, str]:
    clean = metrics["clean"]
    sanity = metrics.get("sanity")
    if sanity is not None and not (
        sanity["eps0_equals_clean"] and sanity["never_rises_with_eps"] and sanity["within_budget"]
    ):
        failed = [
            k
            for k in ("eps0_equals_clean", "never_rises_with_eps", "within_budget")
            if not sanity[k]
        ]
        return (
            "fail",
            "sanity failed",
            f"The robustness measurement failed its own sanity checks ({', '.join(failed)}); "
            "its numbers cannot be trusted. Please report this.",
        )
    corrupt = metrics.get("corruptions") or []
    if "curves" not in metrics:  # corruptions drive the verdict (tables, series, text)
        if not corrupt:
            raise NotApplicable(
                f"{resolved['attacks']}, and no corruption applies to these inputs "
                f"({'; '.join(metrics.get('corruption_notes') or []) or 'none found'})."
            )
        at = _reference_corruption(corrupt, scorer)
        value = at[scorer.metric]
        what = _corruption_name(at)
        resolved["reference"] = (
            f"the worst corruption at its middle severity: {at['name']} at {at['severity']:g}"
        )
        metrics["verdict_from"] = {"kind": "corruption", **at}
        note = f" (gradient attacks off: {resolved['attacks']})"
        return _verdict(clean, value, what, scorer, settings, _rows(metrics) + note, what)
    ref = resolved["reference_eps"]
    i = metrics["eps"].index(ref)
    per_norm = {n: c["worst"][i] for n, c in metrics["curves"].items()}
    # the verdict reads L-inf, the usual threat model and the one train.adversarial defends;
    # the L2 ball of radius eps * sqrt(d) contains it, so L2 is the stronger by construction
    norm = "linf" if "linf" in per_norm else "l2"
    value = per_norm[norm]
    metrics["at_reference"] = {"eps": ref, **per_norm, "verdict_norm": norm}
    metrics["verdict_from"] = {"kind": "attack", "norm": norm, "eps": ref, scorer.metric: value}
    what = f"PGD ({NORM_NAME[norm]}) at eps {ref:.3g} ({resolved['unit_name']})"
    extra = "".join(
        f"; {NORM_NAME[n]} (RMS {ref:.3g} per value): {v:.3g}"
        for n, v in per_norm.items()
        if n != norm
    )
    fixed = metrics["threat_model"]["fixed"]
    if fixed:
        extra += f"; not perturbed: {', '.join(fixed)}"
    if corrupt:
        pick = max if scorer.is_regression else min
        bad = pick(corrupt, key=lambda c: c[scorer.metric])
        extra += f"; worst corruption: {_corruption_name(bad)}: {bad[scorer.metric]:.3g}"
    driver = f"PGD {NORM_NAME[norm]} {ref:.3g}"
    return _verdict(clean, value, what, scorer, settings, _rows(metrics) + extra, driver)


def _rows(metrics: dict[str, Any]) -> str:
    """Which test rows the numbers come from: all of them, or how many of how many."""
    n, total = metrics["n_samples"], metrics["n_test"]
    if n == total:
        return f" on all {total:,} test rows"
    return (
        f" on {n:,} of the {total:,} test rows (a seeded sample, audit.robustness.max_samples; "
        "the clean number is of the same rows)"
    )


def _reference_corruption(found: list[dict[str, Any]], scorer: Scorer) -> dict[str, Any]:
    """The worst corruption at its middle severity (severities are listed mildest first)."""
    kinds: dict[str, list[dict[str, Any]]] = {}
    for c in found:
        kinds.setdefault(c["name"], []).append(c)
    middles = [levels[len(levels) // 2] for levels in kinds.values()]
    pick = max if scorer.is_regression else min
    return pick(middles, key=lambda c: c[scorer.metric])


def _corruption_name(c: dict[str, Any]) -> str:
    if c["name"] == "char_edits":
        return f"{c['severity']:.0%} character edits"
    return f"{c['name'].replace('_', ' ')} {c['severity']:g} ({c['unit']})"


def _verdict(
    clean: float,
    value: float,
    what: str,
    scorer: Scorer,
    settings: RobustnessAudit,
    extra: str,
    driver: str,
) -> tuple[Any, str, str]:
    """The verdict, a headline that names what drove it, and the sentence (`extra` follows
    the numbers: the rows they come from, then the other measures)."""
    short = driver.split(" (")[0]
    if scorer.is_regression:
        rise = value / clean - 1 if clean > 0 else math.inf
        verdict = grade(rise, settings.drop_warn, settings.drop_fail)
        ratio = f"RMSE x{value / clean:.2f}" if clean > 0 else f"RMSE {value:.3g}"
        return (
            verdict,
            f"{ratio} under {short}",
            f"{what} raises RMSE from {clean:.3g} to {value:.3g} (+{rise:.0%}){extra}.",
        )
    verdict = grade(clean - value, settings.drop_warn, settings.drop_fail)
    return (
        verdict,
        f"accuracy {clean:.2f} -> {value:.2f} under {short}",
        f"{what} drops accuracy from {clean:.2f} to {value:.2f}{extra}.",
    )
