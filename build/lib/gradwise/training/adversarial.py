"""Gradient attacks (FGSM, PGD) and adversarial training (Madry et al., 2018).

The attacks are hand-written (small, central; checked against torchattacks in
benchmarks/pgd_vs_torchattacks.py). The model reads normalised inputs while epsilon is stated
in the data's own units: a raw change of eps in a channel with standardisation std is
eps / std in the model's units, so `scale` (per-channel std, broadcastable to x) converts,
and `low` / `high` (the raw value range, in model units) keep attacked inputs valid. A
`mask` (1: may change, 0: fixed) keeps categorical columns out of the attack.

`AttackBudget` derives scale, bounds and mask from a run's data schema; the robustness
audit (audit/robustness.py) and `train.adversarial` both use it, so the audit measures
robustness in the same units the training defended.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradwise.config import AdversarialConfig, Config
from gradwise.data.arrays import ArrayNormaliser
from gradwise.data.schema import Schema
from gradwise.data.tabular import TabularPreprocessor
from gradwise.errors import ConfigError
from gradwise.models.blocks import eval_mode

if TYPE_CHECKING:  # objectives.py builds this objective, so it imports this module late
    from gradwise.data.dataset import Split
    from gradwise.evaluate.evaluator import EvalSettings
    from gradwise.training.objectives import Objective

Norm = Literal["linf", "l2"]
AttackLoss = Literal["auto", "mse"]
Units = Literal["raw", "std"]

__all__ = [
    "AdversarialSupervised",
    "AttackBudget",
    "adversarial_objective",
    "attack_budget",
    "fgsm",
    "pgd",
]


# ------------------------------------------------------------------ the attacks


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    norm: Norm = "linf",
    scale: Tensor | float = 1.0,
    low: Tensor | float | None = None,
    high: Tensor | float | None = None,
    random_start: bool = True,
    generator: torch.Generator | None = None,
    mask: Tensor | None = None,
    loss: AttackLoss = "auto",
) -> Tensor:
    """Projected gradient descent on the loss (Madry et al., 2018); steps=1 with no random
    start and step_size=eps is FGSM (L-inf) or FGM (L2).

    Args:
        model: maps (B, ...) inputs in model units to (B, K) logits (or (B, 1) for bce);
            used in its current mode (the caller sets eval).
        x: (B, ...) clean inputs in model units; y: (B,) class indices (or (B, K) targets
            with loss "mse").
        eps: radius in the raw data's units (L-inf: per element; L2: of the whole sample).
        step_size: per step, raw units; None: 2.5 * eps / steps (L-inf and L2).
        scale: raw units per model unit (the standardisation std), broadcastable to x.
        low, high: bounds of valid inputs in model units (None: unbounded).
        mask: 1 where x may change, 0 where it stays, broadcastable to x (None: everywhere).
        loss: "auto": cross-entropy (one logit: binary cross-entropy); "mse": squared error
            of regression outputs, for attacks that push a regressor's predictions away.

    Returns:
        (B, ...) adversarial inputs in model units, within eps of x in raw units.
    """
    if eps == 0:
        return x.detach().clone()
    x = x.detach()
    scale_t = torch.as_tensor(scale, dtype=x.dtype, device=x.device)
    keep = None if mask is None else torch.as_tensor(mask, dtype=x.dtype, device=x.device)
    alpha = step_size if step_size is not None else 2.5 * eps / steps
    if norm == "linf":
        return _pgd_linf(
            model, x, y, eps, steps, alpha, scale_t, low, high, random_start, generator, keep, loss
        )
    # L2 works in raw units: delta_raw = (x_adv - x) * scale, its norm taken over the sample
    delta = torch.zeros_like(x)
    if random_start:
        delta = _random_l2(x, eps, generator)
        delta = delta if keep is None else _project(delta * keep, eps, norm)
        delta = (_clip(x + delta / scale_t, low, high) - x) * scale_t
    for _ in range(steps):
        delta.requires_grad_(True)
        objective = _loss(model(_clip(x + delta / scale_t, low, high)), y, loss)
        (grad,) = torch.autograd.grad(objective, delta)
        with torch.no_grad():
            if keep is not None:
                grad = grad * keep
            delta = delta + alpha * grad / _l2(grad).clamp(min=1e-12)
            delta = _project(delta, eps, norm)
            # keep x + delta valid: project back into the bounds, in raw units
            delta = (_clip(x + delta / scale_t, low, high) - x) * scale_t
    return _clip(x + delta.detach() / scale_t, low, high).detach()


def _pgd_linf(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    steps: int,
    alpha: float,
    scale: Tensor,
    low: Tensor | float | None,
    high: Tensor | float | None,
    random_start: bool,
    generator: torch.Generator | None,
    keep: Tensor | None,
    loss: AttackLoss,
) -> Tensor:
    """L-inf PGD in model units: the L-inf ball of eps raw units is a box of eps / scale
    model units around x, so the box and the valid range meet in one pair of bounds computed
    once, and each step is a signed step and a clamp (the sign of the gradient is the same
    in raw and model units)."""
    radius = eps / scale if keep is None else eps / scale * keep  # masked values: radius 0
    lo, hi = x - radius, x + radius
    if low is not None:
        lo = torch.maximum(lo, torch.as_tensor(low, dtype=x.dtype, device=x.device))
    if high is not None:
        hi = torch.minimum(hi, torch.as_tensor(high, dtype=x.dtype, device=x.device))
    lo, hi = torch.minimum(lo, x), torch.maximum(hi, x)  # x itself is always allowed
    step = alpha / scale  # broadcasts against x: (1, C, 1, 1), (1, F) or a scalar
    x_adv = x.clone()
    if random_start:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        x_adv = torch.clamp(x + (noise * 2 - 1) * radius, lo, hi)
    for _ in range(steps):
        x_adv.requires_grad_(True)
        objective = _loss(model(x_adv), y, loss)
        (grad,) = torch.autograd.grad(objective, x_adv)
        x_adv = torch.clamp(torch.addcmul(x_adv.detach(), step, grad.sign()), lo, hi)
    return x_adv.detach()


def fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    scale: Tensor | float = 1.0,
    low: Tensor | float | None = None,
    high: Tensor | float | None = None,
    mask: Tensor | None = None,
    loss: AttackLoss = "auto",
) -> Tensor:
    """The fast gradient sign method (Goodfellow et al., 2015): one L-inf step of size eps."""
    return pgd(
        model, x, y, eps, 1, eps, "linf", scale, low, high, False, None, mask=mask, loss=loss
    )


def _loss(out: Tensor, y: Tensor, kind: AttackLoss) -> Tensor:
    out = out.float()
    if kind == "mse":
        return F.mse_loss(out, y.float().view_as(out), reduction="sum")
    if out.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(out[:, 0], y.float(), reduction="sum")
    return F.cross_entropy(out, y, reduction="sum")


def _l2(t: Tensor) -> Tensor:
    """Per-sample L2 norm, shaped to broadcast against t."""
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def _project(delta: Tensor, eps: float, norm: Norm) -> Tensor:
    if norm == "linf":
        return delta.clamp(-eps, eps)
    factor = (eps / _l2(delta).clamp(min=1e-12)).clamp(max=1.0)
    return delta * factor


def _random_l2(x: Tensor, eps: float, generator: torch.Generator | None) -> Tensor:
    """A uniformly random point in the L2 ball of radius eps (per sample)."""
    d = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    n = x[0].numel()
    r = torch.rand((len(x),), generator=generator, dtype=x.dtype).to(x.device) ** (1.0 / n)
    return d / _l2(d).clamp(min=1e-12) * (r * eps).view(-1, *([1] * (x.dim() - 1)))


def _clip(x: Tensor, low: Tensor | float | None, high: Tensor | float | None) -> Tensor:
    if low is None and high is None:
        return x
    lo = torch.as_tensor(-torch.inf if low is None else low, dtype=x.dtype, device=x.device)
    hi = torch.as_tensor(torch.inf if high is None else high, dtype=x.dtype, device=x.device)
    return torch.maximum(torch.minimum(x, hi), lo)


# ------------------------------------------------------------------ the budget of a run's data


@dataclass(frozen=True)
class AttackBudget:
    """How an attack on one run's inputs converts and bounds its changes.

    Attributes:
        units: "raw": eps in the data's own units (pixel levels, a series' units); "std":
            in standard deviations of each column (tables, whose columns have their own units).
        scale: (1, ...) eps units per model unit, broadcastable to a batch.
        low, high: (1, ...) valid range in model units, or None (unbounded).
        mask: (1, ...) 1 where values may change, 0 for categorical columns; None: all.
        value_range: the span of raw values (pixel_high - pixel_low) in `units`, or None.
        unit_name: how one eps unit reads ("pixel levels (range 0-16)").
        n_attacked: values of one sample an attack may change (the d of the L2 radius).
    """

    units: Units
    scale: Tensor
    low: Tensor | None
    high: Tensor | None
    mask: Tensor | None
    value_range: float | None
    unit_name: str
    n_attacked: int

    def on(self, x: Tensor) -> AttackBudget:
        """The same budget with its tensors on x's device and dtype."""

        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device=x.device, dtype=x.dtype)

        return dataclasses.replace(
            self,
            scale=self.scale.to(device=x.device, dtype=x.dtype),
            low=move(self.low),
            high=move(self.high),
            mask=move(self.mask),
        )

    def covering(self, x: Tensor) -> AttackBudget:
        """The same budget with bounds widened to hold every value of x (test inputs may lie
        outside the training range; clipping them in would move them further than eps)."""
        if self.low is None or self.high is None:
            return self
        dims = [d for d in range(x.dim()) if self.low.shape[d] == 1]
        low = torch.minimum(self.low, x.amin(dim=dims, keepdim=True))
        high = torch.maximum(self.high, x.amax(dim=dims, keepdim=True))
        return dataclasses.replace(self, low=low, high=high)


def resolve_units(schema: Schema, units: Literal["auto", "raw", "std"]) -> Units:
    """auto: raw units for arrays and images (one value scale for every element), standard
    deviations for tables and series read from columns (each column has its own unit)."""
    if units != "auto":
        return units
    return "raw" if schema.array is not None else "std"


def attack_budget(
    schema: Schema,
    units: Literal["auto", "raw", "std"] = "auto",
    x_train: Tensor | None = None,
) -> AttackBudget:
    """Scale, bounds and mask of attacks on inputs of this schema.

    Args:
        units: see `resolve_units`.
        x_train: the training inputs (model units): tables take each column's training range
            as its bounds; None leaves table columns unbounded.

    Raises:
        ConfigError: the inputs are token ids, which no gradient attack can change.
    """
    unit = resolve_units(schema, units)
    if schema.array is not None:
        return _array_budget(schema.array, unit, [int(s) for s in schema.input_shape])
    prep = schema.tabular if schema.tabular is not None else None
    if prep is None and schema.series is not None:
        prep = schema.series.features
    if prep is None:
        raise ConfigError(
            f"{schema.kind} inputs are token ids: discrete, so no gradient attack can change "
            "them; robustness of text is measured by character edits instead."
        )
    bounds_from = x_train if schema.tabular is not None else None  # series: unbounded
    return _column_budget(prep, unit, [int(s) for s in schema.input_shape], bounds_from)


def _array_budget(norm: ArrayNormaliser, unit: Units, shape: list[int]) -> AttackBudget:
    """Arrays and images: every value may change, within the raw value range."""
    view = [1] * (len(shape) + 1)
    view[norm.channel_axis] = -1
    mean = torch.tensor(norm.mean, dtype=torch.float32).view(view)
    std = torch.tensor(norm.std, dtype=torch.float32).view(view)
    span = norm.pixel_high - norm.pixel_low
    if unit == "raw":
        scale, value_range = std, span
        name = f"raw units, range {norm.pixel_low:.4g} to {norm.pixel_high:.4g}"
    else:
        scale, value_range = torch.ones_like(std), float(span / np.median(norm.std))
        name = "standard deviations of each channel"
    low, high = (norm.pixel_low - mean) / std, (norm.pixel_high - mean) / std
    return AttackBudget(unit, scale, low, high, None, value_range, name, int(np.prod(shape)))


def _column_budget(
    prep: TabularPreprocessor, unit: Units, shape: list[int], x_train: Tensor | None
) -> AttackBudget:
    """Tables (F,) and series windows (T, F): numeric columns change, categorical ones stay."""
    n_features, n_num = shape[-1], len(prep.numeric)
    lead = [1] * len(shape)  # (1, F) tables, (1, 1, F) series windows
    scale = torch.ones(n_features)
    if unit == "raw":
        scale[:n_num] = torch.tensor(prep.stds, dtype=torch.float32)
    mask = (torch.arange(n_features) < n_num).float()
    low: Tensor | None = None
    high: Tensor | None = None
    if x_train is not None and len(x_train):
        fixed = mask == 0  # categorical columns: never moved, so never bounded
        low = x_train.amin(dim=0).float().masked_fill(fixed, -torch.inf).view(*lead, -1)
        high = x_train.amax(dim=0).float().masked_fill(fixed, torch.inf).view(*lead, -1)
    n_steps = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    return AttackBudget(
        unit,
        scale.view(*lead, -1),
        low,
        high,
        mask.view(*lead, -1) if n_num < n_features else None,
        None,
        "raw units of each column" if unit == "raw" else "standard deviations of each column",
        n_num * n_steps,
    )


# ------------------------------------------------------------------ adversarial training


def check_adversarial(cfg: Config, schema: Schema) -> None:
    """train.adversarial is for supervised classification of arrays, images and tables.

    Raises:
        ConfigError: the run is of another task, or reads token ids.
    """
    if cfg.train.adversarial is None:
        return
    if cfg.model.arch == "diffusion" or schema.task != "classification":
        what = "a diffusion model" if cfg.model.arch == "diffusion" else f"task {schema.task}"
        raise ConfigError(
            f"train.adversarial trains classifiers against PGD attacks; this run is {what}. "
            "Remove train.adversarial (the robustness audit still measures this model)."
        )
    if schema.kind == "tokens":
        raise ConfigError(
            "train.adversarial needs continuous inputs (arrays, images, tables); token ids are "
            "discrete and have no gradient attack. Remove train.adversarial for text."
        )


def adversarial_objective(
    base: Objective, cfg: Config, schema: Schema, model: nn.Module
) -> AdversarialSupervised:
    """`base` (supervised) with train.adversarial's attacks mixed into every batch.

    Raises:
        ConfigError: the run is not a classifier of arrays, images or tables.
    """
    check_adversarial(cfg, schema)
    assert cfg.train.adversarial is not None
    budget = attack_budget(schema, cfg.train.adversarial.units)
    return AdversarialSupervised(base, model, cfg.train.adversarial, budget)


@dataclass(frozen=True)
class AdversarialSupervised:
    """Supervised learning where a share `mix` of each batch is replaced by PGD examples.

    Madry et al.'s recipe: the attack uses the current weights, from a random start within
    eps (L-inf, in the budget's units). It runs with the model in eval mode, so dropout does
    not make the attack noisy and the attack's forward passes leave batch-norm statistics
    alone; the loss is then taken in train mode on the mixed batch.
    """

    base: Objective
    model: nn.Module
    cfg: AdversarialConfig
    budget: AttackBudget

    def loss(self, forward: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator) -> Tensor:
        n_adv = round(self.cfg.mix * len(x))  # batches are shuffled: the first n are random
        if n_adv:
            b = self.budget.on(x)
            with eval_mode(self.model):
                x_adv = pgd(
                    self.model,
                    x[:n_adv],
                    y[:n_adv],
                    self.cfg.eps,
                    self.cfg.steps,
                    self.cfg.step_size,
                    "linf",
                    b.scale,
                    b.low,
                    b.high,
                    random_start=True,
                    generator=gen,
                    mask=b.mask,
                )
            x = torch.cat([x_adv, x[n_adv:]])
        return self.base.loss(forward, x, y, gen)

    def metrics(self, model: nn.Module, split: Split, settings: EvalSettings) -> dict[str, float]:
        return self.base.metrics(model, split, settings)

    def metric_names(self) -> tuple[str, ...]:
        return self.base.metric_names()
