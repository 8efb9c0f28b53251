"""The `torch-bf16` engine: a model whose weights are bf16, float in and float out."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradwise.models.spec import Embedder


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
