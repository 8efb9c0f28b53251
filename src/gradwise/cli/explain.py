"""The explain verb: why a trained run decides what it decides."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from gradwise.cli.console import JsonOpt, RunArg, SetOpt, handles_errors, out_console, verb_changes


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
    set_: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Why the run decides what it decides: attributions, importance, attention, activations.

    Attributions per row, feature importance (tables), attention maps (transformers) and
    activation statistics; writes RUN/explain/explain.json and its pictures.
    """
    import json

    import gradwise

    changes = verb_changes("explain", set_, rows=rows, method=method, split=split)
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
