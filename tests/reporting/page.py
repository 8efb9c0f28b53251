"""Reading a report page in tests: its sections, images and text, with the stdlib parser."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from PIL import Image


@dataclass
class Page:
    sections: list[str] = field(default_factory=list)  # data-section ids, in order
    missing: dict[str, str] = field(default_factory=dict)  # section id -> its "no data" text
    images: list[dict[str, str]] = field(default_factory=list)
    links: list[str] = field(default_factory=list)  # every href
    external: list[str] = field(default_factory=list)  # src/href that would need a network
    text: str = ""
    attrs: dict[str, dict[str, str]] = field(default_factory=dict)  # tag name -> last attrs


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.page = Page()
        self._missing: str | None = None
        self._chunks: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.page.attrs[tag] = a
        if "data-section" in a:
            self.page.sections.append(a["data-section"])
        if "data-missing" in a:
            self._missing = a["data-missing"]
            self.page.missing[self._missing] = ""
        if tag == "img":
            self.page.images.append(a)
        for key in ("src", "href"):
            value = a.get(key)
            if value is None:
                continue
            if key == "href":
                self.page.links.append(value)
            if not value.startswith(("data:", "#")):
                self.page.external.append(value)
        if tag in ("link", "iframe", "object", "embed"):
            self.page.external.append(f"<{tag}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "p":
            self._missing = None

    def handle_data(self, data: str) -> None:
        self._chunks.append(data)
        if self._missing is not None:
            self.page.missing[self._missing] += data


def read_page(path: Path | str) -> Page:
    parser = _Parser()
    parser.feed(Path(path).read_text(encoding="utf-8"))
    parser.page.text = html.unescape(" ".join(" ".join(parser._chunks).split()))
    return parser.page


def png_of(uri: str) -> Image.Image:
    """The image a data URI holds (fails on anything but a decodable PNG)."""
    head, _, data = uri.partition(",")
    assert head == "data:image/png;base64", head
    image = Image.open(io.BytesIO(base64.b64decode(data)))
    image.load()
    assert image.format == "PNG"
    return image
