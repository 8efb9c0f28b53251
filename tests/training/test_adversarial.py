"""Adversarial training (train.adversarial): the mechanics, the refusals, and the gain."""

from pathlib import Path

import pytest
import torch
from torch import nn

import gradwise
from gradwise.config import AdversarialConfig, load_config
from gradwise.data.sources import load_dataset
from gradwise.errors import ConfigError
from gradwise.training.adversarial import AdversarialSupervised, attack_budget, pgd
from tests.conftest import tiny_config


class _Recorder:
    """A base objective that keeps the batch it was asked to score."""

    def __init__(self) -> None:
        self.x: torch.Tensor | None = None

    def loss(self, forward, x, y, gen):
        self.x = x
        return forward(x).sum()

    def metrics(self, model, split, settings):
        return {}


def test_mix_replaces_that_share_of_the_batch_within_eps_in_raw_units():
    cfg = load_config(tiny_config())
    schema = load_dataset(cfg.data, cfg.seed).schema
    budget = attack_budget(schema)  # digits: raw pixel levels, std per channel
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Dropout(0.5), nn.Linear(32, 10))
    model.train()
    base = _Recorder()
    adv = AdversarialSupervised(base, model, AdversarialConfig(eps=2.0, mix=0.25), budget)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 1, 8, 8, generator=g).clamp(-1, 1)
    y = torch.randint(0, 10, (16,), generator=g)
    adv.loss(model, x, y, g)
    assert model.training  # the attack ran in eval mode and gave the mode back
    seen = base.x
    assert seen is not None and torch.equal(seen[4:], x[4:])  # 75% untouched
    raw_change = (seen[:4] - x[:4]) * budget.scale
    assert raw_change.abs().max() <= 2.0 + 1e-4 and raw_change.abs().max() > 1.0


def test_adversarial_training_is_refused_for_regression_and_text(tmp_path: Path):
    regression = tiny_config(
        data={"source": "builtin:diabetes", "target": "target"},
        train={"adversarial": {"eps": 0.1}},
    )
    with pytest.raises(ConfigError, match="train.adversarial trains classifiers"):
        gradwise.train(regression, out=tmp_path / "reg")
    (tmp_path / "c.txt").write_text("abc def ghi " * 50)
    lm = tiny_config(
        data={"source": f"text:{tmp_path / 'c.txt'}", "block_size": 8},
        model={"arch": "gru", "hidden": 8, "embed_dim": 4},
        train={"adversarial": {"eps": 0.1}},
    )
    with pytest.raises(ConfigError, match="train.adversarial"):
        gradwise.train(lm, out=tmp_path / "lm")


def _robust_accuracy(run: gradwise.Run, eps: float) -> float:
    test = run.split("test")
    b = attack_budget(run.schema)
    x_adv = pgd(
        run.model,
        test.x,
        test.y,
        eps,
        10,
        scale=b.scale,
        low=b.low,
        high=b.high,
        random_start=False,
    )
    return float((run.logits(x_adv).argmax(1) == test.y).float().mean())


def test_adversarially_trained_mlp_is_more_robust_at_the_same_eps(tmp_path: Path):
    plain = tiny_config(train={"epochs": 20}, model={"hidden": [64]})
    defended = tiny_config(
        train={"epochs": 20, "adversarial": {"eps": 2.0, "steps": 3, "mix": 1.0}},
        model={"hidden": [64]},
    )
    a = gradwise.train(plain, out=tmp_path / "plain")
    b = gradwise.train(defended, out=tmp_path / "adv")
    assert b.config.train.adversarial is not None  # written into config.yaml
    # digits, eps 2 of 16 pixel levels: ~0.17 plain vs ~0.50 adversarial (seeded)
    assert _robust_accuracy(b, 2.0) > _robust_accuracy(a, 2.0) + 0.15
    assert b.metrics["test"]["accuracy"] > 0.85  # and it still classifies clean digits
