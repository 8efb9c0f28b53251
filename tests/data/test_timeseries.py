"""Time series: sliding windows, chronological splits, statistics from the training rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from gradwise.data.readers import load_labelled
from gradwise.data.sources import load_dataset
from gradwise.errors import DataError
from tests.data.conftest import data_config
from tests.shared import need_shared

SPLIT = {"val": 0.2, "test": 0.2}


def _series(n: int = 100, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "day": pd.date_range("2024-01-01", periods=n).strftime("%Y-%m-%d"),
            "temp": rng.normal(10.0, 3.0, n).round(3),
            "load": np.arange(n) * 2.0 + 100.0,  # target; its value tells the row
        }
    )


def _load(df: pd.DataFrame, tmp_path: Path, **fields):
    path = tmp_path / "series.csv"
    df.to_csv(path, index=False)
    fields = {"target": "load", "split": SPLIT, "window": 5, **fields}
    return load_dataset(data_config(f"timeseries:{path}", **fields), seed=0)


def _target_rows(data, split) -> np.ndarray:
    """(N, horizon) row numbers of each window's targets, read back from the decoded values."""
    values = data.schema.target.decode(split.y.numpy())
    return np.rint((values - 100.0) / 2.0).astype(int)


def test_windows_hold_the_past_rows_and_the_next_horizon_targets(tmp_path: Path):
    df = _series()
    data = _load(df, tmp_path, horizon=3)
    assert (data.schema.kind, data.schema.task) == ("sequence", "regression")
    assert data.schema.input_shape == [5, 1] and data.schema.n_outputs == 3
    every_window = torch.from_numpy(data.schema.transform(df))
    for split in (data.train, data.val, data.test):
        rows = _target_rows(data, split)
        assert np.array_equal(rows, rows[:, :1] + np.arange(3))  # consecutive targets
        assert np.array_equal(rows[:, 0], np.arange(rows[0, 0], rows[-1, 0] + 1))  # every start
        assert torch.equal(split.x, every_window[rows[:, 0] - 5])  # the 5 rows just before


def test_splits_are_chronological_with_no_shared_target_rows(tmp_path: Path):
    data = _load(_series(), tmp_path, horizon=2)
    train, val, test = (_target_rows(data, s) for s in (data.train, data.val, data.test))
    assert train.max() < val.min() and val.max() < test.min()  # disjoint, in time order
    assert (train.min(), test.max()) == (5, 99)  # from the first full window to the last row


def test_feature_and_target_statistics_come_from_training_rows(tmp_path: Path):
    df = _series()
    df.loc[80:, "temp"] = 1e6  # outliers in the last rows: the test part
    data = _load(df, tmp_path, features=["temp", "load"])
    n_train = _target_rows(data, data.train).max() + 1
    prep = data.schema.series.features
    assert prep.numeric == ["temp", "load"]
    assert prep.means == pytest.approx([df.temp[:n_train].mean(), df.load[:n_train].mean()])
    assert prep.stds == pytest.approx(
        [df.temp[:n_train].std(ddof=0), df.load[:n_train].std(ddof=0)]
    )
    assert data.schema.target.mean == pytest.approx([df.load[:n_train].mean()])


def test_transform_of_raw_windows_reproduces_the_splits(tmp_path: Path):
    df = _series()
    data = _load(df, tmp_path, features=["temp", "load"])
    raw = np.lib.stride_tricks.sliding_window_view(df[["temp", "load"]].to_numpy(), 5, axis=0)
    raw = raw.transpose(0, 2, 1)  # (N, T, F) windows of raw rows
    for split in (data.train, data.val, data.test):
        starts = _target_rows(data, split)[:, 0] - 5
        assert torch.equal(torch.from_numpy(data.schema.transform(raw[starts])), split.x)
    one = data.schema.transform(raw[0])  # a single (T, F) window
    assert one.shape == (1, 5, 2)
    with pytest.raises(DataError, match=r"must be \(N, T, 2\) windows of columns temp, load"):
        data.schema.transform(np.zeros((3, 5, 4)))


def test_a_target_with_missing_values_is_refused_naming_the_column(tmp_path: Path):
    df = _series()
    df.loc[[7, 30], "load"] = np.nan
    with pytest.raises(
        DataError, match="'load' has 2 missing or non-numeric values \\(first at row 7\\)"
    ):
        _load(df, tmp_path)


def test_unknown_feature_and_target_columns_are_named(tmp_path: Path):
    with pytest.raises(DataError, match="data.features names humidity, not in the file"):
        _load(_series(), tmp_path, features=["humidity", "load"])
    with pytest.raises(DataError, match="'power' not found.*Columns: day, temp, load"):
        _load(_series(), tmp_path, target="power")


def test_a_series_too_short_for_the_window_is_refused(tmp_path: Path):
    with pytest.raises(DataError, match="train part .* too short for data.window=35 and data.hor"):
        _load(_series(50), tmp_path, window=35)


def test_the_target_is_the_only_numeric_column_unless_named(tmp_path: Path):
    only = _series()[["day", "load"]]
    assert _load(only, tmp_path, target=None).schema.series.target == "load"
    with pytest.raises(DataError, match="set data.target"):
        _load(_series(), tmp_path, target=None)


def test_load_labelled_series_reuses_the_training_statistics(tmp_path: Path):
    cfg = data_config(f"timeseries:{tmp_path / 'series.csv'}", target="load", window=5)
    schema = _load(_series(), tmp_path).schema
    new = _series(30)
    new["load"] += 1000.0  # a refit would standardise this back to around 0
    new.to_csv(tmp_path / "new.csv", index=False)
    split = load_labelled(f"timeseries:{tmp_path / 'new.csv'}", schema, cfg)
    assert torch.equal(split.x, torch.from_numpy(schema.transform(new))[:25])
    decoded = schema.target.decode(split.y.numpy())[:, 0]
    assert decoded == pytest.approx(new.load[5:].to_numpy())
    assert split.x.mean() > 5
    new.drop(columns="load").to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(DataError, match="'load' not found.*Columns: day, temp"):
        load_labelled(f"timeseries:{tmp_path / 'bad.csv'}", schema, cfg)


def test_airline_passengers_series():
    path = need_shared("airline_passengers", "airline-passengers.csv")
    data = load_dataset(data_config(f"timeseries:{path}", window=12, split=SPLIT), seed=0)
    passengers = pd.read_csv(path)["Passengers"].to_numpy()
    assert data.schema.series.target == "Passengers"
    assert data.schema.input_shape == [12, 1]
    decoded = data.schema.target.decode(data.train.y.numpy())[:, 0]
    assert decoded == pytest.approx(passengers[12 : 12 + len(decoded)])
