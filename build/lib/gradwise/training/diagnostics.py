"""Per-epoch diagnostics: gradient norm per layer and the fraction of dead ReLU units."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradwise.models.blocks import eval_mode


def layer_grad_norms(model: nn.Module) -> dict[str, float]:
    """L2 norm of the gradient of each weight tensor (biases and norms left out)."""
    named = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None and p.ndim >= 2]
    if not named:
        return {}
    norms = torch._foreach_norm([g for _, g in named])
    return {f"grad_norm.{n.removesuffix('.weight')}": v.item() for (n, _), v in zip(named, norms)}


@torch.no_grad()
def dead_relu_fraction(model: nn.Module, x: Tensor) -> dict[str, float]:
    """Fraction of ReLU units that output zero for every sample of `x` (dead units).

    A unit is a feature of a linear layer or a channel of a convolution (zero at every
    position). Returns the overall fraction and one value per ReLU layer; empty if the
    model has no ReLU.
    """
    relus = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.ReLU)]
    if not relus:
        return {}
    alive: dict[str, Tensor] = {}

    def hook(name: str):
        def record(_m: nn.Module, _inp: tuple, out: Tensor) -> None:
            dims = [d for d in range(out.dim()) if d != 1] if out.dim() > 2 else [0]
            alive[name] = out.float().amax(dim=dims) > 0

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in relus]
    try:
        with eval_mode(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    units = sum(a.numel() for a in alive.values())
    dead = sum(int((~a).sum()) for a in alive.values())
    out = {"dead_relu": dead / max(units, 1)}
    out.update({f"dead_relu.{n}": float((~a).float().mean()) for n, a in alive.items()})
    return out
