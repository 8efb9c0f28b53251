"""The robustness check's pictures: accuracy against eps per attack, and per corruption."""

from __future__ import annotations

from typing import Any

from gradwise.artifacts import new_figure, write_png
from gradwise.training.adversarial import AttackBudget


def plot_curves(metrics: dict[str, Any], path: Any, budget: AttackBudget, reference: float) -> None:
    fig = new_figure(6.4, 4.0)
    ax = fig.add_subplot()
    colours = {"linf": "tab:blue", "l2": "tab:orange"}
    label = {"linf": "L-inf", "l2": "L2 (RMS per value)"}
    for norm, curves in metrics["curves"].items():
        for attack, values in curves.items():
            style = "-" if attack == "worst" else "--" if attack == "pgd" else ":"
            name = "worst of all" if attack == "worst" else attack.upper()
            ax.plot(
                metrics["eps"],
                values,
                style,
                color=colours[norm],
                marker="o",
                markersize=3,
                label=f"{label[norm]}: {name}",
            )
    ax.axvline(reference, color="grey", linewidth=0.8, linestyle="-.", label="reference eps")
    ax.set_xlabel(f"eps ({budget.unit_name})")
    ax.set_ylabel(metrics["metric"])
    ax.set_title(f"robustness on {metrics['n_samples']} test samples")
    ax.legend(fontsize=7)
    write_png(path, fig)


def plot_corruptions(rows: list[dict[str, Any]], clean: float, metric: str, path: Any) -> None:
    fig = new_figure(6.4, 4.0)
    ax = fig.add_subplot()
    names = list(dict.fromkeys(r["name"] for r in rows))
    for name in names:
        mine = [r for r in rows if r["name"] == name]
        ax.plot(
            range(1, len(mine) + 1),
            [r[metric] for r in mine],
            marker="o",
            label=f"{name} ({', '.join(format(r['severity'], 'g') for r in mine)})",
        )
    ax.axhline(clean, color="grey", linestyle=":", label="clean")
    ax.set_xlabel("severity (1 = mildest)")
    ax.set_ylabel(metric)
    ax.set_xticks(range(1, 1 + max(sum(r["name"] == n for r in rows) for n in names)))
    ax.legend(fontsize=7)
    write_png(path, fig)
