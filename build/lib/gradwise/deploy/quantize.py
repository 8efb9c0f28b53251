"""Torch-side levers: dynamic int8 for Linear / LSTM / GRU layers, and bf16 weights.

Dynamic int8 (`torch.ao.quantization.quantize_dynamic`) stores weights as int8 with one
scale per tensor and quantizes activations per batch at run time; it needs no calibration.
A quantized module's packed weights have no plain-tensor form for safetensors, so a
`torch-int8` variant stores the fp32 weights and the scheme, and is quantized again when it
is loaded: the same weights give the same int8 weights every time (nothing is unpickled).
Static int8 with calibration goes through ONNX Runtime or NNCF (deploy/onnx.py,
deploy/openvino.py), whose files hold the int8 model itself.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from torch import Tensor, nn

from gradwise.models.spec import Embedder

DYNAMIC_LAYERS: dict[str, type[nn.Module]] = {"Linear": nn.Linear, "LSTM": nn.LSTM, "GRU": nn.GRU}


def dynamic_int8_scheme(model: nn.Module) -> dict[str, Any]:
    """What `torch_dynamic_int8` quantizes in `model`, for model.json."""
    found = sorted(
        {name for name, t in DYNAMIC_LAYERS.items() for m in model.modules() if type(m) is t}
    )
    return {"tool": "torch.ao.quantization.quantize_dynamic", "layers": found, "dtype": "qint8"}


def torch_dynamic_int8(model: nn.Module, layers: list[str] | None = None) -> nn.Module:
    """A copy of `model` (eval, CPU) with its Linear / LSTM / GRU layers dynamically int8."""
    types = {DYNAMIC_LAYERS[name] for name in (layers or list(DYNAMIC_LAYERS))}
    with warnings.catch_warnings():
        # torch.ao.quantization announces its move to the torchao package; it still ships
        # in torch and is what quantizes LSTMs dynamically
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated")
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions")
        return torch.ao.quantization.quantize_dynamic(
            copy.deepcopy(model).eval().cpu(), types, dtype=torch.qint8
        )


class Bf16Module(nn.Module, Embedder):
    """A model whose weights are bf16: float inputs are cast to bf16 on the way in, outputs
    back to float32 on the way out (token ids pass unchanged)."""

    head = None  # the inner head reads bf16 features

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.inner = model.to(torch.bfloat16).eval()

    def forward(self, x: Tensor) -> Tensor:
        return self.inner(_bf16(x)).float()

    def features(self, x: Tensor) -> Tensor:
        assert isinstance(self.inner, Embedder)
        return self.inner.features(_bf16(x)).float()


def _bf16(x: Tensor) -> Tensor:
    return x.to(torch.bfloat16) if x.is_floating_point() else x
