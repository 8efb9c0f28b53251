"""The `onnxruntime` engine: an ONNX file (with outputs `logits` and, for supervised models,
`features`) run by an ONNX Runtime CPU session."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from gradwise.engines.base import EngineModule

if TYPE_CHECKING:
    import onnxruntime


def session(path: Path, threads: int | None = None) -> onnxruntime.InferenceSession:
    """An ONNX Runtime CPU session using `threads` intra-op threads (default: as torch)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or torch.get_num_threads()
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: its notes are not the user's business
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


class OnnxModule(EngineModule):
    """An ONNX Runtime session behind the nn.Module interface (see engines/base.py)."""

    engine = "ONNX Runtime"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        super().__init__(path)
        self.session = session(self.path, threads)
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.input_type = np.int64 if "int64" in self.session.get_inputs()[0].type else np.float32

    def _infer(self, arr: np.ndarray, output: str) -> np.ndarray:
        (out,) = self.session.run([output], {"x": arr})
        return np.asarray(out)
