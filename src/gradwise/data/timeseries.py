"""Time series: a CSV column (plus optional inputs) turned into sliding windows for forecasting."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from gradwise.data.tabular import TabularPreprocessor
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
            f"(first at row {int(np.flatnonzero(y.isna().to_numpy())[0])}); fill them "
            "(e.g. interpolate) or cut the series before forecasting."
        )
    return df[cols]


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
