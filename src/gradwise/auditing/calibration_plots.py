"""The calibration check's picture: the reliability diagram of each set of probabilities."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from gradwise.artifacts import new_figure, write_png

if TYPE_CHECKING:
    from matplotlib.axes import Axes

Bins = tuple[np.ndarray, np.ndarray, np.ndarray]  # per bin: mean confidence, accuracy, count


def plot_reliability(path: Any, panels: list[tuple[str, Bins]], n_bins: int) -> None:
    """One reliability diagram per panel, side by side: (title, equal-width bins)."""
    fig = new_figure(4.2 * len(panels), 5.0)
    axes = fig.subplots(2, len(panels), sharex=True, height_ratios=[3, 1], squeeze=False)
    for i, (title, (conf, acc, counts)) in enumerate(panels):
        _draw_bins(axes[0, i], axes[1, i], conf, acc, counts, n_bins)
        axes[0, i].set_title(title)
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
