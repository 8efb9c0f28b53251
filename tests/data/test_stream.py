"""The streaming reader's pieces that need no trained run: shard discovery and the bounded
uniform sample (`gradwise.data.stream`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gradwise.config import DataConfig
from gradwise.data.stream import sample_rows, stream_table, table_shards
from gradwise.errors import DataError


def _batches(n_rows: int, size: int) -> list[pd.DataFrame]:
    frame = pd.DataFrame({"v": np.arange(n_rows) * 10})
    return [frame.iloc[i : i + size] for i in range(0, n_rows, size)]


def test_sample_rows_keeps_n_distinct_rows_in_table_order():
    sample = sample_rows(_batches(100, 7), 12, np.random.default_rng(0))
    assert len(sample) == 12 and sample.index.is_unique
    assert sample.index.is_monotonic_increasing
    assert (sample["v"] == sample.index * 10).all()  # each row's own values
    assert len(sample_rows(_batches(5, 2), 12, np.random.default_rng(0))) == 5  # all of a few


def test_sample_rows_gives_every_row_the_same_chance():
    n_rows, n, trials = 40, 8, 1000
    counts = np.zeros(n_rows)
    for seed in range(trials):
        counts[sample_rows(_batches(n_rows, 7), n, np.random.default_rng(seed)).index] += 1
    # each row is kept with probability n / n_rows = 0.2; sd over 1000 trials 0.0126
    np.testing.assert_allclose(counts / trials, n / n_rows, atol=0.06)


def test_a_folder_lists_its_table_shards_in_name_order(tmp_path: Path):
    for name in ("b.csv", "a.csv", "_SUCCESS", ".crc"):
        (tmp_path / name).write_text("x,y\n1,2\n")
    shards = table_shards(str(tmp_path))
    assert shards is not None and [p.name for p in shards.files] == ["a.csv", "b.csv"]
    frames = list(stream_table(shards, DataConfig(), None, ["x", "y"], 10))
    assert len(frames) == 1 and list(frames[0]["x"]) == [1, 1]
    assert table_shards(str(tmp_path / "none.csv")) is None  # the in-memory reader says why


def test_a_headerless_shard_is_refused_like_a_headerless_file(tmp_path: Path):
    (tmp_path / "a.csv").write_text("x,y\n1,2\n")
    (tmp_path / "b.csv").write_text("3,4\n5,6\n")
    shards = table_shards(str(tmp_path))
    assert shards is not None
    with pytest.raises(DataError, match=r"b\.csv looks like data, not a header"):
        list(stream_table(shards, DataConfig(), None, ["x", "y"], 10))
