"""ONNX: export with a dynamic batch axis, int8 through ONNX Runtime's tools (the engine that
runs the file is `gradwise.engines.onnx_runtime`).

The exporter is torch's TorchScript-based one (`torch.onnx.export(dynamo=False)`): the
torch.export-based exporter needs the onnxscript package and cannot trace the data-dependent
branch BERT takes on padding, while the tracer records the padded path, which is exact for
inputs with and without padding (see `example_inputs`). Supervised models are exported with
two outputs, `logits` and `features` (the head reads the features, so the graph computes
them once), so `Run.embed` works on a variant as on the run it came from.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from gradwise.data.text import PAD
from gradwise.models.spec import Embedder

OPSET = 17
Int8Mode = Literal["dynamic", "static"]
# Ops whose weights static quantization turns to int8; the norms stay float (per-channel
# scales of a 1-D LayerNorm weight are meaningless, and quantizing them costs accuracy).
STATIC_OPS = ["Conv", "MatMul", "Gemm"]


class _LogitsAndFeatures(nn.Module):
    """forward(x) -> (logits, features), computing the features once: `head(features(x))`
    is the Embedder contract of every supervised architecture."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        assert isinstance(self.model, Embedder) and self.model.head is not None
        features = self.model.features(x)
        return self.model.head(features), features


def example_inputs(x: Tensor, kind: str, n: int = 2) -> Tensor:
    """`n` samples to trace with; for token ids, those with the most padding, so the traced
    graph holds the masked attention path (exact with or without padding)."""
    if kind == "tokens" and len(x) > n:
        order = torch.argsort((x == PAD).sum(dim=1), descending=True, stable=True)
        return x[order[:n]]
    return x[:n]


def export_onnx(model: nn.Module, example: Tensor, path: Path, with_features: bool) -> None:
    """Write `model` (eval mode, CPU, float32) as ONNX with a dynamic batch axis.

    Args:
        example: (B, ...) inputs to trace with, in model units (see `example_inputs`).
        with_features: export `features` beside `logits` (supervised models).
    """
    module: nn.Module = _LogitsAndFeatures(model) if with_features else model
    outputs = ["logits", "features"] if with_features else ["logits"]
    axes = {name: {0: "batch"} for name in ["x", *outputs]}
    from gradwise.artifacts import atomic_path

    with warnings.catch_warnings(), torch.no_grad(), atomic_path(path) as tmp:
        # the tracer's notes on Python branches it records (the padded path, on purpose) and
        # the legacy exporter's deprecation notice; see the module docstring for the choice
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", message="The feature will be removed")
        # indices here are never negative (GPT's last-token gather), the case it warns of
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        # our recurrent models build h0/c0 from the input's shape (Shape -> ConstantOfShape
        # in the graph), so other batch sizes work: the parity check and bench run them
        warnings.filterwarnings("ignore", message="Exporting a model to ONNX with a batch_size")
        torch.onnx.export(
            module.eval(),
            (example,),
            str(tmp),
            dynamo=False,
            input_names=["x"],
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
        )


def max_abs_diff(a: nn.Module, b: nn.Module, x: Tensor, batch: int = 256) -> float:
    """The largest |a(x) - b(x)| over the samples of x (parity of a variant with its source)."""
    worst = 0.0
    with torch.no_grad():
        for start in range(0, len(x), batch):
            xb = x[start : start + batch]
            worst = max(worst, float((a(xb).float() - b(xb).float()).abs().max()))
    return worst


def quantize_onnx(
    source: Path, dest: Path, mode: Int8Mode, calibration: Tensor | None = None, batch: int = 32
) -> dict[str, Any]:
    """int8 ONNX through onnxruntime.quantization.

    Args:
        mode: dynamic (weights int8, activations quantized per batch at run time) or static
            (QDQ: activation ranges calibrated once, MinMax over `calibration`, weights per
            channel; Conv, MatMul and Gemm).
        calibration: (N, ...) training inputs in model units, for static.

    Returns:
        The settings, for model.json.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from gradwise.artifacts import atomic_path

    with _quiet_ort(), tempfile.TemporaryDirectory() as folder, atomic_path(dest) as tmp:
        pre = Path(folder) / "pre.onnx"  # shape inference and graph clean-up first, as advised
        quant_pre_process(str(source), str(pre))
        if mode == "dynamic":
            quantize_dynamic(str(pre), str(tmp), weight_type=QuantType.QInt8)
            return {"tool": "onnxruntime.quantization", "mode": "dynamic", "weights": "int8"}
        assert calibration is not None
        arr = calibration.numpy()

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self.batches: Iterator[np.ndarray] = (
                    arr[i : i + batch] for i in range(0, len(arr), batch)
                )

            def get_next(self) -> dict[str, np.ndarray] | None:
                xb = next(self.batches, None)
                return None if xb is None else {"x": xb}

        quantize_static(
            str(pre),
            str(tmp),
            Reader(),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=STATIC_OPS,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
        )
    return {
        "tool": "onnxruntime.quantization",
        "mode": "static",
        "format": "QDQ",
        "ops": STATIC_OPS,
        "weights": "int8 per channel",
        "activations": "uint8 per tensor, MinMax",
        "calibration_samples": len(arr),
    }


@contextlib.contextmanager
def _quiet_ort() -> Iterator[None]:
    """The quantizer logs notes through `logging.info` and friends, which also install a
    handler on the root logger when it has none (logging.basicConfig); keep its notes off the
    user's console and leave the root logger as it was."""
    root = logging.getLogger()
    previous, handlers = root.level, list(root.handlers)
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(previous)
        for handler in root.handlers:
            if handler not in handlers:
                root.removeHandler(handler)
