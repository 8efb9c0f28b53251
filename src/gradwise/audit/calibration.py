"""Calibration: is the model's confidence honest, and does temperature scaling fix it?

The measures (hand-written: small, central, checked against hand computations):
expected calibration error over equal-width or equal-mass confidence bins, and the single
temperature that minimises the validation negative log-likelihood (Guo et al., 2017).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

Binning = Literal["width", "mass"]


def bin_edges(confidence: np.ndarray, n_bins: int, binning: Binning) -> np.ndarray:
    """n_bins + 1 edges over [0, 1]: equal width, or equal mass (quantiles of `confidence`)."""
    if binning == "width":
        return np.linspace(0.0, 1.0, n_bins + 1)
    edges = np.quantile(confidence, np.linspace(0.0, 1.0, n_bins + 1))
    edges[0], edges[-1] = 0.0, 1.0
    return edges


def reliability(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = 15, binning: Binning = "width"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per confidence bin: mean confidence, accuracy and sample count (empty bins: count 0).

    Args:
        probs: (N, K) class probabilities; rows sum to 1.
        labels: (N,) integer class labels.
    """
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    edges = bin_edges(confidence, n_bins, binning)
    # bin i holds edges[i] < c <= edges[i + 1]; confidence 0 goes to the first bin
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins).astype(np.float64)
    safe = np.maximum(counts, 1)
    conf_mean = np.bincount(which, weights=confidence, minlength=n_bins) / safe
    acc = np.bincount(which, weights=correct, minlength=n_bins) / safe
    return conf_mean, acc, counts


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = 15, binning: Binning = "width"
) -> float:
    """Mean gap between confidence and accuracy over confidence bins, weighted by bin size.

    Args:
        probs: (N, K) class probabilities; rows sum to 1.
        labels: (N,) integer class labels.
        n_bins: number of confidence bins.
        binning: equal-width bins over [0, 1], or equal-mass bins (quantiles).

    Returns:
        ECE in [0, 1]; 0 means perfectly calibrated.
    """
    conf, acc, counts = reliability(probs, labels, n_bins, binning)
    return float(np.sum(counts * np.abs(acc - conf)) / max(counts.sum(), 1.0))


def maximum_calibration_error(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = 15, binning: Binning = "width"
) -> float:
    """The largest confidence-accuracy gap of any non-empty bin."""
    conf, acc, counts = reliability(probs, labels, n_bins, binning)
    gaps = np.abs(acc - conf)[counts > 0]
    return float(gaps.max()) if len(gaps) else 0.0


def fit_temperature(logits: Tensor, labels: Tensor, max_iter: int = 200) -> float:
    """The temperature T > 0 minimising the NLL of softmax(logits / T) on held-out data.

    Args:
        logits: (N, K) raw logits (or (N, 1) for a binary model with one logit).
        labels: (N,) integer class labels.

    Returns:
        T (> 1 softens an over-confident model). Dividing by T never changes the argmax.
    """
    logits = logits.detach().double()
    if logits.shape[1] == 1:  # one logit: the two-class logits are (0, z)
        logits = torch.cat([torch.zeros_like(logits), logits], dim=1)
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
