"""The `openvino` engine: OpenVINO IR (model.xml + model.bin) compiled for the CPU, with the
precision hint stored in model.json (`f32`, or `bf16` where the CPU multiplies bf16)."""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from gradwise.engines.base import EngineModule
from gradwise.errors import ConfigError

Hint = Literal["f32", "bf16"]


def require_openvino(nncf: bool = False) -> None:
    """Raise a ConfigError naming the install when openvino (or nncf) is missing."""
    missing = [m for m in ("openvino", "nncf" if nncf else "") if m and not _has(m)]
    if missing:
        raise ConfigError(
            f"--openvino needs the {' and '.join(missing)} package(s), which are not installed; "
            "pip install 'gradwise[openvino]' (openvino and nncf), or choose --onnx."
        )


def has_openvino() -> bool:
    """Whether openvino and nncf are installed (the `openvino` extra)."""
    return _has("openvino") and _has("nncf")


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


class OpenVINOModule(EngineModule):
    """A compiled OpenVINO model behind the nn.Module interface (see engines/base.py)."""

    engine = "OpenVINO"

    def __init__(self, xml: Path, hint: Hint, threads: int | None = None) -> None:
        super().__init__(xml)
        require_openvino()
        import openvino as ov

        self.hint = hint
        config = {
            "INFERENCE_PRECISION_HINT": hint,
            "INFERENCE_NUM_THREADS": threads or torch.get_num_threads(),
            "PERFORMANCE_HINT": "LATENCY",
        }
        self.compiled = ov.Core().compile_model(str(self.path), "CPU", config)
        self.ports = {o.get_any_name(): o for o in self.compiled.outputs}
        self.outputs = list(self.ports)
        self.input_type = (
            np.int64 if self.compiled.input(0).get_element_type().is_integral() else np.float32
        )
        self.request = self.compiled.create_infer_request()
        self.lock = threading.Lock()  # one request: calls from several threads take turns

    def _infer(self, arr: np.ndarray, output: str) -> np.ndarray:
        with self.lock:
            result = self.request.infer({0: arr})
            return np.array(result[self.ports[output]], copy=True)
