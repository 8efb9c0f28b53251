"""The plots of the audit checks that break the data down or move it, redrawn from each
RUN/audit/<check>.json's metrics: the rows and groups the model serves worse (slices,
fairness), inputs perturbed or shifted (robustness, shift) and the training data itself
(data quality).

One function per check, called by `plots_audit.plot_check`; each reads only what the check
stored, so the page and the files agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from gradwise.reporting.figures import COLOURS, figure, nan, tidy

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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
