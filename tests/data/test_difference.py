"""data.difference: a trending series forecast as changes from each window's last value, with
predictions and metrics back in the target's units."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.metrics import r2_score
from torch.nn import functional as F
from typer.testing import CliRunner

import gradwise
from gradwise.auditing import run_checks
from gradwise.cli import app
from gradwise.config import load_config
from gradwise.data.timeseries import TREND_R2, choose_difference, trend_r2
from gradwise.errors import ConfigError, DataError
from gradwise.evaluate.evaluator import split_metrics
from gradwise.run_conformal import prediction_intervals

WINDOW, HORIZON = 12, 3
SPLIT = {"val": 0.15, "test": 0.15}


def _trend_series(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """A rising line with a yearly (12-step) wave and a little noise: its last stretch lies
    above every level seen in training."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    y = 100.0 + 2.0 * t + 20.0 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 2.0, n)
    return pd.DataFrame({"month": t, "sales": y.round(3)})


def _config(path: Path, difference: Any, arch: str = "lstm") -> dict[str, Any]:
    model = {"arch": "lstm", "hidden": 32} if arch == "lstm" else {"arch": "mlp", "hidden": [32]}
    return {
        "name": f"diff-{difference}",
        "seed": 0,
        "data": {
            "source": f"timeseries:{path}",
            "target": "sales",
            "window": WINDOW,
            "horizon": HORIZON,
            "split": SPLIT,
            "difference": difference,
        },
        "model": model,
        "train": {
            "epochs": 30,
            "batch_size": 16,
            "optimizer": {"lr": 3e-3, "weight_decay": 0.0},
            "early_stopping": {"metric": "val.rmse", "patience": 20},
        },
    }


@pytest.fixture(scope="module")
def series_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("series") / "sales.csv"
    _trend_series().to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def differenced(series_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> gradwise.Run:
    out = tmp_path_factory.mktemp("runs") / "diff"
    return gradwise.train(_config(series_csv, True), out=out)


def _test_truth(run: gradwise.Run) -> np.ndarray:
    """(N, horizon) the test windows' true levels, read from the file by row position."""
    y = pd.read_csv(run.config.data.source.partition(":")[2])["sales"].to_numpy()
    rows = run.split("test").rows + WINDOW  # each window's first target row
    return y[rows[:, None] + np.arange(HORIZON)]


def test_predictions_are_the_last_value_plus_the_decoded_changes(differenced: gradwise.Run):
    raw = np.asarray(differenced.split("test").raw, dtype=np.float64)  # (N, T, 1) levels
    spec = differenced.schema.target
    changes = differenced.logits(raw).numpy() * np.array(spec.std) + np.array(spec.mean)
    by_hand = raw[:, -1, 0][:, None] + changes
    np.testing.assert_allclose(differenced.predict(raw), by_hand, rtol=1e-5)


def test_a_table_of_rows_forecasts_past_its_end_in_levels(differenced: gradwise.Run):
    df = pd.read_csv(differenced.config.data.source.partition(":")[2])
    tail = df.iloc[-WINDOW - 5 :]
    from_table = differenced.predict(tail)  # the last row: 3 steps beyond the file's end
    windows = np.stack([tail["sales"].to_numpy()[i : i + WINDOW] for i in range(6)])[..., None]
    np.testing.assert_allclose(from_table, differenced.predict(windows), rtol=1e-6)
    assert from_table[-1].min() > df["sales"].iloc[:200].max()  # beyond the training levels


def test_metrics_are_in_the_target_units(differenced: gradwise.Run):
    raw = np.asarray(differenced.split("test").raw, dtype=np.float64)
    err = differenced.predict(raw) - _test_truth(differenced)
    test = differenced.metrics["test"]
    assert test["rmse"] == pytest.approx(float(np.sqrt((err**2).mean())), rel=1e-4)
    assert test["mae"] == pytest.approx(float(np.abs(err).mean()), rel=1e-4)


def test_the_choice_survives_save_and_load(differenced: gradwise.Run):
    loaded = gradwise.load(differenced.path)
    assert loaded.schema.series is not None and loaded.schema.series.difference
    raw = np.asarray(differenced.split("test").raw, dtype=np.float64)
    np.testing.assert_allclose(loaded.predict(raw), differenced.predict(raw), rtol=1e-6)


def test_model_ready_tensors_are_refused_with_the_fix(differenced: gradwise.Run):
    with pytest.raises(DataError, match="give raw windows"):
        differenced.predict(differenced.split("test").x)


@pytest.mark.parametrize("arch", ["lstm", "mlp"])
def test_differencing_beats_levels_beyond_the_training_range(
    series_csv: Path, tmp_path: Path, arch: str
):
    rmse = {
        flag: gradwise.train(_config(series_csv, flag, arch), out=tmp_path / str(flag)).metrics[
            "test"
        ]["rmse"]
        for flag in (False, True)
    }
    assert rmse[True] < rmse[False]


def test_trend_r2_matches_the_squared_correlation_with_time():
    y = _trend_series()["sales"].to_numpy()
    r = np.corrcoef(np.arange(len(y)), y)[0, 1]
    assert trend_r2(y) == pytest.approx(r**2)
    assert trend_r2(np.full(10, 3.0)) == 0.0


def test_auto_differences_a_trend_and_leaves_a_flat_wave():
    t = np.arange(120)
    rising, flat = 2.0 * t + 5.0 * np.sin(t), 10.0 * np.sin(2 * np.pi * t / 12)
    chosen, why = choose_difference("auto", rising, True)
    assert chosen and f">= {TREND_R2}" in why and "auto chose true" in why
    chosen, why = choose_difference("auto", flat, True)
    assert not chosen and "auto chose false" in why
    assert choose_difference(False, rising, True) == (False, "")


def test_difference_needs_the_target_among_the_inputs():
    with pytest.raises(DataError, match="add the target to data.features"):
        choose_difference(True, np.arange(10.0), False)
    assert not choose_difference("auto", np.arange(10.0), False)[0]


def test_auto_from_the_command_line_is_recorded_in_the_run(series_csv: Path, tmp_path: Path):
    cfg = _config(series_csv, False, "mlp")
    cfg["train"]["epochs"] = 1
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "auto"
    args = ["train", str(path), "--set", "data.difference=auto", "--out", str(out), "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "model.json").read_text())["schema"]["series"]["difference"]
    assert "data.difference: auto chose true" in (out / "train.log").read_text()


def test_difference_applies_only_to_series():
    with pytest.raises(ConfigError, match="data.difference does not apply"):
        load_config(
            {"data": {"source": "builtin:digits", "difference": True}, "model": {"arch": "mlp"}}
        )


def test_split_metrics_given_the_last_values_read_in_levels(differenced: gradwise.Run):
    test = differenced.split("test")
    raw = np.asarray(test.raw, dtype=np.float64)
    series = differenced.schema.series
    assert series is not None
    last = torch.from_numpy(series.last_levels(raw))
    logits = differenced.logits(test.x)
    levels = split_metrics(logits, test.y, differenced.schema, F.mse_loss, last)
    changes = split_metrics(logits, test.y, differenced.schema, F.mse_loss)
    truth, pred = _test_truth(differenced), differenced.predict(raw)
    assert levels["r2"] == pytest.approx(r2_score(truth, pred), rel=1e-6)
    assert levels["r2"] != pytest.approx(changes["r2"], rel=1e-3)  # the spread of levels
    assert levels["rmse"] == pytest.approx(changes["rmse"], rel=1e-9)


def test_intervals_are_in_levels_around_the_forecast(differenced: gradwise.Run):
    result = run_checks(differenced, ["uncertainty"])["uncertainty"]
    run = gradwise.load(differenced.path)
    raw = np.asarray(run.split("test").raw, dtype=np.float64)
    pred, lower, upper = run.predict_intervals(raw)
    np.testing.assert_allclose(pred, run.predict(raw), rtol=1e-6)
    with pytest.raises(DataError, match="give raw windows"):  # tensors lost the level
        run.predict_intervals(run.split("test").x)
    truth = _test_truth(run)
    chosen = result.metrics[result.metrics["chosen"]]
    assert np.mean((lower <= truth) & (truth <= upper)) == pytest.approx(chosen["coverage"])
    assert np.mean(upper - lower) == pytest.approx(chosen["mean_width"])
    x, last = run.split("test").x, run.schema.series.last_levels(raw)  # type: ignore[union-attr]
    from_tensors = prediction_intervals(run, x, last)
    for a, b in zip(from_tensors, (pred, lower, upper)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_the_server_answers_in_levels_with_intervals(differenced: gradwise.Run):
    from fastapi.testclient import TestClient

    import gradwise.serving

    run_checks(differenced, ["uncertainty"])
    run = gradwise.load(differenced.path)
    raw = np.asarray(run.split("test").raw, dtype=np.float64)[:4]  # (4, T, 1)
    body = {"instances": [{"window": [{"sales": v} for v in w[:, 0]]} for w in raw]}
    with TestClient(gradwise.serving.app(run, store="off")) as c:
        served = c.post("/v1/predict", json=body).json()["predictions"]
    pred, lower, upper = run.predict_intervals(raw)
    np.testing.assert_allclose([s["prediction"] for s in served], pred, rtol=1e-5)
    np.testing.assert_allclose([s["interval"][0] for s in served], lower, rtol=1e-5)
    np.testing.assert_allclose([s["interval"][1] for s in served], upper, rtol=1e-5)
    null_last = {"instances": [{"window": [{"sales": 1.0}] * (WINDOW - 1) + [{"sales": None}]}]}
    with TestClient(gradwise.serving.app(run, store="off")) as c:
        refused = c.post("/v1/predict", json=null_last)
    assert refused.status_code in (400, 422) and "send it" in refused.text


def test_the_monitor_and_explanations_compare_levels(differenced: gradwise.Run):
    from gradwise.explaining.explainer import explain_run
    from gradwise.monitoring.baseline import build_baseline

    val = np.asarray(differenced.split("val").raw, dtype=np.float64)
    outputs = build_baseline(differenced).outputs
    assert outputs is not None
    np.testing.assert_allclose(outputs.x, differenced.predict(val), rtol=1e-5)
    test = differenced.split("test")
    rows = [int(r) for r in test.rows[:2]]
    explained = explain_run(differenced, rows=rows, method="saliency")
    levels = differenced.predict(np.asarray(test.raw, dtype=np.float64)[:2])[:, 0]
    assert [r.prediction for r in explained.rows] == pytest.approx(levels, abs=1e-3)
    assert "change of sales" in explained.rows[0].explained


def test_the_baseline_check_compares_levels(differenced: gradwise.Run):
    from sklearn.linear_model import RidgeCV

    from gradwise.auditing.baseline_models import RIDGE_ALPHAS

    result = run_checks(differenced, ["baseline"])["baseline"]
    assert result.metrics["metric"] == "rmse"
    train, test = differenced.split("train"), differenced.split("test")
    raw = np.asarray(test.raw, dtype=np.float64)
    truth = _test_truth(differenced)

    def rmse(pred: np.ndarray) -> float:
        return float(np.sqrt(((pred - truth) ** 2).mean()))

    spec = differenced.schema.target
    changes = train.y.double().numpy() * np.array(spec.std) + np.array(spec.mean)
    ridge = RidgeCV(alphas=RIDGE_ALPHAS).fit(train.x.flatten(1).double().numpy(), changes)
    ridge_levels = ridge.predict(test.x.flatten(1).double().numpy()) + raw[:, -1:, 0]
    by_name = {r["name"]: r["mean"] for r in result.metrics["baselines"]}
    assert by_name["last value"] == pytest.approx(rmse(np.repeat(raw[:, -1:, 0], HORIZON, 1)))
    assert by_name["ridge on lags"] == pytest.approx(rmse(ridge_levels), rel=1e-6)
    assert result.metrics["network"] == pytest.approx(rmse(differenced.predict(raw)), rel=1e-5)


def test_r2_in_the_metrics_is_that_of_the_levels(differenced: gradwise.Run):
    raw = np.asarray(differenced.split("test").raw, dtype=np.float64)
    truth, pred = _test_truth(differenced), differenced.predict(raw)
    assert differenced.metrics["test"]["r2"] == pytest.approx(r2_score(truth, pred), rel=1e-5)
