"""A tiny audited run shared by the report's tests: a digits MLP with five of the seven
checks (robustness and shift left out, so their sections must say how to make them) and its
explanations."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import gradwise
from tests.conftest import tiny_config

DATA = Path(__file__).parent / "data"
FAST_AUDIT = {
    "generalisation": {"fractions": [0.3, 1.0], "seeds": 1},
    "data_quality": {"folds": 2, "epochs": 1},
    "robustness": {"eps": [0.5, 1.0], "steps": 2, "max_samples": 64},
    "shift": {"sample_size": 120, "power_repeats": 2, "permutations": 20},
}
AUDITED = ["generalisation", "baseline", "calibration", "uncertainty", "data_quality"]


@pytest.fixture(scope="session")
def audited_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = gradwise.train(
        tiny_config(train={"epochs": 3}, audit=FAST_AUDIT),
        out=tmp_path_factory.mktemp("report") / "run",
    )
    gradwise.audit(run, checks=AUDITED)
    gradwise.explain(run)
    return Path(run.path)


@pytest.fixture
def run_copy(audited_run: Path, tmp_path: Path) -> Path:
    """A copy of the audited run that a test may add files to."""
    return Path(shutil.copytree(audited_run, tmp_path / "run"))


def add_monitor(run_dir: Path) -> None:
    """The monitor's files, from the fixture of its format (three windows, two alerts)."""
    shutil.copytree(DATA / "monitor", run_dir / "monitor")
