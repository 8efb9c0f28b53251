"""Losses: cross-entropy (label smoothing, class weights), binary cross-entropy, MSE, MAE, Huber."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from gradwise.config import LossConfig
from gradwise.errors import ConfigError

LossFn = Callable[[Tensor, Tensor], Tensor]

_CLASSIFICATION = ("cross_entropy", "bce")
_REGRESSION = ("mse", "mae", "huber")


def resolve_loss_name(cfg: LossConfig, task: str, n_classes: int) -> str:
    """The loss a run uses: `auto` picks cross-entropy or MSE; mismatches are config errors."""
    if cfg.name == "auto":
        return "mse" if task == "regression" else "cross_entropy"
    if task == "regression" and cfg.name in _CLASSIFICATION:
        raise ConfigError(
            f"train.loss.name {cfg.name} needs class labels but the task is regression; "
            "use mse, mae or huber (or data.task: classification)."
        )
    if task != "regression" and cfg.name in _REGRESSION:
        raise ConfigError(
            f"train.loss.name {cfg.name} is for regression but the task is {task}; "
            "use cross_entropy or bce."
        )
    if cfg.name == "bce" and (task != "classification" or n_classes != 2):
        raise ConfigError(
            f"train.loss.name bce is for two classes; this data has {n_classes}. Use cross_entropy."
        )
    return cfg.name


def make_loss(cfg: LossConfig, name: str, y_train: Tensor, n_classes: int) -> LossFn:
    """The loss function for logits and encoded targets.

    Args:
        cfg: the loss settings.
        name: from `resolve_loss_name`.
        y_train: training targets, for `class_weights: balanced`.
        n_classes: number of classes (0 for regression).
    """
    weight = _class_weights(cfg, y_train, n_classes) if name in _CLASSIFICATION else None
    match name:
        case "cross_entropy":
            smoothing = cfg.label_smoothing

            def cross_entropy(logits: Tensor, y: Tensor) -> Tensor:
                if logits.dim() == 3:  # (B, T, V) language model
                    logits, y = logits.flatten(0, 1), y.flatten()
                w = weight.to(logits.device) if weight is not None else None
                return F.cross_entropy(logits.float(), y, weight=w, label_smoothing=smoothing)

            return cross_entropy
        case "bce":
            pos_weight = weight[1:] / weight[0] if weight is not None else None
            smoothing = cfg.label_smoothing

            def bce(logits: Tensor, y: Tensor) -> Tensor:
                target = y.float() * (1 - smoothing) + 0.5 * smoothing
                pw = pos_weight.to(logits.device) if pos_weight is not None else None
                return F.binary_cross_entropy_with_logits(
                    logits[:, 0].float(), target, pos_weight=pw
                )

            return bce
        case "mse":
            return lambda pred, y: F.mse_loss(pred.float(), y)
        case "mae":
            return lambda pred, y: F.l1_loss(pred.float(), y)
        case "huber":
            delta = cfg.huber_delta
            return lambda pred, y: F.huber_loss(pred.float(), y, delta=delta)
    raise AssertionError(name)


def _class_weights(cfg: LossConfig, y: Tensor, n_classes: int) -> Tensor | None:
    if cfg.class_weights == "none":
        return None
    if cfg.class_weights == "balanced":
        counts = torch.bincount(y.flatten(), minlength=n_classes).double()
        return (counts.sum() / (n_classes * counts.clamp_min(1))).float()
    if len(cfg.class_weights) != n_classes:
        raise ConfigError(
            f"train.loss.class_weights has {len(cfg.class_weights)} values for {n_classes} "
            "classes; give one per class, in the order of the sorted labels, or 'balanced'."
        )
    return torch.tensor(cfg.class_weights, dtype=torch.float32)
