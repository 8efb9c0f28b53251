"""Sources: clear DataErrors for bad sources and files; new labelled data reuses the schema.

A malformed data.source or a missing file names what to fix; `load_labelled` and
`read_inputs` preprocess new data with the trained run's fitted schema, never a refit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from gradwise.data.readers import load_labelled, read_inputs
from gradwise.data.sources import load_dataset, parse_source
from gradwise.errors import DataError
from tests.data.conftest import data_config


@pytest.mark.parametrize("source", ["digits", "csv:", "excel:data.xlsx", ":x"])
def test_a_malformed_source_lists_the_kinds(source: str):
    with pytest.raises(DataError, match="must be KIND:LOCATION with KIND one of builtin, csv"):
        parse_source(source)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("csv", "Data file {path} not found"),
        ("parquet", "Data file {path} not found"),
        ("timeseries", "Data file {path} not found"),
        ("npz", "npz file {path} not found"),
        ("images", "Image folder {path} not found"),
        ("idx", "No idx file {path}-images-idx3-ubyte"),
        ("text", "Text file or folder {path} not found"),
    ],
)
def test_a_missing_path_is_named_for_every_source_kind(tmp_path: Path, kind: str, message: str):
    path = tmp_path / "missing" / "data"
    takes_target = kind in ("csv", "parquet", "timeseries")
    cfg = data_config(f"{kind}:{path}", **({"target": "y"} if takes_target else {}))
    with pytest.raises(DataError, match=message.format(path=path)):
        load_dataset(cfg, seed=0)


def test_an_unknown_builtin_lists_the_choices():
    with pytest.raises(DataError, match="Unknown built-in data set 'mnist'; choose one of digits"):
        load_dataset(data_config("builtin:mnist"), seed=0)


def test_an_empty_or_broken_csv_is_refused(tmp_path: Path):
    (tmp_path / "empty.csv").write_text("a,b,y\n")
    with pytest.raises(DataError, match="empty.csv holds no rows"):
        load_dataset(data_config(f"csv:{tmp_path / 'empty.csv'}", target="y"), seed=0)
    (tmp_path / "blank.csv").write_text("")
    with pytest.raises(DataError, match="Cannot read .*blank.csv as csv"):
        load_dataset(data_config(f"csv:{tmp_path / 'blank.csv'}", target="y"), seed=0)
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="Cannot read .*bad.parquet as parquet"):
        load_dataset(data_config(f"parquet:{tmp_path / 'bad.parquet'}", target="y"), seed=0)


def _table(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.normal(100.0 + shift, 20.0, n).round(2),
            "merchant": rng.choice(["shop", "fuel", "food"], n),
            "fraud": rng.choice(["no", "yes"], n),
        }
    )


@pytest.fixture
def trained(tmp_path: Path):
    _table(60, seed=0).to_csv(tmp_path / "train.csv", index=False)
    cfg = data_config(f"csv:{tmp_path / 'train.csv'}", target="fraud")
    return cfg, load_dataset(cfg, seed=0).schema


def test_load_labelled_csv_reuses_the_fitted_preprocessing(tmp_path: Path, trained):
    cfg, schema = trained
    new = _table(20, seed=1, shift=500.0)  # a refit would centre this; the trained stats do not
    new.loc[3, "merchant"] = "casino"
    new.to_csv(tmp_path / "new.csv", index=False)
    before = schema.to_dict()
    split = load_labelled(f"csv:{tmp_path / 'new.csv'}", schema, cfg)
    assert schema.to_dict() == before
    assert torch.equal(split.x, torch.from_numpy(schema.transform(new)))
    assert split.x[:, 0].mean() > 10
    assert split.y.tolist() == [schema.classes.index(v) for v in new.fraud]
    other = schema.feature_names.index("merchant=<other>")
    assert split.x[3, other] == 1


def test_load_labelled_csv_needs_the_target_column_filled(tmp_path: Path, trained):
    cfg, schema = trained
    new = _table(10, seed=1)
    new.drop(columns="fraud").to_csv(tmp_path / "unlabelled.csv", index=False)
    with pytest.raises(DataError, match="'fraud' not found.*Columns: amount, merchant"):
        load_labelled(f"csv:{tmp_path / 'unlabelled.csv'}", schema, cfg)
    new.loc[[2, 5], "fraud"] = np.nan
    new.to_csv(tmp_path / "holes.csv", index=False)
    with pytest.raises(DataError, match="'fraud' of csv:.*holes.csv has 2 missing values"):
        load_labelled(f"csv:{tmp_path / 'holes.csv'}", schema, cfg)


def test_load_labelled_refuses_a_source_of_another_kind(tmp_path: Path, trained):
    cfg, schema = trained
    (tmp_path / "c.txt").write_text("some text")
    with pytest.raises(DataError, match="is text but the run was trained on tabular"):
        load_labelled(f"text:{tmp_path / 'c.txt'}", schema, cfg)
    with pytest.raises(DataError, match="is a time series but the run was trained on tabular"):
        load_labelled(f"timeseries:{tmp_path / 'train.csv'}", schema, cfg)


def test_read_inputs_reads_a_csv_for_a_table_and_names_what_it_needs(tmp_path: Path, trained):
    _, schema = trained
    _table(5, seed=2).to_csv(tmp_path / "in.csv", index=False)
    frame = read_inputs(str(tmp_path / "in.csv"), schema)
    assert schema.transform(frame).shape == (5, schema.input_shape[0])
    with pytest.raises(DataError, match=f"Input {tmp_path / 'none.csv'} not found"):
        read_inputs(str(tmp_path / "none.csv"), schema)
    (tmp_path / "in.json").write_text("{}")
    with pytest.raises(DataError, match="for a tabular model; give a .csv or .parquet file"):
        read_inputs(str(tmp_path / "in.json"), schema)
