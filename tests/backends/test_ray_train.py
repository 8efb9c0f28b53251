"""`train --backend ray` (Ray Train, 2 workers) writes the run torchrun writes with 2
processes: the same pipeline runs in each worker, so at the same seed the metrics agree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import gradwise
from tests.conftest import tiny_config

pytestmark = pytest.mark.ray  # make test-ray (CI runs it): a local cluster takes minutes
pytest.importorskip("ray", reason="the Ray extra is not installed (gradwise[ray])")

from gradwise.backends.ray_train import train_ray  # noqa: E402

TOLERANCE = 1e-4  # float sums over gloo's all-reduce, in whichever order the ranks meet


def _torchrun(config: Path, out: Path) -> dict[str, Any]:
    """The same config trained by `gradwise train --nproc 2` (torchrun, DDP over gloo)."""
    cmd = [sys.executable, "-m", "gradwise", "train", str(config), "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*cmd, "--nproc", "2", "--quiet"], check=True, env=env, capture_output=True)
    return json.loads((out / "metrics.json").read_text())


def test_ray_train_with_two_workers_matches_torchrun(ray_cluster: Any, tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(train={"epochs": 3, "batch_size": 64})))
    run = train_ray(config, tmp_path / "ray", workers=2)
    assert gradwise.load(run.path).metrics["epochs"] == 3
    assert (run.path / "config.given.yaml").read_text() == config.read_text()
    reference = _torchrun(config, tmp_path / "torchrun")
    for split in ("train", "val", "test"):
        assert run.metrics[split] == pytest.approx(reference[split], rel=TOLERANCE), split
    files = {p.name for p in run.path.iterdir()}
    assert files == {p.name for p in (tmp_path / "torchrun").iterdir()}
