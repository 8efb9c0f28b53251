"""The monitor verb: windows of served traffic against training and validation.

Exit codes: 0 no alert; 2 bad input; 3 an alert fired (drift, prediction shift, confidence
or accuracy drop, a group's accuracy drop, abstention rise, guarantee broken); 1 anything
unexpected.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from gradwise.cli.console import (
    JsonOpt,
    QuietOpt,
    RunArg,
    SetOpt,
    console_logging,
    err_console,
    flag,
    handles_errors,
    out_console,
    verb_changes,
)


@handles_errors
def monitor(
    run_dir: RunArg,
    store: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="the store the server wrote: a SQLite path or postgresql+psycopg://... "
            "(default RUN/monitor/predictions.sqlite)",
        ),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(
            metavar="N|1h", help="instances per window, or a duration (30m, 1h, 1d); default 1000"
        ),
    ] = None,
    follow: Annotated[bool, flag("--follow", "keep watching; Ctrl-C stops")] = False,
    webhook: Annotated[
        str | None, typer.Option(metavar="URL", help="POST alerts here as JSON")
    ] = None,
    poll_s: Annotated[
        float | None,
        typer.Option(metavar="S", help="with --follow: seconds between reads (default 10)"),
    ] = None,
    replay: Annotated[
        str | None,
        typer.Option(
            metavar="TABLE",
            help="instead of the store: a CSV or parquet table (file, folder of shards or "
            "glob), predicted and watched window by window as if served",
        ),
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option(metavar="COLUMN", help="with --replay: the table's column of true labels"),
    ] = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Compare served traffic with the training data, window by window: input drift (raw
    features and embeddings), predictions and confidence, estimated and measured accuracy.
    Thresholds: --set monitor.accuracy_drop=0.02 (or the config's monitor: section).
    --replay TABLE watches a table instead (one line per window). Exit code 3 when an alert
    fired."""
    import json

    import gradwise
    from gradwise.config import settings_with
    from gradwise.errors import ConfigError
    from gradwise.monitoring import ALERT_EXIT_CODE

    if replay is not None and store is not None:
        raise ConfigError("--replay reads a table instead of the store, once: drop --store.")
    run = gradwise.load(run_dir)
    changes = verb_changes(
        "monitor", set_, store=store, window=window, follow=follow, webhook=webhook, poll_s=poll_s
    )
    settings = settings_with(run.config.monitor, "monitor", changes)

    by_line = settings.follow or replay is not None  # windows shown as they are judged

    def show(w: Any) -> None:
        if by_line and not as_json:
            out_console.print(_window_line(w), highlight=False)

    with console_logging(quiet=quiet or as_json, progress=False):
        report = gradwise.monitor(run, settings, replay=replay, labels=labels, on_window=show)
    if as_json:
        out_console.print_json(json.dumps(report.to_dict(), default=str))
    else:
        if not by_line:
            out_console.print(window_table(report))
        _summary(report)
    if report.alerted:
        raise typer.Exit(ALERT_EXIT_CODE)


def window_table(report: Any) -> Table:
    title = f"served traffic of {report.run} ({report.settings['window']} per window)"
    table = Table(title=title, title_justify="left")
    for col in (
        "window",
        "from",
        "n",
        "drift raw",
        "drift embed",
        "predictions",
        "confidence",
        "accuracy (labels)",
        "alerts",
    ):
        table.add_column(col, justify="left" if col in ("from", "alerts") else "right")
    for w in report.windows:
        table.add_row(*_cells(w))
    return table


def _cells(w: Any) -> list[str]:
    from gradwise.monitoring.report import when

    acc = "" if w.accuracy is None else f"{w.accuracy:.3f} ({w.n_labelled})"
    if w.rmse is not None:
        acc = f"rmse {w.rmse:.3g} ({w.n_labelled})"
    return [
        f"{w.index}{'' if w.complete else ' (open)'}",
        when(w.start_time),
        str(w.n),
        _drift_cell(w.raw_drift),
        _drift_cell(w.embed_drift),
        _drift_cell(w.output_drift),
        "" if w.mean_confidence is None else f"{w.mean_confidence:.3f}",
        acc,
        ", ".join(a.kind for a in w.alerts) or "-",
    ]


def _drift_cell(drift: dict[str, Any] | None) -> str:
    if drift is None:
        return ""
    flagged = [name for name, d in drift["detectors"].items() if d["drifted"]]
    return ("DRIFT " + "+".join(flagged)) if flagged else "ok"


def _window_line(w: Any) -> str:
    cells = _cells(w)
    return (
        f"window {cells[0]} from {cells[1]}: n={cells[2]} raw {cells[3] or '-'} embed "
        f"{cells[4] or '-'} predictions {cells[5] or '-'} confidence {cells[6] or '-'} "
        f"accuracy {cells[7] or '-'} alerts {cells[8]}"
    )


def _summary(report: Any) -> None:
    p = out_console.print
    replicas = ", ".join(f"{k} ({v})" for k, v in report.replicas.items()) or "none"
    versions = ", ".join(f"{k} ({v})" for k, v in report.versions.items()) or "none"
    p(
        f"{report.served} instances served by {len(report.replicas)} replica(s): {replicas}",
        highlight=False,
    )
    p(f"model versions: {versions}", highlight=False)
    if report.val_accuracy is not None:
        p(
            f"validation: accuracy {report.val_accuracy:.3f}, mean confidence "
            f"{report.val_confidence:.3f}",
            highlight=False,
        )
    if report.trust is not None:
        p(f"trust: {report.trust.sentence()}", highlight=False)
    if report.guarantee is not None:
        p(f"guarantee: {report.guarantee.sentence}", highlight=False)
    if (line := report.groups_line()) is not None:
        p(line, highlight=False)
    if not report.windows:
        size = report.settings["window"]
        p(
            f"no window to judge yet ({report.served} instances; a window is {size})",
            highlight=False,
        )
    kinds = sorted({a.kind for a in report.alerts})
    if kinds:
        p(
            f"alerts: {', '.join(kinds)} in {len({a.window for a in report.alerts})} window(s)",
            highlight=False,
        )
    else:
        p("alerts: none", highlight=False)
    if report.retrain is not None:
        r = report.retrain
        p(
            f"drift persists over windows {r.first}-{r.last} ({r.n} instances, {r.n_labelled} "
            f"labelled): retrain on them, starting from the served model:\n  {r.command}",
            highlight=False,
        )
        if r.note:
            p(f"  ({r.note})", highlight=False)
    err_console.print(
        f"details: {report.run}/monitor/report.json, windows.json, timeline.png", highlight=False
    )
