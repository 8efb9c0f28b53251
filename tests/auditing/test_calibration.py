"""The calibration check on trained runs: its numbers against direct computations,
temperature scaling on a model made over-confident on purpose, the exact NLL where
probabilities underflow, and the rule that stores a temperature only when it helps by more
than its noise."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar

import gradwise
from gradwise.auditing import run_checks
from gradwise.auditing.temperature import (
    GAIN_SE,
    negative_log_likelihood,
    row_nll,
    temperature_gain,
)
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
    logits = run.logits(test.x).double()
    assert before["nll"] == pytest.approx(F.cross_entropy(logits, test.y).item(), rel=1e-9)
    assert before["nll"] == pytest.approx(run.metrics["test"]["loss"], rel=1e-5)  # metrics.json
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


def _sharpen(run: gradwise.Run, factor: float) -> None:
    """Multiply the last layer's weights and bias, so every logit is `factor` times larger."""
    last = [m for m in run.model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(factor)
        last.bias.mul_(factor)


def test_nll_is_exact_where_a_clip_of_the_probabilities_would_cap_it(tmp_path):
    from gradwise.auditing.base import AuditContext
    from gradwise.auditing.calibration import check
    from gradwise.config import CalibrationAudit

    run = gradwise.train(tiny_config(train={"epochs": 4}), out=tmp_path / "r")
    _sharpen(run, 60.0)
    test = run.split("test")
    logits = run.logits(test.x).double()
    p_true = logits.softmax(1)[torch.arange(len(test)), test.y].numpy()
    assert (p_true < 1e-12).any()  # rows a 1e-12 clip would cap at 27.6 nats
    result = check(run, CalibrationAudit(store_temperature=False), AuditContext(out=tmp_path))
    exact = F.cross_entropy(logits, test.y).item()
    clipped = float(-np.log(np.clip(p_true, 1e-12, 1.0)).mean())
    assert exact > clipped + 0.01
    assert result.metrics["before"]["nll"] == pytest.approx(exact, rel=1e-12)
    t = result.metrics["temperature"]
    assert result.metrics["after"]["nll"] == pytest.approx(
        F.cross_entropy(logits / t, test.y).item(), rel=1e-12
    )


def test_nll_of_one_logit_binary_models_is_the_binary_cross_entropy():
    z = torch.tensor([[-50.0], [3.0], [0.2], [60.0]], dtype=torch.float64)
    y = torch.tensor([1, 0, 1, 0])
    expected = F.binary_cross_entropy_with_logits(z[:, 0] / 2, y.double(), reduction="none")
    np.testing.assert_allclose(row_nll(z, y, 2.0), expected.numpy(), rtol=1e-12)
    assert negative_log_likelihood(z, y, 2.0) == pytest.approx(expected.mean().item())


def _scipy_nll(x: np.ndarray, y: np.ndarray, log_t: float) -> np.ndarray:
    """Per-row NLL of softmax(x / exp(log_t)) by hand (log-sum-exp)."""
    z = x / math.exp(log_t)
    z = z - z.max(1, keepdims=True)
    return np.log(np.exp(z).sum(1)) - z[np.arange(len(z)), y]


def _hand_gain(logits: torch.Tensor, labels: torch.Tensor, folds: int, seed: int) -> np.ndarray:
    """Per-row out-of-sample NLL gain, with each fold's temperature fitted by scipy."""
    fold = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)) % folds
    x, y = logits.numpy(), labels.numpy()
    gain = np.empty(len(labels))
    for j in range(folds):
        held = (fold == j).numpy()
        fit_x, fit_y = x[~held], y[~held]
        best = minimize_scalar(
            lambda v, a=fit_x, b=fit_y: _scipy_nll(a, b, v).mean(), bounds=(-5, 5), method="bounded"
        )
        gain[held] = _scipy_nll(x[held], y[held], 0.0) - _scipy_nll(x[held], y[held], best.x)
    return gain


def _synthetic_logits(n: int, sharpness: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of 5 classes and labels drawn from softmax(logits / sharpness): sharpness 1 is
    a calibrated model, above 1 an over-confident one."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, 5, generator=g, dtype=torch.float64) * 2.5
    labels = torch.multinomial((logits / sharpness).softmax(1), 1, generator=g)[:, 0]
    return logits, labels


def test_the_temperature_gain_equals_a_hand_cross_fit_with_scipy():
    logits, labels = _synthetic_logits(300, 1.5, seed=0)
    found = temperature_gain(logits, labels, folds=5, seed=3)
    gain = _hand_gain(logits, labels, 5, 3)
    assert found.gain == pytest.approx(gain.mean(), abs=1e-6)
    assert found.se == pytest.approx(gain.std(ddof=1) / math.sqrt(len(gain)), rel=1e-3)
    assert (found.folds, found.n) == (5, 300)


def test_a_temperature_is_worth_storing_for_an_overconfident_model_not_a_calibrated_one():
    stored_calibrated = [
        temperature_gain(*_synthetic_logits(150, 1.0, seed=s), seed=s).is_real for s in range(40)
    ]
    assert sum(stored_calibrated) <= 3  # a rare false store of noise, not a habit
    for s in range(5):
        gain = temperature_gain(*_synthetic_logits(150, 3.0, seed=s), seed=s)
        assert gain.is_real and gain.gain > GAIN_SE * gain.se


def test_a_temperature_within_its_noise_is_not_stored_and_an_old_one_is_removed(tmp_path):
    run = gradwise.train(tiny_config(), out=tmp_path / "r")
    run.set_temperature(1.3)  # as an earlier audit may have stored
    result = run_checks(run, ["calibration"])["calibration"]
    gain = result.metrics["temperature_gain"]
    assert gain["nll_gain"] <= GAIN_SE * gain["se"]  # this run's temperature is within noise
    assert not result.metrics["temperature_stored"] and result.metrics["graded"] == "before"
    assert gradwise.load(run.path).calibration.temperature is None
    assert result.metrics["temperature_removed"] == 1.3
    assert "is not stored" in result.summary and f"{gain['se']:.3f} nats" in result.summary
    assert "T=1.30) is removed" in result.summary
    assert "→" not in result.headline
    assert "stored when" in result.settings["temperature_rule"]


def test_a_temperature_that_helps_beyond_its_noise_is_stored_and_says_so(overconfident):
    result = run_checks(overconfident, ["calibration"])["calibration"]
    gain = result.metrics["temperature_gain"]
    assert gain["nll_gain"] > GAIN_SE * gain["se"]
    assert result.metrics["temperature_stored"] and "so it is stored in the run" in result.summary
    t = gradwise.load(overconfident.path).calibration.temperature
    assert t == pytest.approx(result.metrics["temperature"])
