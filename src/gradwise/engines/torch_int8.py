"""The `torch-int8` engine: dynamic int8 for Linear / LSTM / GRU layers.

Dynamic int8 (`torch.ao.quantization.quantize_dynamic`) stores weights as int8 with one
scale per tensor and quantizes activations per batch at run time; it needs no calibration.
A quantized module's packed weights have no plain-tensor form for safetensors, so a
`torch-int8` variant stores the fp32 weights and the scheme, and is quantized again when it
is loaded: the same weights give the same int8 weights every time (nothing is unpickled).
Static int8 with calibration goes through ONNX Runtime or NNCF (gradwise.deploy.onnx,
gradwise.deploy.openvino), whose files hold the int8 model itself.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch
from torch import nn

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
