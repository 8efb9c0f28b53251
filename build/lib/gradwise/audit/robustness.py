"""Robustness: how much does the model's accuracy fall under small, worst-case changes, and
under common corruptions?

The attacks (FGSM, PGD in L-inf and L2; hand-written, checked against torchattacks in
benchmarks/) live in training/adversarial.py, since adversarial training uses them too;
they are re-exported here. Epsilon is in the data's own units: the standardisation is
undone first (`AttackBudget`), so eps 1 on 8x8 digits means one pixel level of 16.

Built-in sanity checks, each reported in the JSON: robust accuracy at eps 0 equals clean
accuracy; it never rises with eps (per sample, the worst over every attack at every radius
up to eps: a radius contains all smaller ones); every attacked input is re-scored by the
model and checked to lie within its radius, bounds and mask (the attack's own bookkeeping
is not trusted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from gradwise.audit.base import AuditContext, CheckResult, NotApplicable, grade
from gradwise.audit.corruptions import EDIT_RATE, Corrupted, corruptions
from gradwise.audit.robustness_plots import plot_corruptions, plot_curves
from gradwise.config import DiffusionConfig, RobustnessAudit
from gradwise.errors import ConfigError
from gradwise.models.blocks import eval_mode
from gradwise.run import Run
from gradwise.training.adversarial import (
    AttackBudget,
    AttackLoss,
    Norm,
    attack_budget,
    fgsm,
    pgd,
)

__all__ = ["check", "fgsm", "pgd", "running_worst", "eps_grid"]

RANGE_FRACTIONS = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4)  # raw units: of the value range
STD_GRID = (0.05, 0.1, 0.25, 0.5, 1.0)  # std units
REFERENCE_FRACTION = 1 / 16
REFERENCE_STD = 0.25
TEXT_REFERENCE_RATE = EDIT_RATE[1]
CURVE_PNG = "robustness_curve.png"
CORRUPTIONS_PNG = "robustness_corruptions.png"


@dataclass(frozen=True)
class _Scorer:
    """Per-sample scores of a run's predictions: 1/0 correct (classification), or the squared
    error in the target's units (regression); `total` turns them into accuracy or RMSE."""

    run: Run

    @property
    def is_regression(self) -> bool:
        return self.run.schema.task == "regression"

    def per_sample(self, x: Tensor, y: Tensor) -> np.ndarray:
        out = self.run.logits(x)  # a fresh forward pass in eval mode, no gradients
        if self.is_regression:
            std = torch.tensor(self.run.schema.target.std, dtype=torch.float64)
            err = (out.double() - y.double().view_as(out)) * std
            return err.pow(2).mean(dim=1).numpy()
        pred = (out[:, 0] > 0).long() if out.shape[1] == 1 else out.argmax(dim=1)
        return (pred == y).double().numpy()

    def total(self, scores: np.ndarray) -> float:
        return float(np.sqrt(scores.mean())) if self.is_regression else float(scores.mean())

    def worst(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.maximum(a, b) if self.is_regression else np.minimum(a, b)

    @property
    def metric(self) -> str:
        return "rmse" if self.is_regression else "accuracy"


def running_worst(scores: np.ndarray, higher_is_worse: bool) -> np.ndarray:
    """(n_eps, N) per-sample scores at increasing radii -> each sample's worst so far.

    A radius contains every smaller one, so an input broken at a small eps is broken at all
    larger ones: the curve of this can never rise (accuracy) or fall (error).
    """
    accumulate = np.maximum.accumulate if higher_is_worse else np.minimum.accumulate
    return accumulate(scores, axis=0)


def eps_grid(budget: AttackBudget, settings: RobustnessAudit) -> tuple[list[float], float]:
    """The radii to attack at (0 first, ascending) and the reference radius of the verdict:
    settings.eps, or fractions of the raw value range (raw units) or of a standard deviation."""
    if budget.units == "raw" and budget.value_range:
        default = [budget.value_range * f for f in RANGE_FRACTIONS]
        reference = budget.value_range * REFERENCE_FRACTION
    elif budget.units == "raw" and settings.eps is None:
        raise ConfigError(
            "audit.robustness.units is raw, but this table's columns each have their own unit, "
            "so no default radius fits them all; give audit.robustness.eps (a list of radii) "
            "and reference_eps, or use units: std."
        )
    elif budget.units == "raw":
        assert settings.eps is not None
        default, reference = [], float(np.median([e for e in settings.eps if e > 0] or [0.0]))
    else:
        default, reference = list(STD_GRID), REFERENCE_STD
    grid = list(settings.eps) if settings.eps is not None else default
    reference = settings.reference_eps or reference
    values = sorted({0.0, *(round(e, 10) for e in grid), round(reference, 10)})
    return values, round(reference, 10)


def check(run: Run, settings: RobustnessAudit, ctx: AuditContext) -> CheckResult:
    """FGSM and PGD (L-inf, L2) robust accuracy against eps, plus common corruptions.

    Raises:
        NotApplicable: the run generates (diffusion, language models) or translates text.
    """
    _check_applies(run)
    if run.schema.kind == "tokens" and not settings.corruptions:
        raise NotApplicable(
            "labelled text has no gradient attack (token ids are discrete); it is measured by "
            "character edits, which audit.robustness.corruptions: false turns off."
        )
    scorer = _Scorer(run)
    x, y, raw, n_test = _sample(run, settings.max_samples, ctx.seed)
    clean = scorer.per_sample(x, y)
    metrics: dict[str, Any] = {
        "task": run.schema.task,
        "metric": scorer.metric,
        "n_samples": len(x),
        "n_test": n_test,
        "clean": scorer.total(clean),
    }
    resolved: dict[str, Any] = {"seed": ctx.seed, "n_samples": len(x)}
    plots: list[str] = []
    if run.schema.kind != "tokens":
        budget = attack_budget(run.schema, settings.units, run.split("train").x).covering(x)
        grid, reference = eps_grid(budget, settings)
        attacks = _attack_curves(run, scorer, x, y, clean, budget, grid, settings, ctx.seed)
        metrics.update(attacks)
        resolved.update(_attack_settings(budget, grid, reference, settings))
        plot_curves(metrics, ctx.out / CURVE_PNG, budget, reference)
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


def _sample(run: Run, max_samples: int, seed: int) -> tuple[Tensor, Tensor, Any, int]:
    """At most `max_samples` test samples (a seeded draw, in split order), with their raw rows."""
    test = run.split("test")
    n = len(test)
    idx = np.arange(n)
    if n > max_samples:
        g = torch.Generator().manual_seed(seed)
        idx = np.sort(torch.randperm(n, generator=g)[:max_samples].numpy())
    raw = test.raw
    if isinstance(raw, pd.DataFrame):
        raw = raw.iloc[idx].reset_index(drop=True)
    elif raw is not None:
        raw = raw[idx]
    t = torch.from_numpy(idx)
    return test.x[t], test.y[t], raw, n


# ------------------------------------------------------------------ attacks


def _attack_curves(
    run: Run,
    scorer: _Scorer,
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
    gen = torch.Generator().manual_seed(seed)
    root_d = math.sqrt(budget.n_attacked)
    higher_is_worse = scorer.is_regression
    curves: dict[str, dict[str, list[float]]] = {}
    raw_curves: dict[str, dict[str, list[float]]] = {}
    excess, eps0_ok, rises_raw = 0.0, True, False
    for norm in norms:
        names = ["fgsm" if norm == "linf" else "fgm", "pgd"]
        per: dict[str, list[np.ndarray]] = {a: [] for a in names}
        for eps in grid:
            radius = eps if norm == "linf" else eps * root_d
            for attack in names:
                outcome = clean if eps == 0 else None
                runs = 1 if attack != "pgd" else settings.restarts
                for restart in range(runs):
                    x_adv = _attack(run, x, y, budget, norm, radius, attack, restart, settings, gen)
                    excess = max(excess, _budget_excess(x, x_adv, budget, norm, radius))
                    scores = scorer.per_sample(x_adv, y)  # re-scored on the returned inputs
                    if eps == 0:
                        eps0_ok = eps0_ok and bool(np.array_equal(scores, clean))
                    outcome = scores if outcome is None else scorer.worst(outcome, scores)
                assert outcome is not None
                per[attack].append(outcome)
        stacked = {a: np.stack(v) for a, v in per.items()}  # (n_eps, N)
        worst = stacked[names[0]]
        for a in names[1:]:
            worst = scorer.worst(worst, stacked[a])
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


def _attack(
    run: Run,
    x: Tensor,
    y: Tensor,
    budget: AttackBudget,
    norm: Norm,
    radius: float,
    attack: str,
    restart: int,
    settings: RobustnessAudit,
    gen: torch.Generator,
) -> Tensor:
    """Adversarial inputs for x in batches on the run's device, returned on the CPU."""
    loss: AttackLoss = "mse" if run.schema.task == "regression" else "auto"
    model = run.model
    outs = []
    size = run.config.train.eval_batch_size
    with eval_mode(model):
        for start in range(0, len(x), size):
            xb = x[start : start + size].to(run.device)
            yb = y[start : start + size].to(run.device)
            b = budget.on(xb)
            if attack in ("fgsm", "fgm"):
                adv = pgd(
                    model,
                    xb,
                    yb,
                    radius,
                    1,
                    radius,
                    norm,
                    b.scale,
                    b.low,
                    b.high,
                    random_start=False,
                    mask=b.mask,
                    loss=loss,
                )
            else:
                step = None if settings.step_size is None else settings.step_size * radius
                adv = pgd(
                    model,
                    xb,
                    yb,
                    radius,
                    settings.steps,
                    step,
                    norm,
                    b.scale,
                    b.low,
                    b.high,
                    random_start=restart > 0,
                    generator=gen,
                    mask=b.mask,
                    loss=loss,
                )
            outs.append(adv.cpu())
    return torch.cat(outs)


def _budget_excess(
    x: Tensor, x_adv: Tensor, budget: AttackBudget, norm: Norm, radius: float
) -> float:
    """How far x_adv strays outside its radius (eps units), bounds or mask; 0 when it obeys."""
    change = (x_adv - x) * budget.scale
    size = change.flatten(1).abs().amax(dim=1) if norm == "linf" else change.flatten(1).norm(dim=1)
    worst = float((size - radius).clamp(min=0).max()) if len(x) else 0.0
    if budget.mask is not None:
        worst = max(worst, float(((x_adv - x) * (1 - budget.mask)).abs().max()))
    if budget.low is not None and budget.high is not None:
        worst = max(worst, float((budget.low - x_adv).clamp(min=0).max()))
        worst = max(worst, float((x_adv - budget.high).clamp(min=0).max()))
    return worst


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


def _score(scorer: _Scorer, c: Corrupted, y: Tensor) -> dict[str, Any]:
    return {
        "name": c.name,
        "severity": c.severity,
        "unit": c.unit,
        scorer.metric: scorer.total(scorer.per_sample(c.x, y)),
    }


def _judge(
    metrics: dict[str, Any], settings: RobustnessAudit, scorer: _Scorer, resolved: dict[str, Any]
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
    if "curves" not in metrics:  # text: character edits only
        at = next(c for c in metrics["corruptions"] if c["severity"] == TEXT_REFERENCE_RATE)
        value = at[scorer.metric]
        what = f"{TEXT_REFERENCE_RATE:.0%} character edits"
        resolved["reference"] = f"char_edits at rate {TEXT_REFERENCE_RATE}"
        return _verdict(clean, value, what, scorer, settings, "")
    ref = resolved["reference_eps"]
    i = metrics["eps"].index(ref)
    per_norm = {n: c["worst"][i] for n, c in metrics["curves"].items()}
    # the verdict reads L-inf, the usual threat model and the one train.adversarial defends;
    # the L2 ball of radius eps * sqrt(d) contains it, so L2 is the stronger by construction
    norm = "linf" if "linf" in per_norm else "l2"
    value = per_norm[norm]
    metrics["at_reference"] = {"eps": ref, **per_norm, "verdict_norm": norm}
    what = f"PGD ({_NORM_NAME[norm]}) at eps {ref:.3g} ({resolved['unit_name']})"
    extra = "".join(
        f"; {_NORM_NAME[n]} (RMS {ref:.3g} per value): {v:.3g}"
        for n, v in per_norm.items()
        if n != norm
    )
    corrupt = metrics.get("corruptions") or []
    if corrupt:
        pick = max if scorer.is_regression else min
        bad = pick(corrupt, key=lambda c: c[scorer.metric])
        extra += (
            f"; worst corruption: {bad['name'].replace('_', ' ')} {bad['severity']:g} "
            f"({bad['unit']}): {bad[scorer.metric]:.3g}"
        )
    return _verdict(clean, value, what, scorer, settings, extra)


def _verdict(
    clean: float, value: float, what: str, scorer: _Scorer, settings: RobustnessAudit, extra: str
) -> tuple[Any, str, str]:
    if scorer.is_regression:
        rise = value / clean - 1 if clean > 0 else math.inf
        verdict = grade(rise, settings.drop_warn, settings.drop_fail)
        return (
            verdict,
            f"RMSE x{value / clean:.2f}" if clean > 0 else f"RMSE {value:.3g}",
            f"{what} raises RMSE from {clean:.3g} to {value:.3g} (+{rise:.0%}){extra}.",
        )
    verdict = grade(clean - value, settings.drop_warn, settings.drop_fail)
    return (
        verdict,
        f"accuracy {clean:.2f} -> {value:.2f}",
        f"{what} drops accuracy from {clean:.2f} to {value:.2f}{extra}.",
    )


_NORM_NAME = {"linf": "L-inf", "l2": "L2"}
