"""The verbs that stream a table from a file: predictions, metrics and attributions for
every row of a CSV or parquet table (a file, a folder of shards or a glob), here or on Ray."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from gradwise.api.common import as_run, where
from gradwise.run import Run

if TYPE_CHECKING:
    from gradwise.explaining import StreamExplanation
    from gradwise.run_predict import PredictSummary

Backend = Literal["local", "ray"]


def explain_file(
    run: Run | str | Path,
    data: str,
    out: str | Path,
    *,
    method: str | None = None,
    header: bool | None = None,
    batch_rows: int = 4096,
    progress: Callable[[int], None] | None = None,
) -> StreamExplanation:
    """Attribute every row of a CSV or parquet table (a file, a folder of shards or a glob)
    into `out` (parquet when it ends in .parquet, else CSV): per row its position, prediction
    and one attribution per raw column, `batch_rows` rows at a time (rounded up to a multiple
    of train.eval_batch_size), so memory holds one batch. The importance over all rows (mean
    |attribution| per column) goes to RUN/explain/stream.json.

    Args:
        run: a Run or its directory, trained on a table.
        data: the table, as `gradwise predict` takes it (csv:PATH, a path, a glob).
        method: ig (integrated gradients) or saliency; None: the run's `explain.method`.
        header: whether each CSV's first row names the columns (None: as the training file).
        progress: called with the number of rows done after each batch.

    Returns:
        A StreamExplanation: rows written, the importance per column, wall time.
    """
    from gradwise.explaining import explain_file as explain_rows

    loaded = as_run(run)
    chosen = method or loaded.config.explain.method
    return explain_rows(loaded, data, Path(out), chosen, header, batch_rows, progress)


def predict_file(
    run: Run | str | Path,
    source: str,
    out: str | Path,
    *,
    keep: list[str] | None = None,
    intervals: bool = False,
    abstain: bool = False,
    header: bool | None = None,
    batch_rows: int = 65536,
    progress: Callable[[int], None] | None = None,
    backend: Backend | None = None,
    address: str | None = None,
) -> PredictSummary:
    """Predict every row of `source` into `out` (parquet when it ends in .parquet, else CSV),
    with the run's own preprocessing and calibration. A CSV or parquet table (a file, a folder
    of shards or a glob such as `data/*.parquet`) is read, predicted and written `batch_rows`
    rows at a time, so memory holds one batch; the output equals the in-memory path's to the
    last digit. Forecasters, and inputs that are no table, are read whole.

    Args:
        run: a Run or its directory.
        source: the input, as `gradwise predict` takes it (csv:PATH, a path, a glob).
        keep: input columns to copy into the output (ids).
        intervals: add conformal sets or intervals (needs the uncertainty audit).
        abstain: add the certified abstention decision (needs the selective audit).
        header: whether each CSV's first row names the columns (None: as the training file).
        progress: called with the number of rows done after each batch.
        backend: "ray" maps the batches over a Ray cluster's actors (one model each), in
            input order, with the same output (a headed CSV or parquet table only); None:
            the run's config `backend:` key (default local).
        address: with backend "ray", the cluster (or "auto"); None: the run's config
            `address:`, else RAY_ADDRESS, else a local cluster started and stopped for the call.

    Returns:
        Rows written, wall time, whether the input was streamed, rows answered (abstain).
    """
    from gradwise.run_predict import predict_file as predict_rows

    loaded = as_run(run)
    chosen, address = where(backend, address, loaded.config)
    if chosen == "ray":
        from gradwise.backends.ray_predict import predict_ray_summary

        return predict_ray_summary(
            loaded, source, Path(out), keep or [], intervals, abstain, batch_rows, address
        )
    return predict_rows(
        loaded, source, Path(out), keep or [], intervals, abstain, header, batch_rows, progress
    )


def evaluate_file(
    run: Run | str | Path,
    source: str,
    *,
    header: bool | None = None,
    batch_rows: int = 65536,
    backend: Backend | None = None,
    address: str | None = None,
) -> dict[str, float]:
    """Metrics of the run on new labelled data (a table, file, folder of shards or glob, read
    `batch_rows` rows at a time; other kinds read whole), preprocessed as in training; equal
    to the metrics of the whole table read at once. `backend="ray"` computes the model outputs
    on a Ray cluster (`address` as for `predict_file`) and the metrics here."""
    from gradwise.run_predict import evaluate_file as evaluate_rows

    loaded = as_run(run)
    chosen, address = where(backend, address, loaded.config)
    if chosen == "ray":
        from gradwise.backends.ray_predict import evaluate_ray

        return evaluate_ray(loaded, source, address=address, batch_rows=batch_rows)
    return evaluate_rows(loaded, source, header, batch_rows)
