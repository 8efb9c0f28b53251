"""Documents for regulated use: a model card, the EU AI Act's Annex IV and an SR 11-7 model
validation record, each filled from a run directory.

    gradwise report RUN --template model-card|annex-iv|sr11-7 [--context FILE.yaml] [--pdf]

A template is a list of sections of points (`document_templates.py`; Annex IV's are its own
numbered points and lettered sub-points), each point a list of `Item`s (`document_items.py`).
Every item is filled from the run's files (quoting the file and the number, with the plot that
file holds embedded as a PNG data URI), or from the user's context file (shown as given by
the user), or marked "needs a person" with what is missing and why it matters. The page is a
pure function of the run's files and the context: everything sorted, no clock read, so a
rebuild is byte-identical.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from gradwise.auditing import CHECKS
from gradwise.errors import ConfigError, GradwiseError
from gradwise.reporting.document_items import Item
from gradwise.reporting.document_templates import TEMPLATES, Point, item_ids
from gradwise.reporting.evidence import Evidence

DocumentTemplate = Literal["model-card", "annex-iv", "sr11-7"]
Status = Literal["evidence", "context", "person"]
DOCUMENT_FILE = "document.html.j2"
CHROMIUMS = ("chromium", "chromium-browser", "google-chrome")
PLOT_ERRORS = (KeyError, IndexError, TypeError, ValueError)
"""What a JSON this version cannot draw raises; the item keeps its text and says so."""


@dataclass(frozen=True)
class Entry:
    """One item as the document shows it.

    Attributes:
        id, title: the item's. status: evidence (from the run), context (given by the user)
            or person (needs a person). text: the answer, or what is missing and why.
        source: the file it came from: relative to the run for evidence, the context file
            as named for context. number: the key and value quoted from the run's file.
        given: the user's answer from the context file, shown beside any evidence.
        command: the command that would fill it from the run, when one would.
        plot: the plot its file holds, as a PNG data URI; plot_note: why it was not drawn.
    """

    id: str
    title: str
    status: Status
    text: str
    source: str | None = None
    number: str | None = None
    given: str | None = None
    command: str | None = None
    plot: str | None = None
    plot_note: str | None = None


@dataclass(frozen=True)
class Part:
    """One point of the document as filled: its number, what it asks, and its entries."""

    ref: str
    asks: str
    entries: tuple[Entry, ...]


@dataclass(frozen=True)
class Document:
    """A filled template: its sections of points, and the checks never run.

    Attributes:
        template, title: which document. run: the run directory as named.
        sections: (title, parts) in the template's order.
        never_run: (check or verb, the command that runs it), in the audit's order.
        context: the context file as named, if one was given.
        path: the HTML written; pdf: the PDF, when --pdf.
    """

    template: str
    title: str
    run: str
    sections: tuple[tuple[str, tuple[Part, ...]], ...]
    never_run: tuple[tuple[str, str], ...]
    context: str | None = None
    path: Path | None = None
    pdf: Path | None = None

    @property
    def entries(self) -> tuple[Entry, ...]:
        return tuple(e for _, parts in self.sections for p in parts for e in p.entries)

    @property
    def counts(self) -> dict[str, int]:
        """How many items are filled from evidence, from the context, or need a person."""
        statuses = [e.status for e in self.entries]
        return {s: statuses.count(s) for s in ("evidence", "context", "person")}

    @property
    def filled_share(self) -> float:
        """The share of items filled from evidence or the context, in [0, 1]."""
        counts = self.counts
        return (counts["evidence"] + counts["context"]) / max(1, sum(counts.values()))

    def to_dict(self) -> dict[str, Any]:
        """The same items as the page, for other tools (`--json`); a plot is named by
        whether it was drawn, not embedded."""
        return {
            "template": self.template,
            "title": self.title,
            "run": self.run,
            "context": self.context,
            "path": None if self.path is None else str(self.path),
            "pdf": None if self.pdf is None else str(self.pdf),
            "counts": self.counts,
            "never_run": [{"name": n, "command": c} for n, c in self.never_run],
            "sections": [
                {
                    "title": title,
                    "points": [
                        {"ref": p.ref, "asks": p.asks, "items": [_item(e) for e in p.entries]}
                        for p in parts
                    ],
                }
                for title, parts in self.sections
            ],
        }


def _item(entry: Entry) -> dict[str, Any]:
    return {**asdict(entry), "plot": entry.plot is not None}


def read_context(path: str | Path | None) -> dict[str, str]:
    """The user's answers: a YAML mapping of item id -> text.

    Raises:
        ConfigError: the file is missing, not a mapping of text, or names an unknown id.
    """
    if path is None:
        return {}
    file = Path(path)
    if not file.is_file():
        raise ConfigError(
            f"--context {file}: no such file; give a YAML mapping of item id -> text."
        )
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"--context {file} is not valid YAML ({exc}).") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"--context {file} must be a mapping of item id -> text.")
    unknown = sorted(str(k) for k in raw if k not in item_ids())
    if unknown:
        raise ConfigError(
            f"--context {file}: unknown item id(s) {', '.join(unknown)}; valid ids: "
            f"{', '.join(item_ids())}."
        )
    return {str(k): str(v).strip() for k, v in raw.items() if v is not None and str(v).strip()}


def build_document(
    ev: Evidence,
    template: DocumentTemplate,
    context: dict[str, str],
    context_file: str | None = None,
) -> Document:
    """Fill every item of `template` from the run and the context (read from `context_file`)."""
    chosen = TEMPLATES[template]
    sections = tuple(
        (title, tuple(_part(ev, p, context, context_file) for p in points))
        for title, points in chosen.sections
    )
    return Document(template, chosen.title, str(ev.path), sections, _never_run(ev), context_file)


def _part(ev: Evidence, point: Point, context: dict[str, str], file: str | None) -> Part:
    return Part(point.ref, point.asks, tuple(_entry(ev, i, context, file) for i in point.items))


def _command(ev: Evidence, runs: str) -> str:
    run = ev.path
    match runs:
        case "explain":
            return f"gradwise explain {run}"
        case "optimize":
            return f"gradwise optimize {run} --quantize int8 --onnx"
        case "bench":
            return f"gradwise bench {run} --variants all"
        case "monitor":
            return f"gradwise serve {run} --store URL, then gradwise monitor {run} --store URL"
        case _:
            return f"gradwise audit {run} --checks {runs}"


def _entry(ev: Evidence, item: Item, context: dict[str, str], file: str | None) -> Entry:
    given = context.get(item.id)
    found = item.fill(ev) if item.fill is not None else None
    command = None if item.runs is None or found is not None else _command(ev, item.runs)
    if found is not None:
        plot, note = _plot(ev, item)
        return Entry(
            item.id,
            item.title,
            "evidence",
            found.text,
            found.source,
            found.number,
            given,
            plot=plot,
            plot_note=note,
        )
    if given is not None:
        return Entry(item.id, item.title, "context", given, file, given=given, command=command)
    why = item.needs if command is None else f"not measured yet ({command}); {item.needs}"
    return Entry(item.id, item.title, "person", why, command=command)


def _plot(ev: Evidence, item: Item) -> tuple[str | None, str | None]:
    """The item's plot as a data URI; a JSON this version cannot draw gives a note instead
    of no document."""
    from gradwise.reporting.figures import data_uri

    if item.draw is None:
        return None, None
    try:
        fig = item.draw(ev)
    except PLOT_ERRORS as exc:
        return None, f"plot not drawn ({type(exc).__name__}: {exc})"
    return (None if fig is None else data_uri(fig)), None


def _never_run(ev: Evidence) -> tuple[tuple[str, str], ...]:
    present = {
        "explain": ev.explain is not None,
        "optimize": ev.tradeoff is not None or bool(ev.variants),
        "bench": ev.bench is not None,
        "monitor": ev.monitor is not None,
    }
    missing = [c for c in CHECKS if c not in ev.audit]
    missing += [verb for verb, done in present.items() if not done]
    return tuple((name, _command(ev, name)) for name in missing)


def render_document(document: Document, out: Path) -> str:
    """The self-contained HTML page; links to the run's files and to the context file are
    relative to `out`."""
    from gradwise.reporting.render import environment

    run, folder = Path(document.run).resolve(), out.resolve().parent

    def href(entry: Entry) -> str:
        assert entry.source is not None  # only filled entries link
        file = run / entry.source if entry.status == "evidence" else Path(entry.source).resolve()
        return Path(os.path.relpath(file, folder)).as_posix()

    page = environment().get_template(DOCUMENT_FILE)
    share = f"{document.filled_share:.0%}"
    return page.render(doc=document, counts=document.counts, share=share, href=href)


def write_document(
    run_dir: str | Path,
    template: DocumentTemplate,
    context: str | Path | None = None,
    out: str | Path | None = None,
    pdf: bool = False,
) -> Document:
    """Fill `template` from the run and the context file, and write it (default
    RUN/<template>.html; with `pdf`, the PDF beside it).

    Raises:
        NotTrainedError: no finished run there. ConfigError: a bad context file.
        DataError: a damaged file in the run. GradwiseError: --pdf without Chromium.
    """
    from gradwise.artifacts import atomic_write_text
    from gradwise.reporting.evidence import read_evidence

    answers = read_context(context)
    given = None if context is None else str(context)
    document = build_document(read_evidence(run_dir), template, answers, given)
    path = Path(out) if out is not None else Path(run_dir) / f"{template}.html"
    atomic_write_text(path, render_document(document, path))
    printed = print_pdf(path) if pdf else None
    return replace(document, path=path, pdf=printed)


def print_pdf(html: Path) -> Path:
    """Print the page to PDF beside it with headless Chromium.

    Raises:
        GradwiseError: no Chromium is installed, or it failed.
    """
    binary = next((found for name in CHROMIUMS if (found := shutil.which(name))), None)
    if binary is None:
        raise GradwiseError(
            "--pdf needs headless Chromium and none is on PATH (looked for "
            f"{', '.join(CHROMIUMS)}); install it (apt-get install chromium) or print the "
            f"HTML from a browser: {html}."
        )
    pdf = html.with_suffix(".pdf")
    with tempfile.TemporaryDirectory() as profile:
        try:
            done = _chromium(binary, profile, pdf, html)
        except subprocess.TimeoutExpired:
            raise GradwiseError(
                f"Chromium did not print {html} within {PDF_TIMEOUT_S} s; print the HTML from a "
                "browser instead."
            ) from None
    if done.returncode != 0 or not pdf.is_file():
        raise GradwiseError(
            f"Chromium could not print {html} (exit {done.returncode}): {done.stderr[-300:]}"
        )
    return pdf


PDF_TIMEOUT_S = 180


def _chromium(binary: str, profile: str, pdf: Path, html: Path) -> Any:
    """One headless Chromium call that prints `html` to `pdf` in a fresh profile."""
    return subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-pdf-header-footer",
            f"--user-data-dir={profile}",
            f"--print-to-pdf={pdf}",
            html.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=PDF_TIMEOUT_S,
        check=False,
    )
