"""OpenVINO: Intel's inference engine (any x86 CPU), fp32, bf16 and NNCF post-training int8.

The model is read from the ONNX export (`openvino.convert_model`), so it has the same two
outputs (`logits`, `features`). The precision of the ops left in floating point is a
compile-time hint, stored in model.json: `f32`, or `bf16` where the CPU multiplies bf16
natively (OpenVINO picks bf16 by itself on such CPUs; gradwise always states the hint, so
an `openvino-fp32` variant really computes in fp32). The engine that runs the files is
`gradwise.engines.openvino_runtime`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from torch import Tensor


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
