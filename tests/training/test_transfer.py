"""Transfer learning: init_from loads matching tensors, freeze keeps parts fixed."""

from pathlib import Path

import pytest
import torch

import gradwise
from gradwise.errors import ConfigError, NotTrainedError
from tests.conftest import tiny_config


@pytest.fixture
def source(tmp_path: Path) -> Path:
    gradwise.train(
        tiny_config(train={"epochs": 4, "optimizer": {"lr": 3e-3}}), out=tmp_path / "source"
    )
    return tmp_path / "source"


def test_init_from_loads_matching_tensors_and_reports_the_rest(source: Path, tmp_path: Path):
    # same body, a wider head: the head is skipped (shape), the body is loaded
    cfg = tiny_config(
        model={"hidden": [32], "init_from": str(source)},
        data={"source": "builtin:digits"},
        train={"epochs": 1},
    )
    warm = gradwise.train(cfg, out=tmp_path / "warm")
    cold = gradwise.train(tiny_config(train={"epochs": 1}), out=tmp_path / "cold")
    log = (tmp_path / "warm" / "train.log").read_text()
    assert f"init_from {source}: loaded 4 tensors" in log
    assert warm.history[0]["val.loss"] < cold.history[0]["val.loss"]


def test_init_from_skips_tensors_whose_shape_differs(source: Path, tmp_path: Path):
    cfg = tiny_config(
        model={"hidden": [32], "init_from": str(source)},
        data={"source": "builtin:iris"},
        train={"epochs": 1},
    )
    gradwise.train(cfg, out=tmp_path / "iris")  # 4 inputs and 3 classes: only a bias fits
    log = (tmp_path / "iris" / "train.log").read_text()
    assert "loaded 1 tensors, skipped 3" in log
    assert "skipped body.0.weight: shape (32, 64) in the source, (32, 4) here" in log
    wider = tiny_config(model={"hidden": [32, 16], "init_from": str(source)}, train={"epochs": 1})
    gradwise.train(wider, out=tmp_path / "wider")
    log = (tmp_path / "wider" / "train.log").read_text()
    assert "skipped head.weight: shape (10, 32) in the source, (10, 16) here" in log


def test_init_from_an_unrelated_architecture_is_refused(source: Path, tmp_path: Path):
    cfg = tiny_config(model={"arch": "cnn", "channels": [4], "init_from": str(source)})
    with pytest.raises(ConfigError, match="no tensor matches"):
        gradwise.train(cfg, out=tmp_path / "cnn")


def test_init_from_a_run_that_does_not_exist(tmp_path: Path):
    cfg = tiny_config(model={"init_from": str(tmp_path / "nothing")})
    with pytest.raises(NotTrainedError, match="init_from: .*nothing holds no model"):
        gradwise.train(cfg, out=tmp_path / "r")


def test_frozen_layers_stay_fixed_until_unfrozen(source: Path, tmp_path: Path):
    start = gradwise.load(source).model.body[0].weight.detach().clone()
    cfg = tiny_config(
        model={"hidden": [32], "init_from": str(source)}, train={"epochs": 2, "freeze": ["body"]}
    )
    frozen = gradwise.train(cfg, out=tmp_path / "frozen")
    torch.testing.assert_close(frozen.model.body[0].weight, start)
    assert not torch.equal(frozen.model.head.weight, gradwise.load(source).model.head.weight)
    cfg = tiny_config(
        model={"hidden": [32], "init_from": str(source)},
        train={"epochs": 3, "freeze": ["body"], "unfreeze_epoch": 3},
    )
    thawed = gradwise.train(cfg, out=tmp_path / "thawed")
    assert not torch.equal(thawed.model.body[0].weight, start)
    assert "epoch 3: unfroze body" in (tmp_path / "thawed" / "train.log").read_text()


def test_freezing_an_unknown_part_names_the_parts(tmp_path: Path):
    with pytest.raises(ConfigError, match="names no part of this model; its parts are body, head"):
        gradwise.train(tiny_config(train={"freeze": ["encoder"]}), out=tmp_path / "r")
