"""Runs the deploy tests share: trained once per session, each in a second or two."""

from __future__ import annotations

from pathlib import Path

import pytest

import gradwise
from gradwise.run import Run
from tests.conftest import tiny_config


def digits_mlp(out: Path) -> Run:
    """A digits MLP that reaches about 95% test accuracy."""
    return gradwise.train(
        tiny_config(model={"hidden": [64]}, train={"epochs": 8, "diagnostics": False}), out=out
    )


def digits_cnn(out: Path) -> Run:
    cfg = tiny_config(
        model={"arch": "cnn", "channels": [8, 16], "dropout": 0.0},
        train={"epochs": 3, "diagnostics": False},
    )
    return gradwise.train(cfg, out=out)


@pytest.fixture(scope="session")
def mlp_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return digits_mlp(tmp_path_factory.mktemp("mlp") / "run")


@pytest.fixture(scope="session")
def cnn_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return digits_cnn(tmp_path_factory.mktemp("cnn") / "run")
