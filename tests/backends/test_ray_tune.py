"""`tune --backend ray` drives the study's own sampler: at the same sampler seed and trial
count, trials run one at a time propose the same parameters and find the same best trial
as the local search."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gradwise.config import TuneSettings, load_config
from gradwise.tuning import run_tune
from tests.conftest import tiny_config

pytestmark = pytest.mark.ray  # make test-ray (CI runs it): a local cluster takes minutes
pytest.importorskip("ray", reason="the Ray extra is not installed (gradwise[ray])")

from gradwise.backends.ray_tune import tune_ray  # noqa: E402


def test_ray_tune_finds_the_local_best_trial(ray_cluster: Any, tmp_path: Path) -> None:
    base = load_config(tiny_config(train={"epochs": 2}))
    settings = TuneSettings(trials=3, seeds=0, sampler_seed=7)
    local = run_tune(base, tmp_path / "local", settings)
    on_ray = tune_ray(base, tmp_path / "ray", settings)
    assert on_ray.best_trial == local.best_trial
    assert on_ray.best_params == local.best_params
    assert on_ray.best_value == pytest.approx(local.best_value, rel=1e-6)
    assert [t.params for t in on_ray.trials] == [t.params for t in local.trials]
    assert _trial_files(tmp_path / "ray") == _trial_files(tmp_path / "local")


def _trial_files(folder: Path) -> set[Path]:
    """The run files each trial wrote (every fold's run, when trials are cross-validated)."""
    return {p.relative_to(folder) for p in (folder / "trials").rglob("metrics.json")}
