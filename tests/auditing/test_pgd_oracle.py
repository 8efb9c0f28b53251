"""Our PGD (the robustness audit's and adversarial training's attack) against torchattacks'
PGD on a tiny model and batch: same radius, steps and step size, no random start. The two
must find the same adversarial images (to float rounding), so the same robust accuracy. The
labels are the model's own predictions and the radius small, so the attack flips some
predictions and not others: equal accuracies then say something.

torchattacks is installed by `make` with `pip install --no-deps torchattacks`."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradwise.auditing.robustness import pgd

torchattacks = pytest.importorskip(
    "torchattacks", reason="torchattacks is the oracle: pip install --no-deps torchattacks"
)

EPS, STEPS, STEP_SIZE = 0.03, 7, 0.0075  # in [0, 1] pixel units


def tiny_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 8, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * 6 * 6, 3),
    ).eval()


def images(n: int = 64, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 2, 6, 6, generator=g)  # pixels in [0, 1], as torchattacks needs


def predicted(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def test_pgd_on_pixels_matches_torchattacks():
    model, x = tiny_cnn(), images()
    y = predicted(model, x)
    theirs = torchattacks.PGD(model, eps=EPS, alpha=STEP_SIZE, steps=STEPS, random_start=False)
    adv_theirs = theirs(x, y)
    adv_ours = pgd(model, x, y, EPS, STEPS, STEP_SIZE, "linf", 1.0, 0.0, 1.0, random_start=False)

    robust = accuracy(model, adv_ours, y)
    assert robust == accuracy(model, adv_theirs, y)
    assert 0.0 < robust < 1.0  # some predictions flipped, not all
    assert (adv_ours - adv_theirs).abs().max() < 1e-5
    assert (adv_ours - x).abs().max() <= EPS + 1e-6
    assert adv_ours.min() >= 0.0 and adv_ours.max() <= 1.0


def test_pgd_on_standardised_inputs_matches_torchattacks_told_the_normalisation():
    """As the audit calls it: the model reads standardised inputs, eps is in raw pixel units
    (scale = std), the bounds are the pixel range in model units."""
    model, pixels = tiny_cnn(seed=2), images(seed=3)
    mean, std = torch.tensor([0.4, 0.6]), torch.tensor([0.2, 0.3])
    m, s = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
    x = (pixels - m) / s
    y = predicted(model, x)
    theirs = torchattacks.PGD(model, eps=EPS, alpha=STEP_SIZE, steps=STEPS, random_start=False)
    theirs.set_normalization_used(mean=mean.tolist(), std=std.tolist())
    adv_theirs = theirs(x, y)  # model inputs in, model inputs out; attacked as pixels
    adv_ours = pgd(
        model, x, y, EPS, STEPS, STEP_SIZE, "linf", s, (0 - m) / s, (1 - m) / s, random_start=False
    )

    robust = accuracy(model, adv_ours, y)
    assert robust == accuracy(model, adv_theirs, y)
    assert 0.0 < robust < 1.0
    ours_pixels, their_pixels = adv_ours * s + m, adv_theirs * s + m
    assert (ours_pixels - their_pixels).abs().max() < 1e-5
    assert (ours_pixels - pixels).abs().max() <= EPS + 1e-5
