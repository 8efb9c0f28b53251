"""`gradwise train --nproc 2` (DDP over gloo) matches a single-process run closely."""

import json
import subprocess
import sys
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file

from tests.conftest import tiny_config


def _train(config: Path, out: Path, *extra: str) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gradwise.cli",
            "train",
            str(config),
            "--out",
            str(out),
            "-q",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_two_processes_match_one(tmp_path: Path):
    cfg = tiny_config(
        model={"arch": "mlp", "hidden": [32], "dropout": 0.0},
        train={"epochs": 2, "grad_clip": None, "diagnostics": False},
    )
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(cfg))
    _train(config, tmp_path / "one")
    _train(config, tmp_path / "two", "--nproc", "2")

    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["test"]["loss"] == pytest_approx(one["test"]["loss"])
    w1 = load_file(str(tmp_path / "one" / "model.safetensors"))
    w2 = load_file(str(tmp_path / "two" / "model.safetensors"))
    for name in w1:
        torch.testing.assert_close(w2[name], w1[name], rtol=1e-4, atol=1e-5)


def pytest_approx(value: float):
    import pytest

    return pytest.approx(value, rel=1e-4)
