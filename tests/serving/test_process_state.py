"""A Python caller's process is its own: `gradwise.serve(run)` and the app factory leave its
garbage collector, torch threads and environment as they were; `gradwise serve`, a process
that exists to serve, tunes its own."""

from __future__ import annotations

import gc
import os
from typing import Any

import pytest
import torch
import uvicorn
from fastapi.testclient import TestClient
from typer.testing import CliRunner

import gradwise
import gradwise.serving
from gradwise.cli import app as cli
from gradwise.serving import runner
from gradwise.serving.runner import free_port

State = tuple[tuple[int, ...], int, int, dict[str, str]]


def process_state() -> State:
    return gc.get_threshold(), gc.get_freeze_count(), torch.get_num_threads(), dict(os.environ)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[State]:
    """Serving returns as soon as the server would start, recording the process then; the
    process is not dedicated to serving (as a test's, or a notebook's, is not)."""
    seen: list[State] = []

    def serve_on(server: Any, sock: Any, on_listening: Any) -> None:
        sock.close()
        seen.append(process_state())

    monkeypatch.setattr(runner, "_serve_on", serve_on)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: seen.append(process_state()))
    monkeypatch.setattr(runner, "_dedicated", False)
    return seen


def other_thread_count() -> int:
    return 2 if torch.get_num_threads() == 1 else 1


def test_the_app_factory_leaves_the_process_as_it_was(digits_run):
    before = process_state()
    with TestClient(gradwise.serving.app(digits_run, store="off")) as client:
        assert client.get("/healthz").status_code == 200
    assert process_state() == before


def test_serve_from_python_gives_back_torch_threads_and_leaves_gc_alone(digits_run, served):
    before = process_state()
    threads = other_thread_count()
    gradwise.serve(digits_run, port=free_port(), store="off", threads=threads)
    gc_thresholds, n_frozen, n_threads, _ = served[0]
    assert n_threads == threads  # as asked, while serving
    assert (gc_thresholds, n_frozen) == before[:2]  # the caller's collector, untouched
    assert process_state() == before  # threads given back


def test_serve_with_workers_from_python_gives_back_the_environment(digits_run, served):
    before = process_state()
    gradwise.serve(digits_run, port=free_port(), store="off", workers=2)
    assert runner.ENV in served[0][3]  # the workers read their settings from it
    assert runner.ENV not in os.environ
    assert process_state() == before


def test_the_cli_tunes_its_own_process(digits_run, served):
    before = process_state()
    port = str(free_port())
    try:
        result = CliRunner().invoke(
            cli, ["serve", str(digits_run.path), "--port", port, "--store", "off", "--threads", "1"]
        )
        assert result.exit_code == 0, result.output
        gc_thresholds, n_frozen, n_threads, _ = served[0]
        assert gc_thresholds == (10_000, 50, 50) and n_frozen > before[1]
        assert n_threads == 1
        assert torch.get_num_threads() == 1  # kept: the process exists to serve
    finally:  # this test's process is pytest's: give it back
        gc.unfreeze()
        gc.set_threshold(*before[0])


def test_the_batching_sweep_from_python_leaves_the_process_as_it_was(
    digits_run, served, tmp_path, monkeypatch
):
    from gradwise.serving import tune
    from gradwise.serving.load import LoadResult
    from tests.serving.conftest import copy_run

    during: list[State] = []

    def fake_wrk(*args: Any) -> LoadResult:  # the load generator is not what is tested
        during.append(process_state())
        return LoadResult(
            requests=100, errors=0, duration_s=1.0, rps=100.0, p50_ms=1.0, p95_ms=2.0,
            p99_ms=3.0, mean_ms=1.2, max_ms=4.0, connections=64,
        )  # fmt: skip

    monkeypatch.setattr(tune, "wrk_path", lambda: "wrk")
    monkeypatch.setattr(tune, "run_wrk", fake_wrk)
    run = copy_run(digits_run, tmp_path / "run")
    before = process_state()
    threads = other_thread_count()
    result = gradwise.serve(
        run, tune=True, tune_batches=[1], tune_waits=[0], tune_seconds=1, threads=threads
    )
    assert result is not None and len(result.trials) == 1
    assert during[0][2] == threads and during[0][:2] == before[:2]
    assert process_state() == before
