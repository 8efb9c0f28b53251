"""Replaying a table through the monitor: window by window, equal to the detectors called on
the whole table, the same from CSV or parquet shards, with the rows held bounded by the window
however many windows pass."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

import gradwise
from gradwise.auditing.drift import DriftSettings, detect
from gradwise.cli import app
from gradwise.config import MonitorSettings
from gradwise.monitoring import Monitor, MonitorReport
from gradwise.monitoring.baseline import build_baseline, model_inputs, raw_features
from gradwise.monitoring.replay import served_windows
from gradwise.monitoring.results import drift_summary
from gradwise.monitoring.windows import parse_window, window_bounds
from gradwise.run import Run
from tests.conftest import tiny_config
from tests.serving.conftest import churn_frame

WINDOW = 100
N_ROWS = 3000
CHANGE = 1500  # the first row whose age is shifted


@pytest.fixture(scope="module")
def churn_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A classifier of churn from age, income and city (named columns, some missing)."""
    folder = tmp_path_factory.mktemp("replay-run")
    churn_frame().to_csv(folder / "churn.csv", index=False)
    cfg = tiny_config(
        data={"source": f"csv:{folder / 'churn.csv'}", "target": "churn"},
        train={"epochs": 20, "optimizer": {"lr": 1e-2}},
    )
    return gradwise.train(cfg, out=folder / "run")


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    """Fresh rows like the training ones; from row CHANGE on, everyone is 25 years older."""
    frame = churn_frame(N_ROWS, seed=1)
    frame.loc[CHANGE:, "age"] += 25
    return frame


@pytest.fixture(scope="module")
def csv_file(table: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("replay-csv") / "traffic.csv"
    table.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def report(churn_run: Run, csv_file: Path) -> MonitorReport:
    return gradwise.monitor(churn_run, replay=str(csv_file), labels="churn", window=str(WINDOW))


def test_each_window_equals_the_detectors_called_on_the_whole_table(
    churn_run: Run, table: pd.DataFrame, report: MonitorReport
):
    run, settings = churn_run, MonitorSettings(window=str(WINDOW))
    assert [(w.start, w.end) for w in report.windows] == [
        (a, a + WINDOW) for a in range(0, N_ROWS, WINDOW)
    ]
    base = build_baseline(run, settings.reference_rows, run.config.seed)
    assert base.raw is not None and base.embed is not None
    codec = Monitor(run, None, settings).codec
    assert codec is not None
    features = table.drop(columns=["churn"])
    probs = run.predict_proba(features)
    predicted = np.asarray(run.predict(features)).astype(str)
    raw_settings = DriftSettings(alpha=settings.alpha, detectors=settings.raw_detectors)
    embed_settings = DriftSettings(alpha=settings.alpha, detectors=settings.embed_detectors)
    for w in report.windows:
        a, b, seed = w.start, w.end, run.config.seed + w.index
        instances = codec.parse(json.dumps({"instances": _records(features[a:b])}))
        raw = raw_features(run, codec)(instances)
        emb = run.embed(model_inputs(run, codec, instances)).double().numpy()
        assert w.raw_drift == drift_summary(detect(base.raw, raw, raw_settings, seed=seed))
        assert w.embed_drift == drift_summary(detect(base.embed, emb, embed_settings, seed=seed))
        assert w.mean_confidence == pytest.approx(probs[a:b].max(axis=1).mean(), abs=1e-6)
        assert w.n_labelled == WINDOW
        assert w.accuracy == pytest.approx(np.mean(predicted[a:b] == table["churn"][a:b]))
    assert not any(w.drifted for w in report.windows if w.end <= CHANGE - 2 * WINDOW)
    assert all(w.drifted for w in report.windows if w.start >= CHANGE)


def test_a_long_drift_is_retrained_on_its_newest_windows_with_their_labels(
    churn_run: Run, table: pd.DataFrame, report: MonitorReport
):
    retrain = report.retrain
    assert retrain is not None
    n_windows, n_drifted = len(report.windows), (N_ROWS - CHANGE) // WINDOW
    held = max(churn_run.config.monitor.persist, 10)  # Monitor.retrain_windows
    assert n_drifted > held and retrain.last == n_windows - 1
    assert retrain.first == n_windows - held
    a, b = report.windows[retrain.first].start, report.windows[retrain.last].end
    kept = pd.read_csv(retrain.file)
    assert retrain.n == len(kept) == b - a == retrain.n_labelled
    np.testing.assert_array_equal(kept["churn"], table["churn"][a:b])
    np.testing.assert_allclose(kept["age"], table["age"][a:b])


def test_the_rows_held_do_not_grow_with_the_number_of_windows(churn_run: Run, csv_file: Path):
    settings = MonitorSettings(window=str(WINDOW))
    monitor = Monitor(churn_run, None, settings)
    assert monitor.codec is not None
    held, seen = [], 0
    for served, labels in served_windows(churn_run, monitor.codec, str(csv_file), "churn", WINDOW):
        monitor.feed(served, labels)
        seen += len(served)
        held.append(monitor.held_rows)
        drifted = 0
        for w in reversed(monitor.windows[-monitor.retrain_windows :]):
            if not w.drifted:
                break
            drifted += 1
        # the open window is empty here (a batch is a window): only a drifted stretch is held
        assert monitor.held_rows == drifted * WINDOW
        assert len(monitor.labels) == monitor.held_rows and monitor.ledger_rows == 0
    assert seen == N_ROWS and monitor.tally.n == N_ROWS
    assert max(held) == monitor.retrain_windows * WINDOW < N_ROWS / 2
    assert held[CHANGE // WINDOW - 3] == 0  # before the drift, nothing is held


def test_time_windows_keep_their_origin_after_the_first_rows_are_forgotten(
    churn_run: Run, csv_file: Path
):
    """About one instance a second, jittered, in windows of WINDOW seconds counted from the
    first instance: the windows `window_bounds` cuts from all the times at once."""
    times = 1e9 + np.arange(N_ROWS) + np.random.default_rng(0).uniform(0, 0.9, N_ROWS)
    monitor = Monitor(churn_run, None, MonitorSettings(window=f"{WINDOW}s"))
    assert monitor.codec is not None
    for served, labels in served_windows(churn_run, monitor.codec, str(csv_file), "churn", 70):
        served.time = [float(times[row]) for row in served.row]
        monitor.feed(served, labels)
    assert monitor.offset > 0  # rows were forgotten before the last windows were cut
    expected = window_bounds(list(times), parse_window(f"{WINDOW}s"))
    assert [(w.start, w.end) for w in monitor.windows] == [(a, b) for a, b, _ in expected]


def test_csv_and_parquet_shards_replay_the_same_windows(
    churn_run: Run, table: pd.DataFrame, report: MonitorReport, tmp_path: Path
):
    (tmp_path / "csv").mkdir(), (tmp_path / "parquet").mkdir()
    for i, a in enumerate(range(0, N_ROWS, 700)):  # shards that do not align with windows
        table[a : a + 700].to_csv(tmp_path / "csv" / f"part-{i}.csv", index=False)
        table[a : a + 700].to_parquet(tmp_path / "parquet" / f"part-{i}.parquet", index=False)
    for source in (str(tmp_path / "csv"), str(tmp_path / "parquet" / "*.parquet")):
        shards = gradwise.monitor(churn_run, replay=source, labels="churn", window=str(WINDOW))
        assert [_numbers(w) for w in shards.windows] == [_numbers(w) for w in report.windows]
        assert shards.served == N_ROWS and shards.store == source


def test_the_cli_prints_a_line_per_window_and_the_summary(churn_run: Run, csv_file: Path):
    result = CliRunner().invoke(
        app,
        ["monitor", str(churn_run.path), "--replay", str(csv_file), "--window", "500"],
        catch_exceptions=False,
    )
    assert result.exit_code == 3, result.output  # the shifted half drifts
    lines = [line for line in result.output.splitlines() if line.startswith("window ")]
    assert len(lines) == N_ROWS // 500 and lines[0].startswith("window 0 from ")
    assert "n=500 raw ok" in lines[0] and "raw DRIFT" in lines[-1]
    assert "accuracy -" in lines[0]  # no --labels: no measured accuracy
    assert f"{N_ROWS} instances served by 1 replica(s): replay ({N_ROWS})" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--replay", "{dir}/missing.txt"], "not a CSV or parquet table"),
        (["--replay", "{csv}", "--labels", "label"], "label"),
        (["--replay", "{csv}", "--window", "1h"], "no arrival times"),
        (["--replay", "{csv}", "--store", "{dir}/s.sqlite"], "drop --store"),
        (["--labels", "churn"], "names the label column of a --replay table"),
        # a word in a number column makes the whole column text: row 0 is the first refused
        (["--replay", "{dir}/bad.csv"], "row 0 column 'age': Input should be a valid number"),
    ],
)
def test_a_bad_replay_is_one_clear_message_and_exit_2(
    churn_run: Run, csv_file: Path, tmp_path: Path, args: list[str], message: str
):
    bad = churn_frame(20).astype({"age": object})
    bad.loc[5, "age"] = "old"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    filled = [a.format(dir=tmp_path, csv=csv_file) for a in args]
    result = CliRunner().invoke(app, ["monitor", str(churn_run.path), *filled])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output


def test_a_run_that_reads_no_table_rows_cannot_replay_one(csv_file: Path, tmp_path: Path):
    digits = gradwise.train(tiny_config(), out=tmp_path / "digits")
    result = CliRunner().invoke(app, ["monitor", str(digits.path), "--replay", str(csv_file)])
    assert result.exit_code == 2, result.output
    assert "does not read table rows (it takes image input)" in " ".join(result.output.split())


def _records(frame: pd.DataFrame) -> list[dict]:
    return frame.astype(object).where(frame.notna(), None).to_dict(orient="records")


def _numbers(w) -> tuple:
    """A window's evidence, without when it was replayed."""
    return (
        w.start,
        w.end,
        w.raw_drift,
        w.embed_drift,
        w.output_drift,
        w.mean_confidence,
        w.accuracy,
        [a.kind for a in w.alerts],
    )
