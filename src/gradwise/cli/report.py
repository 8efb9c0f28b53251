"""The report verb: one self-contained HTML page of a run's whole story."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gradwise.cli.audit import VERDICT_EXIT_CODE, FailOnOpt, verdict_reached
from gradwise.cli.console import JsonOpt, RunArg, SetOpt, handles_errors, out_console, verb_changes

if TYPE_CHECKING:
    from gradwise.reporting import Report

DECISION_STYLE = {"ship": "bold green", "ship with care": "bold yellow", "do not ship": "bold red"}
DECISION_LEVEL = {"ship": "pass", "ship with care": "warn", "do not ship": "fail"}
"""--fail-on reads the decision as a verdict: ship with care is warn, do not ship is fail."""


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
        Path | None, typer.Option(metavar="FILE", help="where to write (default RUN/report.html)")
    ] = None,
    set_: SetOpt = None,
    fail_on: FailOnOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write one self-contained HTML page (plots embedded, no network needed) from the run's
    files: data, training, metrics, baseline, every audit check, explanations, cost, tuning
    and monitoring, with a ship / ship with care / do not ship decision on top.

    Exit codes: 0 written (whatever the decision, unless --fail-on); 2 bad input; 4 the
    decision reached --fail-on (warn: ship with care or do not ship; fail: do not ship); 1
    anything unexpected."""
    import gradwise

    changes = verb_changes("report", set_, tune=tune, compare=compare)
    result = gradwise.report(run_dir, out=out, **changes)
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
