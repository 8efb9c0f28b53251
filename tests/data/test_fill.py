"""data.fill: missing values in a series target are filled (or their rows dropped) as the
config says, with a note; without it they are an error that names the option."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gradwise.data.sources import load_dataset
from gradwise.data.timeseries import fill_series
from gradwise.errors import ConfigError, DataError
from tests.data.conftest import data_config


def _series(n: int = 60) -> pd.DataFrame:
    load = np.arange(n) * 2.0 + 100.0
    load[[0, 10, 11, 30]] = np.nan  # a leading gap, a two-row gap and a single one
    return pd.DataFrame({"t": np.arange(n), "load": load})


def _load(tmp_path: Path, **fields):
    path = tmp_path / "series.csv"
    _series().to_csv(path, index=False)
    fields = {"target": "load", "split": {"val": 0.2, "test": 0.2}, "window": 4, **fields}
    return load_dataset(data_config(f"timeseries:{path}", **fields), seed=0)


def test_without_fill_a_gap_is_an_error_that_names_the_option(tmp_path: Path):
    with pytest.raises(DataError, match="4 missing or non-numeric.*set data.fill: interpolate"):
        _load(tmp_path)


def test_interpolate_restores_a_straight_line():
    out, notes = fill_series(_series(), "load", "interpolate")
    expected = np.arange(60) * 2.0 + 100.0
    expected[0] = 102.0  # the leading gap takes the nearest value
    np.testing.assert_allclose(out["load"].to_numpy(), expected)
    assert notes == (
        "data.fill: interpolate: 4 missing values of 'load' (first at row 0); interpolated "
        "them linearly.",
    )


def test_ffill_carries_the_last_value_and_drop_removes_the_rows():
    filled, _ = fill_series(_series(), "load", "ffill")
    assert filled["load"].tolist()[9:13] == [118.0, 118.0, 118.0, 124.0]
    assert filled["load"].iloc[0] == 102.0
    dropped, notes = fill_series(_series(), "load", "drop")
    assert len(dropped) == 56 and not dropped["load"].isna().any()
    assert "dropped their rows" in notes[0]


def test_text_in_the_target_is_not_filled():
    df = _series().astype({"load": object})
    df.loc[5, "load"] = "n/a?"
    out, notes = fill_series(df, "load", "interpolate")
    assert notes == () and out is df


def test_a_filled_series_trains_and_says_what_was_filled(tmp_path: Path):
    data = _load(tmp_path, fill="interpolate")
    assert any(n.startswith("data.fill: interpolate: 4 missing") for n in data.notes)
    assert not np.isnan(data.train.y.numpy()).any()


def test_fill_applies_only_to_a_series():
    with pytest.raises((ConfigError, ValueError), match="data.fill does not apply to a csv"):
        data_config("csv:x.csv", target="y", fill="ffill")
