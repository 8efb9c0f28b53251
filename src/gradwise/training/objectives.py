"""What a model is trained to do: the loss of a batch and the metrics of a split.

The loop never looks at the task: it asks the objective for a batch's loss and a split's
metrics. Supervised learning (x -> y with a loss on the outputs) is one objective; others
(masked-token prediction, denoising) bring their own inputs and targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn

from gradwise.config import Config, DiffusionConfig
from gradwise.data.dataset import Split
from gradwise.data.schema import Schema
from gradwise.evaluate.evaluator import (
    EvalSettings,
    predict_logits,
    split_metrics,
    task_metric_names,
)
from gradwise.models.moe import MoEFeedForward, moe_layers
from gradwise.training.losses import LossFn, make_loss


class Objective(Protocol):
    def loss(self, forward: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator) -> Tensor:
        """The training loss of one batch; `forward` may be a DDP or compiled wrapper."""
        ...

    def metrics(self, model: nn.Module, split: Split, settings: EvalSettings) -> dict[str, float]:
        """`loss` plus the task's metrics over a whole split, in eval mode."""
        ...

    def metric_names(self) -> tuple[str, ...]:
        """The keys `metrics` returns, known before any training (to check config names)."""
        ...


@dataclass(frozen=True)
class Supervised:
    """Predict y from x; the criterion scores the model's outputs."""

    criterion: LossFn
    schema: Schema
    moe: tuple[MoEFeedForward, ...] = ()  # their load-balancing losses join the loss

    def loss(self, forward: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator) -> Tensor:
        loss = self.criterion(forward(x), y)
        for layer in self.moe:
            loss = loss + layer.aux_loss
        return loss

    def metrics(self, model: nn.Module, split: Split, settings: EvalSettings) -> dict[str, float]:
        logits = predict_logits(model, split.x, settings)
        return split_metrics(logits, split.y, self.schema, self.criterion)

    def metric_names(self) -> tuple[str, ...]:
        return ("loss", *task_metric_names(self.schema))


def make_objective(cfg: Config, schema: Schema, criterion: LossFn, model: nn.Module) -> Objective:
    """The objective for a config: supervised unless the task or architecture brings its own;
    with train.adversarial, supervised on batches partly replaced by PGD examples."""
    moe = tuple(moe_layers(model))
    if cfg.train.adversarial is not None:
        from gradwise.training.adversarial import adversarial_objective

        return adversarial_objective(Supervised(criterion, schema, moe), cfg, schema, model)
    match cfg.model:
        case DiffusionConfig():
            from gradwise.training.denoising import Denoising

            return Denoising(cfg.model, schema)
    match schema.task:
        case "mlm":
            from gradwise.training.masked_lm import MaskedLM

            return MaskedLM(schema, cfg.model, moe)
        case "seq2seq":
            from gradwise.training.seq2seq import Seq2SeqObjective

            return Seq2SeqObjective(criterion, schema, cfg.model)
    return Supervised(criterion, schema, moe)


def run_objective(
    cfg: Config,
    schema: Schema,
    loss: str,
    model: nn.Module,
    y_train: Tensor,
    unweighted: bool = False,
) -> Objective:
    """The objective a run is trained and measured with, from its config and schema.

    Args:
        loss: the resolved loss name (`resolve_loss_name`; stored in model.json).
        y_train: the training targets, for `class_weights: balanced`.
        unweighted: no class weights (new data: weights belong to the training split).
    """
    loss_cfg = cfg.train.loss
    if unweighted:
        loss_cfg = loss_cfg.model_copy(update={"class_weights": "none"})
    n_classes = schema.n_outputs if schema.task == "classification" else 0
    criterion = make_loss(loss_cfg, loss, y_train, n_classes)
    return make_objective(cfg, schema, criterion, model)
