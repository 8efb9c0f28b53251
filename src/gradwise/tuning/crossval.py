"""Cross-validated trial scores: on a small validation split one trial's score moves with
which rows happen to be in it, and a search that picks the maximum of 30 such scores picks
the luckiest split as much as the best configuration. Scoring each trial over k folds of
train+val (the test split is never touched) evaluates every one of those rows once and
gives the score's noise (the standard error over folds).

    cv_plan(setting, below, data)       -> CvPlan: k (0: off) and the rule that chose it
    fold_datasets(data, k, seed)        -> k datasets: train+val refolded, test unchanged
    FoldScores(values)                  mean, standard error; paired difference of two
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gradwise.data.dataset import Dataset, Split
from gradwise.errors import ConfigError

AUTO_FOLDS = 5
TWO_SE = 2.0  # a difference within two standard errors is "cannot be told apart"


@dataclass(frozen=True)
class CvPlan:
    """How trials are scored: `folds` (0: the validation split alone) and why."""

    folds: int
    rule: str


def cv_plan(setting: str | int, below: int, data: Dataset) -> CvPlan:
    """The folds `tune.cv` asks for on this data, with the rule stated.

    Raises:
        ConfigError: k folds asked on a time-ordered split (the folds would train on the
            future of the stretch they score).
    """
    n_val = len(data.val)
    time_ordered = data.split_rule.get("method") == "time"
    if setting == "off":
        return CvPlan(0, "tune.cv off: each trial scored on the validation split")
    if isinstance(setting, int):
        if time_ordered:
            raise ConfigError(
                f"tune.cv {setting}: this split is ordered in time, and k-fold would train on "
                "the future of the stretch it scores; set tune.cv off."
            )
        return CvPlan(setting, f"tune.cv {setting}: {setting}-fold cross-validation")
    if time_ordered:
        return CvPlan(0, "tune.cv auto: off, the split is ordered in time")
    if n_val >= below:
        return CvPlan(0, f"tune.cv auto: off, validation has {n_val} rows (>= {below})")
    return CvPlan(
        AUTO_FOLDS,
        f"tune.cv auto: {AUTO_FOLDS}-fold cross-validation over train+val "
        f"({len(data.train) + n_val} rows), since validation has {n_val} rows (< {below})",
    )


def fold_datasets(data: Dataset, k: int, seed: int) -> list[Dataset]:
    """`data` with train and val pooled and split into k folds, one dataset per fold: that
    fold is its val, the rest its train; test and the preprocessing (fitted on the original
    training split) stay. The folds keep the split's rule (groups and exact copies in one
    fold; classes stratified when every class has k samples), by `fold_splits`."""
    from gradwise.data.split import fold_splits

    x = torch.cat([data.train.x, data.val.x])
    y = torch.cat([data.train.y, data.val.y])
    rows = np.concatenate([data.rows["train"], data.rows["val"]]) if data.rows else None
    labels = y.numpy() if data.schema.task == "classification" and y.ndim == 1 else None
    positions = rows if rows is not None else np.arange(len(y))
    key = data.fold_key if rows is not None else None
    out = []
    for keep, held in fold_splits(data.split_rule, key, positions, labels, k, seed):
        keep_t, held_t = torch.as_tensor(keep), torch.as_tensor(held)
        parts: dict[str, Any] = {
            "train": Split(x[keep_t].contiguous(), y[keep_t].contiguous()),
            "val": Split(x[held_t].contiguous(), y[held_t].contiguous()),
        }
        if rows is not None:
            parts["rows"] = {**data.rows, "train": rows[keep], "val": rows[held]}
        out.append(dataclasses.replace(data, **parts))
    return out


def fold_seed(split_seed: int | None, seed: int) -> int:
    """The folds' seed: the split's (data.split.seed, else the run's seed), so every trial
    of a study is scored on the same folds."""
    return seed if split_seed is None else split_seed


@dataclass(frozen=True)
class FoldScores:
    """One trial's metric on each fold."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def se(self) -> float:
        """Standard error of the mean over folds (sample std / sqrt(k)); 0 for one fold."""
        k = len(self.values)
        return float(np.std(self.values, ddof=1) / math.sqrt(k)) if k > 1 else 0.0

    def minus(self, other: FoldScores) -> FoldScores:
        """Fold-by-fold differences (the folds are the same for every trial, so the paired
        difference's standard error is smaller than either score's)."""
        return FoldScores(tuple(a - b for a, b in zip(self.values, other.values, strict=True)))
