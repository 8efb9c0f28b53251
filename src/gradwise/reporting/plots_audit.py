"""The audit checks' plots, redrawn from each RUN/audit/<check>.json's metrics.

One function per check: `plot_<check>(result) -> Figure | None` (None: the JSON holds
nothing to draw). They read only what the check stored, so the page and the files agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from gradwise.auditing.base import CheckResult
from gradwise.reporting.figures import COLOURS, figure, nan, plain_log, tidy

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


# ---------------------------------------------------------------- slices

RULE_CHARS = 50  # a slice's rule as a tick label, cut to this many characters


def plot_slices(m: dict[str, Any], settings: dict[str, Any]) -> Figure | None:
    """The reported slices, worst on top (at most `max_listed`): left, the error in each
    slice beside the rest of the confirmation half; right, the gap with its 95% bootstrap
    interval. None when no slice is reported."""
    by_rule = {s["rule"]: s for s in m.get("slices", [])}
    listed = [by_rule[rule] for rule in m.get("listed", [])][: settings.get("max_listed")]
    if not listed:
        return None
    fig = figure(height=max(1.8, 0.9 + 0.42 * len(listed)))
    left, right = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(listed))[::-1]
    left.barh(y + 0.2, [s["error"] for s in listed], height=0.4, label="slice", color="tab:red")
    left.barh(y - 0.2, [s["rest_error"] for s in listed], height=0.4, label="rest", color="#9a9a9a")
    left.set_yticks(y, [_cut(s["rule"], RULE_CHARS) for s in listed], fontsize=7)
    left.set_xlabel("error on the confirmation half", fontsize=8)
    left.legend(fontsize=7)
    tidy(left, "error in the slice and the rest")
    gaps = np.array([s["gap"] for s in listed])
    bounds = np.array([s["gap_interval"] for s in listed], dtype=float)  # (S, 2)
    xerr = np.abs(bounds.T - gaps)
    right.errorbar(gaps, y, xerr=xerr, fmt="o", color="tab:red", capsize=3)
    right.axvline(0.0, color="grey", linestyle="--", linewidth=0.8)
    right.set_xlabel("slice minus rest (95% interval)", fontsize=8)
    tidy(right, "gap")
    return fig


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------- fairness

FAIRNESS_PANELS = {"accuracy": "accuracy", "selection_rate": "selection rate", "mae": "MAE"}
MAX_GROUPS = 12  # the largest groups of a grouping drawn, as the check's own plot does


def plot_fairness(m: dict[str, Any]) -> Figure | None:
    """Per graded grouping, each group's accuracy and selection rate (regression: MAE) with
    its 95% interval, one panel per measure (hollow: too few rows to be compared). None when
    no grouping was graded."""
    graded = dict.fromkeys(f["grouping"] for f in m.get("graded", []))
    groupings = [g for g in m.get("groupings", []) if g["grouping"] in graded]
    if not groupings:
        return None
    rows = [
        (g["grouping"], group)
        for g in groupings
        for group in sorted(g["groups"], key=lambda x: -x["n"])[:MAX_GROUPS]
    ]
    keys = [k for k in FAIRNESS_PANELS if k in rows[0][1]]
    fig = figure(height=max(1.8, 0.9 + 0.3 * len(rows)))
    axes = fig.subplots(1, len(keys), sharey=True, squeeze=False)[0]
    y = np.arange(len(rows))[::-1]
    colours = {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(graded)}
    for ax, key in zip(axes, keys, strict=True):
        for yi, (grouping, group) in zip(y, rows, strict=True):
            v = group[key]
            value, lo, hi = nan(v["value"]), nan(v["low"]), nan(v["high"])
            ax.errorbar(
                [value], [yi], xerr=[[value - lo], [hi - value]], fmt="o", capsize=3,
                color=colours[grouping], markerfacecolor=None if group["graded"] else "white",
            )  # fmt: skip
        tidy(ax, FAIRNESS_PANELS[key])
    axes[0].set_yticks(
        y, [f"{grouping} = {group['group']} (n={group['n']:,})" for grouping, group in rows],
        fontsize=7,
    )  # fmt: skip
    return fig


# ---------------------------------------------------------------- robustness


def plot_robustness(m: dict[str, Any]) -> Figure:
    """The metric against the attack radius per norm and attack, and per corruption."""
    corruptions = m.get("corruptions") or []
    fig = figure(height=3.3)
    if corruptions:
        left, right = fig.subplots(1, 2)
    else:
        left, right = fig.subplots(), None
    colours = {"linf": "tab:blue", "l2": "tab:orange"}
    labels = {"linf": "L-inf", "l2": "L2"}
    metric = m.get("metric", "accuracy")
    for norm, curves in (m.get("curves") or {}).items():
        for attack, values in curves.items():
            style = "-" if attack == "worst" else "--" if attack == "pgd" else ":"
            left.plot(
                m["eps"],
                [nan(v) for v in values],
                style,
                marker="o",
                markersize=3,
                color=colours.get(norm),
                label=f"{labels.get(norm, norm)} {attack}",
            )
    ref = (m.get("at_reference") or {}).get("eps")
    if ref is not None:
        left.axvline(ref, color="grey", linestyle="-.", linewidth=0.8, label="reference eps")
    left.set_xlabel("eps", fontsize=8)
    left.set_ylabel(metric, fontsize=8)
    if m.get("curves"):
        left.legend(fontsize=8)
    else:  # the threat model has no attacks (tables and series by default)
        note = "not attacked\n(audit.robustness.attacks)"
        left.text(0.5, 0.5, note, ha="center", va="center", transform=left.transAxes, fontsize=8)
    tidy(left, "adversarial attacks")
    if right is not None:
        names = list(dict.fromkeys(r["name"] for r in corruptions))
        for name in names:
            mine = [r for r in corruptions if r["name"] == name]
            right.plot(
                range(1, len(mine) + 1), [nan(r.get(metric)) for r in mine], marker="o", label=name
            )
        if m.get("clean") is not None:
            right.axhline(m["clean"], color="grey", linestyle=":", label="clean")
        right.set_xlabel("severity (1 = mildest)", fontsize=8)
        right.legend(fontsize=8)
        tidy(right, "common corruptions")
    return fig


# ---------------------------------------------------------------- shift


def plot_shift(m: dict[str, Any]) -> Figure | None:
    """Measured against new data: each detector's effect over its threshold; otherwise the
    detection power against each simulated shift."""
    if "against" in m:
        return _drift_effects(m["against"], "against the given data")
    power = m.get("power")
    if not power:
        split = m.get("train_vs_test")
        return _drift_effects(split, "train against test") if split else None
    curves = power["curves"]
    fig = figure(height=2.9)
    axes = fig.subplots(1, max(len(curves), 1), sharey=True, squeeze=False)[0]
    for ax, c in zip(axes, curves):
        for i, (detector, values) in enumerate(c["power"].items()):
            pts = [(j, v) for j, v in enumerate(values) if v is not None]
            if pts:
                ax.plot(
                    *zip(*pts),
                    marker="o",
                    markersize=3,
                    label=detector,
                    color=COLOURS[i % len(COLOURS)],
                )
        ax.axhline(power["target"], color="grey", linestyle="--", linewidth=0.8)
        ax.set_xticks(range(len(c["magnitudes"])), [f"{v:g}" for v in c["magnitudes"]], fontsize=6)
        ax.set_xlabel(c["unit"], fontsize=7)
        ax.set_ylim(-0.03, 1.03)
        tidy(ax, c["shift"])
    axes[0].set_ylabel(f"power at n = {power['n']}", fontsize=8)
    axes[0].legend(fontsize=8)
    return fig


def _drift_effects(report: dict[str, Any], title: str) -> Figure:
    detectors = report["detectors"]
    names = list(detectors)
    ratio = [
        detectors[d]["effect"] / detectors[d]["threshold"] if detectors[d]["threshold"] else 0.0
        for d in names
    ]
    fig = figure(height=max(1.8, 0.6 + 0.4 * len(names)))
    ax = fig.subplots()
    colours = ["tab:red" if detectors[d]["drifted"] else "tab:blue" for d in names]
    ax.barh(names, ratio, color=colours)
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=0.8)
    ax.set_xlabel("effect / threshold (red: drifted)", fontsize=8)
    tidy(ax, title)
    return fig


# ---------------------------------------------------------------- data quality


def plot_data_quality(m: dict[str, Any], settings: dict[str, Any]) -> Figure:
    """What share of the training rows each scan flagged, and the class counts."""
    n = max(int(m.get("n_train") or 1), 1)
    shares: list[tuple[str, float]] = []
    if "labels" in m:
        shares.append(("likely label errors", m["labels"]["share"]))
    dup = m.get("duplicates") or {}
    if "n_exact_rows" in dup:
        shares.append(("exact duplicates", dup["n_exact_rows"] / n))
    leak = m.get("leakage") or {}
    if "exact_share" in leak:
        shares.append(("val/test copies of train", leak["exact_share"]))
    out = m.get("outliers") or {}
    if "share" in out:
        shares.append(("outliers", out["share"]))
    classes = (m.get("classes") or {}).get("counts")
    fig = figure(height=2.8)
    if classes:
        left, right = fig.subplots(1, 2)
    else:
        left, right = fig.subplots(), None
    y = np.arange(len(shares))[::-1]
    left.barh(y, [100 * s for _, s in shares], color="tab:blue")
    left.set_yticks(y, [name for name, _ in shares], fontsize=8)
    for yi, (_, s) in zip(y, shares):
        left.annotate(f" {100 * s:.1f}%", (100 * s, yi), va="center", fontsize=8)
    warn = settings.get("label_issue_warn")
    if warn is not None and "labels" in m:
        left.axvline(100 * warn, color="grey", linestyle="--", linewidth=0.8)
    left.set_xlabel("% of training rows (dashed: label-issue warn)", fontsize=8)
    tidy(left, "what the scans flagged")
    if right is not None and classes:
        names = list(classes)
        right.bar(range(len(names)), [classes[c] for c in names], color="#9a9a9a")
        right.set_xticks(
            range(len(names)), names, fontsize=7, rotation=45 if len(names) > 12 else 0
        )
        tidy(right, "training rows per class")
    return fig
