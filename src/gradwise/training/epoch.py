"""One epoch of optimizer steps, and the state the training loop sets up for every epoch.

`loop.fit` builds a `Loop` once; `train_epoch` runs the steps of one epoch over its batches
(accumulation, clipping, the schedule, bf16 master weights, DDP's no-sync steps) and offers a
streamed table's checkpoint its position after each step.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from gradwise.config import TrainConfig
from gradwise.data.batcher import Batcher
from gradwise.data.stream_train import StreamBatcher
from gradwise.errors import TrainingDiverged
from gradwise.evaluate.evaluator import EvalSettings
from gradwise.training.diagnostics import layer_grad_norms
from gradwise.training.early_stopping import EarlyStopping
from gradwise.training.objectives import Objective
from gradwise.training.optim import Schedule
from gradwise.training.position import Position, SaveWithin, loss_sum
from gradwise.training.precision import Bf16Weights


@dataclass
class Loop:
    """What `fit` sets up once and every epoch uses."""

    model: nn.Module
    forward: nn.Module  # the model, wrapped for DDP and torch.compile when asked
    ddp: nn.parallel.DistributedDataParallel | None
    device: torch.device
    memory_format: torch.memory_format | None
    amp: Callable[[], Any]
    settings: EvalSettings
    batches: Batcher | StreamBatcher
    opt: torch.optim.Optimizer
    sched: Schedule
    early: EarlyStopping
    epochs: int  # train.epochs, or what resolved_epochs chose for it
    order: torch.Generator  # the batch order
    noise: torch.Generator  # augmentation and the objective's noise, one stream per rank
    penalty: Callable[[], Tensor] | None
    bf16: Bf16Weights | None  # bf16 copies of the weights (train.precision: bf16)


def train_epoch(
    loop: Loop,
    objective: Objective,
    tc: TrainConfig,
    progress: Callable[[int, int], None] | None,
    start: Position,
    save_within: SaveWithin | None = None,
) -> tuple[float, float | None, dict[str, float]]:
    """One pass over the training batches; returns mean loss, max gradient norm, layer norms.

    Args:
        start: the epoch, and where a checkpoint left it part-done (its batches are
            skipped; 0 batches: from its start).
        save_within: offered the position after each optimizer step (a streamed table's
            checkpoints inside an epoch).
    """
    forward, model, batches, opt, sched = (
        loop.forward,
        loop.model,
        loop.batches,
        loop.opt,
        loop.sched,
    )
    gen, amp, penalty, ddp, bf16 = loop.noise, loop.amp, loop.penalty, loop.ddp, loop.bf16
    done = start.batches
    model.train()
    if bf16 is not None:  # the fp32 weights may have changed: a resume, an unfreeze
        bf16.refresh()
    params = [p for p in model.parameters() if p.requires_grad]
    n_batches = len(batches)
    k = tc.accumulate
    losses: list[Tensor] = []  # one per batch, summed after the epoch: no arithmetic per step
    sizes: list[int] = []
    max_norm: Tensor | None = None
    if start.max_norm is not None:
        max_norm = torch.tensor(start.max_norm)
    grad_norms: dict[str, float] = {}
    report_every = max(1, n_batches // 50)
    for i, (xb, yb) in enumerate(batches, start=done):
        group_start = (i // k) * k
        group_size = min(k, n_batches - group_start)
        boundary = i - group_start + 1 == group_size
        with _no_sync(ddp, boundary):
            with amp():
                loss = objective.loss(forward, xb, yb, gen)
                if penalty is not None:
                    loss = loss + penalty()
            # loss / 1 would add an op (and its backward) per step and change nothing
            (loss if group_size == 1 else loss / group_size).backward()
            if bf16 is not None:
                bf16.grads_to_master()
        losses.append(loss.detach())
        sizes.append(len(xb))
        if boundary:
            if tc.diagnostics and i + 1 == n_batches:
                grad_norms = layer_grad_norms(model)
            if tc.grad_clip:  # 0 or None: no clipping
                norm = torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
                max_norm = norm if max_norm is None else torch.maximum(max_norm, norm)
            sched.apply(opt)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if bf16 is not None:
                bf16.refresh()
            sched.step += 1
            if save_within is not None:
                save_within(functools.partial(_position, start, losses, sizes, max_norm))
        if progress is not None and (i % report_every == 0 or i + 1 == n_batches):
            progress(i + 1, n_batches)
    so_far = _position(start, losses, sizes, max_norm)
    mean = so_far.loss_total / max(so_far.rows, 1)
    return mean, so_far.max_norm, grad_norms


def _position(
    start: Position, losses: list[Tensor], sizes: list[int], max_norm: Tensor | None
) -> Position:
    """The epoch's position after the batches of `losses`, counted on from `start`."""
    return Position(
        epoch=start.epoch,
        batches=start.batches + len(losses),
        loss_total=loss_sum(losses, sizes, start.loss_total),
        rows=start.rows + sum(sizes),
        max_norm=None if max_norm is None else float(max_norm),
    )


def _no_sync(ddp: nn.parallel.DistributedDataParallel | None, boundary: bool) -> Any:
    # Accumulating micro-batches need no all-reduce until the step that uses them.
    return ddp.no_sync() if ddp is not None and not boundary else contextlib.nullcontext()


def check_divergence(
    loss: float, max_norm: float | None, epoch: int, sched: Schedule, tc: TrainConfig
) -> None:
    """Stop a run whose loss is no longer finite or whose gradient norm exploded, with the
    likely fix."""
    lr = sched.lr(max(sched.step - 1, 0))
    fixes = (
        f"try a lower learning rate (--set train.optimizer.lr={lr / 10:.1e}), gradient clipping "
        "(train.grad_clip: 1.0), or an init that suits the activation (model.init: he for ReLU, "
        "xavier for tanh). The last good checkpoint is kept."
    )
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"The training loss became {loss} in epoch {epoch} (learning rate {lr:.2e}): the "
            f"weights diverged. Likely cause: a learning rate too high for this model; {fixes}"
        )
    if max_norm is not None and (not math.isfinite(max_norm) or max_norm > tc.explode_threshold):
        raise TrainingDiverged(
            f"The gradient norm reached {max_norm:.3g} in epoch {epoch}, above "
            f"train.explode_threshold={tc.explode_threshold:g}: the gradients exploded. "
            f"Likely causes: a learning rate too high or a poor initialisation; {fixes}"
        )
