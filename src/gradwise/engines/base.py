"""What an inference engine's model (ONNX Runtime, OpenVINO) shares behind nn.Module.

forward(x) -> logits and features(x) run the engine's graph, so every Run method (logits,
predict, evaluate, embed) works on a variant unchanged. No parameters and no autograd: a
gradient attack or explanation is refused with the way round it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from gradwise.errors import GradwiseError
from gradwise.models.spec import Embedder

ENGINE_CHUNK = 256
"""Samples per engine call: an engine keeps buffers sized for the largest batch it has seen,
and Run.logits sends eval_batch_size (1024) at once."""


class EngineModule(nn.Module, Embedder):
    """The shared half of an engine's module; a subclass runs one call in `_infer`."""

    head = None  # the head lives inside the graph
    engine = "the engine"
    outputs: list[str]
    input_type: type

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = Path(path)

    def forward(self, x: Tensor) -> Tensor:
        return self._run(x, "logits")

    def features(self, x: Tensor) -> Tensor:
        if "features" not in self.outputs:
            raise GradwiseError(
                f"{self.path} holds only the logits of this language model; embed with the run "
                "it was made from (its parent directory's parent)."
            )
        return self._run(x, "features")

    def _infer(self, arr: np.ndarray, output: str) -> np.ndarray:
        raise NotImplementedError

    def _run(self, x: Tensor, output: str) -> Tensor:
        if x.requires_grad:
            raise GradwiseError(
                f"{self.path} runs in {self.engine}, which has no gradients; attack or explain "
                "the torch run it was made from (a transfer attack), not the variant."
            )
        if len(x) <= ENGINE_CHUNK and x.device.type == "cpu":  # the serving path: one call
            return self._call(x, output)
        outs = [self._call(xb, output) for xb in x.detach().split(ENGINE_CHUNK)]
        return (torch.cat(outs) if len(outs) > 1 else outs[0]).to(x.device)

    def _call(self, x: Tensor, output: str) -> Tensor:
        arr = x.detach().cpu().numpy()
        if arr.dtype != self.input_type or not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr, dtype=self.input_type)
        return torch.from_numpy(self._infer(arr, output))
