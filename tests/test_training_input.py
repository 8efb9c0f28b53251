"""Training refuses input it would otherwise misread: text in a column of numbers, an empty
config; a column of categories stays categorical."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import gradwise
from gradwise.cli import app
from gradwise.config import load_config
from gradwise.data.tabular import TabularPreprocessor
from gradwise.errors import ConfigError, DataError
from tests.conftest import tiny_config

runner = CliRunner()


def _table(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n).astype(object),
            "city": rng.choice(["Lyon", "Nice"], n),
            "y": rng.integers(0, 2, n),
        }
    )
    return frame


@pytest.mark.parametrize("n", [60, 3000])
def test_one_text_cell_in_a_numeric_column_is_refused_with_column_rows_and_values(
    tmp_path: Path, n: int
):
    frame = _table(n)
    frame.loc[7, "age"] = "forty"
    frame.loc[n - 1, "age"] = "n/a?"  # a test row of the split, as likely as a train row
    frame.to_csv(tmp_path / "t.csv", index=False)
    config = tmp_path / "c.yaml"
    cfg = tiny_config(data={"source": f"csv:{tmp_path / 't.csv'}", "target": "y"})
    config.write_text(yaml.safe_dump(cfg))
    result = runner.invoke(app, ["train", str(config), "--out", str(tmp_path / "r"), "-q"])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert f"Column 'age' is numeric but holds text in 2 row(s) (rows 7, {n - 1}" in message
    assert "'forty', 'n/a?'" in message and "data.na_values" in message


def test_mostly_numeric_and_categorical_columns_are_told_apart():
    codes = pd.Series(["1", "2", "3", "A"] * 5, dtype=object)  # 75% numbers: categories
    numbers = pd.Series([str(v) for v in range(20)], dtype=object)  # every cell a number
    prep = TabularPreprocessor.fit(pd.DataFrame({"grade": codes, "n": numbers}), "onehot")
    assert (prep.numeric, prep.categorical) == (["n"], ["grade"])
    mostly = pd.Series([str(v) for v in range(19)] + ["x"], dtype=object)  # 95% numbers
    with pytest.raises(DataError, match=r"'m' is numeric but holds text in 1 row\(s\) \(rows 19"):
        TabularPreprocessor.fit(pd.DataFrame({"m": mostly}), "onehot")


def test_a_table_of_categories_only_trains(tmp_path: Path):
    frame = _table(80).drop(columns="age").assign(size=lambda f: np.where(f.y, "L", "S"))
    frame.to_csv(tmp_path / "t.csv", index=False)
    cfg = tiny_config(data={"source": f"csv:{tmp_path / 't.csv'}", "target": "y"})
    run = gradwise.train({**cfg, "train": {"epochs": 1}}, out=tmp_path / "r")
    assert run.schema.tabular.numeric == [] and run.schema.tabular.categorical == ["city", "size"]


def test_an_empty_config_file_is_refused(tmp_path: Path):
    for text in ("", "# nothing yet\n"):
        path = tmp_path / "config.yaml"
        path.write_text(text)
        with pytest.raises(ConfigError, match="config.yaml is empty"):
            load_config(path)
        result = runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "r")])
        assert result.exit_code == 2 and "config.yaml is empty" in result.output
        assert not (tmp_path / "r").exists()
