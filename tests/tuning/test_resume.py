"""A study survives `kill -9`: the rerun keeps every finished trial and runs the killed one
again; two local workers share one study without overshooting it or repeating a trial."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import yaml
from optuna.trial import TrialState

import gradwise
from gradwise.tuning.study import open_storage, storage_url
from tests.conftest import tiny_config

SRC = str(Path(gradwise.__file__).resolve().parents[1])


def _trials(out: Path) -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(storage_url(out, None))
    return optuna.load_study(study_name="tiny", storage=storage).get_trials()


def _trials_while_running(out: Path) -> list[optuna.trial.FrozenTrial]:
    """The trials so far; none while the study is still being created or the database is
    busy (the next poll reads it)."""
    try:
        return _trials(out)
    except Exception:
        return []


def _tune(config: Path, out: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "gradwise", "tune", str(config), "--out", str(out), "-q"]
    path = os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([*cmd, *extra], env=env, stderr=subprocess.PIPE, text=True)


def test_sigkill_mid_study_then_rerun_continues_with_every_finished_trial(tmp_path: Path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(tiny_config(train={"epochs": 4})))
    out = tmp_path / "study"
    proc = _tune(config, out, "--trials", "4", "--seeds", "0", "--pruner", "none")
    finished: list = []
    running: list = []
    while proc.poll() is None:  # kill it while a trial trains, two or more being done
        time.sleep(0.05)
        if (out / "config.yaml").is_file():  # written once the study and its tables exist
            trials = _trials_while_running(out)
            finished = [t for t in trials if t.state == TrialState.COMPLETE]
            # a trial training: all nine parameters of the default space suggested
            running = [t for t in trials if t.state == TrialState.RUNNING and len(t.params) == 9]
            if len(finished) >= 2 and running:
                os.kill(proc.pid, signal.SIGKILL)
                break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read() if proc.stderr else ""
    killed = running[0]

    rerun = _tune(config, out, "--trials", "4", "--seeds", "0", "--pruner", "none")
    assert rerun.wait(timeout=600) == 0, rerun.stderr.read() if rerun.stderr else ""

    trials = {t.number: t for t in _trials(out)}
    for before in finished:  # nothing finished was lost or redone
        after = trials[before.number]
        assert after.state == TrialState.COMPLETE
        assert (after.value, after.params) == (before.value, before.params)
    assert trials[killed.number].state == TrialState.FAIL
    retry = [t for t in trials.values() if t.user_attrs.get("retry_of") == killed.number]
    assert len(retry) == 1 and retry[0].params == killed.params
    assert retry[0].state == TrialState.COMPLETE
    assert sum(t.state == TrialState.COMPLETE for t in trials.values()) == 4
    assert not any(t.state == TrialState.RUNNING for t in trials.values())


def test_two_local_workers_share_one_study(tmp_path: Path):
    out = tmp_path / "study"
    result = gradwise.tune(
        tiny_config(train={"epochs": 4}), out, trials=6, nproc=2, seeds=0, pruner="none"
    )
    trials = _trials(out)
    assert len(trials) == 6 and result.n_complete == 6
    assert sorted(t.number for t in trials) == list(range(6))
    params = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(params)) == 6  # no trial repeated
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both workers ran trials
    assert sorted(p.name for p in (out / "trials").iterdir()) == [str(n) for n in range(6)]
