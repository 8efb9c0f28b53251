"""Built-in data sets that ship with scikit-learn: nothing is downloaded."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn import datasets as skd

from gradwise.errors import DataError


@dataclass(frozen=True)
class Builtin:
    name: str
    task: str
    shape: str
    description: str
    load: Callable[[], tuple[np.ndarray, np.ndarray] | pd.DataFrame]


def _digits() -> tuple[np.ndarray, np.ndarray]:
    bunch = skd.load_digits()
    return bunch.images.astype(np.float32)[:, None], bunch.target.astype(np.int64)


def _table(loader: Callable, named: bool) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        bunch = loader(as_frame=True)
        df = bunch.frame.copy()
        if named:
            df["target"] = np.asarray(bunch.target_names)[bunch.target.to_numpy()]
        return df

    return load


BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in [
        Builtin(
            "digits",
            "classification",
            "1797 x 1x8x8 images, 10 classes",
            "handwritten digits (UCI), 8x8 grayscale, values 0-16",
            _digits,
        ),
        Builtin(
            "iris",
            "classification",
            "150 x 4 table, 3 classes",
            "iris flowers, target column 'target'",
            _table(skd.load_iris, True),
        ),
        Builtin(
            "wine",
            "classification",
            "178 x 13 table, 3 classes",
            "wine cultivars, target column 'target'",
            _table(skd.load_wine, True),
        ),
        Builtin(
            "breast_cancer",
            "classification",
            "569 x 30 table, 2 classes",
            "breast cancer diagnosis (Wisconsin), target column 'target'",
            _table(skd.load_breast_cancer, True),
        ),
        Builtin(
            "diabetes",
            "regression",
            "442 x 10 table",
            "diabetes progression, target column 'target'",
            _table(skd.load_diabetes, False),
        ),
    ]
}


def load_builtin(name: str) -> tuple[np.ndarray, np.ndarray] | pd.DataFrame:
    if name not in BUILTINS:
        raise DataError(
            f"Unknown built-in data set {name!r}; choose one of {', '.join(BUILTINS)} "
            "(`gradwise datasets` lists them)."
        )
    return BUILTINS[name].load()
