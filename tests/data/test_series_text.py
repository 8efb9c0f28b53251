"""A series with a text feature (a wind direction) listed first in data.features: raw windows
keep that order and their text, and predicting on them, or on the consecutive rows, agrees
with the run's own test metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import gradwise
from gradwise.errors import DataError
from tests.conftest import tiny_config

WINDOW = 6


def _series(n: int = 160) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    wind = rng.choice(["NW", "SE", "cv"], n)
    temp = rng.normal(10.0, 3.0, n).round(2)
    pm = 50 + 10 * np.sin(np.arange(n) / 5) + np.where(wind == "NW", -8.0, 4.0)
    return pd.DataFrame({"hour": np.arange(n), "cbwd": wind, "temp": temp, "pm": pm.round(2)})


@pytest.fixture(scope="module")
def series_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[gradwise.Run, pd.DataFrame]:
    tmp = tmp_path_factory.mktemp("series")
    frame = _series()
    frame.to_csv(tmp / "s.csv", index=False)
    cfg = tiny_config(
        data={
            "source": f"timeseries:{tmp / 's.csv'}",
            "target": "pm",
            "features": ["cbwd", "temp", "pm"],  # the text column first
            "window": WINDOW,
        },
        model={"arch": "lstm", "hidden": 8},
        train={"epochs": 1},
    )
    return gradwise.train(cfg, out=tmp / "run"), frame


def _rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((predicted.reshape(-1) - actual.reshape(-1)) ** 2)))


def test_the_schema_keeps_the_raw_column_order_of_data_features(series_run):
    run, _ = series_run
    features = run.schema.series.features
    assert features.raw_columns == ["cbwd", "temp", "pm"]
    assert features.columns == ["temp", "pm", "cbwd"]  # numbers first in the model's input
    raw = run.split("test").raw
    assert raw.shape[2] == 3 and set(raw[:, :, 0].ravel()) <= {"NW", "SE", "cv"}


def test_raw_windows_with_text_give_the_split_tensors_and_the_test_metrics(series_run):
    run, _ = series_run
    test = run.split("test")
    assert np.array_equal(run.transform(test.raw).numpy(), test.x.numpy())
    actual = run.schema.target.decode(test.y.numpy())
    rmse = _rmse(run.predict(test.raw), actual)
    assert rmse == pytest.approx(run.metrics["test"]["rmse"], rel=1e-4)


def test_consecutive_rows_give_the_same_forecasts_as_the_windows(series_run):
    run, frame = series_run
    test = run.split("test")
    first = int(test.rows[0])  # a window's number is the source row it starts at
    rows = frame.iloc[first : first + len(test) + WINDOW - 1]
    from_rows = run.predict(rows)
    assert len(from_rows) == len(test)
    np.testing.assert_allclose(from_rows, run.predict(test.raw), rtol=1e-5, atol=1e-5)
    actual = run.schema.target.decode(test.y.numpy())
    assert _rmse(from_rows, actual) == pytest.approx(run.metrics["test"]["rmse"], rel=1e-4)


def test_windows_of_the_wrong_width_name_the_columns_in_order(series_run):
    run, _ = series_run
    with pytest.raises(DataError, match=r"windows of columns cbwd, temp, pm \(in that order\)"):
        run.transform(np.zeros((2, WINDOW, 2)))


def test_the_model_json_of_a_run_before_the_order_was_kept_still_loads(series_run, tmp_path):
    from gradwise.data.stored_schema import schema_from_dict

    run, _ = series_run
    saved = run.schema.to_dict()
    saved["series"]["features"].pop("order")
    old = schema_from_dict(saved)
    assert old.series.features.raw_columns == old.series.features.columns
