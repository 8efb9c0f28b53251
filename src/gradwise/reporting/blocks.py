"""What a report section is made of; the template renders each block by its `kind`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Facts:
    """Label: value lines."""

    rows: tuple[tuple[str, str], ...]
    kind: Literal["facts"] = "facts"


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    kind: Literal["table"] = "table"


@dataclass(frozen=True)
class Plot:
    """An embedded PNG (`uri` is a data URI) with what it shows."""

    uri: str
    alt: str
    caption: str = ""
    kind: Literal["plot"] = "plot"


@dataclass(frozen=True)
class Text:
    """A paragraph; `note` renders it as an aside (a method note, a caveat)."""

    text: str
    note: bool = False
    kind: Literal["text"] = "text"


@dataclass(frozen=True)
class Verdict:
    """An audit check's verdict, headline and plain sentence."""

    verdict: str
    headline: str
    summary: str
    wall_s: float
    kind: Literal["verdict"] = "verdict"


@dataclass(frozen=True)
class Settings:
    """Every setting a measurement used, folded away under `title`."""

    items: tuple[tuple[str, str], ...]
    title: str = "settings"
    kind: Literal["settings"] = "settings"


Block = Facts | Table | Plot | Text | Verdict | Settings


@dataclass(frozen=True)
class Section:
    """One section of the report (or a subsection of one).

    Attributes:
        id: the HTML anchor the summary's reasons link to.
        missing: where there is no data yet: what is missing and the command that makes it.
        verdict: an audit check's verdict, shown beside the title.
    """

    id: str
    title: str
    blocks: tuple[Block, ...] = ()
    missing: str | None = None
    verdict: str | None = None
    subsections: tuple[Section, ...] = field(default_factory=tuple)


def num(value: Any, digits: int = 4) -> str:
    """A number as a person reads it: 4 significant digits, thousands separated."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
            return f"{value:.{digits - 1}e}"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def flat(d: dict[str, Any], prefix: str = "", limit: int = 12) -> tuple[tuple[str, str], ...]:
    """A nested mapping as dotted key: value lines (long lists cut to `limit` items)."""
    out: list[tuple[str, str]] = []
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.extend(flat(value, name + ".", limit))
        elif isinstance(value, list | tuple):
            items = [num(v) if not isinstance(v, dict | list) else str(v) for v in value[:limit]]
            more = f", … ({len(value)} in all)" if len(value) > limit else ""
            out.append((name, "[" + ", ".join(items) + more + "]"))
        else:
            out.append((name, num(value)))
    return tuple(out)
