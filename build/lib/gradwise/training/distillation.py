"""Knowledge distillation (Hinton et al., 2015): a student learns from a teacher's soft targets.

loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T))
       + (1 - alpha) * hard-label loss(student, y)

The T^2 keeps the soft term's gradients on the scale of the hard term's as T grows. A model
with one logit (bce) is read as two classes with logits (0, z).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradwise.data.dataset import Split
from gradwise.evaluate.evaluator import EvalSettings
from gradwise.training.losses import LossFn
from gradwise.training.objectives import Supervised


def _two_class(logits: Tensor) -> Tensor:
    return torch.cat([torch.zeros_like(logits), logits], dim=1) if logits.shape[1] == 1 else logits


def distillation_loss(
    student: Tensor,
    teacher: Tensor,
    y: Tensor,
    criterion: LossFn,
    temperature: float,
    alpha: float,
) -> Tensor:
    """The distillation loss of one batch.

    Args:
        student, teacher: (B, K) logits (or (B, 1) for bce).
        y: (B,) targets for the hard-label `criterion`.
        temperature: T > 0; higher spreads the teacher's probabilities over more classes.
        alpha: weight of the soft term in [0, 1]; 0 is plain training on the labels.
    """
    s = _two_class(student.float()) / temperature
    t = _two_class(teacher.float()) / temperature
    soft = F.kl_div(
        F.log_softmax(s, dim=1), F.log_softmax(t, dim=1), reduction="batchmean", log_target=True
    )
    return alpha * temperature**2 * soft + (1 - alpha) * criterion(student, y)


@dataclass(frozen=True)
class Distillation:
    """The supervised objective with the teacher's soft targets mixed in; implements
    `training.objectives.Objective`. Metrics are the plain supervised ones.

    Attributes:
        base: the student's own supervised objective (its criterion and MoE layers).
        teacher: in eval mode, on the student's device; it sees the same (augmented) batch.
    """

    base: Supervised
    teacher: nn.Module
    temperature: float = 4.0
    alpha: float = 0.7

    def loss(self, forward: nn.Module, x: Tensor, y: Tensor, gen: torch.Generator) -> Tensor:
        logits = forward(x)
        with torch.no_grad():
            teacher = self.teacher.to(x.device).eval()(x)
        loss = distillation_loss(
            logits, teacher, y, self.base.criterion, self.temperature, self.alpha
        )
        for layer in self.base.moe:
            loss = loss + layer.aux_loss
        return loss

    def metrics(self, model: nn.Module, split: Split, settings: EvalSettings) -> dict[str, float]:
        return self.base.metrics(model, split, settings)

    def metric_names(self) -> tuple[str, ...]:
        return self.base.metric_names()
