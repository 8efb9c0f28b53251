"""A trained run applied to tables of any size: one batch of raw rows to one frame of
predictions (`prediction_frame`, which the in-memory path, the streaming path and the Ray
backend share), and the loops that stream a table through it (`predict_file`,
`evaluate_file`).

A streamed table is cut into batches whose size is a multiple of train.eval_batch_size, so
every forward pass holds the rows it holds on the in-memory path: outputs are equal to the
last digit, not merely close (a matrix product may add in another order for another batch
size). Every number written is per row (probabilities, conformal sets and intervals, the
abstention decision), so batching changes none of them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from gradwise.data.readers import (
    kept_columns,
    load_labelled,
    model_columns,
    read_inputs,
    unused_columns,
)
from gradwise.data.stream import Shards, stream_table, table_shards, table_writer
from gradwise.data.tabular import pick_target
from gradwise.errors import DataError
from gradwise.evaluate.evaluator import predict_logits, split_metrics
from gradwise.training.objectives import Supervised

if TYPE_CHECKING:
    from gradwise.run import Run

BATCH_ROWS = 65536  # rows read, predicted and written at a time when streaming


@dataclass(frozen=True)
class PredictSummary:
    """What `predict_file` wrote.

    Attributes:
        rows: predictions written (one per input row; one per full window for forecasters).
        streamed: whether the input was read in batches (False: read whole, as forecasters
            and non-table inputs are).
        answered: with `abstain`, rows answered (the rest abstained); else None.
        guarantee: with `abstain`, the certified guarantee in force (alpha, delta, n, ...).
        notes: what a person should know about how the input was read.
    """

    out: Path
    rows: int
    wall_s: float
    streamed: bool
    answered: int | None = None
    guarantee: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        return self.rows / max(self.wall_s, 1e-9)


def prediction_frame(
    run: Run,
    raw: Any,
    keep: Sequence[str] = (),
    intervals: bool = False,
    abstain: bool = False,
) -> pd.DataFrame:
    """One row per input: kept columns, the prediction and class probabilities (p_<class>);
    with `intervals`, the conformal set (classification) or lower/upper bounds (regression);
    with `abstain`, the `decision` (answer or abstain) and the `abstain_score` it compares with
    the certified threshold. Each row depends on its input row alone, so a table may be
    predicted in batches of any size and the frames concatenated.

    A forecaster given a table of consecutive rows answers one row per full window: the
    kept columns are those of the row the forecast is for (empty past the input's end), then
    `for_row`, `window_first`, `window_last` (see `Run.forecast_positions`).

    Raises:
        GradwiseError: `abstain` without a certified threshold, `intervals` without stored
            conformal quantiles (checked before any other work).
        DataError: the input lacks a model column or a kept column.
    """
    selective = run.predict_selective(raw) if abstain else None  # no guarantee: stop here
    front = kept_columns(raw, list(keep))
    frame = _predictions(run, raw, intervals)
    if run.schema.series is not None and isinstance(raw, pd.DataFrame):
        positions = run.forecast_positions(raw)[["for_row", "window_first", "window_last"]]
        frame = pd.concat([positions, frame], axis=1)
        if front is not None:
            front = _rows_of(front, positions["for_row"].to_numpy())
    if front is not None:
        frame = pd.concat([front.reset_index(drop=True), frame], axis=1)
    if selective is not None:
        frame["decision"] = selective.decision
        frame["abstain_score"] = selective.score
    return frame


def _predictions(run: Run, raw: Any, intervals: bool) -> pd.DataFrame:
    if run.schema.task == "classification":
        proba = run.predict_proba(raw)
        frame = pd.DataFrame({"prediction": run.schema.target.decode(proba.argmax(axis=1))})
        classes = run.schema.classes or []
        for i, cls in enumerate(classes):
            frame[f"p_{str(cls).strip(chr(39) + chr(34))}"] = np.round(proba[:, i], 6)
        if intervals:
            names = [str(c) for c in classes]
            members = run.predict_sets(raw)
            frame["set"] = ["|".join(n for n, m in zip(names, row) if m) for row in members]
        return frame
    if intervals:
        values, lower, upper = run.predict_intervals(raw)
        columns = {"prediction": values, "lower": lower, "upper": upper}
        if values.ndim == 1:
            return pd.DataFrame(columns)
        return pd.DataFrame(
            {
                f"{name}_{i + 1}": column[:, i]
                for i in range(values.shape[1])
                for name, column in columns.items()
            }
        )
    values = np.asarray(run.predict(raw))
    if values.ndim == 1:
        return pd.DataFrame({"prediction": values})
    return pd.DataFrame({f"prediction_{i + 1}": values[:, i] for i in range(values.shape[1])})


def _rows_of(front: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
    """The kept columns at `rows` (0-based positions); empty past the input's end, with
    integer columns kept integer."""
    picked = front.reset_index(drop=True).reindex(rows).reset_index(drop=True)
    for col in front.columns:
        if pd.api.types.is_integer_dtype(front[col]):
            picked[col] = picked[col].astype("Int64")
    return picked


def input_notes(run: Run, raw: Any, keep: Sequence[str]) -> list[str]:
    """What a person should know about how the input was read: the columns the model does
    not read (ignored, as the server ignores them), and for a forecaster which rows each
    forecast reads and is for."""
    notes = []
    if unused := unused_columns(raw, run.schema, list(keep)):
        notes.append(_unused_note(unused))
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


def _unused_note(unused: list[str]) -> str:
    return f"column(s) {', '.join(unused)} are not model inputs; ignored."


def streams(run: Run, source: str) -> Shards | None:
    """The shards of `source` when the run can read it in batches: a CSV/parquet table (file,
    folder or glob) for a run that reads rows one by one (tables, text columns). None for
    other inputs, and for forecasters, whose windows span consecutive rows: those are read
    whole."""
    schema = run.schema
    if schema.series is not None or (schema.tabular is None and schema.text_column is None):
        return None
    return table_shards(source)


def aligned_rows(run: Run, batch_rows: int) -> int:
    """`batch_rows` rounded up to a multiple of train.eval_batch_size, so each forward pass of
    a streamed batch holds the rows it holds on the in-memory path."""
    step = run.eval_settings.batch_size
    return max(1, math.ceil(batch_rows / step)) * step


def predict_file(
    run: Run,
    source: str,
    out: Path,
    keep: Sequence[str] = (),
    intervals: bool = False,
    abstain: bool = False,
    header: bool | None = None,
    batch_rows: int = BATCH_ROWS,
    progress: Callable[[int], None] | None = None,
) -> PredictSummary:
    """Predictions for every row of `source`, written to `out` (parquet when its name ends in
    .parquet, else CSV). A table (file, folder of shards or glob) is read, predicted and
    written `batch_rows` rows at a time, so memory holds one batch; other inputs, and tables
    given to a forecaster, are read whole.

    Args:
        keep: input columns copied to the output (ids).
        progress: called with the rows done after each batch.

    Raises:
        DataError: the input cannot be read (a bad shard is named), or lacks a column.
        GradwiseError: `abstain` / `intervals` without the audit that stores what they need.
    """
    run.check_predicts()
    if batch_rows < 1:
        raise DataError(f"--batch-rows must be at least 1, got {batch_rows}.")
    started = time.perf_counter()
    shards = streams(run, source)
    guarantee = _guarantee(run) if abstain else None
    rows, answered = 0, 0
    unused: dict[str, None] = {}  # the columns no batch's model reads, in their order
    notes: list[str] = []
    with table_writer(out) as write:
        for raw, frame in _frames(
            run, source, shards, keep, intervals, abstain, header, batch_rows
        ):
            write(frame)
            rows += len(frame)
            if abstain:
                answered += int((frame["decision"] == "answer").sum())
            if shards is None:
                notes = input_notes(run, raw, keep)
            else:
                unused.update(dict.fromkeys(unused_columns(raw, run.schema, list(keep))))
            if progress is not None:
                progress(rows)
    if unused:
        notes = [_unused_note(list(unused))]
    return PredictSummary(
        out,
        rows,
        time.perf_counter() - started,
        shards is not None,
        answered if abstain else None,
        guarantee,
        notes,
    )


def _frames(
    run: Run,
    source: str,
    shards: Shards | None,
    keep: Sequence[str],
    intervals: bool,
    abstain: bool,
    header: bool | None,
    batch_rows: int,
) -> Iterator[tuple[Any, pd.DataFrame]]:
    """(raw batch, its prediction frame) pairs: one pair for an input read whole."""
    cfg = run.config.data
    if shards is None:
        raw = read_inputs(source, run.schema, cfg, header=header)
        yield raw, prediction_frame(run, raw, keep, intervals, abstain)
        return
    expected = model_columns(run.schema)
    for raw in stream_table(shards, cfg, header, expected, aligned_rows(run, batch_rows)):
        yield raw, prediction_frame(run, raw, keep, intervals, abstain)


def _guarantee(run: Run) -> dict[str, Any]:
    from gradwise.run_conformal import selective_guarantee

    return selective_guarantee(run)


def abstention_summary(answered: int, rows: int, guarantee: dict[str, Any]) -> str:
    """One line: how many rows were answered, and the guarantee those answers carry."""
    g = guarantee
    return (
        f"answered {answered} of {rows} rows ({answered / max(rows, 1):.1%}), abstained on "
        f"{rows - answered}; guarantee: at most {100 * g['alpha']:g}% errors among answered "
        f"rows, with {100 * (1 - g['delta']):g}% confidence, certified on {g['n']} validation "
        "rows (while inputs are like those rows)"
    )


def evaluate_file(
    run: Run, source: str, header: bool | None = None, batch_rows: int = BATCH_ROWS
) -> dict[str, float]:
    """Metrics of the run on new labelled data, preprocessed as in training. A table (file,
    folder of shards or glob) is read `batch_rows` rows at a time, keeping only the model's
    outputs and the labels (rows x outputs numbers, whatever the input's width); the metrics
    equal those of `Run.evaluate` on the whole table read at once. Other data is read whole.

    Raises:
        DataError: the data cannot be read, lacks the target, or has rows without a label.
    """
    objective = run.objective(torch.zeros(0), unweighted=True)
    shards = streams(run, source)
    if shards is None or not isinstance(objective, Supervised):
        split = load_labelled(source, run.schema, run.config.data, header=header, flag="--data")
        return run.evaluate(split)
    expected = model_columns(run.schema)
    logits, targets = [], []
    batches = stream_table(shards, run.config.data, header, expected, aligned_rows(run, batch_rows))
    for batch in batches:
        x, y = _labelled(run, batch, source)
        logits.append(predict_logits(run.model, x, run.eval_settings))
        targets.append(y)
    return split_metrics(torch.cat(logits), torch.cat(targets), run.schema, objective.criterion)


def _labelled(run: Run, batch: pd.DataFrame, source: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch's model inputs and encoded labels, checked as `load_labelled` checks a table."""
    target = pick_target(batch, run.schema.target.name or "target", source)
    missing = pd.isna(batch[target]).to_numpy()
    if missing.any():
        rows = batch.index[missing]
        raise DataError(
            f"Target column {target!r} of {source} has missing values ({int(missing.sum())} "
            f"in rows {rows[0]}..{rows[-1]} of a batch); drop or fill those rows."
        )
    x = torch.from_numpy(run.schema.transform(batch))
    y = torch.from_numpy(run.schema.target.encode(batch[target].to_numpy()))
    return x, y
