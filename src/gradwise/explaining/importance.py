"""Global feature importance of a tabular model, measured two ways that should agree.

Mean |attribution| per raw column over a sample of test rows (one-hot columns of a
categorical feature summed into their column), and permutation importance: how much the
model's score drops when one raw column's values are shuffled among the rows
(`sklearn.inspection.permutation_importance`, run on the model through `run.predict`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from gradwise.explaining.attributions import feature_groups, input_attributions
from gradwise.explaining.base import FeatureImportance, Method
from gradwise.run import Run, SplitView

N_ROWS = 200
N_ROWS_KERNELSHAP = 50  # each row costs KERNELSHAP_SAMPLES model calls
N_REPEATS = 5
N_ROWS_PERMUTATION = 2000  # shuffling costs only predictions: more rows, less noise


class _RunEstimator:
    """A trained run as scikit-learn's permutation_importance takes an estimator; it checks
    for `fit`, which a trained run does not need."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def fit(self, x: Any, y: Any) -> _RunEstimator:
        return self

    def predict(self, x: Any) -> np.ndarray:
        return self.run.predict(x)


def grouped(values: Tensor, groups: Tensor, n_groups: int) -> Tensor:
    """(N, F) attributions per model column -> (N, G) per raw column (sums of its columns)."""
    out = torch.zeros(len(values), n_groups, dtype=values.dtype)
    return out.index_add_(1, groups, values)


def feature_importance(
    run: Run, test: SplitView, method: Method, x_train: Tensor, seed: int
) -> FeatureImportance:
    """Both importances of every raw column, each on a seeded sample of test rows (the
    attributions on fewer: each row costs many model calls)."""
    found = feature_groups(run)
    assert found is not None
    names, groups = found
    n = min(len(test), N_ROWS_KERNELSHAP if method == "kernelshap" else N_ROWS)
    pick = np.sort(torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:n])
    idx = torch.from_numpy(pick)
    attr = input_attributions(run, test.x[idx], method, x_train, seed).values
    mean_abs = grouped(attr.flatten(1), groups, len(names)).abs().mean(dim=0)

    from sklearn.inspection import permutation_importance

    n_perm = min(len(test), N_ROWS_PERMUTATION)
    g = torch.Generator().manual_seed(seed + 1)
    pick = np.sort(torch.randperm(len(test), generator=g)[:n_perm].numpy())
    raw = _raw_inputs(run, test, pick)
    labels = run.schema.target.decode(test.y[torch.from_numpy(pick)].numpy())
    is_regression = run.schema.task == "regression"
    y = labels.reshape(len(labels), -1)[:, 0] if is_regression else labels

    def score(estimator: _RunEstimator, x: Any, y_true: np.ndarray) -> float:
        pred = estimator.predict(x)
        if is_regression:
            return -float(np.sqrt(np.mean((pred - y_true) ** 2)))
        return float(np.mean(pred == y_true))

    result = permutation_importance(
        _RunEstimator(run), raw, y, scoring=score, n_repeats=N_REPEATS, random_state=seed
    )
    perm = result.importances_mean
    return FeatureImportance(
        features=tuple(names),
        mean_abs_attribution=tuple(float(v) for v in mean_abs),
        permutation=tuple(float(v) for v in perm),
        permutation_std=tuple(float(v) for v in result.importances_std),
        score="neg_rmse" if is_regression else "accuracy",
        top_agree=int(mean_abs.argmax()) == int(np.argmax(perm)),
        n_rows=n,
        n_permutation_rows=n_perm,
        n_repeats=N_REPEATS,
    )


def _raw_inputs(run: Run, test: SplitView, pick: np.ndarray) -> Any:
    """The sampled rows as a user holds them: the raw input columns (tables read from a file),
    or the raw feature array (npz tables)."""
    prep = run.schema.tabular
    if prep is not None:
        assert isinstance(test.raw, pd.DataFrame)
        return test.raw.iloc[pick][prep.columns].reset_index(drop=True)
    return np.asarray(test.raw)[pick]
