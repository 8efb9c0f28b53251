"""The serve verb: --help, bad input as one message and exit code 2, and --tune."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gradwise.cli import app
from gradwise.run import Run

runner = CliRunner()


def _bad(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_help_lists_the_serving_options():
    result = runner.invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for option in (
        "--max-batch",
        "--max-wait-ms",
        "--store",
        "--workers",
        "--api-key-env",
        "--abstain",
        "--tune",
    ):
        assert option in result.output
    assert "127.0.0.1" in result.output
    assert "--window" in runner.invoke(app, ["monitor", "--help"]).output


def test_bad_input_exits_2_with_one_message(digits_run: Run, tmp_path: Path, monkeypatch):
    _bad(["serve", str(tmp_path / "none")], "not found")
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    _bad(["serve", str(digits_run.path), "--api-key-env", "NO_SUCH_KEY"], "NO_SUCH_KEY")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        _bad(["serve", str(digits_run.path), "--port", port, "--store", "off"], "already in use")
    _bad(["serve", str(digits_run.path), "--tune", "--tune-batches", "0,x"], "serve.tune_batches.1")
    _bad(["monitor", str(digits_run.path), "--window", "soon"], "monitor.window 'soon'")
    _bad(["monitor", str(digits_run.path), "--store", "off"], "--store off")


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk (the load generator) is not installed")
def test_tune_measures_each_setting_and_recommends_the_fastest_within_budget(
    digits_run: Run, tmp_path: Path
):
    from tests.serving.conftest import copy_run

    run = copy_run(digits_run, tmp_path / "run")
    args = ["serve", str(run.path), "--tune", "--p95-ms", "1000", "--tune-seconds", "1"]
    result = runner.invoke(app, [*args, "--tune-batches", "1,16", "--tune-waits", "0"])
    assert result.exit_code == 0, result.output
    saved = json.loads((run.path / "serve" / "tune.json").read_text())
    trials = saved["trials"]
    assert [(t["max_batch"], t["max_wait_ms"]) for t in trials] == [(1, 0.0), (16, 0.0)]
    assert all(t["requests"] > 0 and t["errors"] == 0 for t in trials)
    fitting = [t for t in trials if t["within_budget"]]
    best = max(fitting, key=lambda t: t["rps"])
    assert (saved["best"]["max_batch"], saved["best"]["rps"]) == (best["max_batch"], best["rps"])
    assert f"--max-batch {best['max_batch']}" in result.output
