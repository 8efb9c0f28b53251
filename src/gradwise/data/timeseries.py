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

    The features are standardised by a TabularPreprocessor fitted on the training rows. With
    `difference` (data.difference), the target's input column holds each step's distance from
    the window's last value, and the model forecasts changes from that value: nothing it sees
    or predicts depends on the level, so a trending series is forecast beyond the levels seen in
    training; `to_levels` adds the last value back.
    """

    target: str
    features: TabularPreprocessor
    window: int
    horizon: int
    difference: bool = False

    def matrix(self, df: pd.DataFrame) -> np.ndarray:
        """(rows, F) standardised feature matrix, in time order."""
        return self.features.transform(df)

    def relative(self, x: np.ndarray) -> np.ndarray:
        """(N, T, F) model inputs with, under `difference`, the target's column made relative
        to its last step (in the column's standardised units); unchanged otherwise."""
        if not self.difference:
            return x
        col = self.features.feature_names.index(self.target)
        x = x.copy()
        x[:, :, col] -= x[:, -1:, col]
        return x

    def last_levels(self, raw: object) -> np.ndarray:
        """(N,) the target's last value in each window of raw input: a table of consecutive
        rows (one window per full `window` rows) or (N, T, F) / (T, F) raw windows.

        Raises:
            DataError: the input is model-ready tensors, which no longer hold the level.
        """
        if isinstance(raw, pd.DataFrame):
            return pd.to_numeric(raw[self.target]).to_numpy(np.float64)[self.window - 1 :]
        if not isinstance(raw, np.ndarray | list):
            raise DataError(
                "This forecaster predicts changes (data.difference) and adds back each "
                "window's last target value, which model-ready tensors no longer hold; give "
                "raw windows (N, T, F) or a table of consecutive rows."
            )
        x = np.asarray(raw)
        x = x[None] if x.ndim == 2 else x
        col = self.features.raw_columns.index(self.target)
        return x[:, -1, col].astype(np.float64)

    def to_levels(self, values: np.ndarray, raw: object) -> np.ndarray:
        """(N, horizon) decoded outputs in the target's units: under `difference` each row's
        changes plus its window's last value (step k is the change over k steps)."""
        if not self.difference:
            return values
        return values + self.last_levels(raw)[:, None]

    def make_windows(self, df: pd.DataFrame) -> np.ndarray:
        """(N, window, F) inputs, one per position that has `window` rows before it."""
        m = self.matrix(df)
        n = len(m) - self.window + 1
        if n < 1:
            raise DataError(
                f"The series has {len(m)} rows, fewer than data.window={self.window}; "
                "give more rows or a shorter window."
            )
        x = np.lib.stride_tricks.sliding_window_view(m, self.window, axis=0).transpose(0, 2, 1)
        return self.relative(x.copy())


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
    y_rows = pd.to_numeric(df[target]).to_numpy(dtype=np.float64)
    difference, why = choose_difference(cfg.difference, y_rows[:n_train], target in frame)
    prep = SeriesPreprocessor(target, features, cfg.window, cfg.horizon, difference)
    x, y = supervised(prep.matrix(frame), y_rows, cfg.window, cfg.horizon)
    x = prep.relative(x)
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
    if difference:  # changes over 1..horizon steps from each window's last value
        y = y - y_rows[first - 1][:, None]
        spec = TargetSpec.fit_regression(y[tr], target)
    else:
        mean, std = float(y_rows[:n_train].mean()), float(y_rows[:n_train].std() or 1.0)
        spec = TargetSpec(name=target, mean=[mean] * cfg.horizon, std=[std] * cfg.horizon)
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
    notes = (*filled, why) if why else filled
    return Dataset.from_arrays(
        x, spec.encode(y), (tr, va, te), schema, notes, raw=raw, split_rule=rule
    )


TREND_R2 = 0.5  # data.difference auto: difference when a line explains this much variance


def choose_difference(
    setting: bool | str, y_train: np.ndarray, target_is_input: bool
) -> tuple[bool, str]:
    """Whether to forecast changes (data.difference), and a note saying why when it was
    decided here (auto) or when the setting cannot apply.

    auto: difference when a straight line through the training part explains at least
    TREND_R2 of its variance (a stated rule, seen only on training rows), so a steady trend
    is followed beyond the training levels while a flat, seasonal series is left as it is.

    Raises:
        DataError: difference is true but the target is not a model input (data.features).
    """
    if setting is True and not target_is_input:
        raise DataError(
            "data.difference: true needs the target among data.features (its last value is "
            "what each forecast adds its changes to); add the target to data.features."
        )
    if setting != "auto":
        return bool(setting), ""
    r2 = trend_r2(y_train)
    chosen = r2 >= TREND_R2 and target_is_input
    because = (
        "the target is not among data.features"
        if r2 >= TREND_R2 and not target_is_input
        else f"a straight line explains R² = {r2:.2f} of the training part's variance "
        f"({'>=' if r2 >= TREND_R2 else '<'} {TREND_R2})"
    )
    verdict = "forecasting changes from each window's last value" if chosen else "levels as given"
    return chosen, f"data.difference: auto chose {str(chosen).lower()}: {because}; {verdict}."


def trend_r2(y: np.ndarray) -> float:
    """R² of the least-squares line through y against its row number (0 for a constant y)."""
    t = np.arange(len(y), dtype=np.float64)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    if len(y) < 3 or ss_tot == 0.0:
        return 0.0
    slope, intercept = np.polyfit(t, y, 1)
    return 1.0 - float(((y - (slope * t + intercept)) ** 2).sum()) / ss_tot


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
