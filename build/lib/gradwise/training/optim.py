"""Optimizers (SGD, Adam, AdamW, RMSprop) and learning-rate schedules with linear warm-up."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from gradwise.config import OptimizerConfig, ScheduleConfig


def decay_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Weights (matrices, kernels, embeddings) decay; biases and norm scales (1-D) do not.

    Frozen parameters are included: the optimizer skips them while they have no gradient,
    and picks them up when `train.unfreeze_epoch` comes.
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        (decay if p.ndim >= 2 else no_decay).append(p)
    return decay, no_decay


def make_optimizer(model: nn.Module, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    decay, no_decay = decay_groups(model)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if cfg.weight_decay == 0:  # the groups would be alike; each costs a kernel call per step
        groups = [{"params": decay + no_decay, "weight_decay": 0.0}]
    # The fused kernels run one pass over all parameters: on a small model, the
    # per-tensor launch overhead is most of an optimizer step.
    fused = all(p.device.type in ("cpu", "cuda") for p in decay + no_decay)
    match cfg.name:
        case "sgd":
            momentum = 0.9 if cfg.momentum is None else cfg.momentum
            return torch.optim.SGD(
                groups, lr=cfg.lr, momentum=momentum, nesterov=cfg.nesterov, fused=fused
            )
        case "adam":
            return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=fused)
        case "adamw":
            return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=fused)
        case "rmsprop":
            return torch.optim.RMSprop(
                groups, lr=cfg.lr, alpha=cfg.alpha, eps=cfg.eps, momentum=cfg.momentum or 0.0
            )
    raise AssertionError(cfg.name)


class Schedule:
    """The learning rate as a function of the optimizer step, times a linear warm-up.

    Every schedule but `plateau` is a pure function of the step, so resuming needs only the
    step count; `plateau` also keeps its best value and patience counter.

    Args:
        cfg: schedule settings.
        peak_lr: the optimizer's configured learning rate.
        steps_per_epoch: optimizer steps per epoch (after gradient accumulation).
        total_steps: optimizer steps in the whole run.
    """

    def __init__(
        self, cfg: ScheduleConfig, peak_lr: float, steps_per_epoch: int, total_steps: int
    ) -> None:
        self.cfg = cfg
        self.peak_lr = peak_lr
        self.steps_per_epoch = max(1, steps_per_epoch)
        self.total_steps = max(1, total_steps)
        self.step = 0
        self.plateau_scale = 1.0
        self.plateau_best = math.inf
        self.plateau_bad = 0

    def lr(self, step: int | None = None) -> float:
        s = self.step if step is None else step
        cfg = self.cfg
        warm = min(1.0, (s + 1) / cfg.warmup_steps) if cfg.warmup_steps else 1.0
        match cfg.name:
            case "constant":
                f = 1.0
            case "step":
                gamma = 0.1 if cfg.gamma is None else cfg.gamma
                f = gamma ** (s // (self.steps_per_epoch * cfg.step_size))
            case "exponential":
                gamma = 0.95 if cfg.gamma is None else cfg.gamma
                f = gamma ** (s / self.steps_per_epoch)
            case "cosine":
                span = max(1, self.total_steps - cfg.warmup_steps)
                t = min(1.0, max(0, s - cfg.warmup_steps) / span)
                f = cfg.min_lr + (1 - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * t))
            case "plateau":
                f = self.plateau_scale
            case "onecycle":
                f = _one_cycle(s / self.total_steps, cfg.pct_start)
        return self.peak_lr * warm * f

    def apply(self, opt: torch.optim.Optimizer) -> None:
        lr = self.lr()
        for group in opt.param_groups:
            group["lr"] = lr

    def epoch_end(self, value: float | None, lower_is_better: bool) -> None:
        """Feed the monitored metric to `plateau`; other schedules ignore it."""
        if self.cfg.name != "plateau" or value is None:
            return
        score = value if lower_is_better else -value
        if score < self.plateau_best - 1e-12:
            self.plateau_best, self.plateau_bad = score, 0
        else:
            self.plateau_bad += 1
            if self.plateau_bad > self.cfg.patience:
                self.plateau_scale *= self.cfg.factor
                self.plateau_bad = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "plateau_scale": self.plateau_scale,
            "plateau_best": self.plateau_best,
            "plateau_bad": self.plateau_bad,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.plateau_scale = float(state["plateau_scale"])
        self.plateau_best = float(state["plateau_best"])
        self.plateau_bad = int(state["plateau_bad"])


def _one_cycle(t: float, pct_start: float) -> float:
    """Smith's one-cycle (as torch's OneCycleLR, cosine): lr/25 up to lr, then down to lr/25e4."""
    start, end = 1 / 25, 1 / 25e4
    if t < pct_start:
        return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * t / pct_start))
    u = min(1.0, (t - pct_start) / (1 - pct_start))
    return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * u))
