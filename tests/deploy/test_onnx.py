"""ONNX and OpenVINO fp32 against PyTorch: the same logits within 1e-4."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gradwise.config import BERTConfig, CNNConfig, GPTConfig, MLPConfig, RNNConfig, ViTConfig
from gradwise.data.text import N_SPECIAL, PAD
from gradwise.deploy.onnx import example_inputs, export_onnx
from gradwise.engines.onnx_runtime import OnnxModule
from gradwise.models import InputSpec, build_model

FP32_TOLERANCE = 1e-4


def _tokens(n: int, t: int, vocab: int, gen: torch.Generator) -> torch.Tensor:
    x = torch.randint(N_SPECIAL, vocab, (n, t), generator=gen)
    x[: n // 2, t // 2 :] = PAD  # half the rows padded, half full
    return x


CASES = {
    "mlp": (MLPConfig(arch="mlp", hidden=[32, 16]), InputSpec("tabular", (64,), 10)),
    "cnn": (
        CNNConfig(arch="cnn", channels=[8, 16], batch_norm=True),
        InputSpec("image", (1, 8, 8), 10),
    ),
    "vit": (
        ViTConfig(arch="vit", n_layer=2, d_model=32, n_head=4, pool="cls"),
        InputSpec("image", (1, 8, 8), 10),
    ),
    "lstm": (RNNConfig(arch="lstm", hidden=16), InputSpec("sequence", (12, 3), 4)),
    "bert": (
        BERTConfig(arch="bert", n_layer=2, d_model=32, n_head=4),
        InputSpec("tokens", (16,), 3, vocab_size=40),
    ),
    "gpt": (
        GPTConfig(arch="gpt", n_layer=2, d_model=32, n_head=4),
        InputSpec("tokens", (16,), 3, vocab_size=40),
    ),
    "gpt-lm": (
        GPTConfig(arch="gpt", n_layer=2, d_model=32, n_head=4),
        InputSpec("tokens", (16,), 40, vocab_size=40, per_token=True),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_onnx_runtime_fp32_matches_torch(name: str, tmp_path: Path):
    cfg, spec = CASES[name]
    gen = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = build_model(cfg, spec).eval()
    if spec.kind == "tokens":
        x = _tokens(12, spec.shape[0], spec.vocab_size, gen)
    else:
        x = torch.randn((12, *spec.shape), generator=gen)
    supervised = not spec.per_token
    export_onnx(model, example_inputs(x, spec.kind), tmp_path / "m.onnx", with_features=supervised)
    ort = OnnxModule(tmp_path / "m.onnx")
    with torch.no_grad():
        assert (ort(x) - model(x)).abs().max() < FP32_TOLERANCE  # other batch sizes than traced
        if supervised:
            assert (ort.features(x) - model.features(x)).abs().max() < FP32_TOLERANCE


def test_openvino_fp32_matches_torch(tmp_path: Path):
    from gradwise.deploy.openvino import save_openvino
    from gradwise.engines.openvino_runtime import OpenVINOModule

    cfg, spec = CASES["cnn"]
    torch.manual_seed(0)
    model = build_model(cfg, spec).eval()
    x = torch.randn(20, *spec.shape)
    export_onnx(model, x[:2], tmp_path / "m.onnx", with_features=True)
    save_openvino(tmp_path / "m.onnx", tmp_path / "m.xml", None, transformer=False)
    ov = OpenVINOModule(tmp_path / "m.xml", "f32")
    with torch.no_grad():
        assert (ov(x) - model(x)).abs().max() < FP32_TOLERANCE
