"""Language-model baselines of the baseline check: next-token frequencies (unigram) and an
interpolated bigram, counted on the training windows' token pairs.

Both predict each next token of the test windows from the token before it, exactly the
targets the network is scored on, so their cross-entropy (nats per token) compares with the
network's test loss. Predictions are per-window sums of the negative log-likelihood, and the
"truth" is each window's number of scored tokens: the paired bootstrap then resamples whole
windows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from gradwise.auditing.classical import ClassicalBaseline
from gradwise.data.text import IGNORE

if TYPE_CHECKING:
    from torch import Tensor

    from gradwise.run import Run, SplitView

LAMBDAS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
MAX_LOGITS = 20_000_000  # windows x tokens x vocabulary per forward batch


def scored_tokens(y: Tensor) -> np.ndarray:
    """(N,) how many next-token targets each window holds (padding left out)."""
    return (y != IGNORE).sum(dim=1).numpy().astype(np.float64)


def network_window_nll(run: Run, split: SplitView) -> np.ndarray:
    """(N,) the network's summed next-token NLL of each window, in batches of windows."""
    T, V = int(split.x.shape[1]), run.schema.n_outputs
    rows = max(1, MAX_LOGITS // max(T * V, 1))
    sums = []
    for start in range(0, len(split.x), rows):
        logits = run.logits(split.x[start : start + rows]).double()  # (B, T, V)
        y = split.y[start : start + rows]
        nll = F.cross_entropy(logits.transpose(1, 2), y, ignore_index=IGNORE, reduction="none")
        sums.append(nll.sum(dim=1).numpy())
    return np.concatenate(sums) if sums else np.zeros(0)


def _pairs(split: SplitView) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Context token, target token and window of every scored next-token prediction."""
    valid = split.y != IGNORE
    rows, cols = torch.nonzero(valid, as_tuple=True)
    return split.x[rows, cols].numpy(), split.y[rows, cols].numpy(), rows.numpy()


class _Counts:
    """Unigram (add-one) and bigram counts of the training pairs."""

    def __init__(self, context: np.ndarray, target: np.ndarray, vocab: int) -> None:
        self.vocab = vocab
        self.unigram = (np.bincount(target, minlength=vocab) + 1.0) / (len(target) + vocab)
        self.context = np.bincount(context, minlength=vocab).astype(np.float64)
        self.codes, self.pair = np.unique(
            context.astype(np.int64) * vocab + target, return_counts=True
        )

    def nll(self, context: np.ndarray, target: np.ndarray, lam: float) -> np.ndarray:
        """-log of lam * c(context, target) / c(context) + (1 - lam) * p(target); the
        unigram alone for an unseen context (and for lam = 0)."""
        codes = context.astype(np.int64) * self.vocab + target
        idx = np.clip(np.searchsorted(self.codes, codes), 0, len(self.codes) - 1)
        pair = np.where(self.codes[idx] == codes, self.pair[idx], 0).astype(np.float64)
        seen = self.context[context]
        ml = pair / np.maximum(seen, 1.0)
        weight = np.where(seen > 0, lam, 0.0)
        return -np.log(weight * ml + (1.0 - weight) * self.unigram[target])


def ngram_baselines(
    run: Run, train: SplitView, val: SplitView, test: SplitView
) -> tuple[list[ClassicalBaseline], dict[str, Any]]:
    """Unigram and interpolated bigram next-token models; lambda chosen on validation."""
    counts = _Counts(*_pairs(train)[:2], run.schema.n_outputs)
    val_ctx, val_tgt, _ = _pairs(val)
    lam = min(LAMBDAS, key=lambda la: float(counts.nll(val_ctx, val_tgt, la).mean()))
    ctx, tgt, window = _pairs(test)

    def per_window(nll: np.ndarray) -> np.ndarray:
        return np.bincount(window, weights=nll, minlength=len(test))

    notes = {
        "features": "the token before each next-token target (training windows' pairs)",
        "bigram_lambda": lam,
        "bigram": f"lambda * c(previous, next) / c(previous) + (1 - lambda) * add-one unigram; "
        f"lambda chosen on the validation tokens from {list(LAMBDAS)}",
        "metric_units": "cross-entropy in nats per scored test token",
    }
    return [
        ClassicalBaseline(
            "unigram frequencies", lambda seed: per_window(counts.nll(ctx, tgt, 0.0)), False
        ),
        ClassicalBaseline("bigram", lambda seed: per_window(counts.nll(ctx, tgt, lam)), False),
    ], notes
