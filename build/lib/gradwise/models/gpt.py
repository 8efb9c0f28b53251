"""GPT: a decoder-only transformer language model with a key/value cache for generation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gradwise.config import GPTConfig, MoEConfig
from gradwise.data.text import PAD
from gradwise.errors import ConfigError
from gradwise.models.blocks import (
    FeedForward,
    LayerCache,
    Rotary,
    TransformerBlock,
    init_transformer,
)
from gradwise.models.moe import MoEFeedForward
from gradwise.models.spec import Embedder, InputSpec


def make_ffn(
    d_model: int, mult: int, dropout: float, bias: bool, moe: MoEConfig | None, layer: int
) -> nn.Module:
    """Dense feed-forward, or a mixture of experts in every `moe.every`-th block."""
    hidden = mult * d_model
    if moe is None or layer % moe.every != moe.every - 1:
        return FeedForward(d_model, hidden, dropout, bias)
    width = moe.hidden or max(1, hidden // moe.top_k)
    return MoEFeedForward(d_model, width, moe.experts, moe.top_k, dropout, moe.aux_weight)


@dataclass
class GPTState:
    """What generation carries from step to step: per-layer caches and the tokens so far."""

    caches: list[LayerCache]
    tokens: Tensor  # (B, L)

    @property
    def length(self) -> int:
        return self.caches[0].length


class GPT(nn.Module, Embedder):
    """Token + position embeddings, `n_layer` causal pre-norm blocks, a (tied) output head.

    Positions are learned or rotary. Training sees windows of `block_size` tokens; generation
    runs with a key/value cache so each new token costs one position's work, and when the
    context is full it restarts from the last half-window.

    On labelled text (<bos> text <pad>...) it classifies or scores: the head reads the state
    of the last real token, which under the causal mask has seen the whole text and none of
    the padding.
    """

    def __init__(self, cfg: GPTConfig, spec: InputSpec) -> None:
        super().__init__()
        if spec.kind != "tokens" or spec.source_len:
            raise ConfigError(
                "model.arch gpt reads text: a corpus (data.source: text:PATH) as a language "
                "model, or labelled text (csv: with data.text_column and data.target); for "
                "text-to-text use arch: seq2seq."
            )
        self.per_token = spec.per_token
        self.block_size = spec.shape[0]
        self.n_head, self.d_model = cfg.n_head, cfg.d_model
        self.tok_emb = nn.Embedding(spec.vocab_size, cfg.d_model)
        self.pos_emb = (
            nn.Embedding(self.block_size, cfg.d_model) if cfg.positions == "learned" else None
        )
        rotary = (
            Rotary(cfg.d_model // cfg.n_head, self.block_size)
            if cfg.positions == "rotary"
            else None
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                cfg.d_model,
                cfg.n_head,
                make_ffn(cfg.d_model, cfg.ffn_mult, cfg.dropout, cfg.bias, cfg.moe, i),
                cfg.dropout,
                causal=True,
                rotary=rotary,
                bias=cfg.bias,
            )
            for i in range(cfg.n_layer)
        )
        self.ln_f = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        n_out = spec.vocab_size if spec.per_token else spec.n_outputs
        self.head = nn.Linear(cfg.d_model, n_out, bias=False)
        init_transformer(self, cfg.n_layer)
        if cfg.tie_weights and spec.per_token:
            self.head.weight = self.tok_emb.weight

    def forward(self, x: Tensor) -> Tensor:
        """(B, T) token ids -> (B, T, V) next-token logits, or (B, n_outputs) on labelled
        text."""
        if self.per_token:
            return self._run(x, None)
        return self.head(self.features(x))

    def features(self, x: Tensor) -> Tensor:
        """(B, T) ids -> (B, C): the last real token's state (labelled text), or the mean of
        all token states (a language model's window)."""
        h = self._states(x, None)  # (B, T, C)
        if self.per_token:
            return h.mean(dim=1)
        last = (x != PAD).long().sum(dim=1).clamp(min=1) - 1  # (B,) index of the last real token
        # x.shape[0], not len(x): the ONNX tracer keeps a shape dynamic, a Python int fixed
        return h[torch.arange(x.shape[0], device=x.device), last]

    def _run(self, x: Tensor, state: GPTState | None) -> Tensor:
        return self.head(self._states(x, state))  # (B, T, V)

    def _states(self, x: Tensor, state: GPTState | None) -> Tensor:
        offset = state.length if state is not None else 0
        h = self.tok_emb(x)  # (B, T, C)
        if self.pos_emb is not None:
            pos = torch.arange(offset, offset + x.shape[1], device=x.device)
            h = h + self.pos_emb(pos)
        h = self.drop(h)
        for i, block in enumerate(self.blocks):
            h = block(h, cache=state.caches[i] if state is not None else None)
        return self.ln_f(h)  # (B, T, C)

    def new_state(self, batch: int, like: Tensor) -> GPTState:
        shape = (batch, self.n_head, self.block_size, self.d_model // self.n_head)
        dtype = self.tok_emb.weight.dtype
        caches = [
            LayerCache(
                torch.zeros(shape, dtype=dtype, device=like.device),
                torch.zeros(shape, dtype=dtype, device=like.device),
            )
            for _ in self.blocks
        ]
        return GPTState(caches, like.new_zeros((batch, 0)))

    def step(self, x: Tensor, state: GPTState | None) -> tuple[Tensor, GPTState]:
        """Feed new tokens (B, T) after the cached ones; returns their logits and the state."""
        if state is None:
            state = self.new_state(len(x), x)
        if state.length + x.shape[1] > self.block_size:
            # Context full: start again from the most recent half-window (plus the new tokens).
            keep = torch.cat([state.tokens, x], dim=1)[:, -max(self.block_size // 2, x.shape[1]) :]
            keep = keep[:, -self.block_size :]
            state = self.new_state(len(x), x)
            logits = self._run(keep, state)[:, -x.shape[1] :]
            state.tokens = keep
            return logits, state
        logits = self._run(x, state)
        state.tokens = torch.cat([state.tokens, x], dim=1)
        return logits, state
