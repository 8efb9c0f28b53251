"""Attention maps of the transformers (ViT, BERT, GPT, encoder-decoder): which positions each
query attends to, per layer and head.

The shared `Attention` module (models/blocks.py) runs `F.scaled_dot_product_attention`,
which returns no weights. A forward hook on each self-attention module recomputes its
softmax(q k^T / sqrt(d)) from the module's own input and projections, with the same causal
and padding masks and rotary positions, while the module's forward runs unchanged: the
attention path's numerics are untouched, and with no hook registered nothing changes.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from gradwise.explaining.base import HeadAttention
from gradwise.models.blocks import Attention, eval_mode


def self_attention_modules(model: nn.Module) -> list[tuple[str, Attention]]:
    """Every self-attention module of the model, by name, in forward order (cross-attention
    of a decoder is left out: its keys are another sequence)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, Attention) and not m.cross]


def attention_weights(attn: Attention, x: Tensor, key_padding: Tensor | None) -> Tensor:
    """(B, H, T, T) attention probabilities of self-attention `attn` on its input x (B, T, C);
    each query's row sums to 1.

    Args:
        key_padding: (B, T) True where a key is padding, as the module receives it.
    """
    b, t, c = x.shape
    q, k, _ = attn.qkv_proj(x).split(c, dim=2)
    q = q.view(b, t, attn.n_head, attn.head_dim).transpose(1, 2)  # (B, H, T, D)
    k = k.view(b, t, attn.n_head, attn.head_dim).transpose(1, 2)
    if attn.rotary is not None:
        q, k = attn.rotary(q, 0), attn.rotary(k, 0)
    scores = (q @ k.transpose(-2, -1)) / math.sqrt(attn.head_dim)  # (B, H, T, T)
    allowed = torch.ones(t, t, dtype=torch.bool, device=x.device)
    if attn.causal:
        allowed = allowed.tril()
    mask = allowed[None, None]
    if key_padding is not None:
        mask = mask & ~key_padding[:, None, None, :]
    return scores.float().masked_fill(~mask, -torch.inf).softmax(dim=-1)


def attention_maps(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """(N, H, T, T) attention probabilities of every self-attention layer for inputs x (a
    plain forward pass in eval mode, with hooks that read each layer's input)."""
    found: dict[str, Tensor] = {}

    def record(name: str) -> Any:
        def hook(module: Attention, args: tuple, kwargs: dict, _out: Tensor) -> None:
            padding = args[1] if len(args) > 1 else kwargs.get("key_padding")
            found[name] = attention_weights(module, args[0], padding).cpu()

        return hook

    handles = [
        m.register_forward_hook(record(n), with_kwargs=True)
        for n, m in self_attention_modules(model)
    ]
    try:
        with eval_mode(model), torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return found


def summarise(maps: dict[str, Tensor]) -> tuple[HeadAttention, ...]:
    """Per layer and head: the mean entropy of a query's attention and the mean attention on
    the first position, over the rows and queries."""
    out = []
    for name, w in maps.items():  # (N, H, T, T)
        entropy = -(w * w.clamp(min=1e-12).log()).sum(dim=-1)  # (N, H, T)
        for h in range(w.shape[1]):
            out.append(
                HeadAttention(
                    layer=name,
                    head=h,
                    entropy=float(entropy[:, h].mean()),
                    to_first=float(w[:, h, :, 0].mean()),
                )
            )
    return tuple(out)
