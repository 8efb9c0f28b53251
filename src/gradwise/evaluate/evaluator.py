"""Evaluate a model on a split: logits in batches, then the task's metrics."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gradwise.data.schema import Schema
from gradwise.evaluate.metrics import (
    classification_metrics,
    language_model_metrics,
    regression_metrics,
)
from gradwise.models.blocks import eval_mode


@dataclass(frozen=True)
class EvalSettings:
    """How to run a model over a split: batch size, device, autocast, memory format."""

    batch_size: int = 1024
    device: torch.device | None = None
    autocast: Callable[[], contextlib.AbstractContextManager] | None = None
    memory_format: torch.memory_format | None = None

    def amp(self) -> contextlib.AbstractContextManager:
        return self.autocast() if self.autocast else contextlib.nullcontext()


def eval_batches(
    x: Tensor, y: Tensor | None, settings: EvalSettings
) -> Iterator[tuple[Tensor, Tensor | None]]:
    """Consecutive (x, y) batches of `settings.batch_size`, on the settings' device and in
    its memory format; y is None when not given."""
    for start in range(0, len(x), settings.batch_size):
        xb = x[start : start + settings.batch_size]
        yb = None if y is None else y[start : start + settings.batch_size]
        if settings.device is not None:
            xb = xb.to(settings.device, non_blocking=True)
            yb = None if yb is None else yb.to(settings.device, non_blocking=True)
        if settings.memory_format is not None and xb.dim() == 4:
            xb = xb.contiguous(memory_format=settings.memory_format)
        yield xb, yb


@torch.no_grad()
def predict_logits(model: nn.Module, x: Tensor, settings: EvalSettings = EvalSettings()) -> Tensor:
    """Model outputs for all of x, in eval mode, batch by batch; returned on the CPU as float."""
    outs = []
    with eval_mode(model):
        for xb, _ in eval_batches(x, None, settings):
            with settings.amp():
                outs.append(model(xb).float().cpu())
    return torch.cat(outs) if outs else torch.empty(0)


def task_metric_names(schema: Schema) -> tuple[str, ...]:
    """The names `split_metrics` gives besides `loss` (ROC-AUC and average precision only for
    two classes, and only when both occur in the split)."""
    if schema.task == "classification":
        binary = ("roc_auc", "average_precision") if schema.n_outputs == 2 else ()
        return ("accuracy", "f1_macro", "log_loss", *binary)
    if schema.task in ("lm", "seq2seq", "mlm"):
        return ("perplexity", "bits_per_token", "accuracy")
    return ("rmse", "mae", "r2")


def split_metrics(
    logits: Tensor,
    y: Tensor,
    schema: Schema,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    last: Tensor | None = None,
) -> dict[str, float]:
    """The loss plus the task's metrics (regression in the target's own units; `last` as
    `regression_in_units` takes it)."""
    out = {"loss": loss_fn(logits, y).item()}
    if schema.task == "classification":
        out.update(classification_metrics(logits, y))
    elif schema.task in ("lm", "seq2seq", "mlm"):
        out.update(language_model_metrics(logits, y))
    else:
        out.update(regression_in_units(logits, y, schema, last))
    return out


def regression_in_units(
    logits: Tensor, y: Tensor, schema: Schema, last: Tensor | None = None
) -> dict[str, float]:
    """RMSE, MAE and R² of the decoded outputs against the decoded targets.

    Args:
        last: (N,) for a forecaster of changes (data.difference), each window's last target
            value (`SeriesPreprocessor.last_levels` of the split's raw windows): added to both
            so that the metrics read in levels. RMSE and MAE are the same either way; R² is
            not (the spread of levels, not of changes, is what the model explains). None: the
            decoded outputs as they are.
    """
    spec = schema.target
    mean = torch.tensor(spec.mean, dtype=torch.float64)
    std = torch.tensor(spec.std, dtype=torch.float64)
    pred, truth = logits.double() * std + mean, y.double() * std + mean
    if last is not None:  # changes -> levels
        base = last.double().reshape(-1, 1)
        pred, truth = pred + base, truth + base
    return regression_metrics(pred, truth)
