"""Pieces several architectures share: activations, initialisation, attention, blocks."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gradwise.config import Activation, Init
from gradwise.errors import ConfigError


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode (dropout off, batch-norm statistics frozen) for the block, then
    back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def activation(name: Activation) -> nn.Module:
    match name:
        case "relu":
            return nn.ReLU()
        case "gelu":
            return nn.GELU()
        case "tanh":
            return nn.Tanh()
        case "silu":
            return nn.SiLU()
        case "leaky_relu":
            return nn.LeakyReLU(0.01)


def init_weights(model: nn.Module, scheme: Init, act: Activation = "relu") -> None:
    """Glorot (`xavier`) or Kaiming (`he`) weights and zero biases; `default` keeps PyTorch's.

    Recurrent layers get the chosen scheme on input weights, orthogonal recurrent weights,
    and (LSTM) a forget-gate bias of 1 so that memory is kept early in training.
    """
    if scheme == "default":
        return
    nonlinearity: Literal["leaky_relu", "relu"] = "leaky_relu" if act == "leaky_relu" else "relu"
    for m in model.modules():
        if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d):
            if scheme == "he":
                nn.init.kaiming_normal_(m.weight, nonlinearity=nonlinearity)
            else:
                nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.RNNBase):
            for name, p in m.named_parameters():
                if name.startswith("weight_ih"):
                    if scheme == "he":
                        nn.init.kaiming_normal_(p, nonlinearity=nonlinearity)
                    else:
                        nn.init.xavier_uniform_(p)
                elif name.startswith("weight_hh"):
                    nn.init.orthogonal_(p)
                elif name.startswith("bias"):
                    nn.init.zeros_(p)
                    if isinstance(m, nn.LSTM):
                        h = p.shape[0] // 4
                        nn.init.ones_(p[h : 2 * h])


# ---------------------------------------------------------------- transformer pieces


def init_transformer(model: nn.Module, n_layer: int) -> None:
    """GPT-2 initialisation: N(0, 0.02) weights, zero biases, and residual projections
    (`out_proj`) scaled by 1/sqrt(2 * n_layer) so the residual stream's variance stays flat."""
    for name, p in model.named_parameters():
        if p.ndim >= 2:
            is_residual = name.endswith("out_proj.weight") or name.endswith("out_proj")
            std = 0.02 / math.sqrt(2 * n_layer) if is_residual else 0.02
            nn.init.normal_(p, mean=0.0, std=std)
        elif name.endswith("bias"):
            nn.init.zeros_(p)


class Rotary(nn.Module):
    """Rotary position embedding (Su et al., 2021): rotates query/key pairs by position."""

    def __init__(self, head_dim: int, max_len: int, base: float = 10000.0) -> None:
        super().__init__()
        inv = 1.0 / base ** (torch.arange(0, head_dim, 2).float() / head_dim)
        angles = torch.outer(torch.arange(max_len).float(), inv)  # (T, D/2)
        self.cos: Tensor
        self.sin: Tensor
        self.register_buffer("cos", angles.cos(), persistent=False)
        self.register_buffer("sin", angles.sin(), persistent=False)

    def forward(self, x: Tensor, offset: int) -> Tensor:
        t = x.shape[-2]
        cos = self.cos[offset : offset + t].to(x.dtype)
        sin = self.sin[offset : offset + t].to(x.dtype)
        x1, x2 = x[..., 0::2], x[..., 1::2]  # (B, H, T, D/2)
        out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
        return out.flatten(-2)  # (B, H, T, D)


@dataclass
class LayerCache:
    """Keys and values one attention layer has seen, preallocated to the context length."""

    k: Tensor  # (B, H, T_max, D)
    v: Tensor
    length: int = 0


class Attention(nn.Module):
    """Multi-head attention through `F.scaled_dot_product_attention`.

    Self-attention (causal or with a key padding mask) or cross-attention to `memory`;
    with a LayerCache, new keys/values are appended so each generated token costs one
    query against the cached prefix instead of a pass over the whole sequence.
    """

    def __init__(
        self,
        d_model: int,
        n_head: int,
        dropout: float,
        causal: bool,
        rotary: Rotary | None = None,
        bias: bool = False,
        cross: bool = False,
    ) -> None:
        super().__init__()
        if d_model % n_head:
            raise ConfigError(
                f"model.d_model ({d_model}) must be divisible by model.n_head ({n_head}); "
                f"try n_head={_best_divisor(d_model, n_head)}."
            )
        self.n_head, self.head_dim = n_head, d_model // n_head
        self.causal, self.cross, self.dropout = causal, cross, dropout
        self.rotary = rotary
        if cross:
            self.q_proj = nn.Linear(d_model, d_model, bias=bias)
            self.kv_proj = nn.Linear(d_model, 2 * d_model, bias=bias)
        else:
            self.qkv_proj = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def _heads(self, x: Tensor) -> Tensor:
        b, t, _ = x.shape
        return x.view(b, t, self.n_head, self.head_dim).transpose(1, 2)  # (B, H, T, D)

    def memory_kv(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-attention keys and values of the memory (B, S, C), (B, H, S, D) each: computed
        once per source, then passed as `memory` to every decoding step."""
        k, v = self.kv_proj(memory).split(memory.shape[-1], dim=2)
        return self._heads(k), self._heads(v)

    def forward(
        self,
        x: Tensor,
        key_padding: Tensor | None = None,
        cache: LayerCache | None = None,
        memory: Tensor | tuple[Tensor, Tensor] | None = None,
    ) -> Tensor:
        """x (B, T, C) -> (B, T, C).

        Args:
            key_padding: (B, T_k) True where a key is padding and must not be attended.
            cache: this layer's cache during incremental decoding (self-attention only).
            memory: (B, S, C) encoder output for cross-attention, or its `memory_kv`.
        """
        b, t, c = x.shape
        offset = cache.length if cache is not None else 0
        if self.cross:
            assert memory is not None
            q = self._heads(self.q_proj(x))
            k, v = memory if isinstance(memory, tuple) else self.memory_kv(memory)
        else:
            q, k, v = (self._heads(z) for z in self.qkv_proj(x).split(c, dim=2))
            if self.rotary is not None:
                q, k = self.rotary(q, offset), self.rotary(k, offset)
            if cache is not None:
                cache.k[:, :, offset : offset + t] = k
                cache.v[:, :, offset : offset + t] = v
                cache.length = offset + t
                k, v = cache.k[:, :, : offset + t], cache.v[:, :, : offset + t]
        mask = None
        is_causal = self.causal and not self.cross
        if key_padding is not None:
            mask = ~key_padding[:, None, None, :]  # (B, 1, 1, T_k) True = attend
        if is_causal and offset > 0:
            # queries at positions offset..offset+t-1 see keys up to their own position; one
            # new query (the usual generation step) sees every cached key: no mask needed
            if t > 1:
                causal = torch.ones(t, offset + t, dtype=torch.bool, device=x.device).tril(offset)
                mask = causal if mask is None else mask & causal
            is_causal = False
        elif is_causal and mask is not None:
            mask = mask & torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            is_causal = False
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=mask,
            is_causal=bool(is_causal and t > 1),  # bool: under the ONNX tracer t is a tensor
            dropout_p=self.dropout if self.training else 0.0,
        )  # (B, H, T, D)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, c))


class FeedForward(nn.Module):
    """Position-wise MLP: Linear -> GELU -> Linear."""

    def __init__(self, d_model: int, hidden: int, dropout: float, bias: bool = False) -> None:
        super().__init__()
        self.in_proj = nn.Linear(d_model, hidden, bias=bias)
        self.out_proj = nn.Linear(hidden, d_model, bias=bias)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.out_proj(F.gelu(self.in_proj(x))))


class TransformerBlock(nn.Module):
    """Pre-norm block: x + attn(ln(x)) [+ cross-attn(ln(x), memory)] + ffn(ln(x)).

    `ffn` is a dense FeedForward or a mixture of experts (models/moe.py).
    """

    def __init__(
        self,
        d_model: int,
        n_head: int,
        ffn: nn.Module,
        dropout: float,
        causal: bool,
        rotary: Rotary | None = None,
        bias: bool = False,
        cross: bool = False,
    ) -> None:
        super().__init__()
        self.ln_attn = nn.LayerNorm(d_model, bias=bias)
        self.attn = Attention(d_model, n_head, dropout, causal, rotary, bias)
        self.ln_cross = nn.LayerNorm(d_model, bias=bias) if cross else None
        self.cross_attn = (
            Attention(d_model, n_head, dropout, False, None, bias, cross=True) if cross else None
        )
        self.ln_ffn = nn.LayerNorm(d_model, bias=bias)
        self.ffn = ffn
        self.drop = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        key_padding: Tensor | None = None,
        cache: LayerCache | None = None,
        memory: Tensor | tuple[Tensor, Tensor] | None = None,
        memory_padding: Tensor | None = None,
    ) -> Tensor:
        x = x + self.drop(self.attn(self.ln_attn(x), key_padding, cache))
        if self.cross_attn is not None and self.ln_cross is not None:
            x = x + self.drop(self.cross_attn(self.ln_cross(x), memory_padding, memory=memory))
        return x + self.ffn(self.ln_ffn(x))


def _best_divisor(d_model: int, n_head: int) -> int:
    divisors = [h for h in range(1, d_model + 1) if d_model % h == 0]
    return min(divisors, key=lambda h: abs(h - n_head))
