"""Verbs that use a trained run on data: evaluate, predict."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from gradwise.cli.console import (
    AddressOpt,
    BackendOpt,
    JsonOpt,
    RunArg,
    err_console,
    flag,
    handles_errors,
    metrics_table,
    out_console,
    rate_line,
)
from gradwise.cli.threads import ThreadsOpt
from gradwise.errors import GradwiseError

BATCH_ROWS = 65536
BatchRowsOpt = Annotated[
    int,
    typer.Option(
        "--batch-rows",
        min=1,
        metavar="N",
        help="rows read, predicted and written at a time from a CSV/parquet table (rounded up "
        "to a multiple of train.eval_batch_size); memory grows with N, not with the input",
    ),
]
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
    batch_rows: BatchRowsOpt = BATCH_ROWS,
    backend: BackendOpt = None,
    address: AddressOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Metrics of a trained run on its train/val/test splits (or on --data: a CSV or parquet
    table, a folder of shards or a glob, read in batches)."""
    import gradwise
    from gradwise.api import evaluate_file

    run = gradwise.load(run_dir)
    if data is None and backend not in (None, "local"):
        raise GradwiseError(
            f"--backend {backend} evaluates --data TABLE; drop it for the run's own splits."
        )
    if data is not None:
        found = evaluate_file(
            run,
            data,
            header=header,
            batch_rows=batch_rows,
            backend=backend,  # type: ignore[arg-type]  # checked by the verb
            address=address,
        )
        metrics: dict[str, Any] = {"test": found}
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
            help="CSV/parquet rows (csv:PATH, a path, a folder of shards or a glob such as "
            "'data/*.parquet'), .npz/.npy array, image file or folder, idx:PREFIX, .txt (text)",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="write predictions to this file: parquet if it ends in .parquet, else CSV; "
            "a table input is then streamed in batches (--batch-rows)",
        ),
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
    batch_rows: BatchRowsOpt = BATCH_ROWS,
    backend: BackendOpt = None,
    address: AddressOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Predict on new raw data with the run's own preprocessing (and its calibration).

    With --out, a CSV or parquet table (a file, a folder of shards or a glob) is read,
    predicted and written in batches, so data bigger than memory works; the output equals
    the in-memory path's to the last digit. Forecasters read their input whole (their windows
    span consecutive rows).
    """
    import gradwise
    from gradwise.data.readers import read_inputs
    from gradwise.run_predict import abstention_summary, input_notes, prediction_frame

    run = gradwise.load(run_dir)
    run.check_predicts()
    if backend not in (None, "local") and out is None:
        raise GradwiseError(
            f"--backend {backend} writes its predictions to a file: add --out "
            "FILE.csv or --out FILE.parquet."
        )
    if out is not None:
        _predict_to_file(
            run,
            inputs,
            out,
            _columns(keep),
            intervals,
            abstain,
            header,
            batch_rows,
            backend,
            address,
        )
        return
    _check_single_file(inputs)
    raw = read_inputs(inputs, run.schema, run.config.data, header=header)
    frame = prediction_frame(run, raw, _columns(keep), intervals, abstain)
    for note in input_notes(run, raw, _columns(keep)):
        err_console.print(f"note: {note}", highlight=False)
    if abstain:
        guarantee = run.calibration.selective or {}
        answered = int((frame["decision"] == "answer").sum())
        err_console.print(abstention_summary(answered, len(frame), guarantee), highlight=False)
    sys.stdout.write(frame.to_csv(index=False))


def _check_single_file(inputs: str) -> None:
    """Shards (a folder of tables, a glob) are read in batches into a file: say so."""
    from gradwise.data.stream import table_shards
    from gradwise.errors import DataError

    shards = table_shards(inputs)
    if shards is not None and shards.files != [Path(shards.location)]:
        raise DataError(
            f"{inputs} is a table in {len(shards.files)} shard(s); predictions for shards are "
            "written in batches to a file: add --out FILE.csv or --out FILE.parquet."
        )


def _predict_to_file(
    run: Any,
    inputs: str,
    out: Path,
    keep: list[str],
    intervals: bool,
    abstain: bool,
    header: bool | None,
    batch_rows: int,
    backend: str | None,
    address: str | None,
) -> None:
    """Predict into `out`, batch by batch for a table; a live rows-per-second line on a
    terminal's stderr, one closing line either way."""
    from gradwise.api import predict_file
    from gradwise.run_predict import abstention_summary

    backend = backend or run.config.backend  # the run's config says where, unless the flag does
    with rate_line("predicting", "predicted") as progress:
        summary = predict_file(
            run,
            inputs,
            out,
            keep=keep,
            intervals=intervals,
            abstain=abstain,
            header=header,
            batch_rows=batch_rows,
            progress=progress,
            backend=backend,  # type: ignore[arg-type]  # checked by the verb
            address=address,
        )
    for note in summary.notes:
        err_console.print(f"note: {note}", highlight=False)
    if summary.answered is not None and summary.guarantee is not None:
        line = abstention_summary(summary.answered, summary.rows, summary.guarantee)
        err_console.print(line, highlight=False)
    out_console.print(
        f"{summary.rows} predictions written to {out} in {summary.wall_s:.1f} s "
        f"({summary.rows_per_s:,.0f} rows/s{_how(summary.streamed, backend)})",
        highlight=False,
    )


def _how(streamed: bool, backend: str) -> str:
    return ", on Ray" if backend == "ray" else ", streamed" if streamed else ""


def _columns(keep: str | None) -> list[str]:
    return [c.strip() for c in keep.split(",") if c.strip()] if keep else []
