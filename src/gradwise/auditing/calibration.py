"""Calibration: is the model's confidence honest, and does temperature scaling fix it?

The measures (hand-written: small, central, checked against hand computations):
expected calibration error over equal-width or equal-mass confidence bins, MCE and the Brier
score; temperature scaling and the NLL (from the log-softmax) are in `auditing/temperature.py`.

The check (`gradwise audit RUN --checks calibration`): for classifiers, ECE (both binnings),
MCE, Brier score and NLL on the test split with the model's uncalibrated probabilities, then
temperature scaling fitted on the validation split and reported on the test split. The
temperature is stored in the run (so `predict` and the server apply it) only when it lowers
the validation NLL by more than its noise: measured out of sample (each fold's rows scored
with a temperature fitted on the other folds) and paired over rows, the improvement must
exceed twice its standard error; a temperature fitted on a small validation split can
otherwise make the test calibration worse. For language models, the same of the next-token
probabilities on the held-out test windows (never stored: generate has its own temperature).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import Tensor

from gradwise.auditing.base import AuditContext, CheckResult, NotApplicable, grade, task_name
from gradwise.auditing.calibration_plots import plot_reliability
from gradwise.auditing.temperature import (
    GAIN_RULE,
    GAIN_SE,
    TemperatureGain,
    fit_temperature,
    negative_log_likelihood,
    temperature_gain,
)

if TYPE_CHECKING:
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
    def of(probs: np.ndarray, labels: np.ndarray, nll: float, n_bins: int) -> CalibrationMeasures:
        """The measures of (N, K) probabilities; `nll` from the logits (`negative_log_likelihood`:
        probabilities alone lose what underflows)."""
        confidence = probs.max(axis=1)
        correct = probs.argmax(axis=1) == labels
        return CalibrationMeasures(
            ece=expected_calibration_error(probs, labels, n_bins, "width"),
            ece_mass=expected_calibration_error(probs, labels, n_bins, "mass"),
            mce=maximum_calibration_error(probs, labels, n_bins, "width"),
            brier=brier_score(probs, labels),
            nll=nll,
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
    worth = temperature_gain(val_logits, val.y, seed=ctx.seed)
    before_p = run.probabilities(test_logits, calibrated=False)
    after_p = run.probabilities(test_logits / t, calibrated=False)
    # dividing by one positive number keeps every row's order: the predictions never change
    assert np.array_equal(before_p.argmax(axis=1), after_p.argmax(axis=1))
    nll_before = negative_log_likelihood(test_logits, test.y)
    nll_after = negative_log_likelihood(test_logits, test.y, t)
    before = CalibrationMeasures.of(before_p, labels, nll_before, settings.bins)
    after = CalibrationMeasures.of(after_p, labels, nll_after, settings.bins)
    stored = settings.store_temperature and worth.is_real
    removed = None
    if stored:
        run.set_temperature(t)
    elif settings.store_temperature and run.calibration.temperature is not None:
        # this check owns the run's temperature: one it finds not worth storing is not applied
        removed = run.calibration.temperature
        run.set_temperature(None)
    served = after if stored else before
    bins = {
        "before": reliability(before_p, labels, settings.bins),
        "after": reliability(after_p, labels, settings.bins),
    }
    panels = [
        (f"uncalibrated: ECE {before.ece:.3f}", bins["before"]),
        (f"temperature {t:.2f}: ECE {after.ece:.3f}", bins["after"]),
    ]
    plot_reliability(ctx.out / PLOT, panels, settings.bins)
    headline = f"ECE {before.ece:.3f} → {after.ece:.3f}" if stored else f"ECE {before.ece:.3f}"
    return CheckResult(
        check="calibration",
        verdict=grade(served.ece, settings.ece_warn, settings.ece_fail),
        headline=headline + ("" if stored else ", no temperature stored"),
        summary=_classifier_sentence(before, after, t, worth, settings, removed),
        metrics={
            "before": before.to_dict(),
            "after": after.to_dict(),
            "temperature": t,
            "temperature_gain": worth.to_dict(),
            "temperature_stored": stored,
            "temperature_removed": removed,
            "graded": "after" if stored else "before",
            "n_val": len(val),
            "n_test": len(test),
            "reliability": {k: reliability_bins(*v) for k, v in bins.items()},
        },
        settings=_stated(
            settings,
            before="the model's own probabilities (no temperature)",
            after="probabilities of logits / T",
            brier="multi-class: squared error summed over classes, mean over rows (0..2)",
            temperature_rule=GAIN_RULE + " (and audit.calibration.store_temperature is true)",
            seed=ctx.seed,
        ),
        plots=(PLOT,),
    )


def _classifier_sentence(
    before: CalibrationMeasures,
    after: CalibrationMeasures,
    t: float,
    worth: TemperatureGain,
    settings: CalibrationAudit,
    removed: float | None,
) -> str:
    """The test ECE, and what temperature scaling did: stored, or not and why."""
    text = (
        f"ECE {before.ece:.3f} on the {before.n} test rows ({settings.bins} equal-width bins), "
        f"{before.leaning}; temperature scaling (T={t:.2f}, fitted on {worth.n} validation rows)"
    )
    gain = f"{worth.gain:.3f} ± {worth.se:.3f} nats out of sample"
    change = (
        f"lowers the validation NLL by {gain}"
        if worth.gain > 0
        else f"raises the validation NLL by {-worth.gain:.3f} ± {worth.se:.3f} nats out of sample"
    )
    unchanged = f"with accuracy unchanged at {after.accuracy:.3f}"
    if not settings.store_temperature:
        text += (
            f", not stored (audit.calibration.store_temperature is false), would bring it to "
            f"{after.ece:.3f} {unchanged}; it {change}."
        )
    elif worth.is_real:
        text += (
            f" {change}, more than {GAIN_SE:g} standard errors, so it is stored in the run: it "
            f"brings the test ECE to {after.ece:.3f} {unchanged}."
        )
    else:
        did = (
            f"improved the validation NLL by only {gain}, not more than {GAIN_SE:g} standard errors"
            if worth.gain > 0
            else change
        )
        text += f" is not stored: it {did}; it would bring the test ECE to {after.ece:.3f}."
        if removed is not None:
            text += f" The temperature stored earlier (T={removed:.2f}) is removed."
    if after.ece > before.ece:
        text += (
            f" The temperature minimises the validation NLL, not the ECE: the test NLL goes "
            f"from {before.nll:.3f} to {after.nll:.3f}."
        )
    return text


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
    panels = [
        (f"next tokens: ECE {before.ece:.3f}", reliability_of(conf, correct, settings.bins)),
        (
            f"temperature {t:.2f}: ECE {after.ece:.3f}",
            reliability_of(conf_t, correct, settings.bins),
        ),
    ]
    plot_reliability(ctx.out / PLOT, panels, settings.bins)
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
