"""The learning-rate range test: sweep the LR up exponentially, watch the loss, suggest a value."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from gradwise.artifacts import new_figure, write_png
from gradwise.config import Config
from gradwise.data.batcher import Batcher
from gradwise.data.dataset import Dataset
from gradwise.training.objectives import Objective
from gradwise.training.optim import make_optimizer


@dataclass(frozen=True)
class LRFindResult:
    """The sweep and its reading.

    Attributes:
        lrs: learning rate of each step.
        losses: exponentially smoothed (bias-corrected) training loss after each step.
        suggestion: the LR where the smoothed loss falls fastest (per log-LR), before its
            minimum: a safe, fast choice for `train.optimizer.lr`.
        min_loss_lr: the LR at the lowest smoothed loss (too high to train at; a tenth of it
            is a common alternative).
    """

    lrs: list[float]
    losses: list[float]
    suggestion: float
    min_loss_lr: float


def lr_find(
    model: nn.Module,
    data: Dataset,
    cfg: Config,
    objective: Objective,
    start_lr: float = 1e-7,
    end_lr: float = 10.0,
    steps: int = 200,
    smoothing: float = 0.98,
    diverge: float = 4.0,
) -> LRFindResult:
    """Train for up to `steps` batches, raising the LR from `start_lr` to `end_lr`.

    Stops early once the smoothed loss exceeds `diverge` times its best. The model's
    weights are changed; build a fresh one for real training.
    """
    opt = make_optimizer(model, cfg.train.optimizer)
    order = torch.Generator().manual_seed(cfg.seed)
    batches = Batcher(data.train, cfg.train.batch_size, shuffle=True, order=order)
    ratio = (end_lr / start_lr) ** (1 / max(steps - 1, 1))
    lrs: list[float] = []
    losses: list[float] = []
    avg, best = 0.0, math.inf
    model.train()
    step = 0
    while step < steps:
        for xb, yb in batches:
            lr = start_lr * ratio**step
            for group in opt.param_groups:
                group["lr"] = lr
            loss = objective.loss(model, xb, yb, order)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.train.grad_clip:  # 0 or None: no clipping
                nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            opt.step()
            value = loss.item()
            avg = smoothing * avg + (1 - smoothing) * value
            smoothed = avg / (1 - smoothing ** (step + 1))
            lrs.append(lr)
            losses.append(smoothed)
            step += 1
            if not math.isfinite(smoothed) or smoothed > diverge * best or step >= steps:
                return _read(lrs, losses)
            best = min(best, smoothed)
    return _read(lrs, losses)


def _read(lrs: list[float], losses: list[float]) -> LRFindResult:
    finite = [(lr, loss) for lr, loss in zip(lrs, losses) if math.isfinite(loss)]
    lr_arr = np.array([f[0] for f in finite])
    loss_arr = np.array([f[1] for f in finite])
    i_min = int(np.argmin(loss_arr))
    # skip the first steps (the smoothing has not settled) and stop at the minimum
    lo = min(len(loss_arr) // 10, max(i_min - 1, 0))
    if i_min - lo >= 2:
        slope = np.gradient(loss_arr[lo : i_min + 1], np.log10(lr_arr[lo : i_min + 1]))
        suggestion = float(lr_arr[lo + int(np.argmin(slope))])
    else:
        suggestion = float(lr_arr[i_min] / 10)
    return LRFindResult(lrs, losses, suggestion, float(lr_arr[i_min]))


def plot_lr_find(result: LRFindResult, path: Path) -> None:
    """Loss against learning rate (log scale) with the suggestion marked, as a PNG."""
    fig = new_figure(6, 4)
    ax = fig.subplots()
    ax.plot(result.lrs, result.losses, color="#1f77b4")
    ax.axvline(
        result.suggestion,
        color="#d62728",
        linestyle="--",
        label=f"suggested lr {result.suggestion:.2e}",
    )
    ax.axvline(
        result.min_loss_lr,
        color="#7f7f7f",
        linestyle=":",
        label=f"lowest loss at {result.min_loss_lr:.2e}",
    )
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss (smoothed)")
    finite = [v for v in result.losses if math.isfinite(v)]
    if finite:
        ax.set_ylim(min(finite) * 0.9, min(max(finite), finite[0] * 2) * 1.05)
    ax.legend()
    ax.set_title("learning-rate range test")
    write_png(path, fig)
