"""Documents for regulated use: a model card, the EU AI Act's Annex IV and an SR 11-7 model
validation record, each filled from a run directory.

    gradwise report RUN --template model-card|annex-iv|sr11-7 [--context FILE.yaml] [--pdf]

A template is a list of sections, each a list of `Item`s (`document_items.py`). Every item is
filled from the run's files (quoting the file and the number), or from the user's context
file (shown as given by the user), or marked "needs a person" with what is missing and why it
matters. The page is a pure function of the run's files and the context: everything sorted,
no clock read, so a rebuild is byte-identical.
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
from gradwise.reporting.document_items import (
    BASELINE,
    CALIBRATION,
    DATA_QUALITY,
    DESIGN,
    DETAILS,
    ETHICS,
    EXPLAIN,
    FAIRNESS,
    GENERALISATION,
    HARDWARE,
    HISTORY,
    LIMITATIONS,
    LOGGING,
    METRIC_CHOICE,
    METRICS,
    MONITOR,
    OPTIMIZE,
    OUT_OF_SCOPE,
    OVERSIGHT,
    PROVENANCE,
    PURPOSE,
    ROBUSTNESS,
    SELECTIVE,
    SHIFT,
    SLICES,
    SPLITS,
    UNCERTAINTY,
    USERS,
    VERSIONS,
    Item,
    person,
)
from gradwise.reporting.evidence import Evidence

DocumentTemplate = Literal["model-card", "annex-iv", "sr11-7"]
Status = Literal["evidence", "context", "person"]
DOCUMENT_FILE = "document.html.j2"
CHROMIUMS = ("chromium", "chromium-browser", "google-chrome")

TEMPLATES: dict[str, tuple[str, tuple[tuple[str, tuple[Item, ...]], ...]]] = {
    "model-card": (
        "Model card (Mitchell et al. 2019)",
        (
            ("Model details", (DETAILS, VERSIONS, DESIGN)),
            ("Intended use", (PURPOSE, USERS, OUT_OF_SCOPE)),
            (
                "Factors",
                (
                    person(
                        "relevant_factors",
                        "Relevant factors (groups, instruments, environments)",
                        "which groups and conditions matter is domain knowledge",
                    ),
                    SLICES,
                ),
            ),
            ("Metrics", (METRIC_CHOICE, CALIBRATION, UNCERTAINTY)),
            ("Evaluation data", (SPLITS,)),
            ("Training data", (PROVENANCE, HISTORY)),
            (
                "Quantitative analyses",
                (METRICS, BASELINE, GENERALISATION, ROBUSTNESS, SHIFT, DATA_QUALITY, FAIRNESS),
            ),
            ("Ethical considerations", (ETHICS,)),
            ("Caveats and recommendations", (LIMITATIONS, SELECTIVE, EXPLAIN)),
        ),
    ),
    "annex-iv": (
        "EU AI Act, Annex IV: technical documentation",
        (
            (
                "1. General description of the AI system",
                (PURPOSE, USERS, DETAILS, VERSIONS, HARDWARE),
            ),
            (
                "2. Detailed description of the elements and the development process",
                (
                    DESIGN,
                    PROVENANCE,
                    SPLITS,
                    HISTORY,
                    METRICS,
                    BASELINE,
                    GENERALISATION,
                    CALIBRATION,
                    UNCERTAINTY,
                    DATA_QUALITY,
                    ROBUSTNESS,
                    SELECTIVE,
                    OVERSIGHT,
                    FAIRNESS,
                    SLICES,
                    EXPLAIN,
                    OPTIMIZE,
                ),
            ),
            ("3. Monitoring, functioning and control", (LIMITATIONS, SHIFT, LOGGING)),
            ("4. Appropriateness of the performance metrics", (METRIC_CHOICE,)),
            (
                "5. Risk management system (Article 9)",
                (
                    person(
                        "risk_management",
                        "Risk management system",
                        "the risks to health, safety and rights are identified by the provider",
                    ),
                ),
            ),
            (
                "6. Changes through the lifecycle",
                (
                    person(
                        "lifecycle_changes",
                        "Relevant changes made through the lifecycle",
                        "retraining and version history are the provider's record",
                    ),
                ),
            ),
            (
                "7. Harmonised standards applied",
                (
                    person(
                        "standards",
                        "Harmonised standards or other specifications applied",
                        "which standards were followed is the provider's choice",
                    ),
                ),
            ),
            (
                "8. EU declaration of conformity",
                (
                    person(
                        "declaration_of_conformity",
                        "A copy of the EU declaration of conformity",
                        "only the provider can declare conformity",
                    ),
                ),
            ),
            (
                "9. Post-market monitoring plan",
                (
                    MONITOR,
                    person(
                        "post_market_plan",
                        "The post-market monitoring plan (Article 72)",
                        "who watches the alerts and what they do is an organisational plan",
                    ),
                ),
            ),
        ),
    ),
    "sr11-7": (
        "SR 11-7: model validation record",
        (
            ("Model purpose and use", (PURPOSE, USERS, DETAILS)),
            ("Conceptual soundness", (DESIGN, HISTORY, GENERALISATION, EXPLAIN)),
            ("Data", (PROVENANCE, SPLITS, DATA_QUALITY)),
            (
                "Outcomes analysis",
                (METRICS, BASELINE, CALIBRATION, UNCERTAINTY, SLICES, FAIRNESS),
            ),
            ("Sensitivity analysis", (ROBUSTNESS, OPTIMIZE)),
            ("Ongoing monitoring", (MONITOR, SHIFT, LOGGING)),
            ("Limitations and compensating controls", (LIMITATIONS, SELECTIVE, OVERSIGHT)),
            (
                "Effective challenge",
                (
                    person(
                        "effective_challenge",
                        "Independent review and effective challenge",
                        "SR 11-7 asks for critical review by qualified people independent of "
                        "the builders",
                    ),
                ),
            ),
        ),
    ),
}


def item_ids() -> tuple[str, ...]:
    """Every id a context file may answer, over all templates, sorted."""
    return tuple(
        sorted({i.id for _, sections in TEMPLATES.values() for _, items in sections for i in items})
    )


@dataclass(frozen=True)
class Entry:
    """One item as the document shows it.

    Attributes:
        id, title: the item's. status: evidence (from the run), context (given by the user)
            or person (needs a person). text: the answer, or what is missing and why.
        source: the file it came from, relative to the run; number: the number quoted.
        given: the user's answer from the context file, shown beside any evidence.
        command: the command that would fill it from the run, when one would.
    """

    id: str
    title: str
    status: Status
    text: str
    source: str | None = None
    number: str | None = None
    given: str | None = None
    command: str | None = None


@dataclass(frozen=True)
class Document:
    """A filled template: its sections of entries, and the checks never run.

    Attributes:
        template, title: which document. run: the run directory as named.
        sections: (title, entries) in the template's order.
        never_run: (check or verb, the command that runs it), in the audit's order.
        path: the HTML written; pdf: the PDF, when --pdf.
    """

    template: str
    title: str
    run: str
    sections: tuple[tuple[str, tuple[Entry, ...]], ...]
    never_run: tuple[tuple[str, str], ...]
    path: Path | None = None
    pdf: Path | None = None

    @property
    def entries(self) -> tuple[Entry, ...]:
        return tuple(e for _, entries in self.sections for e in entries)

    @property
    def counts(self) -> dict[str, int]:
        """How many items are filled from evidence, from the context, or need a person."""
        statuses = [e.status for e in self.entries]
        return {s: statuses.count(s) for s in ("evidence", "context", "person")}

    def to_dict(self) -> dict[str, Any]:
        """The same items as the page, for other tools (`--json`)."""
        return {
            "template": self.template,
            "title": self.title,
            "run": self.run,
            "path": None if self.path is None else str(self.path),
            "pdf": None if self.pdf is None else str(self.pdf),
            "counts": self.counts,
            "never_run": [{"name": n, "command": c} for n, c in self.never_run],
            "sections": [
                {"title": t, "items": [asdict(e) for e in entries]} for t, entries in self.sections
            ],
        }


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


def build_document(ev: Evidence, template: DocumentTemplate, context: dict[str, str]) -> Document:
    """Fill every item of `template` from the run and the context."""
    title, sections = TEMPLATES[template]
    filled = tuple((name, tuple(_entry(ev, i, context) for i in items)) for name, items in sections)
    return Document(template, title, str(ev.path), filled, _never_run(ev))


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


def _entry(ev: Evidence, item: Item, context: dict[str, str]) -> Entry:
    given = context.get(item.id)
    found = item.fill(ev) if item.fill is not None else None
    command = None if item.runs is None or found is not None else _command(ev, item.runs)
    if found is not None:
        return Entry(item.id, item.title, "evidence", found.text, found.source, found.number, given)
    if given is not None:
        return Entry(item.id, item.title, "context", given, given=given, command=command)
    why = item.needs if command is None else f"not measured yet ({command}); {item.needs}"
    return Entry(item.id, item.title, "person", why, command=command)


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
    """The self-contained HTML page; links to the run's files are relative to `out`."""
    from gradwise.reporting.render import environment

    run, folder = Path(document.run).resolve(), out.resolve().parent

    def href(source: str) -> str:
        return Path(os.path.relpath(run / source, folder)).as_posix()

    page = environment().get_template(DOCUMENT_FILE)
    return page.render(doc=document, counts=document.counts, href=href)


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
    document = build_document(read_evidence(run_dir), template, answers)
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
