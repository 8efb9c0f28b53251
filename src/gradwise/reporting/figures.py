"""Matplotlib figures as base64 PNG data URIs, so the report is one file that needs nothing else.

Every figure is drawn through `gradwise.artifacts.new_figure` (no pyplot, no backend set).
"""

from __future__ import annotations

import base64
import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 100
WIDE = 8.6  # inches at 100 dpi: the report's content column (860 px), about A4's text width
COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def data_uri(figure: Figure) -> str:
    """The figure as a `data:image/png;base64,...` URI."""
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=DPI)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def figure(width: float = WIDE, height: float = 3.4) -> Figure:
    from gradwise.artifacts import new_figure

    fig = new_figure(width, height)
    fig.set_facecolor("white")
    return fig


def tidy(ax: Axes, title: str | None = None) -> None:
    """Light grid, no top/right spines, a small title."""
    ax.grid(True, color="#e5e5e5", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=8)


def nan(value: Any) -> float:
    """A JSON number, or NaN for null (matplotlib leaves a gap)."""
    return float("nan") if value is None else float(value)


def plain_log(ax: Axes) -> None:
    """Log axes labelled 0.01, 0.1, 1 ... rather than powers of ten; no minor labels."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() == "log":
            axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            axis.set_minor_formatter(NullFormatter())
