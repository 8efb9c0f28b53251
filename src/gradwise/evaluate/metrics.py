"""Metrics: accuracy, macro-F1, ROC-AUC, average precision, log-loss; RMSE, MAE, R²; perplexity.

Computed in torch on whole prediction tensors: cheap enough to log every epoch, and checked
against scikit-learn's implementations in the tests.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch import Tensor

from gradwise.data.text import IGNORE

LOWER_IS_BETTER = ("loss", "log_loss", "rmse", "mae", "perplexity", "bits_per_token", "ece")


def lower_is_better(metric: str) -> bool:
    name = metric.rsplit(".", 1)[-1]
    return name in LOWER_IS_BETTER


def classification_metrics(logits: Tensor, y: Tensor) -> dict[str, float]:
    """Accuracy, macro-F1, log-loss, and for two classes ROC-AUC and average precision (the
    area under the precision-recall curve of class 1), from (N, K) logits or one binary logit."""
    logits = logits.float()
    if logits.shape[1] == 1:  # a single binary logit
        logits = torch.cat([torch.zeros_like(logits), logits], dim=1)
    n_classes = logits.shape[1]
    pred = logits.argmax(dim=1)
    out = {
        "accuracy": (pred == y).float().mean().item(),
        "f1_macro": macro_f1(pred, y, n_classes),
        "log_loss": F.cross_entropy(logits, y).item(),
    }
    if n_classes == 2:
        score = logits[:, 1] - logits[:, 0]
        auc = roc_auc(score, y)
        if auc is not None:
            out["roc_auc"] = auc
            out["average_precision"] = average_precision(score, y)
    return out


def macro_f1(pred: Tensor, y: Tensor, n_classes: int) -> float:
    """Unweighted mean F1 over the classes present in y or in the predictions (as sklearn)."""
    confusion = torch.bincount(y * n_classes + pred, minlength=n_classes**2).view(n_classes, -1)
    tp = confusion.diag().double()
    fp = confusion.sum(dim=0).double() - tp
    fn = confusion.sum(dim=1).double() - tp
    present = (tp + fp + fn) > 0
    f1 = 2 * tp[present] / (2 * tp[present] + fp[present] + fn[present])
    return f1.mean().item() if len(f1) else 0.0


def roc_auc(scores: Tensor, y: Tensor) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with tied ranks); None if one class is absent."""
    positive = (y == 1).numpy()
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = rankdata(scores.double().numpy())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def average_precision(scores: Tensor, y: Tensor) -> float:
    """Area under the precision-recall curve of class 1 as scikit-learn's
    `average_precision_score`: the sum over distinct thresholds of precision times the gain in
    recall. At a 2% positive rate it says what ROC-AUC hides: how clean the top alerts are."""
    s = scores.double().numpy()
    order = np.argsort(-s, kind="stable")
    s, hit = s[order], (y.numpy()[order] == 1)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last index of each tie group
    tps = np.cumsum(hit)[last]
    precision = tps / (last + 1)
    recall = tps / max(int(hit.sum()), 1)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def regression_metrics(pred: Tensor, y: Tensor) -> dict[str, float]:
    """RMSE, MAE and R² (uniform average over outputs) in the target's own units."""
    pred, y = pred.double().reshape(len(pred), -1), y.double().reshape(len(y), -1)
    err = pred - y
    ss_res = (err**2).sum(dim=0)
    ss_tot = ((y - y.mean(dim=0)) ** 2).sum(dim=0)
    r2 = torch.where(ss_tot > 0, 1 - ss_res / ss_tot.clamp_min(1e-300), torch.zeros_like(ss_res))
    return {
        "rmse": err.pow(2).mean().sqrt().item(),
        "mae": err.abs().mean().item(),
        "r2": r2.mean().item(),
    }


def language_model_metrics(logits: Tensor, y: Tensor) -> dict[str, float]:
    """Per-token cross-entropy as perplexity and bits per token, plus token accuracy.

    Target positions holding IGNORE (padding, unmasked tokens) are left out.
    """
    valid = y != IGNORE
    nll = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), ignore_index=IGNORE).item()
    hits = (logits.argmax(-1) == y) & valid
    return {
        "perplexity": math.exp(min(nll, 50.0)),
        "bits_per_token": nll / math.log(2),
        "accuracy": hits.sum().item() / max(int(valid.sum()), 1),
    }


def as_numpy(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()
