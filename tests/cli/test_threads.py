"""--threads on verbs that run a trained model: it sets this process's torch threads and
GRADWISE_THREADS, so retrains inside the verb use the same count."""

from __future__ import annotations

import os

import pytest
import torch
import typer
from typer.testing import CliRunner

from gradwise.cli.threads import ThreadsOpt
from gradwise.training.threads import THREADS_ENV

runner = CliRunner()


def _app(seen: list[int]) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def verb(threads: ThreadsOpt = None) -> None:
        seen.append(torch.get_num_threads())

    return app


@pytest.fixture(autouse=True)
def _restore(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_threads_sets_the_count_and_the_environment():
    seen: list[int] = []
    done = runner.invoke(_app(seen), ["--threads", "2"])
    assert done.exit_code == 0, done.output
    assert seen == [2] and os.environ[THREADS_ENV] == "2"


def test_without_it_a_verb_uses_one_thread_and_a_bad_environment_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch,
):
    seen: list[int] = []
    assert runner.invoke(_app(seen), []).exit_code == 0 and seen == [1]
    monkeypatch.setenv(THREADS_ENV, "0")
    done = runner.invoke(_app(seen), [])
    assert done.exit_code == 2 and "GRADWISE_THREADS='0'" in done.output
