"""Training in bf16: whether this CPU multiplies bf16 natively, and bf16 weights kept beside
the fp32 master weights.

Autocast alone casts every weight to bf16 on each forward pass and each weight gradient back
to fp32 in the backward pass, one small op per tensor; `Bf16Weights` casts all weights once
per optimizer step (one foreach copy) and all gradients once per backward pass, so the
activations stay bf16 from the embedding on. The model's own parameters stay fp32: the
optimizer steps them, checkpoints and model.safetensors save them, evaluation reads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

# Modules whose float state must stay fp32 (running statistics, recurrent kernels): a model
# holding one trains under plain autocast instead.
_KEEP_FP32 = (nn.modules.batchnorm._BatchNorm, nn.RNNBase)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices in hardware (AVX512-BF16 or AMX). Without
    it oneDNN emulates bf16 and a bf16 matmul runs several times slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:  # not Linux: no way to tell, assume the user knows their CPU
        return True
    return "avx512_bf16" in flags or "amx_bf16" in flags


def takes_bf16_weights(model: nn.Module) -> bool:
    """Whether `model` can train on bf16 weights: it holds no batch norm or recurrent layer,
    whose statistics and kernels expect fp32 parameters."""
    return not any(isinstance(m, _KEEP_FP32) for m in model.modules())


class Bf16Weights:
    """bf16 copies of a model's parameters, used by the forward and backward passes.

    Call `forward` in place of the model (under bf16 autocast, which keeps the losses in
    fp32), `grads_to_master` after each backward pass, and `refresh` after each optimizer
    step and whenever the fp32 weights change otherwise (a resume, an unfreeze).
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        named = dict(model.named_parameters())  # tied weights appear once
        self.master: list[Tensor] = list(named.values())
        self.copies = {
            name: p.detach().to(torch.bfloat16).requires_grad_(p.requires_grad)
            for name, p in named.items()
        }
        self.forward = _Bf16Forward(self)

    def refresh(self) -> None:
        """Copy the fp32 weights (and whether each is trained) into the bf16 copies."""
        copies = list(self.copies.values())
        with torch.no_grad():
            torch._foreach_copy_(copies, self.master)
        for copy, p in zip(copies, self.master):
            copy.requires_grad_(p.requires_grad)

    def grads_to_master(self) -> None:
        """Add the bf16 copies' gradients, in fp32, to the fp32 weights' and clear them, so
        accumulated micro-batches sum in fp32."""
        for copy, p in zip(self.copies.values(), self.master):
            if copy.grad is None:
                continue
            grad = copy.grad.float()
            p.grad = grad if p.grad is None else p.grad.add_(grad)
            copy.grad = None


class _Bf16Forward(nn.Module):
    """The model called on the bf16 copies of its weights, with attention by the math kernel.

    Why the math kernel: on CPU, the flash-attention kernel's backward pass in bf16 took 5-10x
    its fp32 time here (torch 2.13, AVX512-BF16 without AMX; a third of a GPT step), while
    the math kernel's matrix products and softmax took a fraction of that.
    """

    def __init__(self, weights: Bf16Weights) -> None:
        super().__init__()
        self._weights = weights  # a plain attribute: the model is not this module's child

    def forward(self, *args: Any, **kwargs: Any) -> Tensor:
        weights = self._weights
        with sdpa_kernel(SDPBackend.MATH):
            out: Tensor = functional_call(weights.model, weights.copies, args, kwargs)
        return out
