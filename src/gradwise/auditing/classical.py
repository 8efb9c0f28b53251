"""What the baseline check compares the network with: one classical method, fitted on the
run's training split (the builders are in baseline_models.py and baseline_ngram.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClassicalBaseline:
    """One classical method: `fit_predict(seed)` trains it on the training split and returns
    its test predictions (class indices, or values in the target's units)."""

    name: str
    fit_predict: Callable[[int], np.ndarray]
    stochastic: bool  # False: every seed gives the same model, so it is fitted once
