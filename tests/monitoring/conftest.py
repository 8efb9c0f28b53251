"""A served stream whose inputs drift halfway through, with every label fed back."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

import gradwise
import gradwise.serving
from gradwise.auditing.calibration import fit_temperature
from gradwise.run import Run
from tests.conftest import tiny_config

WINDOW = 150


@dataclass(frozen=True)
class Stream:
    run: Run
    store: Path
    change: int  # index of the first drifted instance
    labels: np.ndarray
    drifted: np.ndarray  # per instance: after the change


def drift(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise: Gaussian noise of 3 grey levels (of 16) on every pixel."""
    return np.clip(x + rng.normal(0, 3, x.shape), 0, 16)


def serve_stream(run: Run, store: Path, x: np.ndarray, labels: np.ndarray) -> None:
    """Serve `x` ten instances per request, then feed every label back."""
    with TestClient(gradwise.serving.app(run, store=str(store), flush_interval_s=0.05)) as c:
        for a in range(0, len(x), 10):
            chunk = x[a : a + 10]
            r = c.post("/v1/predict", json={"instances": [{"pixels": s.tolist()} for s in chunk]})
            assert r.status_code == 200
            fed = c.post(
                "/v1/feedback",
                json={"request_id": r.json()["request_id"], "labels": labels[a : a + 10].tolist()},
            )
            assert fed.status_code == 202


@pytest.fixture(scope="session")
def calibrated_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A digits MLP (about 96% accurate) with its temperature fitted on validation."""
    out = tmp_path_factory.mktemp("monitor") / "digits"
    run = gradwise.train(tiny_config(model={"hidden": [128]}, train={"epochs": 30}), out=out)
    val = run.split("val")
    run.set_temperature(fit_temperature(run.logits(val.x).double(), val.y))
    return run


@pytest.fixture(scope="session")
def stream(calibrated_run: Run, tmp_path_factory: pytest.TempPathFactory) -> Stream:
    """Validation and test images (never trained on) in random order, then the same images
    with sensor noise: 629 clean instances, 629 drifted."""
    run = calibrated_run
    val, test = run.split("val"), run.split("test")
    x = np.concatenate([np.asarray(val.raw), np.asarray(test.raw)])
    y = np.concatenate([val.y.numpy(), test.y.numpy()])
    rng = np.random.default_rng(0)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    stream_x = np.concatenate([x, drift(x, rng)])
    labels = np.concatenate([y, y])
    store = tmp_path_factory.mktemp("monitor-store") / "predictions.sqlite"
    serve_stream(run, store, stream_x, labels)
    drifted = np.arange(len(stream_x)) >= len(x)
    return Stream(run, store, len(x), labels, drifted)


# the serving tests' runs (a table with named columns, a regression, a small GPT)
from tests.serving.conftest import lm_run, regression_run, table_run  # noqa: E402, F401
