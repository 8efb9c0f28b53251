"""Calibration: is the model's confidence honest, and does temperature scaling fix it?

The measures (hand-written: small, central, checked against hand computations):
expected calibration error over equal-width or equal-mass confidence bins, and the single
temperature that minimises the validation negative log-likelihood (Guo et al., 2017).

The check (`gradwise audit RUN --checks calibration`): for classifiers, ECE (both binnings),
MCE, Brier score and NLL on the test split with the model's uncalibrated probabilities, then
temperature scaling fitted on the validation split and reported on the test split, stored in
the run so `predict` and the server apply it; for language models, the same of the
next-token probabilities on the held-out test windows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from gradwise.auditing.base import AuditContext, CheckResult, NotApplicable, grade, task_name

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from gradwise.config import CalibrationAudit
    from gradwise.run import Run

Binning = Literal["width", "mass"]
PLOT = "calibration.png"


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
    return reliability_of(probs.max(axis=1), probs.argmax(axis=1) == labels, n_bins, binning)


def reliability_of(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = 15, binning: Binning = "width"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`reliability` from each prediction's confidence and whether it was right (for
    predictions too many to hold as probability rows: a language model's tokens).

    Args:
        confidence: (N,) probability of the predicted class.
        correct: (N,) booleans: the predicted class was the true one.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    edges = bin_edges(confidence, n_bins, binning)
    # bin i holds edges[i] < c <= edges[i + 1]; confidence 0 goes to the first bin
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(which, minlength=n_bins).astype(np.float64)
    safe = np.maximum(counts, 1)
    conf_mean = np.bincount(which, weights=confidence, minlength=n_bins) / safe
    acc = np.bincount(which, weights=correct, minlength=n_bins) / safe
    return conf_mean, acc, counts


def reliability_bins(conf: np.ndarray, acc: np.ndarray, counts: np.ndarray) -> dict[str, Any]:
    """`reliability`'s three arrays as JSON (what the audit stores and the report draws):
    equal-width bins over [0, 1], empty bins with count 0."""
    return {
        "confidence": [round(float(v), 6) for v in conf],
        "accuracy": [round(float(v), 6) for v in acc],
        "count": [int(v) for v in counts],
    }


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


def brier_score(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Brier score: the squared distance between the probability row and the
    one-hot label, summed over classes, averaged over rows (0 best, 2 worst; twice the
    binary Brier score for two classes).

    Args:
        probs: (N, K) class probabilities; labels: (N,) integer class labels.
    """
    probs = np.asarray(probs, dtype=np.float64)
    onehot = np.eye(probs.shape[1])[np.asarray(labels)]
    return float(((probs - onehot) ** 2).sum(axis=1).mean())


def negative_log_likelihood(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log p(true class), natural log; probabilities are clipped at 1e-12."""
    p = np.asarray(probs, dtype=np.float64)[np.arange(len(labels)), np.asarray(labels)]
    return float(-np.log(np.clip(p, 1e-12, 1.0)).mean())


@dataclass(frozen=True)
class CalibrationMeasures:
    """How honest one set of probabilities is, on one split."""

    ece: float  # equal-width bins
    ece_mass: float  # equal-mass bins
    mce: float  # equal-width bins
    brier: float | None  # None for language models (vocabulary-wide rows are not kept)
    nll: float
    accuracy: float
    mean_confidence: float
    n: int

    @staticmethod
    def of(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> CalibrationMeasures:
        confidence = probs.max(axis=1)
        correct = probs.argmax(axis=1) == labels
        return CalibrationMeasures(
            ece=expected_calibration_error(probs, labels, n_bins, "width"),
            ece_mass=expected_calibration_error(probs, labels, n_bins, "mass"),
            mce=maximum_calibration_error(probs, labels, n_bins, "width"),
            brier=brier_score(probs, labels),
            nll=negative_log_likelihood(probs, labels),
            accuracy=float(correct.mean()),
            mean_confidence=float(confidence.mean()),
            n=len(labels),
        )

    @staticmethod
    def of_tokens(
        confidence: np.ndarray, correct: np.ndarray, nll: np.ndarray, n_bins: int
    ) -> CalibrationMeasures:
        def ece(binning: Binning) -> float:
            conf, acc, counts = reliability_of(confidence, correct, n_bins, binning)
            return float(np.sum(counts * np.abs(acc - conf)) / max(counts.sum(), 1.0))

        conf, acc, counts = reliability_of(confidence, correct, n_bins, "width")
        return CalibrationMeasures(
            ece=ece("width"),
            ece_mass=ece("mass"),
            mce=float(np.abs(acc - conf)[counts > 0].max()),
            brier=None,
            nll=float(nll.mean()),
            accuracy=float(np.mean(correct)),
            mean_confidence=float(np.mean(confidence)),
            n=len(confidence),
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @property
    def leaning(self) -> str:
        """overconfident / underconfident / about right: mean confidence against accuracy."""
        gap = self.mean_confidence - self.accuracy
        if gap > 0.01:
            return "overconfident"
        if gap < -0.01:
            return "underconfident"
        return "neither over- nor underconfident"


# ---------------------------------------------------------------- the check


def check(run: Run, settings: CalibrationAudit, ctx: AuditContext) -> CheckResult:
    """Calibration of a classifier's probabilities, or of a language model's next tokens.

    Raises:
        NotApplicable: the run predicts no class probabilities (regression, seq2seq, ...).
    """
    from gradwise.config import DiffusionConfig

    if isinstance(run.config.model, DiffusionConfig):
        raise NotApplicable("a diffusion model generates images; it has no probabilities.")
    match run.schema.task:
        case "classification":
            return _classifier(run, settings, ctx)
        case "lm":
            return _language_model(run, settings, ctx)
        case "regression":
            raise NotApplicable(
                "calibration of class probabilities needs a classifier; this run is a "
                "regression: the uncertainty check measures the coverage of its intervals."
            )
    raise NotApplicable(
        "calibration needs a classifier or a language model; this run is "
        f"{task_name(run.schema.task)}."
    )


def _stated(settings: CalibrationAudit, **extra: Any) -> dict[str, Any]:
    return {
        **settings.model_dump(mode="json"),
        "binning": "ece: equal-width bins over [0, 1]; ece_mass: equal-mass bins; mce: "
        "equal-width bins",
        "nll": "mean natural-log negative log-likelihood",
        "temperature_fitted_on": "val",
        "reported_on": "test",
        **extra,
    }


def _classifier(run: Run, settings: CalibrationAudit, ctx: AuditContext) -> CheckResult:
    val, test = run.split("val"), run.split("test")
    val_logits = run.logits(val.x).double()
    test_logits = run.logits(test.x).double()
    labels = test.y.numpy()
    t = fit_temperature(val_logits, val.y)
    before_p = run.probabilities(test_logits, calibrated=False)
    after_p = run.probabilities(test_logits / t, calibrated=False)
    # dividing by one positive number keeps every row's order: the predictions never change
    assert np.array_equal(before_p.argmax(axis=1), after_p.argmax(axis=1))
    before = CalibrationMeasures.of(before_p, labels, settings.bins)
    after = CalibrationMeasures.of(after_p, labels, settings.bins)
    if settings.store_temperature:
        run.set_temperature(t)
    served = after if settings.store_temperature else before
    plot = ctx.out / PLOT
    _plot_reliability(
        plot,
        [("uncalibrated", before_p, before), (f"temperature {t:.2f}", after_p, after)],
        labels,
        settings.bins,
    )
    stored = "stored in the run" if settings.store_temperature else "not stored"
    summary = (
        f"ECE {before.ece:.3f} on the test split ({settings.bins} equal-width bins), "
        f"{before.leaning}; temperature scaling (T={t:.2f}, fitted on validation, {stored}) "
        f"{'brings' if settings.store_temperature else 'would bring'} it to {after.ece:.3f} "
        f"with accuracy unchanged at {after.accuracy:.3f}."
    )
    if after.ece > before.ece:
        summary += (
            f" The temperature minimises the validation NLL, not the ECE: the test NLL goes "
            f"from {before.nll:.3f} to {after.nll:.3f}."
        )
    return CheckResult(
        check="calibration",
        verdict=grade(served.ece, settings.ece_warn, settings.ece_fail),
        headline=f"ECE {before.ece:.3f} → {after.ece:.3f}",
        summary=summary,
        metrics={
            "before": before.to_dict(),
            "after": after.to_dict(),
            "temperature": t,
            "temperature_stored": settings.store_temperature,
            "graded": "after" if settings.store_temperature else "before",
            "n_val": len(val),
            "n_test": len(test),
            "reliability": {
                "before": reliability_bins(*reliability(before_p, labels, settings.bins)),
                "after": reliability_bins(*reliability(after_p, labels, settings.bins)),
            },
        },
        settings=_stated(
            settings,
            before="the model's own probabilities (no temperature)",
            after="probabilities of logits / T",
            brier="multi-class: squared error summed over classes, mean over rows (0..2)",
        ),
        plots=(PLOT,),
    )


def _language_model(run: Run, settings: CalibrationAudit, ctx: AuditContext) -> CheckResult:
    val, test = run.split("val"), run.split("test")
    val_logits, val_targets = _token_logits(run, val.x, val.y)
    t = fit_temperature(val_logits, val_targets)
    (conf, correct, nll), (conf_t, correct_t, nll_t) = token_measures(
        run, test.x, test.y, settings.max_tokens, (1.0, t)
    )
    assert np.array_equal(correct, correct_t)  # the temperature changes no prediction
    before = CalibrationMeasures.of_tokens(conf, correct, nll, settings.bins)
    after = CalibrationMeasures.of_tokens(conf_t, correct_t, nll_t, settings.bins)
    plot = ctx.out / PLOT
    _plot_token_reliability(plot, conf, correct, conf_t, t, before, after, settings.bins)
    summary = (
        f"Next-token ECE {before.ece:.3f} on {before.n:,} held-out test tokens "
        f"({settings.bins} equal-width bins), {before.leaning}; a sampling temperature of "
        f"{t:.2f} (fitted on validation) would bring it to {after.ece:.3f} (not stored: "
        "generate takes --temperature)."
    )
    return CheckResult(
        check="calibration",
        verdict=grade(before.ece, settings.ece_warn, settings.ece_fail),
        headline=f"token ECE {before.ece:.3f}",
        summary=summary,
        metrics={
            "before": before.to_dict() | {"perplexity": float(np.exp(min(before.nll, 50.0)))},
            "after": after.to_dict() | {"perplexity": float(np.exp(min(after.nll, 50.0)))},
            "temperature": t,
            "temperature_stored": False,
            "graded": "before",
            "n_test_tokens": before.n,
            "n_val_tokens_for_temperature": len(val_targets),
            "reliability": {
                "before": reliability_bins(*reliability_of(conf, correct, settings.bins)),
                "after": reliability_bins(*reliability_of(conf_t, correct_t, settings.bins)),
            },
        },
        settings=_stated(
            settings,
            tokens="every next-token prediction of the test windows (padding left out), "
            f"the first max_tokens={settings.max_tokens:,} in order",
            temperature_tokens=f"the first validation tokens, at most {_MAX_LOGITS:,} "
            "logits (tokens x vocabulary)",
            store_temperature="not applied to language models: generate has its own --temperature",
        ),
        plots=(PLOT,),
    )


_MAX_LOGITS = 20_000_000  # tokens x vocabulary held at once (160 MB as float64)


def _window_batches(run: Run, x: Tensor, y: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
    """(n, V) float64 logits and (n,) targets of the next-token predictions of a batch of
    windows at a time, padding left out, so (N, T, V) logits are never held whole."""
    from gradwise.data.text import IGNORE

    rows = max(1, _MAX_LOGITS // max(int(x.shape[1]) * run.schema.n_outputs, 1))
    for start in range(0, len(x), rows):
        logits = run.logits(x[start : start + rows]).double()  # (B, T, V)
        yb = y[start : start + rows]
        valid = yb != IGNORE
        yield logits[valid], yb[valid]


def _token_logits(run: Run, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """The first next-token logits and targets of a split, at most _MAX_LOGITS values."""
    cap = max(1, _MAX_LOGITS // run.schema.n_outputs)
    logits, targets, n = [], [], 0
    for flat, t in _window_batches(run, x, y):
        logits.append(flat[: cap - n])
        targets.append(t[: cap - n])
        n += len(targets[-1])
        if n >= cap:
            break
    if n == 0:
        raise NotApplicable("the validation split holds no next-token targets.")
    return torch.cat(logits), torch.cat(targets)


def token_measures(
    run: Run, x: Tensor, y: Tensor, max_tokens: int, temperatures: tuple[float, ...]
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per next-token prediction of the first `max_tokens`: confidence, correctness and NLL
    of softmax(logits / T), for each temperature T."""
    parts: list[list[list[np.ndarray]]] = [[[], [], []] for _ in temperatures]
    n = 0
    for flat, targets in _window_batches(run, x, y):
        flat, targets = flat[: max_tokens - n], targets[: max_tokens - n]
        for t, (confs, hits, nlls) in zip(temperatures, parts):
            logp = (flat / t).log_softmax(dim=-1)
            best = logp.max(dim=-1)
            confs.append(best.values.exp().numpy())
            hits.append((best.indices == targets).numpy())
            nlls.append((-logp.gather(1, targets[:, None])[:, 0]).numpy())
        n += len(targets)
        if n >= max_tokens:
            break
    if n == 0:
        raise NotApplicable("the test split holds no next-token targets.")
    return [(np.concatenate(c), np.concatenate(h), np.concatenate(v)) for c, h, v in parts]


# ---------------------------------------------------------------- the reliability diagram


def _plot_reliability(
    path: Any,
    panels: list[tuple[str, np.ndarray, CalibrationMeasures]],
    labels: np.ndarray,
    n_bins: int,
) -> None:
    from gradwise.artifacts import new_figure, write_png

    fig = new_figure(4.2 * len(panels), 5.0)
    axes = fig.subplots(2, len(panels), sharex=True, height_ratios=[3, 1], squeeze=False)
    for i, (title, probs, m) in enumerate(panels):
        conf, acc, counts = reliability(probs, labels, n_bins, "width")
        _draw_bins(axes[0, i], axes[1, i], conf, acc, counts, n_bins)
        axes[0, i].set_title(f"{title}: ECE {m.ece:.3f}")
    write_png(path, fig)


def _plot_token_reliability(
    path: Any,
    conf: np.ndarray,
    correct: np.ndarray,
    conf_t: np.ndarray,
    t: float,
    before: CalibrationMeasures,
    after: CalibrationMeasures,
    n_bins: int,
) -> None:
    from gradwise.artifacts import new_figure, write_png

    fig = new_figure(8.4, 5.0)
    axes = fig.subplots(2, 2, sharex=True, height_ratios=[3, 1])
    for i, (c, title, m) in enumerate(
        ((conf, "next tokens", before), (conf_t, f"temperature {t:.2f}", after))
    ):
        _draw_bins(axes[0, i], axes[1, i], *reliability_of(c, correct, n_bins, "width"), n_bins)
        axes[0, i].set_title(f"{title}: ECE {m.ece:.3f}")
    write_png(path, fig)


def _draw_bins(
    ax: Axes, hist: Axes, conf: np.ndarray, acc: np.ndarray, counts: np.ndarray, n_bins: int
) -> None:
    """Accuracy per confidence bin (bars), the gap to the bin's mean confidence (hatched),
    and below, how many predictions each bin holds."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    centres, width = (edges[:-1] + edges[1:]) / 2, 1.0 / n_bins
    filled = counts > 0
    ax.bar(centres[filled], acc[filled], width=width, edgecolor="black", label="accuracy")
    low = np.minimum(acc, conf)[filled]
    ax.bar(
        centres[filled],
        np.abs(conf - acc)[filled],
        bottom=low,
        width=width,
        fill=False,
        hatch="//",
        edgecolor="tab:red",
        label="gap to mean confidence",
    )
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=8)
    hist.bar(centres, counts, width=width, color="gray", edgecolor="black")
    hist.set_yscale("symlog")
    hist.set_xlabel("confidence")
    hist.set_ylabel("predictions")
