"""Predictions line up with the rows they are for: forecasts name the window they read and the
row they forecast, and a table missing columns is refused whether or not it has a header."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import gradwise
from gradwise.cli import app
from gradwise.data.readers import forecast_positions
from gradwise.run import Run
from tests.conftest import tiny_config

runner = CliRunner()


def _invoke(args: list[str], code: int = 0):
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


def _series(n: int = 160) -> pd.DataFrame:
    """An hourly series with a categorical input; `temp`'s row is readable from its value."""
    t = np.arange(n)
    return pd.DataFrame(
        {
            "day": t // 24,
            "hour": t % 24,
            "wind": np.where(np.sin(t / 5) > 0, "NW", "SE"),
            "temp": np.round(np.sin(t / 6) + 0.01 * t, 4),
        }
    )


@pytest.fixture(scope="module")
def forecaster(tmp_path_factory: pytest.TempPathFactory) -> tuple[Run, pd.DataFrame]:
    folder = tmp_path_factory.mktemp("forecaster")
    frame = _series()
    frame.to_csv(folder / "series.csv", index=False)
    data = {
        "source": f"timeseries:{folder / 'series.csv'}",
        "target": "temp",
        "features": ["temp", "wind"],
        "window": 24,
        "horizon": 2,
        "split": {"val": 0.2, "test": 0.2},
    }
    cfg = tiny_config(data=data, model={"arch": "lstm", "hidden": 8}, train={"epochs": 1})
    return gradwise.train(cfg, out=folder / "run"), frame


def test_forecast_positions_name_the_window_and_the_row_forecast():
    pos = forecast_positions(26, 24)
    assert pos.to_dict(orient="list") == {
        "window_first": [0, 1, 2],
        "window_last": [23, 24, 25],
        "for_row": [24, 25, 26],
    }
    assert forecast_positions(10, 24).empty


def test_predict_on_a_series_labels_each_forecast_with_the_row_it_is_for(
    tmp_path: Path, forecaster
):
    run, frame = forecaster
    new = frame.iloc[100:126].reset_index(drop=True)  # 26 rows, window 24: 3 forecasts
    new.to_csv(tmp_path / "new.csv", index=False)
    out = _invoke(["predict", str(run.path), str(tmp_path / "new.csv"), "--keep", "day,hour"])
    got = pd.read_csv(io.StringIO(out.stdout))
    assert len(got) == 3 and got["prediction_1"].notna().all()  # no empty predictions
    assert got["for_row"].tolist() == [24, 25, 26]
    assert got[["window_first", "window_last"]].values.tolist() == [[0, 23], [1, 24], [2, 25]]
    # the kept time is the forecast row's, not the window's first row's (24 hours earlier)
    assert (
        got[["day", "hour"]].iloc[:2].values.tolist()
        == new[["day", "hour"]].iloc[24:26].values.tolist()
    )
    assert got[["day", "hour"]].iloc[2].isna().all()  # row 26 is past the input's end
    np.testing.assert_allclose(got["prediction_1"], run.predict(new)[:, 0], rtol=1e-5)
    assert "for_row 26 and beyond lie past the input's end" in out.stderr
    assert "prediction_k (k steps ahead)" in out.stderr


def test_intervals_of_a_forecaster_carry_the_same_positions(tmp_path: Path, forecaster):
    import shutil

    run, frame = forecaster
    shutil.copytree(run.path, tmp_path / "run")
    copy = Run.load(tmp_path / "run")  # quantiles as the uncertainty audit stores them
    copy.set_conformal({"task": "regression", "score": "absolute", "quantile": [0.5, 0.75]})
    frame.iloc[:25].to_csv(tmp_path / "new.csv", index=False)
    args = ["predict", str(copy.path), str(tmp_path / "new.csv"), "--keep", "hour", "--intervals"]
    got = pd.read_csv(io.StringIO(_invoke(args).stdout))
    assert got[["for_row", "window_first", "window_last"]].values.tolist() == [
        [24, 0, 23],
        [25, 1, 24],
    ]
    assert got["hour"].iloc[0] == 0 and pd.isna(got["hour"].iloc[1])  # row 24 is hour 0
    np.testing.assert_allclose(got["upper_2"] - got["prediction_2"], 0.75, rtol=1e-5)


def test_run_forecast_positions_follow_predict_order(forecaster):
    run, frame = forecaster
    window = frame.iloc[:30]
    pos = run.forecast_positions(window)
    assert len(pos) == len(run.predict(window)) == 7
    assert (pos["for_row"] == pos["window_last"] + 1).all()


# ------------------------------------------------------------------ header detection

COLUMNS = ["age", "income", "city", "score", "label"]


def _table(n: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(20, 70, n),
            "income": rng.normal(50, 10, n).round(2),
            "city": rng.choice(["Lyon", "Nice"], n),
            "score": rng.integers(0, 100, n),
        }
    )
    frame["label"] = (frame["age"] > 45).astype(int)
    return frame


@pytest.fixture(scope="module")
def headerless_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    folder = tmp_path_factory.mktemp("headerless")
    _table().to_csv(folder / "t.csv", index=False, header=False)
    data = {"source": f"csv:{folder / 't.csv'}", "columns": COLUMNS, "target": "label"}
    return gradwise.train(tiny_config(data=data, train={"epochs": 1}), out=folder / "run")


def test_a_header_with_some_columns_is_read_as_a_header_and_the_missing_named(
    tmp_path: Path, headerless_run: Run
):
    _table(5, seed=1)[["age", "city", "label"]].to_csv(tmp_path / "some.csv", index=False)
    out = _invoke(["predict", str(headerless_run.path), str(tmp_path / "some.csv")], code=2)
    assert "lacks the column(s) income, score" in out.output
    assert "holds text" not in out.output  # the header is not read as a row of data


def test_a_headerless_file_with_too_few_columns_is_refused_not_imputed(
    tmp_path: Path, headerless_run: Run
):
    _table(5, seed=1)[["age", "income", "city"]].to_csv(
        tmp_path / "short.csv", index=False, header=False
    )
    out = _invoke(["predict", str(headerless_run.path), str(tmp_path / "short.csv")], code=2)
    assert "3 fields per row" in out.output and "column(s) score would be missing" in out.output
    wide = _table(5, seed=1).assign(extra=1)
    wide.to_csv(tmp_path / "wide.csv", index=False, header=False)
    out = _invoke(["predict", str(headerless_run.path), str(tmp_path / "wide.csv")], code=2)
    assert "6 fields per row" in out.output


def test_a_headerless_file_without_the_target_still_predicts(tmp_path: Path, headerless_run: Run):
    _table(5, seed=1).drop(columns="label").to_csv(tmp_path / "x.csv", index=False, header=False)
    out = _invoke(["predict", str(headerless_run.path), str(tmp_path / "x.csv")])
    assert len(pd.read_csv(io.StringIO(out.stdout))) == 5
    assert "not model inputs" not in out.stderr  # the absent target is not an ignored column


def test_extra_columns_are_ignored_with_a_note(tmp_path: Path, headerless_run: Run):
    frame = _table(5, seed=1).assign(id=range(5))
    frame.to_csv(tmp_path / "ids.csv", index=False)
    out = _invoke(["predict", str(headerless_run.path), str(tmp_path / "ids.csv"), "--keep", "id"])
    got = pd.read_csv(io.StringIO(out.stdout))
    assert got["id"].tolist() == list(range(5))
    assert "column(s) label are not model inputs; ignored" in out.stderr
    np.testing.assert_array_equal(got["prediction"], headerless_run.predict(frame))
