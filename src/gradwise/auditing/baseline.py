"""Baseline: does the network beat a classical method on exactly the same split?

The matching scikit-learn baselines are trained on the run's own training split and scored
on its test split, next to the network:
    tables: logistic regression and gradient boosting (HistGradientBoosting) on the run's
        fitted preprocessing (median-imputed, standardised numbers, one-hot categories);
        ridge and gradient boosting for regression;
    labelled text: TF-IDF (words and word pairs) + logistic regression on the raw texts;
    images: logistic regression on the standardised pixels (ridge for regression);
    sequences: logistic regression / ridge and gradient boosting on the flattened windows;
    forecasting (series windows): the last value, the seasonal naive forecast (the value one
        season back; the season from settings or from the training series' autocorrelation),
        and ridge regression on the lags;
    language models: next-token frequencies and an interpolated bigram (baseline_ngram.py),
        by cross-entropy per test token.

The verdict weighs the network's margin over the best baseline against the noise: the
paired bootstrap of the test rows (how much the difference moves with the test sample) and
the best baseline's seed-to-seed spread. The network's own seed-to-seed spread is not
measured by this check (it has one run); `gradwise compare` measures it.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from typing import TYPE_CHECKING, Any

import numpy as np

from gradwise.auditing.base import AuditContext, CheckResult, NotApplicable, Verdict, task_name
from gradwise.auditing.baseline_models import level_offset
from gradwise.auditing.classical import ClassicalBaseline

if TYPE_CHECKING:
    from gradwise.config import BaselineAudit
    from gradwise.run import Run, SplitView

PLOT = "baseline.png"
BOOTSTRAP = 1000


# ---------------------------------------------------------------- scores


def score(metric: str, pred: np.ndarray, y: np.ndarray) -> float:
    """accuracy / f1_macro of class indices, rmse / mae of values (over every output), loss
    (nats per token) of a language model's per-window NLL sums and token counts."""
    from sklearn.metrics import f1_score

    match metric:
        case "accuracy":
            return float(np.mean(pred == y))
        case "f1_macro":
            return float(f1_score(y, pred, average="macro"))
        case "rmse":
            return float(np.sqrt(np.mean((pred - y) ** 2)))
        case "mae":
            return float(np.mean(np.abs(pred - y)))
        case "loss":  # language models: per-window NLL sums over per-window token counts
            return float(np.sum(pred) / max(float(np.sum(y)), 1.0))
    raise AssertionError(metric)


def higher_is_better(metric: str) -> bool:
    return metric in ("accuracy", "f1_macro")


def paired_bootstrap_std(
    metric: str, a: np.ndarray, b: np.ndarray, y: np.ndarray, repeats: int, seed: int
) -> float:
    """Standard deviation of score(a) - score(b) over bootstrap resamples of the test rows
    (the same rows for both: the test sample's noise in the difference)."""
    rng = np.random.default_rng(seed)
    n = len(y)
    diffs = np.empty(repeats)
    for i in range(repeats):
        idx = rng.integers(0, n, n)
        diffs[i] = score(metric, a[idx], y[idx]) - score(metric, b[idx], y[idx])
    return float(diffs.std(ddof=1))


# ---------------------------------------------------------------- the baselines of each data kind


def baselines_for(
    run: Run, settings: BaselineAudit, train: SplitView, test: SplitView
) -> tuple[list[ClassicalBaseline], dict[str, Any]]:
    """The matching baselines for this run's data, and notes on what they were given.

    Raises:
        NotApplicable: no classical baseline matches the task (language models, seq2seq).
    """
    from gradwise.auditing.baseline_models import (
        forecasting_baselines,
        matrix_baselines,
        text_baselines,
    )

    schema = run.schema
    if schema.task == "lm":
        from gradwise.auditing.baseline_ngram import ngram_baselines

        return ngram_baselines(run, train, run.split("val"), test)
    if schema.task not in ("classification", "regression"):
        raise NotApplicable(
            f"no classical baseline matches {task_name(schema.task)} here (the check covers "
            "classifiers, regressions and language models: tables, text, images, sequences, "
            "forecasts, corpora)."
        )
    if schema.series is not None:
        return forecasting_baselines(run, settings, train, test)
    if schema.text_column is not None:
        return text_baselines(run, settings, train, test)
    if schema.tabular is not None:
        onehot = dataclasses.replace(schema.tabular, encoding="onehot")
        x_train, x_test = onehot.transform(train.raw), onehot.transform(test.raw)
        what = "the run's preprocessing with one-hot categories"
    else:
        x_train = train.x.flatten(1).double().numpy()
        x_test = test.x.flatten(1).double().numpy()
        what = "the standardised pixels" if schema.kind == "image" else "the flattened windows"
    return matrix_baselines(
        run, settings, x_train, train, x_test, what, with_boosting=(schema.kind != "image")
    )


# ---------------------------------------------------------------- the check


def check(run: Run, settings: BaselineAudit, ctx: AuditContext) -> CheckResult:
    """Each matching baseline's test metric next to the network's, with the noise."""
    from gradwise.config import DiffusionConfig

    if isinstance(run.config.model, DiffusionConfig):
        raise NotApplicable("a diffusion model generates images; it has no targets to predict.")
    train, test = run.split("train"), run.split("test")
    baselines, notes = baselines_for(run, settings, train, test)
    metric = _metric(run, settings, train)
    y_test = _truth(run, test)
    net_pred = _network_predictions(run, test)
    network = score(metric, net_pred, y_test)
    rows: list[dict[str, Any]] = []
    predictions: dict[str, np.ndarray] = {}
    for b in baselines:
        seeds = list(range(ctx.seed, ctx.seed + settings.seeds)) if b.stochastic else [ctx.seed]
        values, first = [], None
        for seed in seeds:
            pred = b.fit_predict(seed)
            first = pred if first is None else first
            values.append(score(metric, pred, y_test))
        assert first is not None
        predictions[b.name] = first
        rows.append(
            {
                "name": b.name,
                "mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "seeds": len(values),
                "values": values,
                "deterministic": not b.stochastic,
            }
        )
    higher = higher_is_better(metric)
    best = max(rows, key=lambda r: r["mean"] if higher else -r["mean"])
    margin = (network - best["mean"]) * (1 if higher else -1)  # > 0: the network is better
    boot = paired_bootstrap_std(
        metric, net_pred, predictions[best["name"]], y_test, BOOTSTRAP, ctx.seed
    )
    noise = math.sqrt(boot**2 + best["std"] ** 2)
    verdict = _verdict(margin, noise, settings.margin_warn)
    _plot(ctx.out / PLOT, metric, network, noise, rows)
    return CheckResult(
        check="baseline",
        verdict=verdict,
        headline=f"{metric} {network:.3g} vs {best['mean']:.3g} ({best['name']})",
        summary=_sentence(metric, network, best, margin, noise, verdict),
        metrics={
            "metric": metric,
            "network": network,
            "baselines": rows,
            "best": best["name"],
            "margin": margin,
            "noise": noise,
            "noise_test_bootstrap": boot,
            "noise_best_baseline_seeds": best["std"],
            "noise_network_seeds": None,
            "n_train": len(train),
            "n_test": len(test),
            **notes,
        },
        settings={
            **settings.model_dump(mode="json"),
            "metric": f"{metric} on the test split"
            + (_auto_reason(metric) if settings.metric == "auto" else ""),
            "noise": f"sqrt(paired bootstrap variance of the difference over {BOOTSTRAP} "
            "resamples of the test rows + the best baseline's seed-to-seed variance); the "
            "network's seed-to-seed noise is not measured (one run; gradwise compare "
            "measures it)",
            "verdict": "pass: margin > 2 x noise (and > margin_warn); fail: the network is "
            "worse by more than 2 x noise; warn: in between",
            "same_split": "the run's own train and test splits (splits.json)",
        },
        plots=(PLOT,),
    )


RARE_CLASS = 0.1
"""A class under this share of the training rows, and under half its share were the classes
balanced, makes accuracy meaningless (a model that never predicts it scores 1 - share): auto
compares macro-F1 instead. Ten balanced classes of 10% each are not rare."""


def _metric(run: Run, settings: BaselineAudit, train: SplitView) -> str:
    if run.schema.task == "lm":
        if settings.metric != "auto":
            from gradwise.errors import ConfigError

            raise ConfigError(
                f"audit.baseline.metric {settings.metric} does not fit a language model, "
                "which is compared by its test loss; use auto."
            )
        return "loss"
    classifier = run.schema.task == "classification"
    if settings.metric == "auto":
        if not classifier:
            return "rmse"
        shares = np.bincount(train.y.numpy(), minlength=run.schema.n_outputs) / len(train.y)
        rare = shares.min() < min(RARE_CLASS, 0.5 / len(shares))
        return "f1_macro" if rare else "accuracy"
    if higher_is_better(settings.metric) != classifier:
        from gradwise.errors import ConfigError

        kinds = "accuracy or f1_macro" if classifier else "rmse or mae"
        raise ConfigError(
            f"audit.baseline.metric {settings.metric} does not fit a {run.schema.task} run; "
            f"use {kinds} (or auto)."
        )
    return settings.metric


def _auto_reason(metric: str) -> str:
    if metric == "f1_macro":
        return (
            f" (auto: a class holds under {RARE_CLASS:.0%} of the training rows and under half "
            "its balanced share, so accuracy would reward ignoring it)"
        )
    return " (the task's primary metric)"


def _truth(run: Run, split: SplitView) -> np.ndarray:
    if run.schema.task == "lm":
        from gradwise.auditing.baseline_ngram import scored_tokens

        return scored_tokens(split.y)
    if run.schema.task == "classification":
        return split.y.numpy()
    enc = split.y.double().numpy().reshape(len(split.y), -1)
    return np.asarray(run.schema.target.decode(enc), dtype=np.float64) + level_offset(run, split)


def _network_predictions(run: Run, split: SplitView) -> np.ndarray:
    if run.schema.task == "lm":
        from gradwise.auditing.baseline_ngram import network_window_nll

        return network_window_nll(run, split)
    logits = run.logits(split.x).double()
    if run.schema.task == "classification":
        return run.probabilities(logits, calibrated=False).argmax(axis=1)
    out = logits.numpy().reshape(len(logits), -1)
    return np.asarray(run.schema.target.decode(out), dtype=np.float64) + level_offset(run, split)


def _verdict(margin: float, noise: float, margin_warn: float) -> Verdict:
    if margin > 2 * noise and margin > margin_warn:
        return "pass"
    if margin < -2 * noise:
        return "fail"
    return "warn"


def _sentence(
    metric: str, network: float, best: dict[str, Any], margin: float, noise: float, v: Verdict
) -> str:
    ours = f"The network's test {metric} {network:.4g}"
    theirs = f"the best baseline, {best['name']} ({best['mean']:.4g})"
    size = f"by {abs(margin):.2g}"
    noise_text = f"noise ±{noise:.2g} (test-set bootstrap and baseline seeds)"
    if v == "pass":
        return f"{ours} beats {theirs} {size}, more than twice the {noise_text}."
    if v == "fail":
        return f"{ours} loses to {theirs} {size}, more than twice the {noise_text}."
    if margin > 2 * noise:
        return f"{ours} beats {theirs} {size}, less than audit.baseline.margin_warn."
    if margin > 0:
        return f"{ours} beats {theirs} {size}, less than twice the {noise_text}: no clear win."
    return f"{ours} is no better than {theirs}: within twice the {noise_text}."


def _plot(path: Any, metric: str, network: float, noise: float, rows: list[dict[str, Any]]) -> None:
    from gradwise.artifacts import new_figure, write_png

    names = ["network", *[r["name"] for r in rows]]
    values = [network, *[r["mean"] for r in rows]]
    errors = [noise, *[r["std"] for r in rows]]
    fig = new_figure(6.0, 0.5 * len(names) + 1.5)
    ax = fig.subplots()
    colours = ["tab:blue"] + ["tab:gray"] * len(rows)
    ax.barh(names, values, xerr=errors, color=colours, capsize=3)
    ax.invert_yaxis()
    low = min(values) - 3 * max(errors + [1e-3])
    ax.set_xlim(left=max(0.0, low) if higher_is_better(metric) else 0.0)
    ax.set_xlabel(f"test {metric} (error bars: network, the comparison noise; baselines, seeds)")
    write_png(path, fig)
