"""The report's other plots, each drawn from the JSON its section reads: the training curves
(metrics.jsonl), explanations (explain.json), cost (bench.json, tradeoff.json), the tuning
study (tune.json) and the monitor's timeline (windows.json)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from gradwise.reporting.figures import COLOURS, figure, nan, plain_log, tidy

if TYPE_CHECKING:
    from matplotlib.figure import Figure


# ---------------------------------------------------------------- training


def plot_training(history: list[dict[str, Any]], best_epoch: int | None) -> Figure | None:
    """Loss on train and validation, the validation metrics, and the learning rate, per
    epoch (the best epoch marked)."""
    rows = [r for r in history if "epoch" in r]
    if not rows:
        return None
    epochs = [r["epoch"] for r in rows]
    metrics = [k for k in rows[-1] if k.startswith("val.") and k not in ("val.loss",)]
    metrics = [k for k in metrics if not k.endswith("log_loss")][:4]
    fig = figure(height=3.0)
    axes = fig.subplots(1, 3 if metrics else 2)
    loss = axes[0]
    for key, colour in (("train.loss", "tab:blue"), ("val.loss", "tab:orange")):
        if any(key in r for r in rows):
            loss.plot(epochs, [nan(r.get(key)) for r in rows], color=colour, label=key)
    if _spans_decades([r.get("train.loss") for r in rows] + [r.get("val.loss") for r in rows]):
        loss.set_yscale("log")
        plain_log(loss)
    loss.legend(fontsize=8)
    tidy(loss, "loss")
    if metrics:
        ax = axes[1]
        for i, key in enumerate(metrics):
            ax.plot(epochs, [nan(r.get(key)) for r in rows], color=COLOURS[i % 6], label=key)
        ax.legend(fontsize=8)
        tidy(ax, "validation metrics")
    lr = axes[-1]
    lr.plot(epochs, [nan(r.get("lr")) for r in rows], color="tab:green")
    tidy(lr, "learning rate")
    for ax in axes:
        ax.set_xlabel("epoch", fontsize=8)
        if best_epoch:
            ax.axvline(best_epoch, color="grey", linestyle=":", linewidth=1)
    return fig


def _spans_decades(values: list[Any]) -> bool:
    v = np.array([x for x in values if x is not None and x > 0], dtype=float)
    return len(v) > 1 and v.max() / v.min() > 30


# ---------------------------------------------------------------- explanations


def plot_attributions(rows: list[dict[str, Any]], method: str | None) -> Figure | None:
    """Each explained row's largest attributions (red pushes towards the explained output,
    blue away)."""
    rows = [r for r in rows if r.get("top")][:4]
    if not rows:
        return None
    fig = figure(height=0.6 + 0.28 * max(len(r["top"]) for r in rows) + 0.6)
    axes = fig.subplots(1, len(rows), squeeze=False)[0]
    for ax, r in zip(axes, rows):
        names = [str(t[0]) for t in r["top"]][::-1]
        values = [float(t[1]) for t in r["top"]][::-1]
        ax.barh(
            range(len(names)), values, color=["tab:red" if v > 0 else "tab:blue" for v in values]
        )
        ax.set_yticks(range(len(names)), [_short(n) for n in names], fontsize=7)
        ax.axvline(0, color="black", linewidth=0.6)
        tidy(ax, f"row {r['row']}: {_short(str(r['prediction']), 18)}")
        ax.set_xlabel(method or "attribution", fontsize=7)
    return fig


def _short(text: str, width: int = 28) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def plot_importance(imp: dict[str, Any]) -> Figure:
    """Global importance of each raw column, both ways: mean |attribution| and the score
    lost when the column is shuffled."""
    names = list(imp["features"])
    order = np.argsort(imp["mean_abs_attribution"])[-15:]
    fig = figure(height=max(1.8, 0.7 + 0.24 * len(order)))
    left, right = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(order))
    left.barh(y, np.asarray(imp["mean_abs_attribution"])[order], color="tab:blue")
    left.set_yticks(y, [_short(names[i]) for i in order], fontsize=7)
    tidy(left, "mean |attribution|")
    right.barh(
        y,
        np.asarray(imp["permutation"])[order],
        xerr=np.asarray(imp["permutation_std"])[order],
        color="tab:orange",
        capsize=2,
    )
    tidy(right, f"{imp['score']} lost when shuffled")
    return fig


def plot_activations(layers: list[dict[str, Any]]) -> Figure | None:
    """Share of dead (never active) or saturated units per layer."""
    rows = [(r["layer"], r.get("dead"), r.get("saturated")) for r in layers]
    rows = [r for r in rows if r[1] is not None or r[2] is not None]
    if not rows:
        return None
    fig = figure(height=max(1.8, 0.7 + 0.28 * len(rows)))
    ax = fig.subplots()
    y = np.arange(len(rows))[::-1]
    dead = [100 * (r[1] or 0.0) for r in rows]
    sat = [100 * (r[2] or 0.0) for r in rows]
    ax.barh(y + 0.2, dead, height=0.4, label="dead units", color="tab:blue")
    ax.barh(y - 0.2, sat, height=0.4, label="saturated units", color="tab:orange")
    ax.set_yticks(y, [_short(r[0]) for r in rows], fontsize=7)
    ax.set_xlabel("% of the layer's units", fontsize=8)
    ax.legend(fontsize=8)
    tidy(ax, "activation health (validation batch)")
    return fig


def plot_attention(heads: list[dict[str, Any]]) -> Figure | None:
    """Entropy of each head's attention (low: it looks at few positions)."""
    if not heads:
        return None
    layers = list(dict.fromkeys(h["layer"] for h in heads))
    n_head = 1 + max(h["head"] for h in heads)
    grid = np.full((len(layers), n_head), np.nan)
    for h in heads:
        grid[layers.index(h["layer"]), h["head"]] = h["entropy"]
    fig = figure(width=5.5, height=0.9 + 0.35 * len(layers))
    ax = fig.subplots()
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    ax.set_yticks(range(len(layers)), layers, fontsize=7)
    ax.set_xticks(range(n_head), [str(i) for i in range(n_head)], fontsize=7)
    ax.set_xlabel("head", fontsize=8)
    fig.colorbar(image, ax=ax, label="entropy (nats)")
    ax.set_title("attention entropy per layer and head", fontsize=10)
    return fig


# ---------------------------------------------------------------- cost


def plot_tradeoff(table: dict[str, Any]) -> Figure:
    """Each variant's speed-up at batch 64 and size against what it loses in the metric."""
    rows = table["rows"]
    unit = table.get("metric_unit") or table["metric"]
    fig = figure(height=3.0)
    left, right = fig.subplots(1, 2)
    for i, r in enumerate(rows):
        colour = COLOURS[i % len(COLOURS)]
        left.scatter(r["speedup_b64"], r["metric_delta"], color=colour, s=40, label=r["variant"])
        right.scatter(r["size_mb"], r["latency_b1_ms"], color=colour, s=40)
    left.axhline(0, color="grey", linewidth=0.6)
    left.axvline(1, color="grey", linewidth=0.6)
    budget = table.get("budget")
    if budget is not None:
        edge = -budget if table.get("higher_is_better", True) else budget
        left.axhline(edge, color="tab:red", linestyle="--", linewidth=0.8, label="budget")
    left.set_xlabel("speed-up at batch 64 (x)", fontsize=8)
    left.set_ylabel(f"Δ {table['metric']} ({unit})", fontsize=8)
    left.legend(fontsize=8)
    tidy(left, "speed against accuracy")
    right.set_xlabel("size on disk (MB)", fontsize=8)
    right.set_ylabel("p50 latency, batch 1 (ms)", fontsize=8)
    tidy(right, "size against latency")
    return fig


def plot_bench(bench: dict[str, Any]) -> Figure | None:
    """p50 latency and throughput per batch size, a line per variant."""
    costs = [c for c in bench.get("costs", []) if c.get("latency")]
    if not costs:
        return None
    fig = figure(height=3.0)
    left, right = fig.subplots(1, 2)
    for i, c in enumerate(costs):
        batches = [p["batch"] for p in c["latency"]]
        colour = COLOURS[i % len(COLOURS)]
        left.plot(
            batches,
            [p["p50_ms"] for p in c["latency"]],
            marker="o",
            color=colour,
            label=c["variant"],
        )
        right.plot(batches, [p["throughput"] for p in c["latency"]], marker="o", color=colour)
    for ax, title in ((left, "p50 latency (ms)"), (right, "throughput (samples/s)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("batch size", fontsize=8)
        plain_log(ax)
        tidy(ax, title)
    left.legend(fontsize=8)
    return fig


# ---------------------------------------------------------------- tuning


def plot_trials(study: dict[str, Any]) -> Figure | None:
    """Every trial's value in order, pruned trials at their last report, the best so far."""
    trials = [t for t in study.get("trials", []) if t.get("value") is not None]
    if not trials:
        return None
    maximise = study.get("direction", "maximize").startswith("max")
    fig = figure(height=2.8)
    ax = fig.subplots()
    for state, marker, colour in (("complete", "o", "tab:blue"), ("pruned", "x", "#9a9a9a")):
        mine = [t for t in trials if t["state"] == state]
        if mine:
            ax.scatter(
                [t["number"] for t in mine],
                [t["value"] for t in mine],
                marker=marker,
                color=colour,
                s=18,
                label=state,
            )
    done = sorted((t for t in trials if t["state"] == "complete"), key=lambda t: t["number"])
    if done:
        values = np.array([t["value"] for t in done])
        best = np.maximum.accumulate(values) if maximise else np.minimum.accumulate(values)
        ax.step(
            [t["number"] for t in done], best, where="post", color="tab:green", label="best so far"
        )
    ax.set_xlabel("trial", fontsize=8)
    ax.set_ylabel(study.get("metric", "value"), fontsize=8)
    ax.legend(fontsize=8)
    tidy(ax, "trials")
    return fig


def plot_importance_study(importance: dict[str, Any]) -> Figure | None:
    """Share of the metric's variance each hyperparameter explains (fANOVA), with PED-ANOVA
    beside it."""
    fanova = importance.get("fanova") or {}
    if not fanova:
        return None
    names = sorted(fanova, key=lambda k: fanova[k])
    ped = importance.get("ped_anova") or {}
    fig = figure(height=max(1.8, 0.7 + 0.3 * len(names)))
    ax = fig.subplots()
    y = np.arange(len(names))
    ax.barh(y + 0.2, [fanova[n] for n in names], height=0.4, label="fANOVA", color="tab:blue")
    if ped:
        ax.barh(
            y - 0.2,
            [ped.get(n, 0.0) for n in names],
            height=0.4,
            label="PED-ANOVA",
            color="tab:orange",
        )
    ax.set_yticks(y, names, fontsize=7)
    ax.set_xlabel("importance (share)", fontsize=8)
    ax.legend(fontsize=8)
    tidy(ax, "hyperparameter importance")
    return fig


# ---------------------------------------------------------------- monitoring


def plot_timeline(windows: list[dict[str, Any]], report: dict[str, Any]) -> Figure | None:
    """Per window: each representation's largest drift effect over its threshold, and the
    label-free accuracy estimate beside the measured accuracy; alerts shaded."""
    if not windows:
        return None
    x = np.arange(len(windows))
    fig = figure(height=4.0)
    top, bottom = fig.subplots(2, 1, sharex=True)
    for i, (name, key) in enumerate(
        (
            ("raw features", "raw_drift"),
            ("embeddings", "embed_drift"),
            ("predictions", "output_drift"),
        )
    ):
        effects = [_top_effect(w.get(key)) for w in windows]
        if any(e is not None for e in effects):
            top.plot(x, [nan(e) for e in effects], marker="o", color=COLOURS[i], label=name)
    top.axhline(1.0, color="grey", linestyle="--", linewidth=0.8)
    for w, xi in zip(windows, x):
        if w.get("alerts"):
            top.axvspan(xi - 0.5, xi + 0.5, color="tab:red", alpha=0.12, linewidth=0)
            bottom.axvspan(xi - 0.5, xi + 0.5, color="tab:red", alpha=0.12, linewidth=0)
    top.set_ylabel("effect / threshold", fontsize=8)
    if top.get_legend_handles_labels()[0]:
        top.legend(fontsize=8)
    tidy(top, f"served traffic, {report.get('settings', {}).get('window', '')} per window")
    bottom.plot(
        x,
        [nan(w.get("mean_confidence")) for w in windows],
        marker="o",
        label="estimated accuracy (mean confidence)",
    )
    if any(w.get("accuracy") is not None for w in windows):
        bottom.plot(
            x,
            [nan(w.get("accuracy")) for w in windows],
            marker="s",
            label="measured accuracy (feedback)",
        )
    if report.get("val_accuracy") is not None:
        bottom.axhline(
            report["val_accuracy"],
            color="grey",
            linestyle="--",
            linewidth=0.8,
            label="validation accuracy",
        )
    bottom.set_xlabel("window", fontsize=8)
    bottom.set_xticks(x, [str(w.get("index", i)) for i, w in enumerate(windows)], fontsize=7)
    bottom.legend(fontsize=8)
    tidy(bottom)
    return fig


def _top_effect(drift: dict[str, Any] | None) -> float | None:
    if not drift:
        return None
    ratios = [
        d["effect"] / d["threshold"]
        for d in drift.get("detectors", {}).values()
        if d.get("threshold")
    ]
    return max(ratios) if ratios else None
