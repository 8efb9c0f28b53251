"""OpenVINO: Intel's inference engine (any x86 CPU), fp32, bf16 and NNCF post-training int8.

The model is read from the ONNX export (`openvino.convert_model`), so it has the same two
outputs (`logits`, `features`). The precision of the ops left in floating point is a
compile-time hint, stored in model.json: `f32`, or `bf16` where the CPU multiplies bf16
natively (OpenVINO picks bf16 by itself on such CPUs; gradwise always states the hint, so
an `openvino-fp32` variant really computes in fp32).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from gradwise.deploy.engine import EngineModule
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


def save_openvino(
    onnx_path: Path, dest: Path, calibration: Tensor | None, transformer: bool
) -> dict[str, Any]:
    """Convert the ONNX file to OpenVINO IR (dest: model.xml, beside it model.bin); with
    `calibration`, quantize it to int8 with NNCF first.

    Args:
        calibration: (N, ...) training inputs in model units; None keeps the weights fp32.
        transformer: NNCF's transformer preset (keeps softmax and norms in float).

    Returns:
        The settings, for model.json.
    """
    import openvino as ov

    model = ov.convert_model(str(onnx_path))
    info: dict[str, Any] = {"tool": "openvino", "version": ov.get_version()}
    if calibration is not None:
        model = _nncf_quantize(model, calibration, transformer)
        info.update(
            quantization="nncf post-training int8 (weights per channel, activations per tensor)",
            calibration_samples=len(calibration),
            model_type="transformer" if transformer else "default",
        )
    with tempfile.TemporaryDirectory() as folder:
        xml = Path(folder) / "model.xml"
        ov.save_model(model, str(xml), compress_to_fp16=False)  # fp16 would change the numbers
        from gradwise.artifacts import atomic_write_bytes

        atomic_write_bytes(dest.with_suffix(".bin"), xml.with_suffix(".bin").read_bytes())
        atomic_write_bytes(dest, xml.read_bytes())
    return info


def _nncf_quantize(model: Any, calibration: Tensor, transformer: bool) -> Any:
    with _quiet_nncf():
        import nncf

        batches = [calibration[i : i + 32].numpy() for i in range(0, len(calibration), 32)]
        kwargs: dict[str, Any] = {"model_type": nncf.ModelType.TRANSFORMER} if transformer else {}
        return nncf.quantize(model, nncf.Dataset(batches), subset_size=len(batches), **kwargs)


@contextlib.contextmanager
def _quiet_nncf() -> Iterator[None]:
    """NNCF logs INFO lines and draws progress bars on stdout; the caller's console is ours."""
    logger = logging.getLogger("nncf")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    sink = io.StringIO()
    try:
        with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
            yield
    finally:
        logger.setLevel(previous)


class OpenVINOModule(EngineModule):
    """A compiled OpenVINO model behind the nn.Module interface (see deploy/engine.py)."""

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
