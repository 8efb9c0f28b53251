"""train.epochs unset: enough epochs for train.min_steps optimizer steps; given: exactly that."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import gradwise
from gradwise.config import TrainConfig, load_config
from gradwise.errors import ConfigError
from gradwise.training.epochs import AUTO_EPOCHS, epochs_reason, resolved_epochs, steps_per_epoch
from tests.conftest import tiny_config


def test_steps_per_epoch_counts_batches_then_accumulation():
    assert steps_per_epoch(130, TrainConfig(batch_size=64)) == 3  # 64 + 64 + 2
    assert steps_per_epoch(130, TrainConfig(batch_size=64, accumulate=2)) == 2  # 2 + 1 batches
    assert steps_per_epoch(0, TrainConfig()) == 1


@pytest.mark.parametrize(
    ("min_steps", "steps", "expected"),
    [
        (3000, 12, 250),  # 3000 / 12 steps
        (3001, 12, 251),  # rounded up: never fewer than min_steps
        (2000, 500, AUTO_EPOCHS[0]),  # big data: the old 30 already exceed min_steps
        (100_000, 2, AUTO_EPOCHS[1]),  # tiny data: capped
    ],
)
def test_unset_epochs_allow_at_least_min_steps_within_bounds(min_steps, steps, expected):
    tc = TrainConfig(min_steps=min_steps)
    assert tc.epochs is None
    assert resolved_epochs(tc, steps) == expected
    if AUTO_EPOCHS[0] < expected < AUTO_EPOCHS[1]:
        assert expected * steps >= min_steps > (expected - 1) * steps


def test_given_epochs_mean_exactly_that():
    tc = TrainConfig(epochs=7, min_steps=100_000)
    assert resolved_epochs(tc, 1) == 7
    assert epochs_reason(tc, 1) == "train.epochs: 7 as given"


def test_the_reason_names_the_choice_and_its_inputs():
    reason = epochs_reason(TrainConfig(min_steps=3000), 12)
    assert reason == (
        "train.epochs not set: 250, for at least 3000 optimizer steps (train.min_steps) at "
        "12 steps per epoch"
    )
    assert "(the most chosen)" in epochs_reason(TrainConfig(min_steps=10**6), 1)


def test_epochs_and_min_steps_are_validated():
    with pytest.raises(ConfigError, match="train.min_steps"):
        load_config(tiny_config(train={"min_steps": 0}))
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config(tiny_config(train={"epochs": 0}))


def _train(tmp_path: Path, **train: object) -> gradwise.Run:
    """The tiny digits MLP in 3 batches an epoch, early stopping off; tiny_config's epochs
    dropped unless given."""
    cfg = tiny_config()
    cfg["train"] = {"batch_size": 512, "early_stopping": {"patience": None}, **train}
    return gradwise.train(cfg, out=tmp_path / "run")


def test_a_run_without_epochs_trains_the_resolved_number(tmp_path: Path):
    run = _train(tmp_path, min_steps=99)
    n_train = int(run.metrics["n_train"])
    steps = math.ceil(n_train / 512)
    assert run.metrics["epochs"] == max(AUTO_EPOCHS[0], math.ceil(99 / steps))
    assert run.metrics["epochs"] > AUTO_EPOCHS[0]  # the setting, not the floor, decided


def test_a_run_with_epochs_trains_exactly_them(tmp_path: Path):
    run = _train(tmp_path, epochs=3, min_steps=100_000)
    assert run.metrics["epochs"] == 3


def test_unset_epochs_are_written_to_the_resolved_config(tmp_path: Path):
    run = _train(tmp_path, min_steps=99)
    steps = math.ceil(int(run.metrics["n_train"]) / 512)
    chosen = max(AUTO_EPOCHS[0], math.ceil(99 / steps))
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved.train.epochs == run.config.train.epochs == chosen
    assert "epochs" not in (tmp_path / "run" / "config.given.yaml").read_text()
    log = (tmp_path / "run" / "train.log").read_text()
    assert f"train.epochs not set: {chosen}, for at least 99 optimizer steps" in log
