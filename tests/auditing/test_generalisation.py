"""The generalisation check: the power-law fit, the learning-curve retrains, gap and turn."""

from __future__ import annotations

import numpy as np
import pytest

import gradwise
from gradwise.auditing import run_checks
from gradwise.auditing.generalisation import PowerLaw, bootstrap_power_laws, fit_power_law
from tests.conftest import tiny_config


def test_the_power_law_fit_recovers_known_parameters():
    n = np.repeat([100, 200, 400, 800, 1600, 3200], 3).astype(float)
    truth = PowerLaw(a=2.0, b=0.5, c=0.02)
    exact = fit_power_law(n, truth(n))
    assert (exact.a, exact.b, exact.c) == pytest.approx((2.0, 0.5, 0.02), rel=1e-4)
    noisy = truth(n) + np.random.default_rng(0).normal(scale=0.002, size=len(n))
    fit = fit_power_law(n, noisy)
    assert fit.b == pytest.approx(0.5, abs=0.1)
    assert fit.c == pytest.approx(0.02, abs=0.01)
    assert fit(32_000) == pytest.approx(truth(32_000), abs=0.005)  # 10x beyond the data
    laws = bootstrap_power_laws(n, noisy, fit, repeats=100, seed=0)
    band = np.percentile([lw(32_000) for lw in laws], [5, 95])
    assert band[0] <= truth(32_000) + 0.005 and band[1] >= truth(32_000) - 0.005


def test_the_power_law_needs_three_sizes():
    with pytest.raises(ValueError, match="three or more"):
        fit_power_law(np.array([100.0, 100.0, 200.0]), np.array([0.2, 0.21, 0.1]))


def test_the_learning_curve_retrains_on_fractions_outside_the_run_folder(tmp_path):
    cfg = tiny_config(
        audit={
            "generalisation": {
                "fractions": [0.25, 0.5, 1.0],
                "seeds": 2,
                "scale_epochs": False,
            }
        }
    )
    run = gradwise.train(cfg, out=tmp_path / "r")
    before = sorted(p.name for p in run.path.iterdir())
    result = run_checks(run, ["generalisation"])["generalisation"]
    assert sorted(p.name for p in run.path.iterdir()) == sorted({*before, "audit"})
    curve = result.metrics["learning_curve"]
    points = curve["points"]
    n_full = run.metrics["n_train"]
    assert [(p["fraction"], p["seed"]) for p in points] == [
        (0.25, 0),
        (0.25, 1),
        (0.5, 0),
        (1.0, 0),
    ]
    assert [p["n_train"] for p in points] == [round(0.25 * n_full)] * 2 + [
        round(0.5 * n_full),
        n_full,
    ]
    assert points[-1]["reused"] and points[-1]["value"] == run.metrics["test"]["accuracy"]
    assert set(curve["predictions"]) == {"1x", "2x", "5x", "10x"}
    assert curve["predictions"]["10x"]["n"] == 10 * n_full
    assert result.plots == ("learning_curve.png",)
    assert (run.path / "audit" / "learning_curve.png").is_file()
    # the gap and the validation turn come from the run's own records
    m = run.metrics
    assert result.metrics["gap"] == pytest.approx(m["train"]["accuracy"] - m["test"]["accuracy"])
    losses = [r["val.loss"] for r in run.history]
    assert result.metrics["turn"]["best_epoch"] == 1 + int(np.argmin(losses))
    assert (
        result.settings["fractions"] == [0.25, 0.5, 1.0]
        and "train_fraction" in (result.settings["retrains"])
    )


def test_a_regression_gap_is_relative_and_the_curve_can_be_left_out(tmp_path):
    cfg = tiny_config(
        data={"source": "builtin:diabetes"},
        audit={"generalisation": {"learning_curve": False}},
    )
    run = gradwise.train(cfg, out=tmp_path / "r")
    result = run_checks(run, ["generalisation"])["generalisation"]
    m = run.metrics
    expected = (m["test"]["rmse"] - m["train"]["rmse"]) / m["test"]["rmse"]
    assert result.metrics["metric"] == "rmse"
    assert result.metrics["gap"] == pytest.approx(expected)
    assert result.metrics["learning_curve"] is None and result.plots == ()
    assert "relative" in result.summary


def test_three_points_fit_exactly_without_a_warning():
    import warnings

    n = np.array([100.0, 300.0, 900.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        law = fit_power_law(n, PowerLaw(1.0, 0.5, 0.01)(n))
    assert law(n) == pytest.approx(PowerLaw(1.0, 0.5, 0.01)(n), rel=1e-3)
