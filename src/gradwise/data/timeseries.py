"""Time series: a CSV column (plus optional inputs) turned into sliding windows for forecasting."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from gradwise.config import DataConfig
from gradwise.data.dataset import Dataset
from gradwise.data.schema import Schema
from gradwise.data.split import split_sizes
from gradwise.data.tabular import TabularPreprocessor, pick_target
from gradwise.data.target import TargetSpec
from gradwise.errors import DataError


@dataclass(frozen=True)
class SeriesPreprocessor:
    """Windows of `window` past rows of the features predict the next `horizon` target values.

    The features are standardised by a TabularPreprocessor fitted on the training rows.
    """

    target: str
    features: TabularPreprocessor
    window: int
    horizon: int

    def matrix(self, df: pd.DataFrame) -> np.ndarray:
        """(rows, F) standardised feature matrix, in time order."""
        return self.features.transform(df)

    def make_windows(self, df: pd.DataFrame) -> np.ndarray:
        """(N, window, F) inputs, one per position that has `window` rows before it."""
        m = self.matrix(df)
        n = len(m) - self.window + 1
        if n < 1:
            raise DataError(
                f"The series has {len(m)} rows, fewer than data.window={self.window}; "
                "give more rows or a shorter window."
            )
        return (
            np.lib.stride_tricks.sliding_window_view(m, self.window, axis=0)
            .transpose(0, 2, 1)
            .copy()
        )


def series_frame(df: pd.DataFrame, target: str, features: list[str] | None) -> pd.DataFrame:
    """The columns that feed the model (data.features, default the target alone).

    Raises:
        DataError: a feature column is absent, or the target has missing or non-numeric values.
    """
    cols = features if features is not None else [target]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(
            f"data.features names {', '.join(missing)}, not in the file. "
            f"Columns: {', '.join(df.columns)}."
        )
    y = pd.to_numeric(df[target], errors="coerce")
    if y.isna().any():
        n = int(y.isna().sum())
        raise DataError(
            f"Target column {target!r} has {n} missing or non-numeric values "
            f"(first at row {int(np.flatnonzero(y.isna().to_numpy())[0])}); set data.fill: "
            "interpolate, ffill or drop for the empty ones, or clean the series before "
            "forecasting."
        )
    return df[cols]


def fill_series(df: pd.DataFrame, target: str, fill: str) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The series with its missing target values filled as `data.fill` says, and a note of
    what was done (nothing for `none`, or when none is missing).

    Only empty cells are filled: a text value in the target is still an error
    (`series_frame`), never read as missing.

    Args:
        fill: none | interpolate (linear in row order; the ends take the nearest value) |
            ffill (the last value before; leading gaps take the first value) | drop (the rows).
    """
    if target not in df.columns:
        return df, ()
    missing = df[target].isna().to_numpy()
    n = int(missing.sum())
    if fill == "none" or n == 0:
        return df, ()
    first = int(np.flatnonzero(missing)[0])
    if fill == "drop":
        out = df.loc[~missing].reset_index(drop=True)
        what = "dropped their rows (windows may now span the gaps)"
    else:
        y = pd.to_numeric(df[target], errors="coerce").where(~missing)
        if y[~missing].isna().any():
            return df, ()  # a text value: series_frame names it
        if fill == "interpolate":
            y = y.interpolate(method="linear", limit_direction="both")
        else:
            y = y.ffill().bfill()
        out = df.assign(**{target: y})
        what = "interpolated them linearly" if fill == "interpolate" else "carried the last value"
    return out, (
        f"data.fill: {fill}: {n:,} missing values of {target!r} (first at row {first}); {what}.",
    )


def raw_windows(frame: pd.DataFrame, window: int, n: int) -> np.ndarray:
    """(n, window, F) raw feature values of the first n windows, as `Schema.transform` takes
    them."""
    values = frame.to_numpy()
    return np.lib.stride_tricks.sliding_window_view(values, window, axis=0)[:n].transpose(0, 2, 1)


def supervised(
    m: np.ndarray, y: np.ndarray, window: int, horizon: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of (window rows of m) -> (next horizon values of y)."""
    n = len(m) - window - horizon + 1
    if n < 1:
        raise DataError(
            f"{len(m)} rows are too few for data.window={window} plus data.horizon={horizon}."
        )
    x = np.lib.stride_tricks.sliding_window_view(m, window, axis=0)[:n].transpose(0, 2, 1)
    ys = np.lib.stride_tricks.sliding_window_view(y, horizon)[window : window + n]
    return x.astype(np.float32).copy(), ys.astype(np.float64).copy()


# ------------------------------------------------------------------ building a dataset


def build_timeseries(df: pd.DataFrame, cfg: DataConfig) -> Dataset:
    """Windows of `data.window` rows predict the next `data.horizon` target values; the
    series is split in time order and no window crosses from one split into the next."""
    _check_series_split(cfg)
    target = _series_target(df, cfg)
    df, filled = fill_series(df, target, cfg.fill)
    frame = series_frame(df, target, cfg.features)
    n_train, n_val, _ = split_sizes(len(frame), cfg.split)
    features = TabularPreprocessor.fit(frame.iloc[:n_train], "onehot")
    prep = SeriesPreprocessor(target, features, cfg.window, cfg.horizon)
    y_rows = pd.to_numeric(df[target]).to_numpy(dtype=np.float64)
    mean, std = float(y_rows[:n_train].mean()), float(y_rows[:n_train].std() or 1.0)
    spec = TargetSpec(name=target, mean=[mean] * cfg.horizon, std=[std] * cfg.horizon)
    x, y = supervised(prep.matrix(frame), y_rows, cfg.window, cfg.horizon)
    first = np.arange(len(x)) + cfg.window  # row of each window's first target value
    last = first + cfg.horizon - 1
    tr = np.flatnonzero(last < n_train)
    va = np.flatnonzero((first >= n_train) & (last < n_train + n_val))
    te = np.flatnonzero(first >= n_train + n_val)
    for name, idx in (("train", tr), ("validation", va), ("test", te)):
        if len(idx) == 0:
            raise DataError(
                f"The {name} part of the series is too short for data.window={cfg.window} and "
                f"data.horizon={cfg.horizon}; shorten them or change data.split."
            )
    schema = Schema(
        kind="sequence",
        task="regression",
        input_shape=[cfg.window, features.n_features],
        n_outputs=cfg.horizon,
        target=spec,
        source=cfg.source,
        series=prep,
    )
    raw = raw_windows(frame, cfg.window, len(x))
    rule = {
        "method": "time",
        "time": "row order",
        "gap": 0,
        "detail": "a window is in the split of its target steps; the first windows of "
        "validation and test read the last rows before them as input, never their targets",
        "allow_overlap": False,
        "leaky": False,
    }
    return Dataset.from_arrays(
        x, spec.encode(y), (tr, va, te), schema, filled, raw=raw, split_rule=rule
    )


def _check_series_split(cfg: DataConfig) -> None:
    split = cfg.split
    if split.by is not None or split.order == "random" or split.time is not None:
        raise DataError(
            f"{cfg.source}: a timeseries: source is one series, always split in time order "
            "(its windows' targets never cross a boundary); remove data.split.by, "
            "data.split.time and data.split.order: random. For many series (machines, "
            "stores), cut the windows yourself and save them as npz with a `groups` array."
        )


def _series_target(df: pd.DataFrame, cfg: DataConfig) -> str:
    if cfg.target is not None:
        return pick_target(df, cfg.target, cfg.source)
    numeric = [c for c in df.columns if df[c].dtype.kind in "iuf"]
    if len(numeric) == 1:
        return numeric[0]
    return pick_target(df, None, cfg.source)
