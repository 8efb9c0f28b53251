"""Seeded train/val/test splits (stratified for classification) and the split sizes that
chronological splits (series, text corpora) share."""

from __future__ import annotations

import logging

import numpy as np
from sklearn.model_selection import train_test_split

from gradwise.config import SplitConfig
from gradwise.errors import DataError

log = logging.getLogger("gradwise")


def split_indices(
    n: int,
    cfg: SplitConfig,
    seed: int,
    stratify: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the train, val and test rows.

    Args:
        n: number of samples.
        cfg: fractions held out for validation and test.
        seed: the run's seed; the same seed always gives the same split.
        stratify: (n,) class labels to keep class proportions in every split.
    """
    n_train, n_val, n_test = split_sizes(n, cfg)
    if min(n_train, n_val, n_test) < 1:
        raise DataError(
            f"{n} samples are too few to split into train ({n_train}), validation ({n_val}) "
            f"and test ({n_test}) with data.split val={cfg.val}, test={cfg.test}; give more "
            "data, or larger split fractions."
        )
    idx = np.arange(n)
    strat = stratify if stratify is not None and _can_stratify(stratify, n_val, n_test) else None
    if stratify is not None and strat is None:
        log.warning(
            "some class has fewer than 2 samples per split; splitting without stratification"
        )
    rest, test = _take(idx, n_test, strat, seed)
    strat_rest = strat[rest] if strat is not None else None
    train, val = _take(rest, n_val, strat_rest, seed + 1)
    return np.sort(train), np.sort(val), np.sort(test)


def split_sizes(n: int, cfg: SplitConfig) -> tuple[int, int, int]:
    """How many of `n` samples (or characters, or time steps) go to train, val and test.

    Every split kind rounds the same way: shuffled rows, chronological series and
    contiguous parts of a text corpus.
    """
    n_test = int(round(n * cfg.test))
    n_val = int(round(n * cfg.val))
    return n - n_val - n_test, n_val, n_test


def _take(
    idx: np.ndarray, n_out: int, strat: np.ndarray | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    if n_out == 0:
        return idx, idx[:0]
    # scikit-learn takes seeds in [0, 2**32); the run's seed may be negative or larger
    keep, out = train_test_split(idx, test_size=n_out, random_state=seed % 2**32, stratify=strat)
    return keep, out


def _can_stratify(labels: np.ndarray, n_val: int, n_test: int) -> bool:
    _, counts = np.unique(labels, return_counts=True)
    n_classes = len(counts)
    return counts.min() >= 3 and min(n_val or n_classes, n_test or n_classes) >= n_classes
