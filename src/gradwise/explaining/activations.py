"""Activation statistics per layer on a validation batch: dead and saturated units.

A ReLU-family unit (ReLU, leaky ReLU, GELU, SiLU) is dead when it is never positive on the
batch: its gradient is (almost) zero, so it does not learn. A tanh or sigmoid unit is
saturated when every value sits in the flat tails (|tanh| > 0.99; sigmoid outside
0.01..0.99). A unit is a feature of a linear layer, a channel of a convolution, or a
feature of a transformer's feed-forward layer (its GELU is a function, so the hook reads the
layer's input projection and applies it). Recurrent layers report their hidden outputs
(bounded by tanh).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradwise.explaining.base import LayerActivity
from gradwise.models.blocks import FeedForward, eval_mode

SATURATION = 0.99


def _kind(module: nn.Module) -> str | None:
    match module:
        case nn.ReLU() | nn.ReLU6() | nn.LeakyReLU():
            return "relu"
        case nn.GELU():
            return "gelu"
        case nn.SiLU():
            return "silu"
        case nn.Tanh():
            return "tanh"
        case nn.Sigmoid():
            return "sigmoid"
        case nn.RNNBase():
            return "recurrent"
        case FeedForward():
            return "gelu"
    return None


def _hooked(model: nn.Module) -> list[tuple[str, str, nn.Module]]:
    """(layer name, kind, module to hook): a FeedForward is hooked at its input projection."""
    out = []
    for name, m in model.named_modules():
        kind = _kind(m)
        if kind is None:
            continue
        target = m.in_proj if isinstance(m, FeedForward) else m
        out.append((name, kind, target))
    return out


def activation_stats(model: nn.Module, x: Tensor) -> tuple[LayerActivity, ...]:
    """Statistics of every activation layer of `model` on the batch x (eval mode)."""
    outputs: dict[str, Tensor] = {}

    def record(name: str, kind: str) -> Any:
        def hook(_m: nn.Module, _inp: tuple, out: Any) -> None:
            value = out[0] if isinstance(out, tuple) else out  # recurrent: (output, state)
            value = F.gelu(value) if kind == "gelu" and isinstance(_m, nn.Linear) else value
            outputs[name] = value.detach().float().cpu()

        return hook

    layers = _hooked(model)
    handles = [m.register_forward_hook(record(n, k)) for n, k, m in layers]
    try:
        with eval_mode(model), torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return tuple(
        layer_activity(name, kind, outputs[name]) for name, kind, _ in layers if name in outputs
    )


def layer_activity(name: str, kind: str, out: Tensor) -> LayerActivity:
    """The statistics of one layer's outputs (B, F), (B, C, H, W) or (B, T, F)."""
    units = out.movedim(1, -1) if out.dim() == 4 else out  # channels last
    units = units.reshape(-1, units.shape[-1])  # (values per unit, units)
    dead = saturated = saturated_values = None
    if kind in ("relu", "gelu", "silu"):
        dead = float((units.amax(dim=0) <= 0).float().mean())
    else:
        if kind == "sigmoid":
            flat = (units < 1 - SATURATION) | (units > SATURATION)
        else:  # tanh, recurrent outputs
            flat = units.abs() > SATURATION
        saturated = float(flat.all(dim=0).float().mean())
        saturated_values = float(flat.float().mean())
    return LayerActivity(
        layer=name,
        kind=kind,
        n_units=int(units.shape[-1]),
        dead=dead,
        saturated=saturated,
        saturated_values=saturated_values,
        mean=float(units.mean()),
        std=float(units.std()) if units.numel() > 1 else 0.0,
    )
