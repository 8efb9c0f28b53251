"""The thread count: chosen by the model's size, set by the user three ways, stated in the
run, and never left changed after training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

import gradwise
from gradwise.cli import app
from gradwise.errors import ConfigError
from gradwise.training.threads import (
    PARALLEL_WORK,
    THREADS_ENV,
    choose_threads,
    use_threads,
)
from tests.conftest import tiny_config

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(THREADS_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)


def test_small_models_get_one_thread_and_large_ones_every_core(monkeypatch: pytest.MonkeyPatch):
    small = choose_threads(None, 50_000 * 64)
    assert small.n == 1 and small.reason.startswith("1 (auto: parameters x batch = 3.2e+06")
    monkeypatch.setattr("os.sched_getaffinity", lambda _: {0, 1, 2, 3})
    monkeypatch.setattr("gradwise.training.threads.busy_cores", lambda: 0)
    assert choose_threads(None, PARALLEL_WORK).n == 4
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # a launcher's share of the cores caps it
    assert choose_threads(None, PARALLEL_WORK).n == 3


def test_cores_running_other_work_are_left_to_it(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda _: {0, 1, 2, 3})
    monkeypatch.setattr("gradwise.training.threads.busy_cores", lambda: 1)
    choice = choose_threads(None, PARALLEL_WORK)
    assert choice.n == 3 and "1 of 4 cores run other work" in choice.reason
    monkeypatch.setattr("gradwise.training.threads.busy_cores", lambda: 9)
    assert choose_threads(None, PARALLEL_WORK).n == 1


def test_the_setting_wins_over_the_environment_which_wins_over_the_rule(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv(THREADS_ENV, "3")
    assert choose_threads(None, 10) == choose_threads(None, 10**12)
    assert choose_threads(None, 10).reason == f"3 (set by {THREADS_ENV})"
    assert choose_threads(2, 10).n == 2
    monkeypatch.setenv(THREADS_ENV, "two")
    with pytest.raises(ConfigError, match="GRADWISE_THREADS='two' must be a positive integer"):
        choose_threads(None, 10)


def test_use_threads_restores_the_previous_count():
    before = torch.get_num_threads()
    with use_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_a_run_states_its_threads_and_why(tmp_path: Path):
    before = torch.get_num_threads()
    run = gradwise.train(tiny_config(train={"epochs": 1}), out=tmp_path / "auto")
    env = run.metrics["environment"]
    assert env["threads"] == 1 and env["threads_reason"].startswith("1 (auto: parameters x")
    assert torch.get_num_threads() == before
    assert "threads: 1 (auto" in (run.path / "train.log").read_text()


def test_train_threads_on_the_command_line_goes_into_the_config(tmp_path: Path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config(train={"epochs": 1})))
    out = tmp_path / "r"
    done = runner.invoke(app, ["train", str(config), "--out", str(out), "--threads", "2", "-q"])
    assert done.exit_code == 0, done.output
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["threads"] == 2
    env = json.loads((out / "metrics.json").read_text())["environment"]
    assert env["threads"] == 2 and "set by train.threads" in env["threads_reason"]


def test_the_estimators_take_threads_as_a_parameter(tmp_path: Path):
    import numpy as np

    from gradwise.sklearn import NeuralClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 4))
    y = (x[:, 0] > 0).astype(int)
    clf = NeuralClassifier(hidden=(8,), epochs=1, threads=2, random_state=0, run_dir=tmp_path / "r")
    assert clf.get_params()["threads"] == 2
    clf.fit(x, y)
    assert clf.run_.metrics["environment"]["threads"] == 2
    assert clf.predict(x).shape == (80,)
