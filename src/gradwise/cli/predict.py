"""Verbs that use a trained run on data: evaluate, predict."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from gradwise.cli.console import (
    JsonOpt,
    RunArg,
    err_console,
    flag,
    handles_errors,
    metrics_table,
    out_console,
)
from gradwise.cli.threads import ThreadsOpt

HeaderOpt = Annotated[
    bool | None,
    typer.Option(
        "--header/--no-header",
        help="whether the CSV's first row names the columns (default: as the training file, "
        "or detected)",
        show_default=False,
    ),
]


@handles_errors
def evaluate(
    run_dir: RunArg,
    data: Annotated[
        str | None,
        typer.Option(
            metavar="SOURCE",
            help="evaluate on other labelled data, preprocessed as in training "
            "(csv:new.csv, or a path)",
        ),
    ] = None,
    header: HeaderOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Metrics of a trained run on its train/val/test splits (or on --data)."""
    import gradwise
    from gradwise.data.readers import load_labelled

    run = gradwise.load(run_dir)
    if data is not None:
        split = load_labelled(data, run.schema, run.config.data, header=header, flag="--data")
        metrics: dict[str, Any] = {"test": run.evaluate(split)}
        title = f"{run.path} on {data}"
    else:
        dataset = run.dataset()
        metrics = {s: run.evaluate(s, dataset) for s in ("train", "val", "test")}
        title = f"{run.path}"
    if as_json:
        out_console.print_json(json.dumps(metrics))
    else:
        out_console.print(metrics_table(metrics, title))


@handles_errors
def predict(
    run_dir: RunArg,
    inputs: Annotated[
        str,
        typer.Argument(
            metavar="INPUT",
            help="CSV/parquet rows (csv:PATH or a path), .npz/.npy array, image file or "
            "folder, idx:PREFIX, .txt (text)",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None, typer.Option(metavar="FILE", help="write predictions to this CSV")
    ] = None,
    header: HeaderOpt = None,
    keep: Annotated[
        str | None,
        typer.Option(
            metavar="COL,COL,...",
            help="input columns to copy into the output (ids), so rows can be matched back",
        ),
    ] = None,
    intervals: Annotated[
        bool,
        flag(
            "--intervals",
            help="add split-conformal uncertainty from `gradwise audit RUN --checks "
            "uncertainty`: lower/upper columns (regression) or a `set` column of the classes "
            "that hold the truth at the audited coverage, joined by | (classification)",
        ),
    ] = False,
    abstain: Annotated[
        bool,
        flag(
            "--abstain",
            help="apply the abstention threshold certified by `gradwise audit RUN --checks "
            "selective`: a `decision` column (answer, or abstain: for a person) and the "
            "`abstain_score` compared with the threshold; the prediction is kept either way",
        ),
    ] = False,
    threads: ThreadsOpt = None,
) -> None:
    """Predict on new raw data with the run's own preprocessing (and its calibration)."""
    import gradwise
    from gradwise.data.readers import read_inputs

    run = gradwise.load(run_dir)
    run.check_predicts()
    raw = read_inputs(inputs, run.schema, run.config.data, header=header)
    selective = run.predict_selective(raw) if abstain else None  # no guarantee: stop here
    frame = prediction_frame(run, raw, _columns(keep), intervals)
    for note in input_notes(run, raw, _columns(keep)):
        err_console.print(f"note: {note}", highlight=False)
    if selective is not None:
        frame["decision"] = selective.decision
        frame["abstain_score"] = selective.score
        err_console.print(abstention_summary(selective), highlight=False)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index=False)
        out_console.print(f"{len(frame)} predictions written to {out}")
    else:
        sys.stdout.write(frame.to_csv(index=False))


def abstention_summary(selective: Any) -> str:
    """One line: how many rows were answered, and the guarantee those answers carry."""
    n, m = int(selective.answer.sum()), len(selective.answer)
    g = selective.guarantee
    return (
        f"answered {n} of {m} rows ({n / max(m, 1):.1%}), abstained on {m - n}; guarantee: at "
        f"most {100 * g['alpha']:g}% errors among answered rows, with "
        f"{100 * (1 - g['delta']):g}% confidence, certified on {g['n']} validation rows "
        "(while inputs are like those rows)"
    )


def _columns(keep: str | None) -> list[str]:
    return [c.strip() for c in keep.split(",") if c.strip()] if keep else []


def input_notes(run: Any, raw: Any, keep: list[str]) -> list[str]:
    """What a person should know about how the input was read: the columns the model does
    not read (ignored, as the server ignores them), and for a forecaster which rows each
    forecast reads and is for."""
    import pandas as pd

    from gradwise.data.readers import unused_columns

    notes = []
    if unused := unused_columns(raw, run.schema, keep):
        notes.append(f"column(s) {', '.join(unused)} are not model inputs; ignored.")
    series = run.schema.series
    if series is not None and isinstance(raw, pd.DataFrame):
        n, t = len(raw), series.window
        steps = "prediction" if series.horizon == 1 else "prediction_k (k steps ahead)"
        notes.append(
            f"{n - t + 1} forecast(s) from {n} rows (data.window {t}): each reads input rows "
            f"window_first..window_last (0-based) and its {steps} is for row for_row"
            + ("" if series.horizon == 1 else " + k - 1")
            + f"; for_row {n} and beyond lie past the input's end, so their kept columns are "
            "empty."
        )
    return notes


def prediction_frame(run: Any, raw: Any, keep: list[str], intervals: bool = False) -> Any:
    """One row per input: the prediction, class probabilities (p_<class>) and kept columns;
    with `intervals`, the conformal set (classification) or lower/upper bounds (regression).

    A forecaster given a table of consecutive rows answers one row per full window: the
    kept columns are those of the row the forecast is for (empty past the input's end), then
    `for_row`, `window_first`, `window_last` (see `Run.forecast_positions`).
    """
    import numpy as np
    import pandas as pd

    from gradwise.data.readers import kept_columns

    front = kept_columns(raw, keep)
    if run.schema.task == "classification":
        proba = run.predict_proba(raw)
        frame = pd.DataFrame({"prediction": run.schema.target.decode(proba.argmax(axis=1))})
        for i, cls in enumerate(run.schema.classes):
            frame[f"p_{str(cls).strip(chr(39) + chr(34))}"] = np.round(proba[:, i], 6)
        if intervals:
            names = [str(c) for c in run.schema.classes]
            members = run.predict_sets(raw)
            frame["set"] = ["|".join(n for n, m in zip(names, row) if m) for row in members]
    elif intervals:
        values, lower, upper = run.predict_intervals(raw)
        columns = {"prediction": values, "lower": lower, "upper": upper}
        if values.ndim == 1:
            frame = pd.DataFrame(columns)
        else:
            frame = pd.DataFrame(
                {
                    f"{name}_{i + 1}": column[:, i]
                    for i in range(values.shape[1])
                    for name, column in columns.items()
                }
            )
    else:
        values = np.asarray(run.predict(raw))
        if values.ndim == 1:
            frame = pd.DataFrame({"prediction": values})
        else:
            frame = pd.DataFrame(
                {f"prediction_{i + 1}": values[:, i] for i in range(values.shape[1])}
            )
    if run.schema.series is not None and isinstance(raw, pd.DataFrame):
        positions = run.forecast_positions(raw)[["for_row", "window_first", "window_last"]]
        frame = pd.concat([positions, frame], axis=1)
        if front is not None:
            front = _rows_of(front, positions["for_row"].to_numpy())
    if front is not None:
        frame = pd.concat([front.reset_index(drop=True), frame], axis=1)
    return frame


def _rows_of(front: Any, rows: Any) -> Any:
    """The kept columns at `rows` (0-based positions); empty past the input's end, with
    integer columns kept integer."""
    import pandas as pd

    picked = front.reset_index(drop=True).reindex(rows).reset_index(drop=True)
    for col in front.columns:
        if pd.api.types.is_integer_dtype(front[col]):
            picked[col] = picked[col].astype("Int64")
    return picked
