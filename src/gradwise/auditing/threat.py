"""The threat model of gradwise's robustness numbers, and the one function that measures them.

The robustness audit and `optimize`'s trade-off table both call `attack_curve` under the same
`ThreatModel`, so they report the same robust accuracy for a run:

- which inputs change: every value of arrays and images; the numeric columns of tables and
  series (in standard deviations of each column by default); categorical columns, one-hot
  or embedded, never (a category is not a number to nudge);
- how far: radii in the data's own units (`AttackBudget`), bounded by the training range
  of each table column or the value range of images;
- how hard: FGSM (FGM for L2) and PGD with `restarts` runs at every radius up to eps; each
  sample counts as broken at eps when any attack broke it at any radius up to eps (a ball
  contains every smaller one);
- when: adversarial attacks fit images by default; for tables and series (forecasters,
  sensor sequences) the default threat is corruption and sensor noise, and attacks are
  opt-in (`audit.robustness.attacks: on`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from gradwise.config import RobustnessAudit
from gradwise.data.schema import Schema
from gradwise.errors import ConfigError
from gradwise.models.blocks import eval_mode
from gradwise.run import Run
from gradwise.training.adversarial import AttackBudget, AttackLoss, Norm, attack_budget, pgd

NORM_NAME = {"linf": "L-inf", "l2": "L2"}
RANGE_FRACTIONS = (1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4)  # raw units: of the value range
STD_GRID = (0.05, 0.1, 0.25, 0.5, 1.0)  # std units
REFERENCE_FRACTION = 1 / 16
REFERENCE_STD = 0.25


# ------------------------------------------------------------------ when attacks apply


def attacks_apply(schema: Schema, settings: RobustnessAudit) -> tuple[bool, str]:
    """Whether gradient attacks are part of this run's threat model, and why.

    auto: on for images (a pixel-level adversary is the usual threat); off for tables and
    series, whose realistic threat is noisy, missing or drifting readings (corruptions).
    Token ids never have a gradient attack.
    """
    if schema.kind == "tokens":
        return False, "token ids are discrete: no gradient attack (character edits instead)"
    if settings.attacks == "on":
        return True, "audit.robustness.attacks: on"
    if settings.attacks == "off":
        return False, "audit.robustness.attacks: off"
    if schema.kind == "image":
        return True, "audit.robustness.attacks: auto (on for images)"
    what = "a series" if schema.series is not None else f"{schema.kind} data"
    return False, (
        f"audit.robustness.attacks: auto, off for {what}: its threat model is corruption and "
        "sensor noise; set audit.robustness.attacks: on to add gradient attacks"
    )


def eps_grid(budget: AttackBudget, settings: RobustnessAudit) -> tuple[list[float], float]:
    """The radii to attack at (0 first, ascending) and the reference radius of the verdict:
    settings.eps, or fractions of the raw value range (raw units) or of a standard deviation.

    Raises:
        ConfigError: raw units on a table (each column has its own unit) without eps.
    """
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


# ------------------------------------------------------------------ scores


@dataclass(frozen=True)
class Scorer:
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

    def worse(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Per sample: is b strictly worse than a?"""
        return b > a if self.is_regression else b < a

    def worst(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.maximum(a, b) if self.is_regression else np.minimum(a, b)

    @property
    def metric(self) -> str:
        return "rmse" if self.is_regression else "accuracy"


def attack_sample(run: Run, max_samples: int, seed: int) -> tuple[Tensor, Tensor, Any, int]:
    """At most `max_samples` test samples (a seeded draw, in split order), with their raw
    rows and the test split's size."""
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


# ------------------------------------------------------------------ the threat model


@dataclass(frozen=True)
class ThreatModel:
    """What the attacker may change, how far and how hard it searches.

    Attributes:
        budget: units, scale, bounds and mask of the changes (`AttackBudget`).
        eps: the reference radius the verdict and the trade-off table read, in budget units.
        perturbed: the inputs an attack may change; fixed: those it may not (categorical).
    """

    budget: AttackBudget
    eps: float
    steps: int
    step_size: float | None
    restarts: int
    perturbed: tuple[str, ...]
    fixed: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        step = "2.5 * eps / steps" if self.step_size is None else f"{self.step_size} * eps"
        return {
            "eps": self.eps,
            "units": self.budget.unit_name,
            "perturbed": list(self.perturbed),
            "fixed": list(self.fixed),
            "fixed_why": "categorical columns (one-hot or embedded) are never perturbed"
            if self.fixed
            else None,
            "bounds": "each column's training range (tables) or the value range (images, arrays)"
            if self.budget.low is not None
            else "none",
            "attacks": f"FGSM and PGD ({self.steps} steps of {step}, {self.restarts} run(s)) "
            "at every radius up to eps; a sample counts as broken when any of them broke it",
        }


def threat_model(run: Run, settings: RobustnessAudit, x: Tensor) -> ThreatModel:
    """The run's threat model at the audit's reference radius, bounds widened to cover x.

    Raises:
        ConfigError: the inputs are token ids, or raw units on a table without audit eps.
    """
    budget = attack_budget(run.schema, settings.units, run.split("train").x).covering(x)
    _, reference = eps_grid(budget, settings)
    perturbed, fixed = _columns(run.schema)
    return ThreatModel(
        budget, reference, settings.steps, settings.step_size, settings.restarts, perturbed, fixed
    )


def _columns(schema: Schema) -> tuple[tuple[str, ...], tuple[str, ...]]:
    prep = schema.tabular if schema.tabular is not None else None
    if prep is None and schema.series is not None:
        prep = schema.series.features
    if prep is None:
        return ("every value",), ()
    how = "embedded" if prep.encoding == "embed" else "one-hot"
    return tuple(prep.numeric), tuple(f"{c} ({how})" for c in prep.categorical)


# ------------------------------------------------------------------ the measurement


@dataclass(frozen=True)
class NormCurve:
    """One norm's attacks over a grid of radii.

    Attributes:
        scores: per attack (fgsm / fgm, pgd), (n_eps, N) per-sample scores at each radius.
        worst_inputs: (N, ...) each sample's worst input over every attack and radius.
        eps0_equals_clean: the attacks at eps 0 returned inputs scored as the clean ones.
        max_excess: how far any returned input strayed outside its radius, bounds or mask.
    """

    scores: dict[str, np.ndarray]
    worst_inputs: Tensor
    eps0_equals_clean: bool
    max_excess: float


def attack_curve(
    run: Run,
    scorer: Scorer,
    x: Tensor,
    y: Tensor,
    budget: AttackBudget,
    norm: Norm,
    grid: list[float],
    settings: RobustnessAudit,
    seed: int,
) -> NormCurve:
    """FGSM (FGM) and PGD at each radius of `grid` (ascending, eps units; L2 radii are
    eps * sqrt(d)), re-scored on the returned inputs. Seeded per call, so a grid that is a
    prefix of another gives the same numbers on it."""
    gen = torch.Generator().manual_seed(seed)
    root_d = math.sqrt(budget.n_attacked)
    clean = scorer.per_sample(x, y)
    names = ["fgsm" if norm == "linf" else "fgm", "pgd"]
    per: dict[str, list[np.ndarray]] = {a: [] for a in names}
    worst_x, worst = x.clone(), clean.copy()
    excess, eps0_ok = 0.0, True
    for eps in grid:
        radius = eps if norm == "linf" else eps * root_d
        for attack in names:
            outcome = clean if eps == 0 else None
            for restart in range(settings.restarts if attack == "pgd" else 1):
                x_adv = _attack(run, x, y, budget, norm, radius, attack, restart, settings, gen)
                excess = max(excess, _budget_excess(x, x_adv, budget, norm, radius))
                scores = scorer.per_sample(x_adv, y)  # re-scored on the returned inputs
                if eps == 0:
                    eps0_ok = eps0_ok and bool(np.array_equal(scores, clean))
                outcome = scores if outcome is None else scorer.worst(outcome, scores)
                took = torch.from_numpy(scorer.worse(worst, scores))
                worst_x[took] = x_adv[took]
                worst = scorer.worst(worst, scores)
            assert outcome is not None
            per[attack].append(outcome)
    return NormCurve({a: np.stack(v) for a, v in per.items()}, worst_x, eps0_ok, excess)


def robust_inputs(
    run: Run, settings: RobustnessAudit, x: Tensor, y: Tensor, seed: int
) -> tuple[Tensor, ThreatModel]:
    """Each sample's worst L-inf input within the threat model's eps (what the audit's
    reference number is measured on), and the threat model."""
    threat = threat_model(run, settings, x)
    grid, _ = eps_grid(threat.budget, settings)
    upto = [e for e in grid if e <= threat.eps]
    curve = attack_curve(run, Scorer(run), x, y, threat.budget, "linf", upto, settings, seed)
    return curve.worst_inputs, threat


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
    one_step = attack in ("fgsm", "fgm")
    steps = 1 if one_step else settings.steps
    step = radius if one_step else None
    if not one_step and settings.step_size is not None:
        step = settings.step_size * radius
    model = run.model
    outs = []
    size = run.config.train.eval_batch_size
    with eval_mode(model):
        for start in range(0, len(x), size):
            xb = x[start : start + size].to(run.device)
            yb = y[start : start + size].to(run.device)
            b = budget.on(xb)
            adv = pgd(
                model,
                xb,
                yb,
                radius,
                steps,
                step,
                norm,
                b.scale,
                b.low,
                b.high,
                random_start=not one_step and restart > 0,
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
