"""Leakage found before it becomes a number: copies and overlapping windows across splits,
and splits made the way the data was made (by group, in time order with a gap)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gradwise.config import SplitConfig
from gradwise.data.leakage import (
    cross_split,
    overlapping_windows,
    sample_keys,
    window_blocks,
)
from gradwise.data.sources import load_dataset
from gradwise.data.split import fold_splits, split_indices, split_samples
from gradwise.errors import DataError
from tests.data.conftest import data_config

STEPS = 10


def machine_windows(
    n_machines: int = 12, length: int = 40, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windows of STEPS steps cut with stride 1 from one random walk per machine, the
    remaining life as target, and each window's machine."""
    rng = np.random.default_rng(seed)
    xs, ys, gs = [], [], []
    for m in range(n_machines):
        walk = np.cumsum(rng.normal(size=(length, 2)), axis=0)
        views = np.lib.stride_tricks.sliding_window_view(walk, STEPS, axis=0)
        xs.append(views.transpose(0, 2, 1))
        ys.append(np.arange(len(xs[-1]))[::-1].astype(np.float32))
        gs.append(np.full(len(xs[-1]), m))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys), np.concatenate(gs)


# ------------------------------------------------------------------ the scans


def test_sample_keys_match_equal_samples_across_calls():
    x = np.random.default_rng(0).normal(size=(6, 3, 2)).astype(np.float32)
    keys = sample_keys(np.concatenate([x, x[:2]]))
    assert len(np.unique(keys)) == 6
    assert keys[6] == keys[0] and keys[7] == keys[1]
    assert np.array_equal(sample_keys(x[:2]), keys[:2])  # comparable between calls


def test_sample_keys_read_text_without_case_or_spacing():
    df = pd.DataFrame({"text": ["Call me  later", "call me later", "call me now"], "n": 1})
    keys = sample_keys(df)
    assert keys[0] == keys[1] != keys[2]


def test_windows_cut_from_one_series_overlap_and_independent_ones_do_not():
    x, _, _ = machine_windows(n_machines=2)
    assert overlapping_windows(window_blocks(x)).all()
    independent = np.random.default_rng(1).normal(size=(50, STEPS, 2))
    assert not overlapping_windows(window_blocks(independent)).any()


def test_padding_is_not_an_overlap():
    x = np.random.default_rng(2).normal(size=(20, STEPS, 1))
    x[:, : STEPS // 2 + 1] = 0.0  # every window starts with the same zeros
    assert not overlapping_windows(window_blocks(x)).any()


def test_cross_split_names_the_training_window_each_held_out_window_overlaps():
    x, _, _ = machine_windows(n_machines=1)
    splits = {"train": np.arange(0, 10), "val": np.array([12]), "test": np.array([30])}
    crossing = cross_split(window_blocks(x), splits, "overlapping windows")
    # window 12 shares steps 12..18 with window 9 (half a window is 5 steps): it crosses
    assert crossing.held["val"].tolist() == [12]
    assert 12 - crossing.train_match["val"][0] < STEPS
    assert crossing.held["test"].tolist() == []
    assert crossing.share == pytest.approx(0.5)


# ------------------------------------------------------------------ the split rules


def test_overlapping_windows_without_groups_split_in_time_order_with_a_gap():
    x, _, _ = machine_windows()
    result = split_samples(len(x), SplitConfig(), 0, inputs=x)
    assert result.rule["method"] == "time"
    assert result.rule["gap"] == STEPS
    assert result.train.max() + STEPS < result.val.min()
    assert result.val.max() + STEPS < result.test.min()
    assert all(c["n"] == 0 for c in result.rule["crossing"])
    assert "gap of 10 windows" in result.notes[0] and "groups" in result.notes[0]


def test_groups_keep_each_machine_in_one_split():
    x, _, groups = machine_windows()
    result = split_samples(len(x), SplitConfig(), 3, inputs=x, groups=groups, group_name="m")
    owners = [set(groups[idx]) for idx in result.indices]
    assert not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2])
    assert sum(len(o) for o in owners) == 12
    assert result.rule["method"] == "group" and result.rule["n_groups"] == 12
    assert len(result.test) == pytest.approx(0.2 * len(x), rel=0.5)


def test_a_shuffled_split_of_overlapping_windows_is_refused_with_the_fix():
    x, _, _ = machine_windows()
    with pytest.raises(DataError) as err:
        split_samples(len(x), SplitConfig(order="random"), 0, inputs=x)
    message = str(err.value)
    assert "data.split.by" in message and "data.split.order: time" in message
    assert "allow_overlap" in message
    assert "validation and test windows (100%)" in message


def test_allow_overlap_accepts_the_leak_and_marks_the_split_leaky():
    x, _, _ = machine_windows()
    result = split_samples(len(x), SplitConfig(order="random", allow_overlap=True), 0, inputs=x)
    assert result.rule["method"] == "random"
    assert result.rule["leaky"] is True
    windows = next(c for c in result.rule["crossing"] if c["kind"] == "overlapping windows")
    assert windows["share"] > 0.9 and windows["examples"]


def test_exact_copies_stay_in_one_split():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    x[100:160] = x[:60]  # 60 rows copied
    y = rng.integers(0, 2, size=200)
    result = split_samples(200, SplitConfig(), 0, stratify=y, inputs=x)
    where = np.empty(200, dtype=int)
    for k, idx in enumerate(result.indices):
        where[idx] = k
    assert np.array_equal(where[:60], where[100:160])
    assert result.rule["copies_kept_together"] == 60
    assert result.rule["crossing"][0]["n"] == 0


def test_a_split_without_copies_is_the_plain_stratified_shuffle():
    x = np.random.default_rng(0).normal(size=(100, 3))
    y = np.arange(100) % 2
    result = split_samples(100, SplitConfig(), 5, stratify=y, inputs=x)
    expected = split_indices(100, SplitConfig(), 5, y)
    assert all(np.array_equal(a, b) for a, b in zip(result.indices, expected))


def test_group_folds_keep_groups_and_time_folds_are_contiguous():
    groups = np.repeat(np.arange(10), 5)
    rows = np.arange(50)
    folds = fold_splits({"method": "group"}, groups, rows, None, 5, 0)
    for kept, held in folds:
        assert not set(groups[kept]) & set(groups[held])
    folds = fold_splits({"method": "time"}, np.arange(50), rows, None, 5, 0)
    for _, held in folds:
        assert np.array_equal(held, np.arange(held[0], held[0] + len(held)))


# ------------------------------------------------------------------ through the sources


def test_npz_groups_array_is_used_by_default_and_written_to_the_rule(tmp_path: Path):
    x, y, groups = machine_windows()
    np.savez(tmp_path / "w.npz", X=x, y=y, groups=groups)
    data = load_dataset(data_config(f"npz:{tmp_path / 'w.npz'}"), seed=0)
    assert data.split_rule["method"] == "group"
    assert data.split_rule["by"] == "groups (npz array)"
    test_machines = set(groups[data.rows["test"]])
    assert not test_machines & set(groups[data.rows["train"]])


def test_npz_split_by_a_missing_array_names_the_fix(tmp_path: Path):
    x, y, _ = machine_windows()
    np.savez(tmp_path / "w.npz", X=x, y=y)
    with pytest.raises(DataError, match="np.savez.*groups"):
        load_dataset(data_config(f"npz:{tmp_path / 'w.npz'}", split={"by": "groups"}), seed=0)


def test_a_table_split_by_customer_keeps_each_customer_in_one_split(tmp_path: Path):
    rng = np.random.default_rng(0)
    customer = np.repeat([f"c{i}" for i in range(30)], 6)
    df = pd.DataFrame(
        {
            "customer": customer,
            "amount": rng.normal(size=len(customer)),
            "label": rng.integers(0, 2, size=len(customer)),
        }
    )
    df.to_csv(tmp_path / "t.csv", index=False)
    cfg = data_config(f"csv:{tmp_path / 't.csv'}", target="label", split={"by": "customer"})
    data = load_dataset(cfg, seed=0)
    owners = [set(customer[data.rows[s]]) for s in ("train", "val", "test")]
    assert not (owners[0] & owners[1] or owners[0] & owners[2] or owners[1] & owners[2])
    assert data.schema.tabular is not None
    assert "customer" not in data.schema.tabular.columns  # a group is not a feature


def test_a_table_in_time_order_puts_the_latest_rows_in_test(tmp_path: Path):
    rng = np.random.default_rng(0)
    n = 100
    df = pd.DataFrame(
        {
            "when": pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
            "x": rng.normal(size=n),
            "y": rng.normal(size=n),
        }
    ).sample(frac=1.0, random_state=0)
    df.to_csv(tmp_path / "t.csv", index=False)
    cfg = data_config(
        f"csv:{tmp_path / 't.csv'}", target="y", split={"order": "time", "time": "when"}
    )
    data = load_dataset(cfg, seed=0)
    when = pd.to_datetime(df["when"]).to_numpy()
    assert when[data.rows["train"]].max() < when[data.rows["val"]].min()
    assert when[data.rows["val"]].max() < when[data.rows["test"]].min()
    assert data.split_rule["method"] == "time" and data.split_rule["time"] == "when"


def test_duplicates_across_a_table_are_kept_together_and_counted(tmp_path: Path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=80), "b": rng.integers(0, 3, 80)})
    df = pd.concat([df, df.iloc[:20]], ignore_index=True)
    df["label"] = np.arange(len(df)) % 2
    df.to_csv(tmp_path / "t.csv", index=False)
    data = load_dataset(data_config(f"csv:{tmp_path / 't.csv'}", target="label"), seed=0)
    assert data.split_rule["copies_kept_together"] == 20
    assert data.split_rule["crossing"][0]["n"] == 0


def test_a_series_source_refuses_a_shuffled_split(tmp_path: Path):
    pd.DataFrame({"v": np.arange(100.0)}).to_csv(tmp_path / "s.csv", index=False)
    cfg = data_config(f"timeseries:{tmp_path / 's.csv'}", target="v", split={"order": "random"})
    with pytest.raises(DataError, match="always split in time order"):
        load_dataset(cfg, seed=0)
