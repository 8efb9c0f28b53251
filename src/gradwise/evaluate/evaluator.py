"""Evaluate a model on a split: logits in batches, then the task's metrics."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gradwise.data.schema import Schema
from gradwise.evaluate.metrics import (
    classification_metrics,
    language_model_metrics,
    regression_metrics,
)


@dataclass(frozen=True)
class EvalSettings:
    """How to run a model over a split: batch size, device, autocast, memory format."""

    batch_size: int = 1024
    device: torch.device | None = None
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None
    memory_format: torch.memory_format | None = None


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, settings: EvalSettings = EvalSettings()) -> Tensor:
    """Model outputs for all of x, in eval mode, batch by batch; returned on the CPU as float."""
    batch_size, device = settings.batch_size, settings.device
    autocast, memory_format = settings.autocast, settings.memory_format
    was_training = model.training
    model.eval()
    outs = []
    try:
        for start in range(0, len(x), batch_size):
            xb = x[start : start + batch_size]
            if device is not None:
                xb = xb.to(device, non_blocking=True)
            if memory_format is not None:
                xb = xb.contiguous(memory_format=memory_format)
            with autocast() if autocast else contextlib.nullcontext():
                outs.append(model(xb).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(outs) if outs else torch.empty(0)


def split_metrics(
    logits: Tensor, y: Tensor, schema: Schema, loss_fn: Callable[[Tensor, Tensor], Tensor]
) -> dict[str, float]:
    """The loss plus the task's metrics (regression in the target's own units)."""
    out = {"loss": loss_fn(logits, y).item()}
    if schema.task == "classification":
        out.update(classification_metrics(logits, y))
    elif schema.task in ("lm", "seq2seq", "mlm"):
        out.update(language_model_metrics(logits, y))
    else:
        spec = schema.target
        mean = torch.tensor(spec.mean, dtype=torch.float64)
        std = torch.tensor(spec.std, dtype=torch.float64)
        out.update(regression_metrics(logits.double() * std + mean, y.double() * std + mean))
    return out
