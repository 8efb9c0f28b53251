"""Train/val/test splits the way the data was made, judged for leakage before any training.

    split_samples(n, cfg, seed, ...)   the positions of each split and the rule that made them

Rules (`data.split`):

- by a group (`by: COLUMN`, or an npz `groups` array): every sample of a machine, a patient,
  a customer lands in one split;
- in time order (`order: time`): test last, validation before it, with `gap` samples left
  out before each boundary so no window straddles it;
- shuffled (`order: random`, stratified for classes), exact copies kept in one split.

`order: auto` (the default) shuffles, except for windows that overlap (one window's steps a
shifted copy of another's) and come without groups: those are split in time order with a gap
of one window, and the rule says so. A shuffled split whose held-out windows overlap training
ones is refused unless `allow_overlap: true`, which every report then shows in red.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from gradwise.config import SplitConfig
from gradwise.data.hash_split import hash_indices
from gradwise.data.leakage import (
    Crossing,
    block_length,
    cross_split,
    overlapping_windows,
    sample_keys,
    window_blocks,
)
from gradwise.errors import DataError

log = logging.getLogger("gradwise")

LEAK_SHARE = 0.01  # held-out samples crossing into training: above this, a split "leaks"
PERVASIVE = 0.5  # fewer distinct samples than this share: copies are the data's nature
OVERLAP_SHARE = 0.05  # windows sharing half their steps with another: above this, "overlap"


@dataclass(frozen=True)
class SplitResult:
    """The positions of each split and how they were chosen.

    Attributes:
        train, val, test: sorted positions among the source's samples; samples in a gap
            between chronological splits are in none.
        rule: what splits.json and the report show: the method, its settings and what the
            leakage scan found (JSON-able).
        notes: sentences for the training log (what was decided for the user, and why).
        fold_key: (n,) per sample, what k-fold retrains must respect: the group (by a
            group, or the copies of one sample) or the time rank (in time order); None:
            samples are independent.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    rule: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    fold_key: np.ndarray | None = None

    @property
    def indices(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.train, self.val, self.test


def split_samples(
    n: int,
    cfg: SplitConfig,
    seed: int,
    *,
    stratify: np.ndarray | None = None,
    inputs: Any = None,
    groups: np.ndarray | None = None,
    group_name: str | None = None,
    time: np.ndarray | None = None,
    time_name: str | None = None,
) -> SplitResult:
    """Split `n` samples by `cfg` (see the module docstring) and scan the result for leakage.

    Args:
        seed: the same seed always gives the same split.
        stratify: (n,) class labels to keep class proportions in shuffled splits.
        inputs: the raw inputs without the target (a DataFrame, or an array whose first axis
            is the samples; (N, T, F) arrays are windows): copies and overlaps are found in
            them. None: no scan.
        groups: (n,) the group of each sample (`cfg.by` resolved by the caller).
        time: (n,) values that order the samples (`cfg.time` resolved); None: their order.

    Raises:
        DataError: too few samples or groups to split, or a shuffled split of overlapping
            windows without `allow_overlap`.
    """
    keys = sample_keys(inputs) if _has_inputs(inputs) else None
    blocks = _blocks(inputs)
    overlap = overlapping_windows(blocks) if blocks is not None else None
    overlap_share = float(overlap.mean()) if overlap is not None else 0.0
    windows = overlap_share >= OVERLAP_SHARE
    steps = int(np.asarray(inputs).shape[1]) if blocks is not None else 0
    notes: list[str] = []
    fold_key: np.ndarray | None = None
    rule: dict[str, Any]
    if cfg.order == "hash":
        by = pd.Series(groups) if groups is not None else None
        idx = _checked(hash_indices(n, by, seed, cfg.val, cfg.test), n)
        rule = {"method": "hash", "by": group_name or "row position", "seed": seed}
        if groups is not None:
            fold_key = np.unique(groups.astype(str), return_inverse=True)[1]
    elif groups is not None:
        if cfg.order == "time":
            raise DataError(
                "data.split.by and data.split.order: time are two rules; choose one (by keeps "
                "each group in one split, time splits chronologically)."
            )
        result = _by_group(n, cfg, seed, groups)
        rule = {"method": "group", "by": group_name, **result[1]}
        idx = result[0]
        fold_key = np.unique(groups.astype(str), return_inverse=True)[1]
    elif cfg.order == "time" or (cfg.order == "auto" and windows):
        gap = cfg.gap if cfg.gap is not None else (steps if windows else 0)
        idx = _by_time(n, cfg, time, gap)
        rule = {"method": "time", "time": time_name or "source order", "gap": gap}
        fold_key = _rank(time, n)
        if cfg.order == "auto":
            notes.append(
                f"{overlap_share:.0%} of the {n:,} windows share at least {block_length(steps)} "
                f"of their {steps} steps with another window, and no groups were given: split "
                f"in source order with a gap of {gap} windows before validation and before "
                "test, so no window is in two splits. To split by machine (or patient, ...), "
                "add a `groups` array to the npz or set data.split.by."
            )
    else:
        idx, rule = _shuffled(n, cfg, seed, stratify, keys)
        if keys is not None and rule.get("copies_kept_together", 0) > 0:
            fold_key = np.unique(keys, return_inverse=True)[1]
    split = dict(zip(("train", "val", "test"), idx))
    crossings = _crossings(keys, blocks, split)
    rule["overlapping_windows"] = round(overlap_share, 6) if overlap is not None else None
    rule["crossing"] = [c.to_dict() for c in crossings]
    window_leak = next((c for c in crossings if c.kind == "overlapping windows"), None)
    # copies that most samples have (few distinct inputs) are the data's nature, not a leak
    pervasive = keys is not None and len(np.unique(keys)) < PERVASIVE * n
    counted = [c for c in crossings if c.kind != "exact copies" or not pervasive]
    worst = max(counted, key=lambda c: c.share, default=None)
    leak_share = worst.share if worst is not None else 0.0
    if window_leak is not None and window_leak.share >= LEAK_SHARE and not cfg.allow_overlap:
        raise DataError(_overlap_message(window_leak, steps, rule["method"]))
    rule["allow_overlap"] = cfg.allow_overlap
    rule["leaky"] = leak_share >= LEAK_SHARE
    rule["leak"] = worst.to_dict() if rule["leaky"] and worst is not None else None
    return SplitResult(*idx, rule=rule, notes=tuple(notes), fold_key=fold_key)


def _checked(
    idx: tuple[np.ndarray, np.ndarray, np.ndarray], n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A hash split's positions, or a DataError when one split drew no sample."""
    empty = [name for name, part in zip(("train", "val", "test"), idx) if len(part) == 0]
    if empty:
        raise DataError(
            f"data.split.order: hash put no sample of {n:,} in {' or '.join(empty)}; hash "
            "splits need more samples (or larger data.split fractions), or use order: random."
        )
    return idx


def leak_warning(rule: dict[str, Any]) -> str | None:
    """The warning a run on a leaky split carries (training says it, reports show it)."""
    if not rule.get("leaky"):
        return None
    worst = leak_of(rule)
    given = " (data.split.allow_overlap: true)" if rule.get("allow_overlap") else ""
    return (
        f"the split leaks{given}: {worst['n']} validation and test samples "
        f"({worst['share']:.1%}) are {worst['kind']} of training samples, so every held-out "
        "number of this run is optimistic; split with data.split.by or data.split.order: time"
    )


def leak_of(rule: dict[str, Any]) -> dict[str, Any]:
    """The crossing that made a split leaky (its kind, count, share and examples)."""
    return rule.get("leak") or max(rule["crossing"], key=lambda c: c["share"])


def _rank(time: np.ndarray | None, n: int) -> np.ndarray:
    if time is None:
        return np.arange(n)
    ranks = np.empty(n, dtype=np.int64)
    ranks[np.argsort(time, kind="stable")] = np.arange(n)
    return ranks


def fold_splits(
    rule: dict[str, Any],
    fold_key: np.ndarray | None,
    rows: np.ndarray,
    labels: np.ndarray | None,
    k: int,
    seed: int,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """k folds of the training samples that keep the split's rule: whole groups (and all
    copies of a sample) in one fold; for time order, contiguous stretches of time.

    Args:
        rule, fold_key: the dataset's `split_rule` and `fold_key`.
        rows: the training samples' positions in the source.
        labels: their classes, to stratify when the rule allows it; None: no stratification.

    Returns:
        (kept, held-out) positions within the training split, one pair per fold.
    """
    from sklearn.model_selection import GroupKFold, KFold, StratifiedGroupKFold, StratifiedKFold

    positions = np.arange(len(rows))
    if rule.get("method") == "time" and fold_key is not None:
        order = np.argsort(fold_key[rows], kind="stable")
        held = np.array_split(order, k)
        return [(np.sort(np.setdiff1d(positions, h)), np.sort(h)) for h in held]
    stratify = labels is not None and np.unique(labels, return_counts=True)[1].min() >= k
    if fold_key is not None:
        groups = fold_key[rows]
        k = min(k, len(np.unique(groups)))
        if stratify:
            splitter = StratifiedGroupKFold(k, shuffle=True, random_state=seed % 2**32)
            return list(splitter.split(positions, labels, groups))
        return list(GroupKFold(k).split(positions, groups=groups))
    if stratify:
        folds = StratifiedKFold(k, shuffle=True, random_state=seed % 2**32)
        return list(folds.split(positions, labels))
    return list(KFold(k, shuffle=True, random_state=seed % 2**32).split(positions))


def split_table(
    df: pd.DataFrame,
    cfg: SplitConfig,
    seed: int,
    inputs: pd.DataFrame,
    stratify: np.ndarray | None = None,
) -> SplitResult:
    """The split of a table's rows: by the column `cfg.by`, in the order of the column
    `cfg.time`, or shuffled; `inputs` (the feature columns) are scanned for exact copies.

    Raises:
        DataError: a named column is missing, or the time column holds no times.
    """
    for key, name in (("by", cfg.by), ("time", cfg.time)):
        if name is not None and name not in df.columns:
            raise DataError(
                f"data.split.{key} names {name!r}, not a column. Columns: "
                f"{', '.join(map(str, df.columns))}."
            )
    groups = df[cfg.by].to_numpy() if cfg.by is not None else None
    if groups is not None and pd.isna(df[cfg.by]).any():
        rows = np.flatnonzero(pd.isna(df[cfg.by]).to_numpy())[:5]
        raise DataError(
            f"data.split.by column {cfg.by!r} is empty in rows {', '.join(map(str, rows))}; "
            "every row needs its group."
        )
    time = _times(df[cfg.time]) if cfg.time is not None else None
    return split_samples(
        len(df),
        cfg,
        seed,
        stratify=stratify,
        inputs=inputs,
        groups=groups,
        group_name=cfg.by,
        time=time,
        time_name=cfg.time,
    )


def split_columns(cfg: SplitConfig) -> list[str]:
    """Columns that define the split (`by`, `time`): they are not features."""
    return [c for c in (cfg.by, cfg.time) if c is not None]


def _times(col: pd.Series) -> np.ndarray:
    if col.dtype.kind in "iufM":
        return col.to_numpy()
    parsed = pd.to_datetime(col, errors="coerce")
    if parsed.isna().any():
        bad = col[parsed.isna()].iloc[0]
        raise DataError(
            f"data.split.time column {col.name!r} holds {bad!r}, neither a number nor a date; "
            "give a column of numbers or dates (e.g. 2024-01-31 13:00)."
        )
    return parsed.to_numpy()


def _has_inputs(inputs: Any) -> bool:
    if inputs is None:
        return False
    return inputs.shape[1] > 0 if isinstance(inputs, pd.DataFrame) else len(inputs) > 0


def _blocks(inputs: Any) -> np.ndarray | None:
    arr = inputs if isinstance(inputs, np.ndarray) else None
    if arr is None or arr.ndim != 3 or arr.shape[1] < 2 or arr.dtype.kind not in "iufb":
        return None
    return window_blocks(arr)


def _crossings(
    keys: np.ndarray | None, blocks: np.ndarray | None, split: dict[str, np.ndarray]
) -> list[Crossing]:
    found = []
    if keys is not None:
        found.append(cross_split(keys, split, "exact copies"))
    if blocks is not None:
        found.append(cross_split(blocks, split, "overlapping windows"))
    return found


def _overlap_message(leak: Crossing, steps: int, method: str) -> str:
    example = leak.to_dict(limit=1)["examples"][0]
    how = {"random": "a shuffled split", "group": "this grouping", "time": "this gap"}[method]
    return (
        f"{how.capitalize()} puts {leak.n} of {leak.n_held} validation and test windows "
        f"({leak.share:.0%}) next to training windows that share at least "
        f"{block_length(steps)} of their {steps} steps (e.g. {example['split']} window "
        f"{example['row']} and training window {example['train_row']}): every held-out number "
        "would be optimistic. Split the way the data was made: data.split.by: groups (an npz "
        "`groups` array or a column naming the machine, patient, ...), or data.split.order: "
        "time (chronological, with a gap of one window). To accept the leak knowingly, set "
        "data.split.allow_overlap: true (reports then show it in red)."
    )


# ------------------------------------------------------------------ the three rules


def _shuffled(
    n: int,
    cfg: SplitConfig,
    seed: int,
    stratify: np.ndarray | None,
    keys: np.ndarray | None,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], dict[str, Any]]:
    """A seeded shuffle (stratified for classes); exact copies stay together, unless most
    samples are copies (inputs that take few distinct values: their nature, not a leak)."""
    n_units = len(np.unique(keys)) if keys is not None else n
    if n_units == n or n_units < PERVASIVE * n:
        idx = split_indices(n, cfg, seed, stratify)
        rule = {"method": "random", "stratified": stratify is not None}
        if n_units < n:
            rule["copies_pervasive"] = int(n - n_units)
        return idx, rule
    assert keys is not None
    # one unit per distinct sample: its copies go where its first occurrence goes
    _, first, unit = np.unique(keys, return_index=True, return_inverse=True)
    unit_labels = stratify[first] if stratify is not None else None
    n_units = len(first)
    tr, va, te = _split_units(n, n_units, unit, cfg, seed, unit_labels)
    rule = {
        "method": "random",
        "stratified": stratify is not None,
        "copies_kept_together": int(n - n_units),
    }
    return (tr, va, te), rule


def _split_units(
    n: int,
    n_units: int,
    unit: np.ndarray,
    cfg: SplitConfig,
    seed: int,
    labels: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    u_tr, u_va, u_te = split_indices(n_units, cfg, seed, labels)
    where = np.zeros(n_units, dtype=np.int64)
    where[u_va], where[u_te] = 1, 2
    assigned = where[unit]
    return tuple(np.flatnonzero(assigned == k) for k in range(3))  # type: ignore[return-value]


def _by_group(
    n: int, cfg: SplitConfig, seed: int, groups: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], dict[str, Any]]:
    """Whole groups to test, then to validation, in a seeded order, until each split holds
    about its share of the samples."""
    names, unit, sizes = np.unique(groups.astype(str), return_inverse=True, return_counts=True)
    if len(names) < 3:
        raise DataError(
            f"data.split.by found {len(names)} group(s); at least 3 are needed to keep each "
            "group in one of train, validation and test. Give more groups, or remove "
            "data.split.by."
        )
    order = np.random.default_rng(seed % 2**32).permutation(len(names))
    filled = np.cumsum(sizes[order])
    n_test, n_val = int(round(n * cfg.test)), int(round(n * cfg.val))
    # a group goes to test while test is short of its share, then to val likewise
    k_test = max(1, int(np.searchsorted(filled, n_test, side="left")) + 1)
    k_test = min(k_test, len(names) - 2)
    k_val = int(np.searchsorted(filled, filled[k_test - 1] + n_val, side="left")) + 1 - k_test
    k_val = min(max(1, k_val), len(names) - 1 - k_test)
    where = np.zeros(len(names), dtype=np.int64)
    where[order[:k_test]] = 2
    where[order[k_test : k_test + k_val]] = 1
    assigned = where[unit]
    idx = tuple(np.flatnonzero(assigned == k) for k in range(3))
    counts = {s: int((where == k).sum()) for k, s in enumerate(("train", "val", "test"))}
    return idx, {"n_groups": int(len(names)), "groups": counts}  # type: ignore[return-value]


def _by_time(
    n: int, cfg: SplitConfig, time: np.ndarray | None, gap: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The earliest samples to train, the latest to test, `gap` samples dropped before the
    validation and before the test part."""
    order = np.arange(n) if time is None else np.argsort(time, kind="stable")
    n_train, n_val, n_test = split_sizes(n - 2 * gap, cfg)
    if min(n_train, n_val, n_test) < 1:
        raise DataError(
            f"{n} samples are too few for a chronological split with a gap of {gap} samples "
            f"before validation and test (data.split.gap); give more data, or a smaller gap."
        )
    val_start = n_train + gap
    test_start = val_start + n_val + gap
    return (
        np.sort(order[:n_train]),
        np.sort(order[val_start : val_start + n_val]),
        np.sort(order[test_start:]),
    )


def split_indices(
    n: int,
    cfg: SplitConfig,
    seed: int,
    stratify: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the train, val and test rows of a seeded shuffle.

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
