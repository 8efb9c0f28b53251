"""Replaying a table through the monitor, without a server or a store.

A CSV or parquet table (a file, a folder of shards or a glob) is read one window of rows at a
time (`data.stream.stream_table`), each window is predicted with the run as the server would
answer it (`serving.predictor.Predictor`, one forward pass), and fed to the same `Monitor` the
live watch uses. Memory holds the window being read plus what the monitor holds (bounded by
the window, see `Monitor`), not the table. A column of labels, if named, is the feedback.

Rows have no arrival time: windows count instances (`--window N`); each instance's time is
when it was replayed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel, ValidationError

from gradwise.config import MonitorSettings
from gradwise.data.stream import stream_table, table_shards
from gradwise.errors import ConfigError, DataError, GradwiseError
from gradwise.monitoring.alerts import Alert, announce
from gradwise.monitoring.report import MonitorReport, build_report, write_outputs
from gradwise.monitoring.results import WindowResult
from gradwise.monitoring.stream import Served
from gradwise.monitoring.watch import Monitor, check_monitorable
from gradwise.monitoring.windows import parse_window
from gradwise.run import Run
from gradwise.serving.predictor import Predictor, model_version
from gradwise.serving.schemas import MAX_INSTANCES, InstanceCodec

REPLICA = "replay"  # the replica id of replayed instances (and their request id)


def replay_table(
    run: Run,
    settings: MonitorSettings,
    source: str,
    labels: str | None = None,
    on_window: Callable[[WindowResult], None] | None = None,
) -> MonitorReport:
    """Monitor the rows of a table as if they had been served, window by window.

    Writes RUN/monitor/report.json, windows.json and timeline.png at the end; alerts are
    logged and POSTed to `settings.webhook` as the windows are judged.

    Args:
        source: a CSV or parquet table: a file, a folder of shards or a glob (csv:PATH and
            parquet:PATH force the kind).
        labels: the column holding each row's true label (the feedback); None: no labels.
        on_window: called with each window as it is evaluated.

    Raises:
        ConfigError: a time window (rows carry no arrival time). DataError: the source is no
            table, cannot be read, or lacks a column the run reads or `labels`.
        GradwiseError: the run does not read table rows.
    """
    check_monitorable(run)
    spec = parse_window(settings.window)
    if spec.size is None:
        raise ConfigError(
            f"--window {settings.window}: a replayed table has no arrival times; give a number "
            "of instances per window (e.g. --window 1000)."
        )
    if run.schema.tabular is None:
        raise GradwiseError(
            f"{run.path} does not read table rows (it takes {run.schema.kind} input), so a "
            "table cannot be replayed through it; monitor its served traffic instead."
        )
    monitor = Monitor(run, None, settings)
    codec = monitor.codec
    assert codec is not None  # a table run is served with a request schema
    alerts: list[Alert] = []
    new: list[WindowResult] = []
    for served, known in served_windows(run, codec, source, labels, spec.size):
        new = monitor.feed(served, known)
        alerts += _judged(new, monitor, run, settings, on_window)
    new = monitor.feed(Served(), {}, final=True)  # the rows after the last full window
    alerts += _judged(new, monitor, run, settings, on_window)
    report = build_report(monitor, source, alerts, final=True, extra=new)
    write_outputs(report, Path(run.path))
    return report


def _judged(
    new: list[WindowResult],
    monitor: Monitor,
    run: Run,
    settings: MonitorSettings,
    on_window: Callable[[WindowResult], None] | None,
) -> list[Alert]:
    """Announce the alerts of the windows just evaluated and hand each window on."""
    fired = [a for w in new for a in w.alerts] + monitor.late_alerts()
    announce(fired, str(run.path), settings.webhook)
    for w in new:
        if on_window is not None:
            on_window(w)
    return fired


def served_windows(
    run: Run, codec: InstanceCodec, source: str, labels: str | None, size: int
) -> Iterator[tuple[Served, dict[tuple[str, int], Any]]]:
    """Each `size` rows of the table as served instances (predicted now), with their labels."""
    shards = table_shards(source)
    if shards is None:
        raise DataError(
            f"--replay {source}: not a CSV or parquet table; give a .csv or .parquet file, a "
            "folder of such shards, or a glob such as DIR/*.parquet."
        )
    assert run.schema.tabular is not None
    expected = run.schema.tabular.columns + ([labels] if labels else [])
    predictor = Predictor(run, codec)
    version = model_version(run)
    for frame in stream_table(shards, run.config.data, None, expected, size):
        inputs = frame.drop(columns=[labels]) if labels else frame
        instances = _instances(codec, inputs, source)
        answer = predictor([instances])[0]
        if isinstance(answer, GradwiseError):
            raise DataError(f"--replay {source}, rows {frame.index[0]}-{frame.index[-1]}: {answer}")
        outputs = json.loads(answer.predictions)
        rows = [int(i) for i in frame.index]  # the row of the whole table
        n = len(rows)
        served = Served(
            time=[time.time()] * n,
            request_id=[REPLICA] * n,
            row=rows,
            replica_id=[REPLICA] * n,
            model_version=[version] * n,
            confidence=[_confidence(o) for o in outputs],
            prediction=[o.get("prediction") for o in outputs],
            decision=[o.get("decision") for o in outputs],
            instances=instances,
        )
        known = {} if labels is None else _labels(frame[labels], rows)
        yield served, known


def _instances(codec: InstanceCodec, frame: pd.DataFrame, source: str) -> list[BaseModel]:
    """The rows as the server reads them from a client's JSON (missing values as null), in
    requests of at most MAX_INSTANCES.

    Raises:
        DataError: a value the run's request schema refuses (the row and column named).
    """
    cells = frame.astype(object).where(frame.notna(), None)  # Python numbers, full precision
    records = cells.to_dict(orient="records")
    out: list[BaseModel] = []
    for a in range(0, len(records), MAX_INSTANCES):
        try:
            out += codec.parse(json.dumps({"instances": records[a : a + MAX_INSTANCES]}))
        except ValidationError as exc:
            error = exc.errors()[0]
            where = error["loc"]  # ("instances", i, column)
            row = int(frame.index[a + int(where[1])]) if len(where) > 1 else a
            column = f" column {where[2]!r}" if len(where) > 2 else ""
            raise DataError(
                f"--replay {source}: row {row}{column}: {error['msg']} (found "
                f"{error.get('input')!r}); the table must hold "
                "what the server accepts (the run's columns, numbers where it reads numbers)."
            ) from None
    return out


def _confidence(output: dict[str, Any]) -> float:
    conf = output.get("confidence")
    return float("nan") if conf is None else float(conf)


def _labels(column: pd.Series, rows: list[int]) -> dict[tuple[str, int], Any]:
    """Each labelled row's label, keyed as feedback is ((request id, row)), as JSON would
    carry it (so that 3.0 read from a column with gaps compares as the class 3)."""
    values = column.astype(object).where(column.notna(), None).tolist()
    return {
        (REPLICA, row): int(v) if isinstance(v, float) and v.is_integer() else v
        for row, v in zip(rows, values)
        if v is not None
    }
