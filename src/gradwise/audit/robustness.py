"""Robustness: how much does the model's accuracy fall under small, worst-case changes?

FGSM and PGD are hand-written (small, central; checked against torchattacks in
benchmarks/). The model reads normalised inputs, while epsilon is stated in the data's own
units: a raw change of eps in a channel with standardisation std is eps / std in the model's
units, so `scale` (per-channel std, broadcastable to x) converts, and `low` / `high` (the raw
value range, in model units) keep attacked inputs valid.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Norm = Literal["linf", "l2"]


def pgd(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    norm: Norm = "linf",
    scale: Tensor | float = 1.0,
    low: Tensor | float | None = None,
    high: Tensor | float | None = None,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Projected gradient descent on the cross-entropy (Madry et al., 2018); steps=1 with no
    random start and step_size=eps is FGSM.

    Args:
        model: maps (B, ...) inputs in model units to (B, K) logits (or (B, 1) for bce);
            used in its current mode (the caller sets eval).
        x: (B, ...) clean inputs in model units; y: (B,) class indices.
        eps: radius in the raw data's units (L-inf: per element; L2: of the whole sample).
        step_size: per step, raw units; None: 2.5 * eps / steps (L-inf and L2).
        scale: raw units per model unit (the standardisation std), broadcastable to x.
        low, high: bounds of valid inputs in model units (None: unbounded).

    Returns:
        (B, ...) adversarial inputs in model units, within eps of x in raw units.
    """
    if eps == 0:
        return x.detach().clone()
    scale_t = torch.as_tensor(scale, dtype=x.dtype, device=x.device)
    alpha = step_size if step_size is not None else 2.5 * eps / steps
    # work in raw units: delta_raw = (x_adv - x) * scale
    delta = torch.zeros_like(x)
    if random_start:
        noise = torch.rand(x.shape, generator=generator, dtype=x.dtype).to(x.device) * 2 - 1
        delta = (
            _project(noise * eps, eps, norm) if norm == "linf" else _random_l2(x, eps, generator)
        )
    for _ in range(steps):
        delta.requires_grad_(True)
        logits = model(_clip(x + delta / scale_t, low, high))
        loss = _loss(logits, y)
        (grad,) = torch.autograd.grad(loss, delta)
        with torch.no_grad():
            if norm == "linf":
                delta = delta + alpha * grad.sign()
            else:
                delta = delta + alpha * grad / _l2(grad).clamp(min=1e-12)
            delta = _project(delta, eps, norm)
            # keep x + delta valid: project back into the bounds, in raw units
            delta = (_clip(x + delta / scale_t, low, high) - x) * scale_t
    return _clip(x + delta.detach() / scale_t, low, high).detach()


def fgsm(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    eps: float,
    scale: Tensor | float = 1.0,
    low: Tensor | float | None = None,
    high: Tensor | float | None = None,
) -> Tensor:
    """The fast gradient sign method (Goodfellow et al., 2015): one L-inf step of size eps."""
    return pgd(model, x, y, eps, 1, eps, "linf", scale, low, high, random_start=False)


def _loss(logits: Tensor, y: Tensor) -> Tensor:
    if logits.shape[1] == 1:
        return F.binary_cross_entropy_with_logits(logits[:, 0], y.float(), reduction="sum")
    return F.cross_entropy(logits, y, reduction="sum")


def _l2(t: Tensor) -> Tensor:
    """Per-sample L2 norm, shaped to broadcast against t."""
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def _project(delta: Tensor, eps: float, norm: Norm) -> Tensor:
    if norm == "linf":
        return delta.clamp(-eps, eps)
    factor = (eps / _l2(delta).clamp(min=1e-12)).clamp(max=1.0)
    return delta * factor


def _random_l2(x: Tensor, eps: float, generator: torch.Generator | None) -> Tensor:
    """A uniformly random point in the L2 ball of radius eps (per sample)."""
    d = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    n = x[0].numel()
    r = torch.rand((len(x),), generator=generator, dtype=x.dtype).to(x.device) ** (1.0 / n)
    return d / _l2(d).clamp(min=1e-12) * (r * eps).view(-1, *([1] * (x.dim() - 1)))


def _clip(x: Tensor, low: Tensor | float | None, high: Tensor | float | None) -> Tensor:
    if low is None and high is None:
        return x
    lo = torch.as_tensor(-torch.inf if low is None else low, dtype=x.dtype, device=x.device)
    hi = torch.as_tensor(torch.inf if high is None else high, dtype=x.dtype, device=x.device)
    return torch.maximum(torch.minimum(x, hi), lo)
