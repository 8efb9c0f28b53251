"""Splits: seeded, a partition of the rows, stratified for classification."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from gradwise.config import SplitConfig
from gradwise.data.sources import load_dataset
from gradwise.data.split import split_indices, split_sizes
from tests.data.conftest import data_config

CFG = SplitConfig(val=0.15, test=0.2)


def _imbalanced(n: int = 400) -> np.ndarray:
    return np.random.default_rng(0).choice(["a", "b", "c"], n, p=[0.7, 0.2, 0.1])


def test_split_is_a_partition_of_the_requested_sizes():
    train, val, test = split_indices(200, CFG, seed=0)
    assert (len(train), len(val), len(test)) == (130, 30, 40)
    assert sorted(np.concatenate([train, val, test])) == list(range(200))


def test_the_same_seed_gives_the_same_split_and_another_seed_another():
    labels = _imbalanced()
    first = split_indices(400, CFG, seed=3, stratify=labels)
    again = split_indices(400, CFG, seed=3, stratify=labels)
    other = split_indices(400, CFG, seed=4, stratify=labels)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[2], other[2])
    assert not np.array_equal(first[1], other[1])


def test_stratified_splits_keep_class_proportions():
    labels = _imbalanced()
    overall = pd.Series(labels).value_counts(normalize=True)
    for part in split_indices(400, CFG, seed=0, stratify=labels):
        share = pd.Series(labels[part]).value_counts(normalize=True)
        assert (share - overall).abs().max() < 0.02


def test_classes_too_small_to_stratify_fall_back_to_a_plain_split(caplog):
    labels = np.array(["a"] * 50 + ["b"] * 2)
    with caplog.at_level(logging.WARNING, logger="gradwise"):
        train, val, test = split_indices(52, CFG, seed=0, stratify=labels)
    assert "splitting without stratification" in caplog.text
    assert sorted(np.concatenate([train, val, test])) == list(range(52))


def test_chronological_sizes_round_like_shuffled_splits():
    assert split_sizes(100, CFG) == (65, 15, 20)
    train, val, test = split_indices(101, CFG, seed=0)
    assert split_sizes(101, CFG) == (len(train), len(val), len(test))


def test_every_split_must_hold_data():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="greater than 0"):
        SplitConfig(val=0.0, test=0.2)


@pytest.mark.parametrize("seed", [-1, 2**32, 2**40 + 5])
def test_any_integer_seed_is_accepted(seed: int):
    first = split_indices(50, CFG, seed=seed)
    assert all(np.array_equal(a, b) for a, b in zip(first, split_indices(50, CFG, seed=seed)))


def test_dataset_splits_follow_the_seed(tmp_path: Path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x": rng.normal(size=120), "label": _imbalanced(120)})
    df.to_csv(tmp_path / "t.csv", index=False)
    cfg = data_config(f"csv:{tmp_path / 't.csv'}", target="label")
    a, b, c = (load_dataset(cfg, seed=s) for s in (0, 0, 1))
    assert torch.equal(a.test.x, b.test.x) and torch.equal(a.train.y, b.train.y)
    assert not torch.equal(a.test.x, c.test.x)
    counts = np.bincount(a.test.y.numpy(), minlength=3) / len(a.test)
    overall = pd.Series(df.label).value_counts(normalize=True).sort_index().to_numpy()
    assert np.abs(counts - overall).max() < 0.05
