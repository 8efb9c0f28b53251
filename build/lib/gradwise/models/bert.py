"""BERT: a bidirectional transformer encoder, pretrained by masked-token prediction and
fine-tuned with a head on labelled text.

x is (B, T) token ids: a corpus window (masked-token pretraining, see training/masked_lm.py) or
<bos> + a text + <pad>... (labelled text; <bos> is the class token). Padding is masked out of
attention, so the encoding of a text does not depend on how much padding follows it.

Parameter names are shared by both uses (`tok_emb`, `pos_emb`, `blocks`, `ln_f`); the
pretraining head is `mlm_head` and the task head `head`, so a fine-tuning run started with
`model.init_from: <pretraining run>` loads the encoder and leaves the pretraining head behind.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gradwise.config import BERTConfig
from gradwise.data.text import PAD
from gradwise.errors import ConfigError, DataError
from gradwise.models.blocks import Rotary, TransformerBlock, init_transformer
from gradwise.models.gpt import make_ffn
from gradwise.models.spec import Embedder, InputSpec

__all__ = ["BERT"]


class BERT(nn.Module, Embedder):
    """Token + position embeddings, `n_layer` non-causal pre-norm blocks, a final LayerNorm,
    then either a masked-token head tied to the token embedding (B, T, V) or a pooled
    sentence vector -> dropout -> linear head (B, n_outputs).

    Args:
        cfg: the architecture (positions learned or rotary; pool cls or mean).
        spec: tokens (T,); `per_token` picks the masked-token head.
    """

    def __init__(self, cfg: BERTConfig, spec: InputSpec) -> None:
        super().__init__()
        if spec.kind != "tokens" or spec.source_len:
            raise ConfigError(
                "model.arch bert reads text: use a corpus (data.source: text:PATH with "
                "data.task: mlm) or labelled text (csv: with data.text_column and data.target); "
                "for text-to-text use arch: seq2seq."
            )
        self.block_size = spec.shape[0]
        self.pool = cfg.pool
        self.per_token = spec.per_token
        self.tok_emb = nn.Embedding(spec.vocab_size, cfg.d_model)
        is_learned = cfg.positions == "learned"
        self.pos_emb = nn.Embedding(self.block_size, cfg.d_model) if is_learned else None
        rotary = None if is_learned else Rotary(cfg.d_model // cfg.n_head, self.block_size)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                cfg.d_model,
                cfg.n_head,
                make_ffn(cfg.d_model, cfg.ffn_mult, cfg.dropout, True, cfg.moe, i),
                cfg.dropout,
                causal=False,
                rotary=rotary,
                bias=True,
            )
            for i in range(cfg.n_layer)
        )
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.mlm_head = nn.Linear(cfg.d_model, spec.vocab_size) if spec.per_token else None
        self.head: nn.Linear | None = (
            None if spec.per_token else nn.Linear(cfg.d_model, spec.n_outputs)
        )
        init_transformer(self, cfg.n_layer)
        if self.mlm_head is not None:
            self.mlm_head.weight = self.tok_emb.weight

    def forward(self, x: Tensor) -> Tensor:
        """(B, T) ids, T <= block_size -> (B, T, V) token logits, or (B, n_outputs)."""
        if self.mlm_head is not None:
            return self.mlm_head(self.encode(x, x == PAD))  # (B, T, V)
        assert self.head is not None
        return self.head(self.features(x))  # (B, n_outputs)

    def features(self, x: Tensor) -> Tensor:
        """(B, T) ids -> (B, C): the sentence vector the head reads (after dropout, a no-op
        in eval mode); a masked-token encoder gives the mean of its real tokens' states."""
        padding = x == PAD  # (B, T)
        h = self.encode(x, padding)
        if self.mlm_head is not None:
            return _mean_of_real(h, padding)
        return self.drop(self.pooled(h, padding))

    def encode(self, x: Tensor, padding: Tensor) -> Tensor:
        """(B, T) ids and (B, T) padding flags -> (B, T, C) normalised token states."""
        if x.shape[1] > self.block_size:
            raise DataError(
                f"The input has {x.shape[1]} tokens; this model reads at most "
                f"{self.block_size} (data.block_size). Cut the input to fit."
            )
        h = self.tok_emb(x)  # (B, T, C)
        if self.pos_emb is not None:
            h = h + self.pos_emb(torch.arange(x.shape[1], device=x.device))
        h = self.drop(h)
        key_padding = _attended_padding(padding)
        for block in self.blocks:
            h = block(h, key_padding)
        return self.ln_f(h)

    def pooled(self, h: Tensor, padding: Tensor) -> Tensor:
        """(B, T, C) token states -> (B, C): the class token, or the mean of real tokens."""
        return h[:, 0] if self.pool == "cls" else _mean_of_real(h, padding)


def _mean_of_real(h: Tensor, padding: Tensor) -> Tensor:
    """(B, T, C) states, (B, T) padding flags -> (B, C) mean over the real tokens."""
    keep = (~padding).unsqueeze(-1).to(h.dtype)  # (B, T, 1)
    return (h * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)


def _attended_padding(padding: Tensor) -> Tensor | None:
    """The key padding mask for attention; None when nothing is padding (corpus windows), so
    attention takes its unmasked fast path. A row that is all padding attends to everything,
    since a softmax over no keys is undefined."""
    if not bool(padding.any()):
        return None
    return padding & ~padding.all(dim=1, keepdim=True)
