"""The explain verb: why a trained run decides what it decides."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from gradwise.cli.console import (
    JsonOpt,
    RunArg,
    SetOpt,
    handles_errors,
    out_console,
    rate_line,
    verb_changes,
)
from gradwise.cli.predict import HeaderOpt
from gradwise.errors import ConfigError

STREAM_BATCH_ROWS = 4096


@handles_errors
def explain(
    run_dir: RunArg,
    rows: Annotated[
        str | None,
        typer.Option(
            metavar="ROW,ROW,...",
            help="source row numbers (0-based) to explain, all in --split (default: its first "
            "four)",
        ),
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(
            metavar="METHOD",
            help="ig (integrated gradients, the default), gradshap, kernelshap (tables) or "
            "saliency",
        ),
    ] = None,
    split: Annotated[
        str | None, typer.Option(metavar="SPLIT", help="train, val or test (default test)")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            metavar="TABLE",
            help="explain every row of this CSV/parquet table (a file, a folder of shards or a "
            "glob such as 'data/*.parquet'), streamed in batches into --out",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="with --data: write one row of attributions per input row here (parquet if "
            "it ends in .parquet, else CSV)",
        ),
    ] = None,
    batch_rows: Annotated[
        int,
        typer.Option(
            "--batch-rows",
            min=1,
            metavar="N",
            help="with --data: rows read, attributed and written at a time (rounded up to a "
            "multiple of train.eval_batch_size); memory grows with N, not with the table",
        ),
    ] = STREAM_BATCH_ROWS,
    header: HeaderOpt = None,
    set_: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Why the run decides what it decides: attributions, importance, attention, activations.

    Attributions per row, feature importance (tables), attention maps (transformers) and
    activation statistics; writes RUN/explain/explain.json and its pictures. With --data TABLE
    --out FILE, attributes every row of a table in batches and writes the importance over
    all rows to RUN/explain/stream.json.
    """
    import json

    import gradwise

    changes = verb_changes("explain", set_, rows=rows, method=method, split=split)
    if data is not None or out is not None:
        _explain_table(run_dir, data, out, changes, header, batch_rows, as_json)
        return
    result = gradwise.explain(run_dir, **changes)
    if as_json:
        out_console.print_json(json.dumps(result.to_dict(), default=str))
        return
    if result.rows:
        out_console.print(rows_table(result))
    if result.importance is not None:
        out_console.print(importance_table(result.importance, result.method or "ig"))
    for line in _summary_lines(result):
        out_console.print(line, highlight=False)
    out_console.print(
        f"wrote {run_dir}/explain/: {', '.join(result.files)}", highlight=False, soft_wrap=True
    )


def _explain_table(
    run_dir: Path,
    data: str | None,
    out: Path | None,
    changes: dict[str, Any],
    header: bool | None,
    batch_rows: int,
    as_json: bool,
) -> None:
    """`--data TABLE --out FILE`: every row attributed into FILE, a live rows-per-second line
    on a terminal, the importance table and one closing line."""
    import json

    import gradwise

    if data is None or out is None:
        given, needed = ("--data", "--out FILE.csv") if out is None else ("--out", "--data TABLE")
        raise ConfigError(f"{given} explains a whole table into a file: add {needed}.")
    if {"rows", "split"} & changes.keys():
        raise ConfigError(
            "--rows and --split pick rows of the run's own splits; --data explains every row "
            "of TABLE: give one or the other."
        )
    with rate_line("explaining", "explained") as progress:
        result = gradwise.explain_file(
            run_dir,
            data,
            out,
            method=changes.get("method"),
            header=header,
            batch_rows=batch_rows,
            progress=progress,
        )
    if as_json:
        out_console.print_json(json.dumps(result.to_dict()))
        return
    out_console.print(stream_importance_table(result))
    for note in result.notes:
        out_console.print(f"note: {note}", highlight=False)
    out_console.print(
        f"{result.rows} explanations written to {out} in {result.wall_s:.1f} s "
        f"({result.rows_per_s:,.0f} rows/s, streamed); importance: "
        f"{run_dir}/explain/stream.json",
        highlight=False,
        soft_wrap=True,
    )


def stream_importance_table(result: Any) -> Table:
    """Mean |attribution| of each raw column over every row of the table, largest first."""
    table = Table(
        title=f"feature importance over all {result.rows} rows of {result.source}",
        title_justify="left",
    )
    table.add_column("feature")
    table.add_column(f"mean |{result.method}|", justify="right")
    values = result.mean_abs_attribution
    for i in sorted(range(len(values)), key=lambda i: -values[i])[:15]:
        table.add_row(result.features[i], f"{values[i]:.4f}")
    if len(values) > 15:
        table.caption = f"the 15 largest of {len(values)} columns; all in stream.json"
    return table


def rows_table(result: Any) -> Table:
    """One line per explained row: its prediction and its largest attributions."""
    what = {"tokens": "tokens", "image": "pixels"}.get(result.kind, "features")
    table = Table(
        title=f"{result.method} attributions on the {result.split} split "
        f"(baseline: {result.baseline})",
        title_justify="left",
    )
    for col in ("row", "prediction", "explains", f"top {what} (attribution)"):
        table.add_column(col, justify="right" if col == "row" else "left")
    for r in result.rows:
        gap = "" if r.completeness_gap is None else f"  [dim]gap {r.completeness_gap:.1e}[/]"
        tops = "  ".join(f"{name} [bold]{value:+.3f}[/]" for name, value in r.top)
        table.add_row(str(r.row), str(r.prediction), r.explained + gap, tops)
    return table


def importance_table(imp: Any, method: str) -> Table:
    """Global importance of each raw column, by both measures, most important first."""
    table = Table(
        title=f"feature importance on the test split ({imp.n_rows} rows attributed, "
        f"{imp.n_permutation_rows} shuffled)",
        title_justify="left",
    )
    table.add_column("feature")
    table.add_column(f"mean |{method}|", justify="right")
    table.add_column(
        f"permutation: {imp.score} drop (± std, {imp.n_repeats} shuffles)", justify="right"
    )
    order = sorted(range(len(imp.features)), key=lambda i: -imp.mean_abs_attribution[i])
    for i in order[:15]:
        table.add_row(
            imp.features[i],
            f"{imp.mean_abs_attribution[i]:.4f}",
            f"{imp.permutation[i]:+.4f} ± {imp.permutation_std[i]:.4f}",
        )
    agree = "agree" if imp.top_agree else "disagree"
    table.caption = f"the two measures {agree} on the most important feature"
    return table


def _summary_lines(result: Any) -> list[str]:
    lines = []
    if result.activations:
        dead = [a for a in result.activations if a.dead]
        sat = [a for a in result.activations if a.saturated]
        parts = [f"{len(result.activations)} activation layers"]
        parts += [f"{a.layer} ({a.kind}): {a.dead:.0%} of {a.n_units} units dead" for a in dead]
        parts += [f"{a.layer} ({a.kind}): {a.saturated:.0%} saturated" for a in sat]
        if not dead and not sat:
            parts.append("no dead or saturated units")
        lines.append("activations: " + "; ".join(parts))
    if result.attention:
        layers = dict.fromkeys(h.layer for h in result.attention)
        low = min(result.attention, key=lambda h: h.entropy)
        lines.append(
            f"attention: {len(layers)} layers x {len(result.attention) // len(layers)} heads; "
            f"sharpest {low.layer} head {low.head} (entropy {low.entropy:.2f} nats)"
        )
    lines += [f"note: {n}" for n in result.notes]
    return lines
