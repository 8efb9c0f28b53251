"""A run killed with SIGKILL mid-epoch and resumed ends exactly like an uninterrupted one."""

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

import gradwise
from tests.conftest import tiny_config

KILLER = """
import json, os, signal, sys
import gradwise

cfg, out = json.loads(sys.argv[1]), sys.argv[2]
kill_epoch, kill_batch = int(sys.argv[3]), int(sys.argv[4])

def progress(epoch, done, total):
    if epoch == kill_epoch and done >= kill_batch:
        os.kill(os.getpid(), signal.SIGKILL)

gradwise.train(cfg, out=out, progress=progress)
"""

CONFIG = tiny_config(
    data={"source": "builtin:digits", "augment": [{"name": "noise", "std": 0.1}]},
    model={"arch": "mlp", "hidden": [32], "dropout": 0.2},
    train={"epochs": 6, "early_stopping": {"metric": "val.loss", "patience": 3}},
)


def _without_times(records):
    return [{k: v for k, v in r.items() if k != "epoch_s"} for r in records]


@pytest.mark.parametrize("seed", [1, 2])
def test_resume_after_sigkill_gives_identical_metrics(seed, tmp_path: Path):
    rng = random.Random(seed)
    kill_epoch, kill_batch = rng.randint(2, 5), rng.randint(1, 18)
    killed = tmp_path / "killed"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            KILLER,
            json.dumps(CONFIG),
            str(killed),
            str(kill_epoch),
            str(kill_batch),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr
    assert not (killed / "metrics.json").exists()
    done_before = len((killed / "metrics.jsonl").read_text().splitlines())
    assert done_before == kill_epoch - 1

    resumed = gradwise.train(CONFIG, out=killed, resume=True)
    straight = gradwise.train(CONFIG, out=tmp_path / "straight")

    a, b = dict(resumed.metrics), dict(straight.metrics)
    a.pop("wall_s"), b.pop("wall_s")
    assert a == b
    assert _without_times(resumed.history) == _without_times(straight.history)
    assert "resumed from epoch" in (killed / "train.log").read_text()


def test_resume_refuses_a_different_config(tmp_path: Path):
    gradwise.train(tiny_config(), out=tmp_path / "r")
    changed = tiny_config(train={"batch_size": 32})
    with pytest.raises(gradwise.ConfigError, match="train.batch_size"):
        gradwise.train(changed, out=tmp_path / "r", resume=True)


def test_resume_can_extend_the_epochs(tmp_path: Path):
    gradwise.train(tiny_config(), out=tmp_path / "r")
    longer = gradwise.train(tiny_config(train={"epochs": 4}), out=tmp_path / "r", resume=True)
    assert [r["epoch"] for r in longer.history] == [1, 2, 3, 4]


def test_an_existing_run_is_never_overwritten_silently(tmp_path: Path):
    gradwise.train(tiny_config(), out=tmp_path / "r")
    with pytest.raises(gradwise.ConfigError, match="--resume to continue it, --overwrite"):
        gradwise.train(tiny_config(), out=tmp_path / "r")
    run = gradwise.train(tiny_config(), out=tmp_path / "r", overwrite=True)
    assert run.metrics["epochs"] == 2


def test_checkpoint_holds_no_pickle(tmp_path: Path):
    gradwise.train(tiny_config(), out=tmp_path / "r")
    files = sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir())
    assert files == ["last.safetensors"]
    head = (tmp_path / "r" / "checkpoints" / "last.safetensors").read_bytes()[:8]
    header_len = int.from_bytes(head, "little")
    header = json.loads(
        (tmp_path / "r" / "checkpoints" / "last.safetensors").read_bytes()[8 : 8 + header_len]
    )
    assert "rng.torch" in header and "optim.0.exp_avg" in header
