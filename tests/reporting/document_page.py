"""Reading a regulated document back in tests: its items, points, plots and quoted numbers
(from the written HTML or from a browser's DOM dump), and each quote checked against the
file it names."""

from __future__ import annotations

import html
import json
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml


@dataclass
class DocumentPage:
    items: dict[str, str] = field(default_factory=dict)  # item id -> status
    needs: list[str] = field(default_factory=list)  # ids the summary lists as needing a person
    points: list[str] = field(default_factory=list)  # "1(a)", ... in order
    numbers: dict[str, str] = field(default_factory=dict)  # item id -> "key = value"
    sources: dict[str, str] = field(default_factory=dict)  # item id -> the file it names
    plots: list[str] = field(default_factory=list)  # item ids with an embedded plot
    heights: dict[str, int] = field(default_factory=dict)  # section -> height (DOM dumps)
    body: dict[str, str] = field(default_factory=dict)  # the body's attributes


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.page = DocumentPage()
        self._number: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        page = self.page
        if tag == "body":
            page.body = a
        if "data-item" in a:
            page.items[a["data-item"]] = a["data-status"]
        if "data-needs" in a:
            page.needs.append(a["data-needs"])
        if "data-point" in a:
            page.points.append(a["data-point"])
        if "data-plot" in a:
            page.plots.append(a["data-plot"])
        if "data-section" in a and "data-height" in a:
            page.heights[a["data-section"]] = int(a["data-height"])
        if "data-source" in a:
            page.sources[list(page.items)[-1]] = a["data-source"]
        if "data-number" in a:
            self._number = a["data-number"]
            page.numbers[self._number] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "code":
            self._number = None

    def handle_data(self, data: str) -> None:
        if self._number is not None:
            self.page.numbers[self._number] += data


def read_document(text: str) -> DocumentPage:
    """The document's parts, from its HTML (as written, or as a browser dumped it)."""
    parser = _Parser()
    parser.feed(text)
    parser.page.numbers = {k: html.unescape(v) for k, v in parser.page.numbers.items()}
    return parser.page


def _value(data: Any, path: str) -> Any:
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        data = data[int(part[1:-1])] if part.startswith("[") else data[part]
    return data


def assert_quote_matches_file(run: Path, source: str, quote: str) -> None:
    """The quote `key = value` names a value the file holds (`len(key)`: a list's length;
    a folder: how many variants it holds); numbers agree to the 4 digits quoted."""
    key, _, shown = quote.partition(" = ")
    file = run / source
    assert file.exists(), source
    if file.is_dir():
        assert key == "variants"
        assert int(shown) == sum(1 for p in file.iterdir() if (p / "model.json").is_file())
        return
    text = file.read_text(encoding="utf-8")
    data = yaml.safe_load(text) if file.suffix == ".yaml" else json.loads(text)
    counted = key.startswith("len(")
    value = _value(data, key[4:-1] if counted else key)
    value = len(value) if counted else value
    if isinstance(value, int | float) and not isinstance(value, bool):
        assert float(shown) == pytest.approx(value, rel=1e-3, abs=1e-12), (source, quote)
    else:
        assert shown == str(value), (source, quote)
