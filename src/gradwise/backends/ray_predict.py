"""Scoring many rows on Ray Data: predictions (`predict --backend ray`) and metrics on new
labelled data (`evaluate --data ... --backend ray`).

The table's shards (a file, a folder of shards or a glob, found as the streaming path finds
them) are read by Ray Data and go through `map_batches` to a pool of actors; each actor
loads the run once and applies `prediction_frame`, the function the local path applies to
each batch, with the run's own preprocessing and model. Ray Data keeps the input's row
order (`preserve_order`), and batches hold a multiple of train.eval_batch_size rows as on
the streaming path, so the driver writes the same rows as `gradwise predict --out`, through
the same writer, and gathers the same model outputs as `evaluate --data`.

Ray reads CSV with pyarrow's parser, not the local reader's options (separator sniffing,
files without a header row, custom missing-value markers): give such tables as parquet.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from gradwise.backends.ray_session import ray_session
from gradwise.data.stream import Shards, table_writer
from gradwise.errors import GradwiseError
from gradwise.evaluate.evaluator import predict_logits, split_metrics
from gradwise.run import Run
from gradwise.run_conformal import selective_guarantee
from gradwise.run_predict import (
    PredictSummary,
    _labelled,
    aligned_rows,
    prediction_frame,
    streams,
)
from gradwise.training.objectives import Supervised

BATCH_ROWS = 8192  # rows per actor call: large enough that Ray's per-batch cost is small
ACTORS = 2  # model copies scoring at once (one CPU each), at most the cluster's CPUs less one


def _shards(run: Run, source: str) -> Shards:
    """The table's shards, for a run whose rows can be scored in independent batches.

    Raises:
        GradwiseError: a forecaster (its windows span rows) or an input that is no table.
    """
    shards = streams(run, source)
    if shards is None:
        raise GradwiseError(
            f"--backend ray scores CSV/parquet tables row by row; {source} is not a table, or "
            "this run reads windows of consecutive rows (a forecaster). Drop --backend ray."
        )
    return shards


def _dataset(ray: Any, shards: Shards) -> Any:
    """A Ray Dataset over the shards, in their order, with row order kept through every stage."""
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    files = [str(p) for p in shards.files]
    return ray.data.read_parquet(files) if shards.kind == "parquet" else ray.data.read_csv(files)


def _pool_size(ray: Any, actors: int) -> int:
    """Actors to start: `actors`, fewer on a small cluster; one CPU stays free for the read
    tasks, or the actors would hold every CPU while waiting for rows nobody reads."""
    return max(1, min(actors, int(ray.cluster_resources().get("CPU", 1)) - 1))


@dataclass(frozen=True)
class _Pool:
    """How the rows are scored: rows per actor call, and actors (model copies) at once."""

    batch_rows: int
    actors: int


def _scored(
    ray: Any, run: Run, shards: Shards, actor: type, args: tuple[Any, ...], pool: _Pool
) -> Any:
    """The dataset of `actor`'s outputs for every batch; `args` go to its constructor after
    the run directory."""
    return _dataset(ray, shards).map_batches(
        actor,
        fn_constructor_args=(str(Path(run.path).resolve()), *args),
        batch_format="pyarrow",  # converted by the actor: numpy dtypes, as the local reader gives
        batch_size=aligned_rows(run, pool.batch_rows),
        compute=ray.data.ActorPoolStrategy(size=_pool_size(ray, pool.actors)),
        num_cpus=1,
    )


class _Predictor:
    """One Ray Data actor: loads the run once, then turns each batch into its output rows."""

    def __init__(self, run_dir: str, keep: Sequence[str], intervals: bool, abstain: bool) -> None:
        self.run = Run.load(run_dir)
        self.options = (keep, intervals, abstain)

    def __call__(self, batch: pa.Table) -> pa.Table:
        frame = prediction_frame(self.run, batch.to_pandas(), *self.options)
        return pa.Table.from_pandas(frame, preserve_index=False)


def predict_ray(
    run: Run,
    source: str,
    out: str | Path,
    *,
    keep: Sequence[str] = (),
    intervals: bool = False,
    abstain: bool = False,
    address: str | None = None,
    batch_rows: int = BATCH_ROWS,
    actors: int = ACTORS,
) -> int:
    """Predict every row of the table `source` on Ray and write the rows to `out` in input
    order (parquet when its name ends in .parquet, else CSV), as `predict_file` does.

    Args:
        keep, intervals, abstain: as for `prediction_frame`.
        address: the Ray cluster (see `ray_session`); None starts a local one.
        batch_rows: rows per actor call (rounded up to a multiple of eval_batch_size).
        actors: model copies at once.

    Returns:
        The number of rows written.

    Raises:
        GradwiseError: the input is no table, the run a forecaster, or Ray is missing.
    """
    run.check_predicts()
    shards = _shards(run, source)
    if abstain:  # here, not in every actor: one clear message before Ray starts
        selective_guarantee(run)
    rows = 0
    with ray_session(address) as ray, table_writer(Path(out)) as write:
        options = (tuple(keep), intervals, abstain)
        done = _scored(ray, run, shards, _Predictor, options, _Pool(batch_rows, actors))
        for table in done.iter_batches(batch_format="pyarrow", batch_size=None):
            write(table.to_pandas())  # float32 probabilities stay float32, written as rounded
            rows += table.num_rows
    return rows


class _Scorer:
    """One Ray Data actor for evaluation: model outputs and encoded labels of each batch."""

    def __init__(self, run_dir: str, source: str) -> None:
        self.run = Run.load(run_dir)
        self.source = source

    def __call__(self, batch: pa.Table) -> dict[str, np.ndarray]:
        x, y = _labelled(self.run, batch.to_pandas(), self.source)
        return {
            "logits": predict_logits(self.run.model, x, self.run.eval_settings).numpy(),
            "y": y.numpy(),
        }


def evaluate_ray(
    run: Run,
    source: str,
    *,
    address: str | None = None,
    batch_rows: int = BATCH_ROWS,
    actors: int = ACTORS,
) -> dict[str, float]:
    """Metrics of the run on the labelled table `source`, scored on Ray: the actors return
    the model outputs in input order and the driver computes the metrics over all of them,
    as `evaluate_file` does (the loss unweighted, as for any new data).

    Raises:
        GradwiseError: the input is no table, or the run is not a supervised row model.
        DataError: (from an actor) the target column is missing or has gaps.
    """
    objective = run.objective(torch.zeros(0), unweighted=True)
    if not isinstance(objective, Supervised):
        raise GradwiseError("--backend ray evaluates supervised models; drop --backend ray.")
    shards = _shards(run, source)
    with ray_session(address) as ray:
        done = _scored(ray, run, shards, _Scorer, (source,), _Pool(batch_rows, actors))
        parts = list(done.iter_batches(batch_format="numpy", batch_size=None))
    logits = torch.from_numpy(np.concatenate([p["logits"] for p in parts]))
    y = torch.from_numpy(np.concatenate([p["y"] for p in parts]))
    return split_metrics(logits, y, run.schema, objective.criterion)


def predict_ray_summary(
    run: Run,
    source: str,
    out: Path,
    keep: list[str],
    intervals: bool,
    abstain: bool,
    batch_rows: int,
    address: str | None,
) -> PredictSummary:
    """`predict_ray`, told as `predict_file` tells its work: rows, wall time, and with
    `abstain` the rows answered (read back from the written `decision` column)."""
    started = time.perf_counter()
    rows = predict_ray(
        run,
        source,
        out,
        keep=keep,
        intervals=intervals,
        abstain=abstain,
        address=address,
        batch_rows=batch_rows,
    )
    return PredictSummary(
        out=out,
        rows=rows,
        wall_s=time.perf_counter() - started,
        streamed=True,
        answered=_answered(out) if abstain else None,
        guarantee=run.calibration.selective if abstain else None,
    )


def _answered(out: Path) -> int:
    """Rows answered in a written prediction table (its `decision` column)."""
    if out.suffix == ".parquet":
        table = pd.read_parquet(out, columns=["decision"])
    else:
        table = pd.read_csv(out, usecols=["decision"])
    return int((table["decision"] == "answer").sum())
