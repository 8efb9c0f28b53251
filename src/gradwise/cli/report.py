"""The report verb: one self-contained HTML page of a run's whole story, or a document for
regulated use (model card, EU AI Act Annex IV, SR 11-7) filled from the run's files."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gradwise.cli.audit import VERDICT_EXIT_CODE, FailOnOpt, verdict_reached
from gradwise.cli.console import JsonOpt, RunArg, SetOpt, handles_errors, out_console, verb_changes

if TYPE_CHECKING:
    from gradwise.reporting import Report
    from gradwise.reporting.documents import Document, DocumentTemplate

DECISION_STYLE = {"ship": "bold green", "ship with care": "bold yellow", "do not ship": "bold red"}
DECISION_LEVEL = {"ship": "pass", "ship with care": "warn", "do not ship": "fail"}
"""--fail-on reads the decision as a verdict: ship with care is warn, do not ship is fail."""


class Template(StrEnum):
    page = "page"
    model_card = "model-card"
    annex_iv = "annex-iv"
    sr11_7 = "sr11-7"


DOCUMENTS: dict[Template, DocumentTemplate] = {
    Template.model_card: "model-card",
    Template.annex_iv: "annex-iv",
    Template.sr11_7: "sr11-7",
}


@handles_errors
def report(
    run_dir: RunArg,
    tune: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="a tuning study's folder (gradwise tune --out DIR); default: the study the "
            "run lies inside, if any",
        ),
    ] = None,
    compare: Annotated[
        Path | None,
        typer.Option(
            metavar="DIR",
            help="a comparison's folder (gradwise compare --out DIR) whose seeds give the "
            "noise; default: the comparison the run lies inside, if any",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", help="where to write (default RUN/report.html or RUN/TEMPLATE.html)"
        ),
    ] = None,
    template: Annotated[
        Template,
        typer.Option(
            help="page: the report; model-card, annex-iv, sr11-7: a document for regulated "
            "use, every item filled from the run, the context file, or marked as needing a "
            "person"
        ),
    ] = Template.page,
    context: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE.yaml",
            help="the answers only a person knows, as item id: text (see docs/guides/"
            "documents.md for the ids); shown as given by the user",
        ),
    ] = None,
    pdf: Annotated[
        bool, typer.Option(help="also print to PDF beside the HTML with headless Chromium")
    ] = False,
    set_: SetOpt = None,
    fail_on: FailOnOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write one self-contained HTML page (plots embedded, no network needed) from the run's
    files: data, training, metrics, baseline, every audit check, explanations, cost, tuning
    and monitoring, with a ship / ship with care / do not ship decision on top.

    With --template, writes a model card, EU AI Act Annex IV or SR 11-7 document instead,
    with a coverage summary on top: items filled from evidence, given by the user
    (--context), still needing a person, and the checks never run.

    Exit codes: 0 written (whatever the decision, unless --fail-on); 2 bad input (or --pdf
    without Chromium); 4 the decision reached --fail-on (warn: ship with care or do not
    ship; fail: do not ship); 1 anything unexpected."""
    import gradwise
    from gradwise.errors import ConfigError

    changes = verb_changes("report", set_, tune=tune, compare=compare, context=context)
    if template is not Template.page:
        if fail_on is not None:
            raise ConfigError("--fail-on reads the page's decision; drop --template to use it.")
        document = gradwise.report(
            run_dir, out=out, template=DOCUMENTS[template], pdf=pdf, **changes
        )
        _print_document(document, as_json)
        return
    if context is not None:
        raise ConfigError(
            "--context fills a document's items; add --template model-card|annex-iv|sr11-7."
        )
    result = gradwise.report(run_dir, out=out, pdf=pdf, **changes)
    decision = result.decision
    if as_json:
        import json

        out_console.print_json(
            json.dumps(
                {
                    "path": str(result.path),
                    "decision": decision.decision,
                    "label": decision.label,
                    "sentence": decision.sentence,
                    "reasons": [
                        {"text": r.text, "section": r.anchor, "severity": r.severity}
                        for r in decision.reasons
                    ],
                    "sections": [
                        {"id": s, "title": t, "has_data": present}
                        for s, t, present in result.sections
                    ],
                    "notes": list(result.notes),
                }
            )
        )
    else:
        _print(run_dir, result)
        if pdf:
            out_console.print(f"wrote {result.path.with_suffix('.pdf')}", highlight=False)
    if verdict_reached(DECISION_LEVEL[decision.decision], fail_on):
        raise typer.Exit(VERDICT_EXIT_CODE)


def _print(run_dir: Path, result: Report) -> None:
    decision = result.decision
    style = DECISION_STYLE[decision.decision]
    out_console.print(f"report of {run_dir}: [{style}]{decision.label}[/]", highlight=False)
    for r in decision.reasons:
        out_console.print(f"- {r.text} (#{r.anchor})", markup=False, highlight=False)
    out_console.print(decision.sentence, markup=False, highlight=False)
    if result.missing:
        out_console.print(
            f"sections without data yet (the page names the command for each): "
            f"{', '.join(result.missing)}",
            highlight=False,
        )
    for note in result.notes:
        out_console.print(f"note: {note}", markup=False, highlight=False)
    size = result.path.stat().st_size / 2**20
    out_console.print(
        f"wrote {result.path} ({size:.1f} MB, self-contained: open it in any browser)",
        highlight=False,
        soft_wrap=True,
    )


def _print_document(document: Document, as_json: bool) -> None:
    if as_json:
        import json

        out_console.print_json(json.dumps(document.to_dict()))
        return
    counts = document.counts
    out_console.print(
        f"{document.title} of {document.run}: {counts['evidence']} items from evidence, "
        f"{counts['context']} given by the user, {counts['person']} need a person",
        markup=False,
        highlight=False,
    )
    for e in document.entries:
        if e.status == "person":
            out_console.print(
                f"- needs a person: {e.title} ({e.id})", markup=False, highlight=False
            )
    for name, command in document.never_run:
        out_console.print(f"never run: {name}: {command}", markup=False, highlight=False)
    for path in (document.path, document.pdf):
        if path is not None:
            out_console.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)
