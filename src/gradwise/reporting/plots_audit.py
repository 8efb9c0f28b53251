"""The audit checks' plots, redrawn from each RUN/audit/<check>.json's metrics: `plot_check`
for any check, and here the plots of how well the model does and how sure it is
(generalisation, baseline, calibration, uncertainty, selective); those of the checks that
break the data down or move it are in `plots_audit_data.py`.

One function per check: `plot_<check>(result) -> Figure | None` (None: the JSON holds
nothing to draw). They read only what the check stored, so the page and the files agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from gradwise.auditing.base import CheckResult
from gradwise.reporting.figures import COLOURS, figure, plain_log, tidy
from gradwise.reporting.plots_audit_data import (
    plot_data_quality,
    plot_fairness,
    plot_robustness,
    plot_shift,
    plot_slices,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def plot_check(result: CheckResult) -> Figure | None:
    """The plot of any check, or None where it stored nothing to draw (n/a, no numbers)."""
    if result.verdict == "n/a" or not result.metrics:
        return None
    match result.check:
        case "generalisation":
            return plot_generalisation(result.metrics)
        case "baseline":
            return plot_baseline(result.metrics)
        case "calibration":
            return plot_calibration(result.metrics)
        case "uncertainty":
            return plot_uncertainty(result.metrics, result.settings)
        case "selective":
            return plot_selective(result.metrics)
        case "slices":
            return plot_slices(result.metrics, result.settings)
        case "fairness":
            return plot_fairness(result.metrics)
        case "robustness":
            return plot_robustness(result.metrics)
        case "shift":
            return plot_shift(result.metrics)
        case "data_quality":
            return plot_data_quality(result.metrics, result.settings)
    return None


# ---------------------------------------------------------------- generalisation


def plot_generalisation(m: dict[str, Any]) -> Figure:
    """The learning curve (retrains, the power-law fit, the reads at 2x/5x/10x) beside the
    metric on train, validation and test."""
    metric = m["metric"]
    curve = m.get("learning_curve")
    fig = figure(height=3.3)
    if curve and curve.get("points"):
        left, right = fig.subplots(1, 2, width_ratios=[2.2, 1])
        _learning_curve(left, curve, metric)
    else:
        right = fig.subplots()
    splits = [s for s in ("train", "val", "test") if m.get(s) is not None]
    right.bar(splits, [m[s] for s in splits], color=COLOURS[: len(splits)])
    for i, s in enumerate(splits):
        right.annotate(f"{m[s]:.3f}", (i, m[s]), ha="center", va="bottom", fontsize=8)
    tidy(right, f"{metric} per split (gap {m.get('gap', float('nan')):+.3f})")
    if metric == "accuracy":
        low = min(m[s] for s in splits)
        right.set_ylim(max(0.0, low - 0.1), 1.02)
    return fig


def _learning_curve(ax: Axes, curve: dict[str, Any], metric: str) -> None:
    points = curve["points"]
    n = np.array([p["n_train"] for p in points], dtype=float)
    ax.scatter(n, [p["value"] for p in points], s=14, color="black", label="retrains", zorder=3)
    fit = curve.get("fit")
    preds = curve.get("predictions") or {}
    top = max([n.max(), *[p["n"] for p in preds.values()]])
    if fit:
        grid = np.geomspace(n.min(), top, 100)
        error = fit["a"] * grid ** (-fit["b"]) + fit["c"]
        ax.plot(grid, 1 - error if metric == "accuracy" else error, label="power-law fit")
    if preds:
        xs = [p["n"] for p in preds.values()]
        ys = [p["value"] for p in preds.values()]
        bands = [p.get("band") or [p["value"], p["value"]] for p in preds.values()]
        err = np.abs(np.array(bands, dtype=float).T - np.array(ys))
        ax.errorbar(
            xs,
            ys,
            yerr=err,
            fmt="x",
            color="tab:red",
            capsize=3,
            label="read at " + ", ".join(preds),
        )
    ax.axvline(curve["n_run"], color="grey", linestyle=":", linewidth=1, label="this run")
    ax.set_xscale("log")
    plain_log(ax)
    ax.set_xlabel("training samples", fontsize=8)
    ax.set_ylabel(f"test {metric}", fontsize=8)
    ax.legend(fontsize=8)
    tidy(ax, "learning curve")


# ---------------------------------------------------------------- baseline


def plot_baseline(m: dict[str, Any]) -> Figure:
    """The network against each classical baseline (error bars: the comparison noise for
    the network, seed-to-seed spread for the baselines)."""
    rows = [("network", m["network"], m.get("noise") or 0.0)]
    rows += [(b["name"], b["mean"], b.get("std") or 0.0) for b in m.get("baselines", [])]
    fig = figure(height=max(1.8, 0.5 + 0.45 * len(rows)))
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]
    colours = ["tab:blue"] + ["#9a9a9a"] * (len(rows) - 1)
    ax.barh(y, [r[1] for r in rows], xerr=[r[2] for r in rows], color=colours, capsize=3)
    ax.set_yticks(y, [r[0] for r in rows], fontsize=8)
    for yi, r in zip(y, rows):
        ax.annotate(f"  {r[1]:.4g}", (r[1] + r[2], yi), va="center", fontsize=8)
    values = [r[1] for r in rows]
    if m["metric"] in ("accuracy", "f1_macro"):
        ax.set_xlim(max(0.0, min(values) - 0.1), min(1.0, max(values)) + 0.05)
    ax.set_xlabel(f"test {m['metric']}", fontsize=8)
    tidy(ax)
    return fig


# ---------------------------------------------------------------- calibration


def plot_calibration(m: dict[str, Any]) -> Figure:
    """Reliability diagrams before and after temperature scaling, from the stored bins; an
    older audit without bins gets its summary measures side by side."""
    bins = m.get("reliability")
    if not bins:
        return _calibration_measures(m)
    fig = figure(height=3.6)
    axes = fig.subplots(2, 2, sharex=True, height_ratios=[3, 1])
    t = m.get("temperature")
    panels = (("before", "own probabilities"), ("after", f"temperature {t:.2f}" if t else "after"))
    for i, (key, title) in enumerate(panels):
        b = bins[key]
        _reliability(axes[0, i], axes[1, i], b)
        tidy(axes[0, i], f"{title}: ECE {m[key]['ece']:.3f}")
        tidy(axes[1, i])
    axes[1, 0].set_ylabel("samples", fontsize=8)
    axes[0, 0].set_ylabel("accuracy", fontsize=8)
    return fig


def _reliability(ax: Axes, hist: Axes, b: dict[str, Any]) -> None:
    count = np.asarray(b["count"], dtype=float)
    k = len(count)
    edges = np.linspace(0.0, 1.0, k + 1)
    centres, width = (edges[:-1] + edges[1:]) / 2, 1.0 / k
    filled = count > 0
    acc = np.asarray(b["accuracy"], dtype=float)
    conf = np.asarray(b["confidence"], dtype=float)
    ax.bar(
        centres[filled],
        acc[filled],
        width=width,
        edgecolor="black",
        linewidth=0.5,
        color="tab:blue",
        alpha=0.85,
        label="accuracy",
    )
    ax.scatter(
        centres[filled],
        conf[filled],
        marker="_",
        s=220,
        linewidths=2,
        color="tab:red",
        zorder=3,
        label="mean confidence",
    )
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="upper left")
    hist.bar(centres, count, width=width, color="#9a9a9a")
    hist.set_yscale("symlog")
    hist.set_xlabel("confidence", fontsize=8)


def _calibration_measures(m: dict[str, Any]) -> Figure:
    names = [k for k in ("ece", "ece_mass", "mce", "brier") if k in m["before"]]
    fig = figure(height=2.8)
    ax = fig.subplots()
    x = np.arange(len(names))
    for i, key in enumerate(("before", "after")):
        ax.bar(x + (i - 0.5) * 0.38, [m[key][n] for n in names], width=0.38, label=key)
    ax.set_xticks(x, names)
    ax.legend(fontsize=8)
    tidy(ax, "calibration measures before and after temperature scaling")
    return fig


# ---------------------------------------------------------------- uncertainty


def plot_uncertainty(m: dict[str, Any], settings: dict[str, Any]) -> Figure:
    """Classification: coverage per class and the set sizes; regression: coverage by
    difficulty quartile and the mean width of each score."""
    target = settings.get("coverage")
    chosen = m.get("chosen")
    fig = figure(height=3.0)
    left, right = fig.subplots(1, 2)
    if chosen in ("aps", "lac"):
        per = m[chosen].get("coverage_per_class", {})
        names = list(per)
        left.bar(range(len(names)), [per[c]["coverage"] for c in names], color="tab:blue")
        left.set_xticks(range(len(names)), names, fontsize=7)
        left.set_ylim(0, 1.05)
        tidy(left, f"{chosen} coverage per class")
        methods = [k for k in ("aps", "lac") if k in m]
        for i, name in enumerate(methods):
            counts = np.asarray(m[name]["size_counts"], dtype=float)
            right.bar(np.arange(len(counts)) + (i - 0.5) * 0.4, counts, width=0.4, label=name)
        right.set_xlabel("classes in the set", fontsize=8)
        right.legend(fontsize=8)
        tidy(right, "set sizes on the test split")
    else:
        scores = [k for k in ("absolute", "normalised") if k in m]
        for i, score in enumerate(scores):
            by = m[score].get("coverage_by_difficulty") or []
            left.plot(range(1, len(by) + 1), by, marker="o", label=score, color=COLOURS[i])
        left.set_xlabel("difficulty quartile (1 = easiest)", fontsize=8)
        left.set_ylim(0, 1.05)
        left.legend(fontsize=8)
        tidy(left, "coverage by difficulty")
        right.bar(scores, [m[s]["mean_width"] for s in scores], color=COLOURS[: len(scores)])
        tidy(right, "mean interval width")
    if target is not None:
        left.axhline(target, color="grey", linestyle="--", linewidth=0.8)
    return fig


# ---------------------------------------------------------------- selective


def plot_selective(m: dict[str, Any]) -> Figure:
    """Left: the test split's risk-coverage curve, each promised alpha (dashed) and where each
    certified threshold landed on test (its exact 95% interval as the bar). Right: per
    (alpha, delta), the share answered: certified on validation, realised on test, and the
    oracle's (a threshold chosen with the test labels)."""
    curve = m["risk_coverage"]
    certificates = m.get("certificates") or []
    fig = figure(height=3.3)
    left, right = fig.subplots(1, 2, width_ratios=[1.6, 1])
    left.plot(
        curve["coverage"], curve["risk"], color="tab:blue", label="test: error among answered"
    )
    for i, c in enumerate(certificates):
        colour = COLOURS[(i + 1) % len(COLOURS)]
        left.axhline(c["alpha"], color=colour, linestyle="--", linewidth=0.9)
        test = c["test"]
        if c["certified"] and test.get("answered"):
            lo, hi = test["error_interval"]
            err = [[test["error"] - lo], [hi - test["error"]]]
            left.errorbar(
                [test["coverage"]], [test["error"]], yerr=err, fmt="o", color=colour,
                capsize=3, label=f"alpha {c['alpha']:g}: certified threshold on test",
            )  # fmt: skip
    left.set_xlim(0, 1.02)
    left.set_xlabel("share of test inputs answered (coverage)", fontsize=8)
    left.set_ylabel("error rate among answered", fontsize=8)
    left.legend(fontsize=7, loc="upper left")
    tidy(left, "risk-coverage on the test split")
    names = [f"α {c['alpha']:g}, δ {c['delta']:g}" for c in certificates]
    x = np.arange(len(certificates))
    bars = (
        ("certified (val)", [c["coverage"] for c in certificates]),
        ("realised (test)", [c["test"]["coverage"] for c in certificates]),
        ("oracle (test)", [c["test"]["oracle_coverage"] for c in certificates]),
    )
    for i, (label, values) in enumerate(bars):
        right.bar(x + (i - 1) * 0.27, values, width=0.27, label=label, color=COLOURS[i])
    right.set_xticks(x, names, fontsize=7)
    right.set_ylim(0, 1.3)
    right.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
    right.legend(fontsize=7, loc="upper center", ncol=3, columnspacing=0.8, handlelength=1.2)
    tidy(right, "share answered")
    return fig
