"""Load an optimised variant's model: the engine model.json's `backend` entry names.

Backends (`backend.name`; absent means plain torch): `onnxruntime` (model.onnx), `openvino`
(model.xml + model.bin), `torch-int8` (fp32 weights, quantized dynamically at load) and
`torch-bf16` (bf16 weights). The variant folders themselves are written by `gradwise.deploy`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from gradwise.config import ModelConfig
from gradwise.errors import DataError, NotTrainedError
from gradwise.models import InputSpec, build_model
from gradwise.training.checkpoint import load_weights

BACKENDS = ("onnxruntime", "openvino", "torch-int8", "torch-bf16")
MODEL_FILES = {
    "onnxruntime": ["model.onnx"],
    "openvino": ["model.xml", "model.bin"],
    "torch-int8": ["model.safetensors"],
    "torch-bf16": ["model.safetensors"],
}


def load_variant_model(
    path: Path, backend: dict[str, Any], model_cfg: ModelConfig, spec: InputSpec
) -> nn.Module:
    """The nn.Module-compatible model of a variant folder (Run.load calls this).

    Raises:
        NotTrainedError: the engine's file is missing.
        DataError: model.json names an engine this gradwise does not know.
    """
    name = backend.get("name")
    if name not in BACKENDS:
        raise DataError(
            f"{path / 'model.json'} names backend {name!r}; this gradwise knows torch, "
            f"{', '.join(BACKENDS)}. Upgrade gradwise, or make the variant again with "
            "gradwise optimize."
        )
    for file in MODEL_FILES[name]:
        if not (path / file).is_file():
            raise NotTrainedError(
                f"{path} has no {file}: the {name} variant is incomplete. Make it again with "
                "gradwise optimize on the run it came from."
            )
    match name:
        case "onnxruntime":
            from gradwise.engines.onnx_runtime import OnnxModule

            return OnnxModule(path / "model.onnx")
        case "openvino":
            from gradwise.engines.openvino_runtime import OpenVINOModule

            return OpenVINOModule(path / "model.xml", backend.get("precision", "f32"))
        case "torch-int8":
            from gradwise.engines.torch_int8 import torch_dynamic_int8

            model = build_model(model_cfg, spec, pretrained=False)
            load_weights(path / "model.safetensors", model)
            return torch_dynamic_int8(model, backend.get("layers"))
        case _:  # torch-bf16
            import torch

            from gradwise.engines.torch_bf16 import Bf16Module

            model = build_model(model_cfg, spec, pretrained=False).to(torch.bfloat16)
            load_weights(path / "model.safetensors", model)
            return Bf16Module(model)
