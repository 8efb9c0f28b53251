"""A run killed with SIGKILL mid-epoch and resumed ends exactly like an uninterrupted one."""

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

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

# checkpoint_every_s 0: a checkpoint after every epoch, so the kill always lands after one.
CONFIG = tiny_config(
    data={"source": "builtin:digits", "augment": [{"name": "noise", "std": 0.1}]},
    model={"arch": "mlp", "hidden": [32], "dropout": 0.2},
    train={
        "epochs": 6,
        "early_stopping": {"metric": "val.loss", "patience": 3},
        "checkpoint_every_s": 0,
    },
)


class Interrupted(Exception):
    pass


def _interrupt(cfg: dict, out: Path, epoch: int, batch: int) -> None:
    """Train `cfg` into `out` and stop it in `epoch`, once `batch` batches are done."""

    def progress(at_epoch: int, done: int, total: int) -> None:
        if at_epoch == epoch and done >= batch:
            raise Interrupted

    with pytest.raises(Interrupted):
        gradwise.train(cfg, out=out, progress=progress)


def _without_times(records):
    return [{k: v for k, v in r.items() if k != "epoch_s"} for r in records]


def _same_run(a: gradwise.Run, b: gradwise.Run) -> None:
    ma, mb = dict(a.metrics), dict(b.metrics)
    ma.pop("wall_s"), mb.pop("wall_s")
    assert ma == mb
    assert _without_times(a.history) == _without_times(b.history)


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

    _same_run(resumed, straight)
    assert "resumed from epoch" in (killed / "train.log").read_text()


def test_resumed_cnn_in_channels_last_with_adamw_ends_like_an_uninterrupted_run(tmp_path: Path):
    # The fused AdamW kernel needs its moments in the parameters' (channels_last) layout.
    cfg = tiny_config(
        model={"arch": "cnn", "channels": [4, 8]},
        train={"epochs": 3, "optimizer": {"name": "adamw"}, "checkpoint_every_s": 0},
    )
    _interrupt(cfg, tmp_path / "resumed", epoch=2, batch=5)
    resumed = gradwise.train(cfg, out=tmp_path / "resumed", resume=True)
    straight = gradwise.train(cfg, out=tmp_path / "straight")
    _same_run(resumed, straight)


def test_resume_restores_the_best_weights_of_an_epoch_before_the_checkpoint(tmp_path: Path):
    # val.loss maximised: the first epoch is the best, two checkpoints before the end.
    early = {"metric": "val.loss", "mode": "max", "patience": None}
    cfg = tiny_config(train={"epochs": 3, "early_stopping": early, "checkpoint_every_s": 0})
    _interrupt(cfg, tmp_path / "resumed", epoch=3, batch=2)
    saved = load_file(tmp_path / "resumed" / "model.safetensors")  # written with the checkpoint
    resumed = gradwise.train(cfg, out=tmp_path / "resumed", resume=True)
    straight = gradwise.train(cfg, out=tmp_path / "straight")
    assert straight.metrics["best_epoch"] == 1 and straight.metrics["restored_best"]
    _same_run(resumed, straight)
    final = load_file(tmp_path / "straight" / "model.safetensors")
    assert all(torch.equal(saved[k], final[k]) for k in final)


def test_checkpoints_wait_for_checkpoint_every_s_but_the_last_epoch_is_saved(tmp_path: Path):
    out = tmp_path / "r"
    seen: list[bool] = []

    def on_epoch_end(record: dict) -> None:
        seen.append((out / "checkpoints" / "last.safetensors").is_file())

    cfg = tiny_config(train={"epochs": 3, "checkpoint_every_s": 3600})
    gradwise.train(cfg, out=out, on_epoch_end=on_epoch_end)
    assert seen == [False, False, True]
    longer = gradwise.train(tiny_config(train={**cfg["train"], "epochs": 4}), out=out, resume=True)
    assert [r["epoch"] for r in longer.history] == [1, 2, 3, 4]


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
