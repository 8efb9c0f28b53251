"""`audit --against` over tables read in batches: a folder or glob of shards gives a result,
the sample is a uniform draw of the stated size, and the shard layout does not change it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from gradwise.cli import app
from gradwise.config import DataConfig, load_config
from gradwise.data.stream import sample_rows, sample_table
from gradwise.errors import DataError
from gradwise.pipeline import train_run
from tests.conftest import tiny_config

runner = CliRunner()
SAMPLE = 150  # audit.shift.sample_size: fewer than the --against rows, so they are sampled


def _table(n: int, rng: np.random.Generator) -> pd.DataFrame:
    df = pd.DataFrame(rng.standard_normal((n, 4)), columns=[f"x{i}" for i in range(4)])
    df["color"] = rng.choice(["red", "green", "blue"], n)
    df["label"] = np.where(df.x0 + df.x1 + (df.color == "red") > 0.5, "yes", "no")
    return df


def _shards(df: pd.DataFrame, folder: Path, suffix: str, cuts: list[int]) -> Path:
    folder.mkdir()
    for i, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(df)])):
        part = df.iloc[a:b]
        if suffix == ".csv":
            part.to_csv(folder / f"part-{i}.csv", index=False)
        else:
            part.to_parquet(folder / f"part-{i}.parquet", index=False)
    (folder / "_SUCCESS").write_text("")  # a marker, skipped
    return folder


@pytest.fixture(scope="module")
def table_run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("stream_against")
    rng = np.random.default_rng(0)
    _table(600, rng).to_csv(root / "train.csv", index=False)
    moved = _table(500, rng)
    moved["x2"] = moved.x2 * 1.5 + 1.0
    moved.to_csv(root / "moved.csv", index=False)
    _shards(moved, root / "moved_parquet", ".parquet", [120, 310])
    _shards(moved, root / "moved_csv", ".csv", [77, 400])
    cfg = tiny_config(
        data={"source": f"csv:{root / 'train.csv'}", "target": "label"},
        audit={"shift": {"power": False, "permutations": 20, "sample_size": SAMPLE}},
    )
    return train_run(load_config(cfg), root / "run"), root, moved


def _against(run, location: str):
    import gradwise

    return gradwise.audit(run, checks=["shift"], against=location)["shift"]


def test_a_folder_of_parquet_shards_is_sampled_and_states_n_of_n(table_run):
    run, root, _ = table_run
    result = _against(run, str(root / "moved_parquet"))
    against = result.metrics["against"]
    assert against["rows"] == 500 and against["n_current"] == SAMPLE
    assert f"vs {SAMPLE} of 500 rows" in result.summary
    assert result.verdict == "fail" and result.metrics["most_drifted"][0]["column"] == "x2"


def test_the_shard_layout_does_not_change_the_result(table_run):
    """Batches start at fixed row positions whatever the shards, and the keys are drawn per
    row in order: a file, CSV shards, parquet shards and a glob draw the same sample."""
    run, root, _ = table_run
    whole = _against(run, str(root / "moved.csv")).metrics["against"]
    for location in ("moved_csv", "moved_parquet", "moved_parquet/*.parquet"):
        assert _against(run, str(root / location)).metrics["against"] == {
            **whole,
            "data": str(root / location),
        }


def test_the_cli_takes_a_glob_and_refuses_a_shard_without_a_column(table_run):
    run, root, moved = table_run
    ok = runner.invoke(
        app,
        ["audit", str(run.path), "--checks", "shift", "--against", str(root / "moved_csv/*.csv")],
    )
    assert ok.exit_code == 0, ok.output
    bad = _shards(moved, root / "bad", ".csv", [250])
    moved.iloc[250:].drop(columns="x3").to_csv(bad / "part-1.csv", index=False)
    out = runner.invoke(app, ["audit", str(run.path), "--checks", "shift", "--against", str(bad)])
    assert out.exit_code == 2 and "Traceback" not in out.output
    assert "lacks the column(s) x3" in out.output
    np.savez(root / "array.npz", x=moved[["x0", "x1", "x2", "x3"]].to_numpy())
    array = runner.invoke(
        app, ["audit", str(run.path), "--checks", "shift", "--against", str(root / "array.npz")]
    )
    assert array.exit_code == 2 and "Traceback" not in array.output
    assert "is an array, but this run reads a table" in array.output


def _drawn(
    folder: Path, expected: list[str] | None, n: int, rng: np.random.Generator, batch_rows: int
) -> tuple[pd.DataFrame, int]:
    sampled = sample_table(str(folder), DataConfig(), expected, n, rng, batch_rows)
    assert sampled is not None
    return sampled


def _numbers(n: int) -> pd.DataFrame:
    return pd.DataFrame({"v": np.arange(n, dtype=np.float64) * 0.5, "k": np.arange(n)})


def test_the_sample_holds_n_distinct_rows_read_as_written(tmp_path: Path):
    table = _numbers(1000)
    folder = _shards(table, tmp_path / "t", ".parquet", [333, 334, 900])
    sample, n_rows = _drawn(folder, ["v", "k"], 64, np.random.default_rng(1), 50)
    assert n_rows == 1000 and len(sample) == 64 and sample.index.is_unique
    assert sample.index.is_monotonic_increasing  # in the table's order
    pd.testing.assert_frame_equal(sample, table.loc[sample.index])  # oracle: the rows written
    small, n_small = _drawn(folder, None, 5000, np.random.default_rng(1), 50)
    assert n_small == 1000 and len(small) == 1000  # n above N: every row


def test_every_row_is_drawn_with_probability_n_over_n():
    """Uniform: over 2000 draws of 5 of 20 rows, streamed in batches of 3, each row's
    inclusion rate is within 5 standard errors of 5/20 (keeping the first or last rows, or
    favouring a batch, would fail)."""
    table = _numbers(20)
    batches = [table.iloc[a : a + 3] for a in range(0, 20, 3)]
    rng = np.random.default_rng(7)
    hits = np.zeros(20)
    repeats = 2000
    for _ in range(repeats):
        sample = sample_rows(batches, 5, rng)
        assert len(sample) == 5
        hits[sample["k"].to_numpy()] += 1
    se = np.sqrt(0.25 * 0.75 / repeats)
    assert np.abs(hits / repeats - 0.25).max() < 5 * se


def test_a_glob_matching_nothing_is_refused_by_name(tmp_path: Path):
    with pytest.raises(DataError, match="matches no file"):
        sample_table(str(tmp_path / "*.parquet"), DataConfig(), None, 5, np.random.default_rng(), 3)
