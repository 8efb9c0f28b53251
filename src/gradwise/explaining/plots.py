"""The pictures of an explanation, each a PNG in RUN/explain written through the artifacts
writer: attributions per row, global importance, attention maps, activation statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor

from gradwise.artifacts import new_figure, write_png
from gradwise.explaining.base import FeatureImportance, LayerActivity, RowExplanation


def image_attributions(
    path: Path, images: np.ndarray, heat: np.ndarray, rows: tuple[RowExplanation, ...]
) -> None:
    """Per explained row: the input image and its attribution heat map (summed over channels,
    red pushes towards the explained output, blue away)."""
    n = len(images)
    fig = new_figure(4.2, 2.0 * n + 0.3)
    for i in range(n):
        ax = fig.add_subplot(n, 2, 2 * i + 1)
        img = images[i]
        lo, hi = float(img.min()), float(img.max())
        shown = (img.transpose(1, 2, 0) - lo) / max(hi - lo, 1e-8)
        ax.imshow(shown[..., 0] if shown.shape[-1] == 1 else shown, cmap="gray")
        ax.set_title(f"row {rows[i].row}: predicted {rows[i].prediction}", fontsize=8)
        ax.axis("off")
        ax = fig.add_subplot(n, 2, 2 * i + 2)
        bound = float(np.abs(heat[i]).max()) or 1.0
        ax.imshow(heat[i], cmap="bwr", vmin=-bound, vmax=bound)
        ax.set_title(rows[i].explained, fontsize=8)
        ax.axis("off")
    write_png(path, fig)


def bars(path: Path, rows: tuple[RowExplanation, ...], title: str) -> None:
    """Per explained row, a bar chart of its largest attributions."""
    n = len(rows)
    fig = new_figure(6.4, 1.9 * n + 0.3)
    for i, r in enumerate(rows):
        ax = fig.add_subplot(n, 1, i + 1)
        names = [name for name, _ in r.top][::-1]
        values = [v for _, v in r.top][::-1]
        ax.barh(names, values, color=["tab:red" if v > 0 else "tab:blue" for v in values])
        ax.set_title(f"row {r.row}: predicted {r.prediction} ({r.explained})", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.suptitle(title, fontsize=9)
    write_png(path, fig)


def importance(path: Path, imp: FeatureImportance, method: str) -> None:
    order = np.argsort(imp.mean_abs_attribution)[::-1][:20][::-1]
    names = [imp.features[i] for i in order]
    fig = new_figure(8.0, 0.3 * len(order) + 1.2)
    ax = fig.add_subplot(1, 2, 1)
    ax.barh(names, [imp.mean_abs_attribution[i] for i in order], color="tab:purple")
    ax.set_title(f"mean |{method}| over {imp.n_rows} test rows", fontsize=8)
    ax.tick_params(labelsize=7)
    ax = fig.add_subplot(1, 2, 2)
    ax.barh(
        names,
        [imp.permutation[i] for i in order],
        xerr=[imp.permutation_std[i] for i in order],
        color="tab:green",
    )
    ax.set_title(
        f"permutation: drop of {imp.score} ({imp.n_permutation_rows} rows, {imp.n_repeats} "
        "shuffles)",
        fontsize=8,
    )
    ax.tick_params(labelsize=7, labelleft=False)
    write_png(path, fig)


def attention(path: Path, maps: dict[str, Tensor]) -> None:
    """Layers as rows, heads as columns: each head's attention, averaged over the rows."""
    layers = list(maps)
    n_head = max(w.shape[1] for w in maps.values())
    side = 1.6
    fig = new_figure(side * n_head + 0.5, side * len(layers) + 0.5)
    for i, name in enumerate(layers):
        mean = maps[name].mean(dim=0)  # (H, T, T)
        for h in range(mean.shape[0]):
            ax = fig.add_subplot(len(layers), n_head, i * n_head + h + 1)
            ax.imshow(mean[h].numpy(), cmap="viridis", vmin=0.0)
            ax.set_xticks([])
            ax.set_yticks([])
            if h == 0:
                ax.set_ylabel(name, fontsize=7)
            if i == 0:
                ax.set_title(f"head {h}", fontsize=7)
    fig.suptitle("attention (rows: queries, columns: keys)", fontsize=9)
    write_png(path, fig)


def activations(path: Path, layers: tuple[LayerActivity, ...]) -> None:
    """Per layer: the share of dead or saturated units, and the outputs' mean and std."""
    names = [a.layer for a in layers]
    y = np.arange(len(layers))
    fig = new_figure(8.0, 0.35 * len(layers) + 1.4)
    ax = fig.add_subplot(1, 2, 1)
    dead = [a.dead if a.dead is not None else 0.0 for a in layers]
    sat = [a.saturated if a.saturated is not None else 0.0 for a in layers]
    ax.barh(y - 0.2, dead, height=0.4, color="tab:red", label="dead units")
    ax.barh(y + 0.2, sat, height=0.4, color="tab:orange", label="saturated units")
    ax.set_yticks(y, names, fontsize=7)
    ax.set_xlim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("share of units", fontsize=8)
    ax = fig.add_subplot(1, 2, 2)
    ax.errorbar([a.mean for a in layers], y, xerr=[a.std for a in layers], fmt="o", capsize=3)
    ax.set_yticks(y, [""] * len(layers))
    ax.set_title("output mean ± std", fontsize=8)
    write_png(path, fig)
