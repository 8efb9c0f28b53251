"""The data schema: what turns raw new data into model input; stored in model.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from gradwise.data.target import TargetSpec
from gradwise.errors import DataError

if TYPE_CHECKING:  # each preprocessor's module also builds its data, and so imports Schema;
    # `stored_schema.schema_from_dict` rebuilds a Schema with them, from above
    from gradwise.data.arrays import ArrayNormaliser
    from gradwise.data.tabular import TabularPreprocessor
    from gradwise.data.text import Tokenizer
    from gradwise.data.timeseries import SeriesPreprocessor

Kind = Literal["tabular", "image", "sequence", "tokens"]
Task = Literal["classification", "regression", "lm", "seq2seq", "mlm"]


@dataclass(frozen=True)
class Schema:
    """What the model sees and predicts, and the fitted preprocessing that gets it there.

    Attributes:
        kind: tabular (N, F) | image (N, C, H, W) | sequence (N, T, F) | tokens (N, T) ids.
        task: classification | regression (incl. forecasting) | lm (next-token) |
            seq2seq (text to text) | mlm (masked-token pretraining).
        input_shape: one preprocessed sample's shape.
        n_outputs: classes, regression outputs (forecast horizon), or vocabulary size.
        source: the data.source the run was trained on; sha256: of that file, when it is one.
    """

    kind: Kind
    task: Task
    input_shape: list[int]
    n_outputs: int
    target: TargetSpec
    source: str
    sha256: str | None = None
    array: ArrayNormaliser | None = None
    tabular: TabularPreprocessor | None = None
    series: SeriesPreprocessor | None = None
    tokenizer: Tokenizer | None = None
    image_size: int | None = None
    color: Literal["gray", "rgb"] | None = None
    text_column: str | None = None
    source_len: int | None = None  # seq2seq: x packs source (source_len) + target input

    @property
    def classes(self) -> list[Any] | None:
        return self.target.classes

    @property
    def categorical(self) -> list[int]:
        """Vocabulary sizes of the embedded categorical columns (they come last in x)."""
        return self.tabular.cardinalities if self.tabular else []

    @property
    def feature_names(self) -> list[str] | None:
        if self.tabular is not None:
            return self.tabular.feature_names
        if self.series is not None:
            return self.series.features.feature_names
        return None

    def transform(self, raw: Any) -> np.ndarray:
        """Raw inputs, as a user holds them, to the model's input array.

        Args:
            raw: a DataFrame or 2-D array of raw columns (tabular); an array of raw pixels
                (image, same scale as training); (N, T, F) raw windows, their columns in
                data.features order, or a DataFrame of consecutive rows (sequence); a string
                (tokens).
        """
        if self.tabular is not None:
            return self.tabular.transform(_frame(raw, self.tabular.columns))
        if self.series is not None:
            if isinstance(raw, pd.DataFrame):
                return self.series.make_windows(raw)
            return self._series_windows(raw)
        if self.array is not None:
            return self.array.transform(np.asarray(raw))
        if self.tokenizer is not None and self.text_column is not None:
            return self.encode_texts(_texts(raw, self.text_column))
        if self.tokenizer is not None:
            if not isinstance(raw, str):
                raise DataError("A language model takes text; pass a string.")
            return self.tokenizer.encode(raw)
        raise AssertionError("schema without preprocessing")

    def _series_windows(self, raw: Any) -> np.ndarray:
        """(N, T, F) raw windows, their columns in data.features order (as `run.split(...).raw`
        holds them; text columns such as a wind direction included), to model input."""
        assert self.series is not None
        x = np.asarray(raw)
        if x.dtype.kind not in "iufb":
            x = np.asarray(raw, dtype=object)  # text cells stay text, numbers stay numbers
        if x.ndim == 2:
            x = x[None]
        features = self.series.features
        cols = features.raw_columns
        if x.ndim != 3 or x.shape[2] != len(cols):
            raise DataError(
                f"Series input must be (N, T, {len(cols)}) windows of columns "
                f"{', '.join(cols)} (in that order), got shape {x.shape}."
            )
        rows = pd.DataFrame(x.reshape(-1, len(cols)), columns=cols).infer_objects()
        return self.series.relative(features.transform(rows).reshape(x.shape[0], x.shape[1], -1))

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Labelled-text inputs: (N, source length) ids, <bos> first (the class token)."""
        assert self.tokenizer is not None
        return self.tokenizer.encode_rows(texts, self.source_len or self.input_shape[0])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _frame(raw: Any, columns: list[str]) -> pd.DataFrame:
    if isinstance(raw, pd.DataFrame):
        return raw
    arr = np.asarray(raw, dtype=object)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != len(columns):
        raise DataError(
            f"Input has shape {arr.shape}; expected rows of {len(columns)} raw columns "
            f"({', '.join(columns)}), or a DataFrame with those columns."
        )
    frame = pd.DataFrame(arr, columns=columns)
    return frame.infer_objects()


def _texts(raw: Any, column: str) -> list[str]:
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, pd.DataFrame):
        if column not in raw.columns:
            raise DataError(
                f"Input lacks the text column {column!r}; columns: {', '.join(raw.columns)}."
            )
        return raw[column].fillna("").astype(str).tolist()
    return [str(t) for t in np.asarray(raw, dtype=object).reshape(-1)]
