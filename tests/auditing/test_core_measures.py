"""ECE, temperature scaling and PGD against direct computations."""

import numpy as np
import pytest
import torch
from torch import nn

from gradwise.auditing.calibration import expected_calibration_error, fit_temperature
from gradwise.auditing.robustness import fgsm, pgd


def test_ece_is_zero_when_confidence_matches_accuracy():
    probs = np.array([[0.8, 0.2]] * 5)
    labels = np.array([0, 0, 0, 0, 1])
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0)


def test_ece_equals_a_hand_computation():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(500, 4)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = rng.integers(0, 4, 500)
    conf, pred = probs.max(1), probs.argmax(1)
    expected = 0.0
    for lo, hi in zip(np.linspace(0, 1, 16)[:-1], np.linspace(0, 1, 16)[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            gap = abs((pred[inside] == labels[inside]).mean() - conf[inside].mean())
            expected += inside.mean() * gap
    assert expected_calibration_error(probs, labels, 15) == pytest.approx(expected, abs=1e-12)


def test_equal_mass_bins_hold_equal_counts():
    from gradwise.auditing.calibration import reliability

    rng = np.random.default_rng(1)
    probs = rng.dirichlet([1, 1, 1], size=300)
    _, _, counts = reliability(probs, rng.integers(0, 3, 300), 10, "mass")
    assert counts.min() >= 29 and counts.max() <= 31


def test_temperature_recovers_the_one_that_made_the_data_overconfident():
    g = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 5, generator=g) * 2
    labels = torch.multinomial(true_logits.softmax(1), 1, generator=g)[:, 0]
    t = fit_temperature(true_logits * 3.0, labels)  # logits three times too sharp
    assert t == pytest.approx(3.0, rel=0.1)


def test_pgd_stays_within_eps_in_raw_units_and_never_beats_clean_accuracy():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3)).eval()
    x = torch.randn(64, 6)
    y = model(x).argmax(1)  # the model is right on every clean input
    scale = torch.tensor([0.5, 1.0, 2.0, 1.0, 1.0, 4.0])
    g = torch.Generator().manual_seed(0)
    x_adv = pgd(model, x, y, eps=0.3, steps=20, scale=scale, generator=g)
    raw_change = (x_adv - x) * scale
    assert raw_change.abs().max() <= 0.3 + 1e-5
    acc = (model(x_adv).argmax(1) == y).float().mean()
    assert acc < 1.0  # the attack finds mistakes
    assert torch.equal(pgd(model, x, y, eps=0.0), x)
    x_l2 = pgd(model, x, y, eps=0.5, steps=20, norm="l2", generator=g)
    assert x_l2.sub(x).flatten(1).norm(dim=1).max() <= 0.5 + 1e-5


def test_fgsm_is_one_signed_step_of_eps():
    model = nn.Linear(4, 2)
    x, y = torch.randn(8, 4), torch.zeros(8, dtype=torch.long)
    x_adv = fgsm(model, x, y, eps=0.1)
    assert torch.allclose((x_adv - x).abs(), torch.full_like(x, 0.1), atol=1e-6)
    low, high = x.min().item(), x.max().item()
    bounded = fgsm(model, x, y, eps=10.0, low=low, high=high)
    assert bounded.min() >= low - 1e-6 and bounded.max() <= high + 1e-6
