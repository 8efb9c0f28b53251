"""Knowledge distillation: the loss against a hand computation, and the objective's wiring."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gradwise.training.distillation import distillation_loss


def test_distillation_loss_equals_a_hand_computation():
    student = torch.tensor([[2.0, 0.5, -1.0], [0.0, 1.0, 0.0]])
    teacher = torch.tensor([[3.0, 1.0, -2.0], [0.5, 0.5, 2.0]])
    y = torch.tensor([0, 2])
    t, alpha = 2.0, 0.6

    def softmax(row: list[float]) -> list[float]:
        e = [math.exp(v / t) for v in row]
        return [v / sum(e) for v in e]

    kl = 0.0
    for s_row, t_row in zip(student.tolist(), teacher.tolist()):
        p, q = softmax(t_row), softmax(s_row)
        kl += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    kl /= 2
    ce = 0.0
    for row, label in zip(student.tolist(), y.tolist()):
        ce -= math.log(math.exp(row[label]) / sum(math.exp(v) for v in row))
    ce /= 2
    expected = alpha * t * t * kl + (1 - alpha) * ce
    got = distillation_loss(student, teacher, y, F.cross_entropy, t, alpha)
    assert float(got) == pytest.approx(expected, rel=1e-6)


def test_alpha_zero_is_the_hard_label_loss_and_one_logit_reads_as_two_classes():
    gen = torch.Generator().manual_seed(0)
    s, tch = torch.randn(5, 1, generator=gen), torch.randn(5, 1, generator=gen)
    y = torch.randint(0, 2, (5,), generator=gen)

    def bce(z: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(z[:, 0], target.float())

    assert float(distillation_loss(s, tch, y, bce, 3.0, 0.0)) == pytest.approx(float(bce(s, y)))
    two = lambda z: torch.cat([torch.zeros_like(z), z], dim=1)  # noqa: E731
    soft_one = distillation_loss(s, tch, y, bce, 3.0, 1.0)
    soft_two = distillation_loss(two(s), two(tch), y, F.cross_entropy, 3.0, 1.0)
    assert float(soft_one) == pytest.approx(float(soft_two), rel=1e-6)
