"""data.categorical_columns: columns read as categories whatever their values (a zip code, a
code with a few text cells); a name that is not an input column is an error with the closest
one; a table of categories alone trains and predicts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gradwise
from gradwise.data.tabular import TabularPreprocessor
from gradwise.errors import DataError
from tests.conftest import tiny_config


def _table(n: int = 80) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "zip": rng.choice([94110, 10001, 60601], n),
            "income": rng.normal(50.0, 10.0, n).round(1),
            "y": rng.integers(0, 2, n),
        }
    )


def _train(frame: pd.DataFrame, tmp_path: Path, **data: object) -> gradwise.Run:
    tmp_path.mkdir(exist_ok=True)
    frame.to_csv(tmp_path / "t.csv", index=False)
    cfg = tiny_config(
        data={"source": f"csv:{tmp_path / 't.csv'}", "target": "y", **data},
        train={"epochs": 1},
    )
    return gradwise.train(cfg, out=tmp_path / "r")


def test_a_numeric_column_named_as_categorical_is_one_hot(tmp_path: Path):
    run = _train(_table(), tmp_path, categorical_columns=["zip"])
    tab = run.schema.tabular
    assert (tab.numeric, tab.categorical) == (["income"], ["zip"])
    assert {"zip=94110", "zip=10001", "zip=60601"} <= set(tab.feature_names)
    # a zip that comes as a float (a column with a gap is float) is the same category
    as_int = run.transform(pd.DataFrame({"zip": [94110], "income": [50.0]}))
    as_float = run.transform(pd.DataFrame({"zip": [94110.0, np.nan], "income": [50.0, 50.0]}))
    assert np.array_equal(as_float[:1].numpy(), as_int.numpy())


def test_a_code_column_with_a_few_text_cells_trains_once_named(tmp_path: Path):
    frame = _table().astype({"zip": object})
    frame.loc[3, "zip"] = "unknown"
    with pytest.raises(DataError, match=r"train with data.categorical_columns: \[zip\]"):
        _train(frame, tmp_path)
    run = _train(frame, tmp_path / "named", categorical_columns=["zip"])
    assert "unknown" in run.schema.tabular.vocab[run.schema.tabular.categorical.index("zip")]


def test_an_unknown_categorical_column_suggests_the_closest():
    df = pd.DataFrame({"zip_code": [1, 2], "income": [1.0, 2.0]})
    with pytest.raises(DataError, match=r"data.categorical_columns names 'zipcode' \(did you "):
        TabularPreprocessor.fit(df, "onehot", ["zipcode"])


def test_the_data_order_is_kept_beside_the_model_order():
    df = pd.DataFrame({"city": ["a", "b"], "zip": [1, 2], "income": [1.0, 2.0]})
    prep = TabularPreprocessor.fit(df, "onehot", ["zip"])
    assert prep.columns == ["income", "city", "zip"]
    assert prep.raw_columns == ["city", "zip", "income"]


def test_a_table_of_categories_alone_trains_and_predicts(tmp_path: Path):
    frame = _table().assign(size=lambda f: np.where(f.y == 1, "L", "S"))
    run = _train(frame[["size", "zip", "y"]], tmp_path, categorical_columns=["zip"])
    assert run.schema.tabular.numeric == []
    test = run.split("test")
    predicted = run.predict(test.raw)
    accuracy = float((predicted == test.raw["y"].to_numpy()).mean())
    assert accuracy == pytest.approx(run.metrics["test"]["accuracy"])
