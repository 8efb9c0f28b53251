"""Target encoding: class labels to indices, regression targets standardised with train stats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gradwise.errors import DataError


@dataclass(frozen=True)
class TargetSpec:
    """How y was encoded, so predictions can be decoded back to the user's labels and units.

    Attributes:
        name: target column (tabular) or None.
        classes: the original labels, in index order (classification).
        mean, std: per-output standardisation of regression targets.
    """

    name: str | None = None
    classes: list[Any] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None

    @staticmethod
    def fit_classes(y: np.ndarray, name: str | None = None) -> TargetSpec:
        """The classes of labels y, sorted.

        Raises:
            DataError: y holds a single class: there is nothing to tell apart.
        """
        classes = np.unique(y)
        if len(classes) < 2:
            what = f"target column {name!r}" if name else "the target"
            raise DataError(
                f"{what} holds one class ({_plain(classes[0])!r}) in all {len(y):,} rows: a "
                "classifier needs at least two. Check the file holds every class (a file "
                "sorted by label, cut by data.limit, keeps only the first), or set "
                "data.task: regression for a numeric target."
            )
        return TargetSpec(name=name, classes=[_plain(c) for c in classes])

    @staticmethod
    def fit_regression(y: np.ndarray, name: str | None = None) -> TargetSpec:
        y2 = y.reshape(len(y), -1).astype(np.float64)
        std = y2.std(axis=0)
        std[std < 1e-12] = 1.0
        return TargetSpec(name=name, mean=y2.mean(axis=0).tolist(), std=std.tolist())

    @property
    def is_classification(self) -> bool:
        return self.classes is not None

    def encode(self, y: np.ndarray) -> np.ndarray:
        """Labels to int64 indices, or values to standardised float32."""
        if self.classes is not None:
            return _class_indices(y, self.classes)
        assert self.mean is not None and self.std is not None
        y2 = y.reshape(len(y), -1).astype(np.float64)
        return ((y2 - np.array(self.mean)) / np.array(self.std)).astype(np.float32)

    def decode(self, encoded: np.ndarray) -> np.ndarray:
        """Class indices to labels, or standardised outputs to the target's units."""
        if self.classes is not None:
            return np.asarray(self.classes)[encoded]
        assert self.mean is not None and self.std is not None
        return encoded * np.array(self.std, dtype=np.float32) + np.array(
            self.mean, dtype=np.float32
        )


def _class_indices(y: np.ndarray, classes: list[Any]) -> np.ndarray:
    """Each label's index in `classes`, looking up each distinct label once.

    Raises:
        DataError: a label (the first in row order) is not one of `classes`.
    """
    index = {c: i for i, c in enumerate(classes)}
    # factorize hashes, so it is fast on strings too and never sorts (mixed types are fine)
    codes, distinct = pd.factorize(y)  # (N,) codes into distinct; -1 for a missing label
    lookup = np.array([index.get(_plain(v), -1) for v in distinct] + [-1], dtype=np.int64)
    encoded = lookup[codes]  # code -1 takes the trailing -1: missing labels are unseen too
    unseen = np.flatnonzero(encoded < 0)
    if len(unseen):
        raise DataError(
            f"Label {_plain(y[unseen[0]])!r} was not seen in training; known labels: "
            f"{', '.join(map(str, classes[:20]))}."
        )
    return encoded


def _plain(value: Any) -> Any:
    """numpy scalars to Python ones so the spec is JSON-able and lookups agree."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def infer_task(y: np.ndarray, requested: str) -> str:
    """'classification' or 'regression' from the target's values, unless the config says.

    Raises:
        DataError: the config asks for a text task (lm, seq2seq, mlm) on data with a target.
    """
    if requested in ("lm", "seq2seq", "mlm"):
        raise DataError(
            f"data.task {requested} does not apply to data with a target column or labels; it "
            "is for text (lm, mlm: a corpus, text:PATH; seq2seq: csv: with data.text_column)."
        )
    if requested != "auto":
        return requested
    if y.dtype.kind in "OUSb":
        return "classification"
    if y.dtype.kind in "iu":
        return "classification" if len(np.unique(y)) <= 50 else "regression"
    values = y[~np.isnan(y)] if y.dtype.kind == "f" else y
    if np.all(values == np.round(values)) and len(np.unique(values)) <= 20:
        return "classification"
    return "regression"
