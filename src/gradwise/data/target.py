"""Target encoding: class labels to indices, regression targets standardised with train stats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

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
        classes = np.unique(y)
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
            index = {c: i for i, c in enumerate(self.classes)}
            try:
                return np.array([index[_plain(v)] for v in y], dtype=np.int64)
            except KeyError as exc:
                raise DataError(
                    f"Label {exc.args[0]!r} was not seen in training; known labels: "
                    f"{', '.join(map(str, self.classes[:20]))}."
                ) from None
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


def _plain(value: Any) -> Any:
    """numpy scalars to Python ones so the spec is JSON-able and lookups agree."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def infer_task(y: np.ndarray, requested: str) -> str:
    """'classification' or 'regression' from the target's values, unless the config says."""
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
