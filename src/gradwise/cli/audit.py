"""The audit verb: measured evidence about a trained run, as a verdict table."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from gradwise.cli.console import (
    AddressOpt,
    BackendOpt,
    JsonOpt,
    QuietOpt,
    RunArg,
    SetOpt,
    console_logging,
    handles_errors,
    out_console,
    verb_changes,
)
from gradwise.cli.threads import ThreadsOpt

VERDICT_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "n/a": "dim"}
VERDICT_EXIT_CODE = 4
"""The exit code of `audit` / `report --fail-on LEVEL` when the verdict reaches LEVEL (0 is
success, 1 unexpected, 2 bad input, 3 a monitor alert)."""


class FailOn(StrEnum):
    warn = "warn"
    fail = "fail"


FailOnOpt = Annotated[
    FailOn | None,
    typer.Option(
        "--fail-on",
        metavar="warn|fail",
        help=f"exit with code {VERDICT_EXIT_CODE} when the verdict reaches this level (warn: a "
        "warn or a fail; fail: a fail), so a CI pipeline can gate on it; the results are "
        "printed and written first. Default: exit 0 whatever the verdict",
    ),
]


def verdict_reached(worst: str, fail_on: FailOn | None) -> bool:
    """Does the worst verdict (pass / warn / fail / n/a) reach the --fail-on level?"""
    if fail_on is None:
        return False
    return worst == "fail" or (fail_on == FailOn.warn and worst == "warn")


@handles_errors
def audit(
    run_dir: RunArg,
    checks: Annotated[
        str | None,
        typer.Option(
            metavar="CHECK,CHECK,...",
            help="checks to run (default: all): generalisation, baseline, calibration, "
            "uncertainty, selective, robustness, shift, data_quality",
        ),
    ] = None,
    against: Annotated[
        str | None,
        typer.Option(
            metavar="DATA",
            help="other data for the shift check (csv:new.csv, or a path): is it like the "
            "training data?",
        ),
    ] = None,
    set_: SetOpt = None,
    fail_on: FailOnOpt = None,
    threads: ThreadsOpt = None,
    backend: BackendOpt = None,
    address: AddressOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Measure generalisation, baselines, calibration, uncertainty, selective answering,
    robustness, shift and data quality; each check writes RUN/audit/<check>.json (numbers,
    settings, verdict, sentence). With --backend ray, the learning curve's and the
    data-quality folds' retrains run as Ray tasks, each check's planned retrains as one batch.

    Exit codes: 0 done (whatever the verdict, unless --fail-on); 2 bad input; 4 the overall
    verdict reached --fail-on; 1 anything unexpected."""
    import gradwise
    from gradwise.config import settings_with

    run = gradwise.load(run_dir)  # a missing or unfinished run is reported before any check
    changes = verb_changes("audit", set_, checks=checks, against=against)
    settings = settings_with(run.config.audit, "audit", changes)
    with console_logging(quiet or as_json, progress=False):
        where = {"backend": backend, "address": address}
        report = _checks_with_progress(run, settings, where, show=not (quiet or as_json))
    if as_json:
        import json

        out_console.print_json(json.dumps([c.to_dict() for c in report.checks]))
    else:
        out_console.print(verdict_table(report, f"audit of {run_dir}"))
        out_console.print(overall_line(report))
        plots = [f"{run_dir}/audit/{p}" for c in report.checks for p in c.plots]
        out_console.print(f"details: {run_dir}/audit/<check>.json" + _listed(" plots", plots))
    if verdict_reached(report.worst, fail_on):
        raise typer.Exit(VERDICT_EXIT_CODE)


def _checks_with_progress(run: Any, settings: Any, where: dict[str, Any], show: bool) -> Any:
    """The checks (`where`: the backend and address), with a progress line per check (its
    retrains as steps, the time left) on stderr when it is a terminal and `show`."""
    import gradwise
    from gradwise.audit_config import CHECK_NAMES
    from gradwise.auditing.progress import listening
    from gradwise.cli.audit_progress import CheckProgress
    from gradwise.cli.console import err_console

    if not (show and err_console.is_terminal):
        return gradwise.audit(run, settings, **where)
    names = list(settings.checks or CHECK_NAMES)
    with CheckProgress(names, err_console) as bars, listening(bars.step):
        return gradwise.audit(run, settings, on_done=bars.done, **where)


def overall_line(report: object) -> str:
    """The worst verdict and how many checks had each."""
    from gradwise.auditing import AuditReport

    assert isinstance(report, AuditReport)
    counts = {v: sum(c.verdict == v for c in report.checks) for v in VERDICT_STYLE}
    tally = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    style = VERDICT_STYLE[report.worst]
    return f"overall: [{style}]{report.worst}[/] ({tally})"


def _listed(label: str, items: list[str]) -> str:
    return f";{label}: {', '.join(items)}" if items else ""


def verdict_table(report: object, title: str) -> Table:
    """One row per check: its headline number, verdict, seconds and plain sentence."""
    from gradwise.auditing import AuditReport

    assert isinstance(report, AuditReport)
    table = Table(title=title, title_justify="left")
    for col in ("check", "headline", "verdict", "seconds", "what it means"):
        table.add_column(col, justify="right" if col == "seconds" else "left")
    for c in report.checks:
        style = VERDICT_STYLE[c.verdict]
        # sentences and headlines are text, not markup: "[column, ...]" must print as written
        table.add_row(
            Text(c.check),
            Text(c.headline),
            Text(c.verdict, style=style),
            f"{c.wall_s:.1f}",
            Text(c.summary),
        )
    return table
