"""`explain --data TABLE`: attributions for every row of a table bigger than memory.

The table (a CSV or parquet file, a folder of shards or a glob) is read, attributed and
written one batch at a time, as `predict --out` streams it (`run_predict`): batches are a
multiple of train.eval_batch_size, and memory holds one batch. Each output row holds the
row's position in the table, the prediction and one attribution per raw column (one-hot
columns of a categorical feature summed into it); the global importance, mean |attribution|
per column over all rows, is a running sum, written to RUN/explain/stream.json.

Only methods whose attributions of a row depend on that row alone are streamed: integrated
gradients (fixed baseline, the training mean; steps chosen per row) and saliency. GradientSHAP
and KernelSHAP draw their random baselines and coalitions for a whole batch at once, so a
row's values would change with the batch size.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from gradwise.artifacts import write_json
from gradwise.data.readers import model_columns
from gradwise.data.stream import Shards, stream_table, table_shards, table_writer
from gradwise.errors import ConfigError, DataError, GradwiseError
from gradwise.explaining.attributions import baseline, feature_groups, row_attributions
from gradwise.explaining.base import METHODS
from gradwise.explaining.importance import grouped
from gradwise.run import Run
from gradwise.run_predict import aligned_rows

BATCH_ROWS = 4096  # rows attributed at a time; integrated gradients holds rows x steps inputs
STREAM_METHODS = ("ig", "saliency")
SUMMARY_FILE = "stream.json"
StreamMethod = Literal["ig", "saliency"]


@dataclass(frozen=True)
class StreamExplanation:
    """What `explain_file` wrote, also saved as RUN/explain/stream.json.

    Attributes:
        source: the table explained; out: the file of per-row attributions.
        rows: rows attributed (one output row per input row).
        method: ig or saliency.
        features: the raw columns attributed.
        mean_abs_attribution: mean |attribution| per column over all `rows` rows.
        batch_rows: rows attributed at a time (a multiple of train.eval_batch_size).
        wall_s: seconds it took.
        notes: what a person should know to read the attributions.
    """

    source: str
    out: str
    rows: int
    method: str
    features: tuple[str, ...]
    mean_abs_attribution: tuple[float, ...]
    batch_rows: int
    wall_s: float
    notes: tuple[str, ...] = ()

    @property
    def rows_per_s(self) -> float:
        return self.rows / max(self.wall_s, 1e-9)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def explain_file(
    run: Run,
    source: str,
    out: Path,
    method: str = "ig",
    header: bool | None = None,
    batch_rows: int = BATCH_ROWS,
    progress: Callable[[int], None] | None = None,
) -> StreamExplanation:
    """Attribute every row of the table `source` and write them to `out` (parquet when its
    name ends in .parquet, else CSV), `batch_rows` rows at a time; write the importance over
    all rows to RUN/explain/stream.json.

    Args:
        source: a CSV or parquet file, a folder of shards or a glob (csv:PATH, parquet:PATH).
        method: ig (integrated gradients) or saliency.
        header: whether each CSV's first row names the columns (None: as the training file).
        progress: called with the rows done after each batch.

    Raises:
        ConfigError: a method that is not streamed, or --batch-rows below 1.
        GradwiseError: a run that reads no table.
        DataError: `source` is no CSV/parquet table, cannot be read, or lacks a column.
    """
    started = time.perf_counter()
    shards = _checked(run, source, method, batch_rows)
    streamed: StreamMethod = "ig" if method == "ig" else "saliency"
    found = feature_groups(run)
    assert found is not None  # _checked: a table run
    names, groups = found
    base = baseline(run, run.split("train").x)  # fixed for every batch: the training mean
    total = np.zeros(len(names))  # running sum of |attribution| per column (float64)
    rows, step = 0, aligned_rows(run, batch_rows)
    expected = model_columns(run.schema)
    with table_writer(out) as write:
        for raw in stream_table(shards, run.config.data, header, expected, step):
            frame, values = attributed_frame(run, raw, streamed, base, names, groups)
            write(frame)
            total += np.abs(values).sum(axis=0, dtype=np.float64)
            rows += len(frame)
            if progress is not None:
                progress(rows)
    result = StreamExplanation(
        source=source,
        out=str(out),
        rows=rows,
        method=method,
        features=tuple(names),
        mean_abs_attribution=tuple(float(v) for v in total / rows),
        batch_rows=step,
        wall_s=round(time.perf_counter() - started, 3),
        notes=_notes(run, method),
    )
    write_json(Path(run.path) / "explain" / SUMMARY_FILE, result.to_dict())
    return result


def attributed_frame(
    run: Run,
    raw: pd.DataFrame,
    method: StreamMethod,
    base: Tensor,
    names: list[str],
    groups: Tensor,
) -> tuple[pd.DataFrame, np.ndarray]:
    """One batch's output frame (row, prediction(s), attr_<column>..., and for ig the
    completeness gap) and its (N, G) float32 attributions per raw column."""
    x = torch.from_numpy(run.schema.transform(raw))
    a = row_attributions(run, x, method, base)
    values = grouped(a.values.flatten(1), groups, len(names)).numpy()
    frame = pd.DataFrame({"row": raw.index.to_numpy()})
    predictions = _predictions(run, run.logits(x))
    frame = pd.concat([frame, predictions], axis=1)
    attributions = pd.DataFrame(values, columns=[f"attr_{c}" for c in names])
    frame = pd.concat([frame, attributions], axis=1)
    if a.gaps is not None:
        frame["completeness_gap"] = a.gaps.numpy()
    return frame, values


def _predictions(run: Run, logits: Tensor) -> pd.DataFrame:
    """The decoded prediction of each row, as `explain` shows it: the most probable class
    (uncalibrated: a temperature changes no argmax), or the value(s) of a regression."""
    target = run.schema.target
    if run.schema.task == "classification" and run.schema.classes is not None:
        labels = target.decode(run.probabilities(logits, False).argmax(axis=1))
        return pd.DataFrame({"prediction": labels})
    values = np.asarray(target.decode(logits.numpy())).reshape(len(logits), -1)
    if values.shape[1] == 1:
        return pd.DataFrame({"prediction": values[:, 0]})
    return pd.DataFrame({f"prediction_{i + 1}": values[:, i] for i in range(values.shape[1])})


def _notes(run: Run, method: str) -> tuple[str, ...]:
    """Embedded category codes have no gradient: say that their columns get 0."""
    prep = run.schema.tabular
    if prep is None or prep.encoding != "embed" or not prep.categorical:
        return ()
    return (
        f"{method} follows gradients, and embedded category codes have none: the categorical "
        f"columns ({', '.join(prep.categorical[:4])}, ...) get 0 here; `gradwise explain RUN "
        "--method kernelshap --rows ...` attributes them for chosen rows.",
    )


def _checked(run: Run, source: str, method: str, batch_rows: int) -> Shards:
    """The shards of `source`, once the run, the method and the batch size allow streaming.

    Raises:
        as `explain_file`.
    """
    if method not in STREAM_METHODS:
        known = method in METHODS
        raise ConfigError(
            f"--method {method} "
            + (
                "draws its random baselines or coalitions for a whole batch, so a row's "
                "attributions would change with --batch-rows; "
                if known
                else "is not an attribution method; "
            )
            + f"explaining a table streams {' or '.join(STREAM_METHODS)}. Use --method ig, "
            "or explain a few rows in memory with --rows."
        )
    if batch_rows < 1:
        raise ConfigError(f"--batch-rows must be at least 1, got {batch_rows}.")
    schema = run.schema
    if schema.tabular is None or schema.series is not None:
        what = (
            "a forecaster's windows"
            if schema.series is not None
            else "an array (a builtin or .npz source), not named columns"
            if schema.kind == "tabular"
            else f"{schema.kind} inputs"
        )
        raise GradwiseError(
            f"explain --data streams the rows of a CSV or parquet table, for runs trained on "
            f"one (data.source csv:PATH or parquet:PATH); {run.path} reads {what}. Explain "
            "its rows in memory instead: gradwise explain RUN --rows 0,1,2 --split test."
        )
    shards = table_shards(source)
    if shards is None:
        raise DataError(
            f"{source} is no CSV or parquet table; give a .csv/.parquet file, a folder of "
            "them or a glob such as 'data/*.parquet'."
        )
    return shards
