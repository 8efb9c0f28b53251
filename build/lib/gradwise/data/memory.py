"""Arrays and DataFrames held in memory as a Dataset (what the scikit-learn estimators fit).

The preprocessing is the files': a DataFrame goes through the tabular builder (imputation,
standardisation, one-hot or embedded categories), an array through the array builder
(per-feature or per-channel standardisation), each fitted on the training rows. Only the
split differs: the caller holds out `val_fraction` of the rows for validation (the loop's
per-epoch metrics, early stopping, the best epoch) and there is no test split, because an
estimator is scored on data its user keeps apart. Nothing is written to disk.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from gradwise.config import DataConfig
from gradwise.data.arrays import build_arrays
from gradwise.data.dataset import Dataset
from gradwise.data.tabular import build_tabular

MIN_VALIDATION = 20  # fewer rows than this: validate on the training rows themselves


def memory_dataset(
    x: np.ndarray | pd.DataFrame,
    y: np.ndarray,
    cfg: DataConfig,
    seed: int,
    val_fraction: float,
) -> Dataset:
    """Train and validation splits of in-memory samples; the test split is empty.

    Args:
        x: (N, F) table, (N, T, F) sequences or (N, C, H, W) images; or a DataFrame whose
            columns are the features (numeric or categorical).
        y: (N,) labels or targets, (N, K) for several regression targets.
        cfg: data settings; `cfg.task` says classification or regression, `cfg.source`
            names the data in the run (memory:NAME).
        val_fraction: share of the rows held out for validation (stratified by class
            when possible); 0, or too few rows, validates on the training rows.

    Raises:
        DataError: the samples do not fit the task (as for data read from files).
    """
    n = len(y)
    idx = np.arange(n)
    n_val = int(round(n * val_fraction))
    if val_fraction == 0 or n < MIN_VALIDATION or n_val < 1:
        train = val = idx
    else:
        train, val = _hold_out(idx, n_val, y if cfg.task == "classification" else None, seed)
    indices = (np.sort(train), np.sort(val), idx[:0])
    if isinstance(x, pd.DataFrame):
        target = _free_name(x.columns)
        frame = x.reset_index(drop=True).assign(**{target: np.asarray(y)})
        data = build_tabular(frame, cfg.model_copy(update={"target": target}), seed, indices)
    else:
        data = build_arrays(np.asarray(x), np.asarray(y), cfg, seed, indices=indices)
    schema = dataclasses.replace(data.schema, sha256=_content_hash(x, y))
    return dataclasses.replace(data, schema=schema)


def _hold_out(
    idx: np.ndarray, n_val: int, labels: np.ndarray | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    try:
        train, val = train_test_split(
            idx, test_size=n_val, random_state=seed % 2**32, stratify=labels
        )
    except ValueError:  # a class too rare to stratify: a plain random split
        train, val = train_test_split(idx, test_size=n_val, random_state=seed % 2**32)
    return train, val


def _free_name(columns: Any) -> str:
    name = "target"
    while name in set(map(str, columns)):
        name += "_"
    return name


def _content_hash(x: np.ndarray | pd.DataFrame, y: np.ndarray) -> str:
    digest = hashlib.sha256()
    if isinstance(x, pd.DataFrame):
        digest.update(pd.util.hash_pandas_object(x, index=False).to_numpy().tobytes())
    else:
        digest.update(np.ascontiguousarray(x).tobytes())
    digest.update(pd.util.hash_array(np.asarray(y).ravel().astype(object)).tobytes())
    return digest.hexdigest()
