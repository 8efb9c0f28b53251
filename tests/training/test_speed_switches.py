"""bf16, torch.compile and channels-last reach the accuracy of fp32 eager within noise."""

import importlib
from pathlib import Path

import pytest

import gradwise
from tests.conftest import tiny_config

MLP = tiny_config(
    model={"arch": "mlp", "hidden": [64], "dropout": 0.0},
    train={"epochs": 8, "optimizer": {"lr": 3e-3}},
)
CNN = tiny_config(
    model={"arch": "cnn", "channels": [8, 16], "convs_per_block": 1},
    train={"epochs": 10, "optimizer": {"lr": 1e-2}},
)


def _accuracy(cfg, tmp_path: Path, name: str, **overrides) -> float:
    return gradwise.train(cfg, out=tmp_path / name, **overrides).metrics["test"]["accuracy"]


def test_bf16_autocast_matches_fp32(tmp_path: Path):
    fp32 = _accuracy(MLP, tmp_path, "fp32")
    bf16 = _accuracy(MLP, tmp_path, "bf16", **{"train.precision": "bf16"})
    assert fp32 > 0.9
    assert bf16 == pytest.approx(fp32, abs=0.03)


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_native_bf16_says_fp32_is_faster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, native: bool
):
    loop = importlib.import_module("gradwise.training.loop")  # gradwise.train is also a function
    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: native)
    cfg = tiny_config(train={"epochs": 1, "precision": "bf16"})
    with caplog.at_level("WARNING", logger="gradwise"):
        gradwise.train(cfg, out=tmp_path / "r")
    warned = [r.getMessage() for r in caplog.records if "no native bf16" in r.getMessage()]
    assert len(warned) == (0 if native else 1)
    if warned:
        assert "train.precision: fp32" in warned[0]


def test_channels_last_cnn_matches_the_default_layout(tmp_path: Path):
    nchw = _accuracy(CNN, tmp_path, "nchw", **{"train.channels_last": False})
    nhwc = _accuracy(CNN, tmp_path, "nhwc", **{"train.channels_last": True})
    assert nchw > 0.85
    assert nhwc == pytest.approx(nchw, abs=0.03)


def test_torch_compile_matches_eager(tmp_path: Path):
    cfg = tiny_config(
        model={"arch": "mlp", "hidden": [32], "dropout": 0.0},
        train={"epochs": 3, "optimizer": {"lr": 3e-3}, "diagnostics": False},
    )
    eager = _accuracy(cfg, tmp_path, "eager")
    compiled = _accuracy(cfg, tmp_path, "compiled", **{"train.compile": True})
    assert compiled == pytest.approx(eager, abs=0.03)
