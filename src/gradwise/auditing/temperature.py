"""Temperature scaling (Guo et al., 2017): the one temperature T that minimises the
validation negative log-likelihood of softmax(logits / T), and whether it is worth storing.

A temperature fitted on a small validation split can lower that split's NLL by chance and
make the test calibration worse, so `temperature_gain` measures the improvement out of
sample (each fold's rows scored with the temperature fitted on the other folds), paired
over rows with its standard error; the calibration check stores T only when the
improvement exceeds `GAIN_SE` standard errors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

GAIN_FOLDS = 5  # folds of the out-of-sample check of the temperature's NLL improvement
GAIN_SE = 2.0  # the improvement must exceed this many standard errors to be stored
GAIN_RULE = (
    f"stored when the validation NLL improvement of temperature scaling, measured out of "
    f"sample ({GAIN_FOLDS} folds, seeded: each fold scored with the temperature fitted on the "
    f"others) and paired over rows, exceeds {GAIN_SE:g} standard errors"
)


def fit_temperature(logits: Tensor, labels: Tensor, max_iter: int = 200) -> float:
    """The temperature T > 0 minimising the NLL of softmax(logits / T) on held-out data.

    Args:
        logits: (N, K) raw logits (or (N, 1) for a binary model with one logit).
        labels: (N,) integer class labels.

    Returns:
        T (> 1 softens an over-confident model). Dividing by T never changes the argmax.
    """
    logits = _two_columns(logits.detach().double())
    labels = labels.long()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def _two_columns(logits: Tensor) -> Tensor:
    """(N, K) logits as they are; (N, 1) one-logit binary logits z as the two-class (0, z)."""
    if logits.shape[1] == 1:
        return torch.cat([torch.zeros_like(logits), logits], dim=1)
    return logits


def row_nll(logits: Tensor, labels: Tensor, temperature: float = 1.0) -> np.ndarray:
    """(N,) -log softmax(logits / T)[true class], natural log, from the log-softmax: exact
    also where the probability underflows (a row 40 nats wrong costs 40, not a clip's 27.6).

    Args:
        logits: (N, K) raw logits (or (N, 1) for a binary model with one logit).
        labels: (N,) integer class labels.
    """
    logits = _two_columns(torch.as_tensor(logits).detach().double()) / temperature
    labels = torch.as_tensor(labels).long()
    return F.cross_entropy(logits, labels, reduction="none").numpy()


def negative_log_likelihood(logits: Tensor, labels: Tensor, temperature: float = 1.0) -> float:
    """Mean -log softmax(logits / T)[true class], natural log (see `row_nll`)."""
    return float(row_nll(logits, labels, temperature).mean())


@dataclass(frozen=True)
class TemperatureGain:
    """How much a temperature lowers the validation NLL, measured out of sample.

    Attributes:
        gain: mean per-row NLL at T = 1 minus at the fold's temperature (nats; > 0: better).
        se: its standard error, paired over rows.
        folds: folds of the cross-fitting; n: validation rows.
    """

    gain: float
    se: float
    folds: int
    n: int

    @property
    def is_real(self) -> bool:
        """The improvement exceeds `GAIN_SE` standard errors: worth storing."""
        return self.gain > GAIN_SE * self.se

    def to_dict(self) -> dict[str, Any]:
        return {"nll_gain": self.gain, "se": self.se, "folds": self.folds, "n": self.n}


def temperature_gain(
    logits: Tensor, labels: Tensor, folds: int = GAIN_FOLDS, seed: int = 0
) -> TemperatureGain:
    """Cross-fitted validation NLL improvement of temperature scaling: each fold's rows are
    scored with the temperature fitted on the other folds, so the gain is not the in-sample
    one the fit itself optimised (which is never negative).

    Args:
        logits: (N, K) validation logits (or (N, 1)); labels: (N,) integer class labels.
        folds: number of folds (at most N); seed: seeds the assignment of rows to folds.
    """
    n = len(labels)
    k = min(folds, n)
    if k < 2:
        return TemperatureGain(0.0, math.inf, k, n)
    g = torch.Generator().manual_seed(seed)
    fold = torch.randperm(n, generator=g) % k
    gain = np.empty(n)
    for j in range(k):
        held = fold == j
        t = fit_temperature(logits[~held], labels[~held])
        x, y = logits[held], labels[held]
        gain[held.numpy()] = row_nll(x, y) - row_nll(x, y, t)
    return TemperatureGain(float(gain.mean()), float(gain.std(ddof=1) / math.sqrt(n)), k, n)
