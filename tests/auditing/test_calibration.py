"""The calibration check on trained runs: its numbers against direct computations, and
temperature scaling on a model made over-confident on purpose."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import log_loss

import gradwise
from gradwise.auditing import run_checks
from tests.conftest import tiny_config


def _hand_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> float:
    conf, pred = probs.max(1), probs.argmax(1)
    edges = np.linspace(0, 1, n_bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            gap = (pred[inside] == labels[inside]).mean() - conf[inside].mean()
            total += inside.mean() * abs(gap)
    return total


@pytest.fixture(scope="module")
def overconfident(tmp_path_factory: pytest.TempPathFactory) -> gradwise.Run:
    """A digits MLP trained to zero training loss on 108 samples: no dropout, no weight
    decay, no early stopping, 300 epochs. Its confidence runs well above its accuracy."""
    cfg = tiny_config(
        model={"hidden": [256, 256], "dropout": 0.0},
        data={"split": {"val": 0.2, "test": 0.5, "train_fraction": 0.2}},
        train={
            "epochs": 300,
            "batch_size": 32,
            "optimizer": {"name": "adam", "lr": 3e-3, "weight_decay": 0.0},
            "schedule": {"name": "constant"},
            "early_stopping": {"patience": None, "restore_best": False},
            "checkpoint": False,
            "diagnostics": False,
        },
    )
    return gradwise.train(cfg, out=tmp_path_factory.mktemp("over") / "run")


def test_temperature_scaling_at_least_halves_the_ece_of_an_overconfident_mlp(overconfident):
    run = overconfident
    result = run_checks(run, ["calibration"])["calibration"]
    before, after = result.metrics["before"], result.metrics["after"]
    assert before["mean_confidence"] > before["accuracy"] + 0.02  # over-confident indeed
    assert "overconfident" in result.summary
    assert result.metrics["temperature"] > 1.0
    assert after["ece"] <= before["ece"] / 2
    assert after["accuracy"] == before["accuracy"]
    assert after["nll"] < before["nll"]


def test_the_stored_temperature_is_what_predict_applies(overconfident):
    run_checks(overconfident, ["calibration"])
    reloaded = gradwise.load(overconfident.path)
    t = reloaded.calibration.temperature
    stored = json.loads((overconfident.path / "audit" / "calibration.json").read_text())
    assert t == pytest.approx(stored["metrics"]["temperature"])
    test = reloaded.split("test")
    expected = (reloaded.logits(test.x) / t).softmax(1).numpy()
    np.testing.assert_allclose(reloaded.predict_proba(test.raw), expected, atol=1e-6)
    # the check measures "before" on the uncalibrated model, even with a temperature stored
    again = run_checks(reloaded, ["calibration"])["calibration"]
    assert again.metrics["before"]["ece"] == pytest.approx(stored["metrics"]["before"]["ece"])


def test_the_check_numbers_equal_direct_computations(overconfident):
    run = overconfident
    result = run_checks(run, ["calibration"])["calibration"]
    test = run.split("test")
    probs = run.logits(test.x).double().softmax(1).numpy()
    labels = test.y.numpy()
    before = result.metrics["before"]
    assert before["ece"] == pytest.approx(_hand_ece(probs, labels, 15), abs=1e-9)
    assert before["nll"] == pytest.approx(log_loss(labels, probs, labels=range(10)), rel=1e-6)
    onehot = np.eye(10)[labels]
    assert before["brier"] == pytest.approx(((probs - onehot) ** 2).sum(1).mean(), rel=1e-9)
    assert before["accuracy"] == pytest.approx((probs.argmax(1) == labels).mean())
    assert result.settings["bins"] == 15 and "equal-mass" in result.settings["binning"]
    assert result.plots == ("calibration.png",)
    assert (run.path / "audit" / "calibration.png").stat().st_size > 1000
    assert result.verdict == ("pass" if result.metrics["after"]["ece"] < 0.05 else "warn")


def test_without_storing_the_temperature_the_run_is_untouched_and_graded_as_is(tmp_path):
    cfg = tiny_config(audit={"calibration": {"store_temperature": False, "bins": 10}})
    run = gradwise.train(cfg, out=tmp_path / "r")
    result = run_checks(run, ["calibration"])["calibration"]
    assert gradwise.load(run.path).calibration.temperature is None
    assert result.metrics["graded"] == "before" and "would bring" in result.summary
    assert result.settings["bins"] == 10


def test_regression_is_not_applicable_and_points_to_the_uncertainty_check(tmp_path):
    run = gradwise.train(tiny_config(data={"source": "builtin:diabetes"}), out=tmp_path / "r")
    result = run_checks(run, ["calibration"])["calibration"]
    assert result.verdict == "n/a" and "uncertainty check" in result.summary


def test_a_language_model_is_scored_on_its_next_token_probabilities(tmp_path):
    rng = np.random.default_rng(0)
    words = ["the cat sat", "on the mat", "a dog ran", "to the park"]
    corpus = tmp_path / "c.txt"
    corpus.write_text(" ".join(rng.choice(words, 600)))
    cfg = {
        "name": "lm",
        "data": {"source": f"text:{corpus}", "tokenizer": "char", "block_size": 16},
        "model": {"arch": "gpt", "n_layer": 1, "n_head": 2, "d_model": 16},
        "train": {"epochs": 2, "batch_size": 32, "optimizer": {"lr": 3e-3}},
        "audit": {"calibration": {"max_tokens": 500}},
    }
    run = gradwise.train(cfg, out=tmp_path / "r")
    result = run_checks(run, ["calibration"])["calibration"]
    assert result.headline.startswith("token ECE")
    test = run.split("test")
    logits = run.logits(test.x).double()
    valid = test.y != -100
    probs = logits[valid].softmax(-1).numpy()[:500]
    labels = test.y[valid].numpy()[:500]
    assert result.metrics["n_test_tokens"] == len(labels)
    assert result.metrics["before"]["ece"] == pytest.approx(_hand_ece(probs, labels, 15), abs=1e-9)
    nll = -np.log(probs[np.arange(len(labels)), labels]).mean()
    assert result.metrics["before"]["nll"] == pytest.approx(nll, rel=1e-6)
    assert gradwise.load(run.path).calibration.temperature is None  # generate has its own
