"""The monitor on a served stream whose inputs drift halfway through."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import gradwise
from gradwise.cli import app
from gradwise.monitoring import MonitorReport
from gradwise.run import Run
from tests.monitoring.conftest import WINDOW, Stream, serve_stream


@pytest.fixture(scope="module")
def report(stream: Stream) -> MonitorReport:
    return gradwise.monitor(stream.run, store=str(stream.store), window=WINDOW)


def test_the_drift_alert_fires_within_two_windows_of_the_change_and_never_before(
    stream: Stream, report: MonitorReport
):
    change_window = stream.change // WINDOW  # the first window holding drifted inputs
    clean = [w for w in report.windows if w.end <= stream.change]
    assert len(clean) == change_window >= 3
    assert all(not w.alerts for w in clean)  # no alert of any kind on the undrifted half
    first = min(a.window for a in report.alerts if a.kind == "drift")
    assert change_window <= first <= change_window + 1
    assert all(w.drifted for w in report.windows if w.start >= stream.change and w.complete)


def test_the_label_free_estimate_tracks_accuracy_and_falls_after_the_drift(
    stream: Stream, report: MonitorReport
):
    clean = [w for w in report.windows if w.end <= stream.change]
    after = [w for w in report.windows if w.start >= stream.change]
    n = np.array([w.n for w in clean])
    estimate = np.average([w.estimated_accuracy for w in clean], weights=n)
    measured = np.average([w.accuracy for w in clean], weights=n)
    assert abs(estimate - measured) < 0.03
    assert all(w.n_labelled == w.n for w in report.windows)  # every label was fed back
    later = np.mean([w.estimated_accuracy for w in after])
    assert later < estimate and np.mean([w.accuracy for w in after]) < measured
    assert report.trust is not None and 0 <= report.trust.ece < 0.1


def test_it_writes_the_report_the_windows_the_timeline_and_a_window_to_retrain_on(
    stream: Stream, report: MonitorReport
):
    folder = Path(stream.run.path) / "monitor"
    saved = json.loads((folder / "report.json").read_text())
    assert saved["served"] == len(stream.labels) and saved["alerts"]
    assert saved["settings"]["window"] == f"{WINDOW} instances"
    windows = json.loads((folder / "windows.json").read_text())
    assert [w["index"] for w in windows] == [w.index for w in report.windows]
    assert (folder / "timeline.png").read_bytes()[:4] == b"\x89PNG"
    retrain = report.retrain
    assert retrain is not None and report.windows[retrain.first].start >= stream.change - WINDOW
    a, b = report.windows[retrain.first].start, report.windows[retrain.last].end
    with np.load(retrain.file) as kept:
        assert kept["X"].shape == (retrain.n_labelled, 1, 8, 8) == (b - a, 1, 8, 8)
        np.testing.assert_array_equal(kept["y"], stream.labels[a:b])
    assert retrain.command == f"gradwise train {Path(stream.run.path) / 'monitor' / 'retrain.yaml'}"


@pytest.fixture
def webhook():
    """A local receiver of webhook POSTs: (url, the JSON bodies received)."""
    received: list = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - the http.server API
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):  # quiet
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/", received
    server.shutdown()


def test_the_cli_prints_the_windows_exits_3_and_posts_the_alerts(stream: Stream, webhook):
    url, received = webhook
    args = ["monitor", str(stream.run.path), "--store", str(stream.store), "--window", "150"]
    result = CliRunner().invoke(app, [*args, "--webhook", url])
    assert result.exit_code == 3, result.output
    assert "DRIFT" in result.output and "alerts: " in result.output
    assert "1258 instances served by 1 replica(s)" in result.output
    assert "gradwise train" in result.output and "retrain.yaml" in result.output
    kinds = {a["kind"] for post in received for a in post["alerts"]}
    assert "drift" in kinds and all(post["run"] == str(stream.run.path) for post in received)


def test_undrifted_traffic_exits_0_and_posts_nothing(calibrated_run: Run, tmp_path: Path, webhook):
    url, received = webhook
    run = calibrated_run
    test = run.split("test")
    clean = tmp_path / "clean.sqlite"
    serve_stream(run, clean, np.asarray(test.raw)[:300], test.y.numpy()[:300])
    result = CliRunner().invoke(
        app, ["monitor", str(run.path), "--store", str(clean), "--window", "150", "--webhook", url]
    )
    assert result.exit_code == 0, result.output
    assert "alerts: none" in result.output and not received


def test_follow_reads_only_what_is_new(calibrated_run: Run, tmp_path: Path):
    from gradwise.config import MonitorSettings
    from gradwise.monitoring import Monitor

    run = calibrated_run
    test = run.split("test")
    x, y = np.asarray(test.raw), test.y.numpy()
    db = tmp_path / "p.sqlite"
    serve_stream(run, db, x[:120], y[:120])
    monitor = Monitor(run, f"sqlite:///{db}", MonitorSettings(window="100"))
    first = monitor.update()
    assert [(w.start, w.end) for w in first] == [(0, 100)]
    assert monitor.update() == []  # nothing new: nothing re-evaluated
    serve_stream(run, db, x[120:220], y[120:220])
    assert [(w.start, w.end) for w in monitor.update()] == [(100, 200)]
    stopped = gradwise.monitor(
        run, store=str(db), window=100, follow=True, poll_s=0.01, should_stop=lambda: True
    )
    assert len(stopped.windows) == 2
