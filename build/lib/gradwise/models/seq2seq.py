"""Seq2Seq: an encoder-decoder transformer, trained with teacher forcing, decoded greedily or
by beam search.

x packs a source and the target's decoder input side by side (see `_build_seq2seq` in
data/sources.py): x = [source (S ids, <bos> first, <pad> after)] + [<bos> + target (T-1 ids)],
and the model returns the next target token's logits at each of the T-1 decoder positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gradwise.config import Seq2SeqConfig
from gradwise.data.text import BOS, EOS, PAD
from gradwise.errors import ConfigError, DataError
from gradwise.models.blocks import (
    Attention,
    LayerCache,
    Rotary,
    TransformerBlock,
    eval_mode,
    init_transformer,
)
from gradwise.models.gpt import make_ffn
from gradwise.models.spec import Embedder, InputSpec

__all__ = ["DecoderState", "Seq2Seq", "beam_search", "greedy_decode", "translate"]


@dataclass
class DecoderState:
    """What decoding carries from step to step.

    Attributes:
        caches: per decoder block, the self-attention keys/values of the tokens fed so far.
        memory_kv: per decoder block, the cross-attention keys and values of the memory,
            (B, H, S, D) each, computed once: recomputing them projects the whole memory in
            every block at every step (measured: greedy decoding of 512 sources, S 40, 11
            steps, d_model 128, 3 + 3 blocks, took 1.6x as long).
        memory_padding: (B, S) True where the source is padding.
    """

    caches: list[LayerCache]
    memory_kv: list[tuple[Tensor, Tensor]]
    memory_padding: Tensor

    @property
    def length(self) -> int:
        return self.caches[0].length

    def reorder(self, index: Tensor) -> None:
        """Keep rows `index` of the self-attention caches (beam search).

        The memory is left alone: beams of one source share it, and `index` never moves a
        row to another source.
        """
        for cache in self.caches:
            cache.k, cache.v = cache.k[index], cache.v[index]


class Seq2Seq(nn.Module, Embedder):
    """A shared token embedding, an encoder stack, a decoder stack with cross-attention to the
    encoder's output (the memory), and an output head tied to the embedding.

    Source and target use one tokenizer, so one embedding reads both. Positions are learned
    (one table for the source, one for the target) or rotary.
    """

    def __init__(self, cfg: Seq2SeqConfig, spec: InputSpec) -> None:
        super().__init__()
        if spec.kind != "tokens" or spec.source_len <= 0:
            raise ConfigError(
                "model.arch seq2seq maps text to text: use a CSV of pairs with data.task: "
                "seq2seq, data.text_column: <source column> and data.target: <target column>."
            )
        self.source_len = spec.source_len  # S
        self.target_len = spec.shape[0] - spec.source_len  # T-1 decoder positions
        self.vocab_size = spec.vocab_size
        self.n_head, self.d_model = cfg.n_head, cfg.d_model
        self.tok_emb = nn.Embedding(spec.vocab_size, cfg.d_model)
        is_learned = cfg.positions == "learned"
        self.source_pos = nn.Embedding(self.source_len, cfg.d_model) if is_learned else None
        self.target_pos = nn.Embedding(self.target_len, cfg.d_model) if is_learned else None
        rotary = (
            None
            if is_learned
            else Rotary(cfg.d_model // cfg.n_head, max(self.source_len, self.target_len))
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.encoder = nn.ModuleList(
            TransformerBlock(
                cfg.d_model,
                cfg.n_head,
                make_ffn(cfg.d_model, cfg.ffn_mult, cfg.dropout, False, None, i),
                cfg.dropout,
                causal=False,
                rotary=rotary,
            )
            for i in range(cfg.n_layer)
        )
        self.ln_memory = nn.LayerNorm(cfg.d_model, bias=False)
        self.decoder = nn.ModuleList(
            TransformerBlock(
                cfg.d_model,
                cfg.n_head,
                make_ffn(cfg.d_model, cfg.ffn_mult, cfg.dropout, False, None, i),
                cfg.dropout,
                causal=True,
                rotary=rotary,
                cross=True,
            )
            for i in range(cfg.n_decoder_layer)
        )
        self.ln_f = nn.LayerNorm(cfg.d_model, bias=False)
        self.head = nn.Linear(cfg.d_model, spec.vocab_size, bias=False)
        init_transformer(self, cfg.n_layer + cfg.n_decoder_layer)
        self.head.weight = self.tok_emb.weight

    def forward(self, x: Tensor) -> Tensor:
        """(B, S + T-1) source and decoder input ids -> (B, T-1, V) teacher-forced logits."""
        source, target_in = x[:, : self.source_len], x[:, self.source_len :]
        return self.decode(target_in, self.encode(source), source == PAD)

    def features(self, x: Tensor) -> Tensor:
        """(B, S [+ T-1]) ids -> (B, C): the mean of the real source tokens' memory."""
        source = x[:, : self.source_len]
        keep = (source != PAD).unsqueeze(-1).float()  # (B, S, 1)
        memory = self.encode(source)  # (B, S, C)
        return (memory * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1.0)

    def encode(self, source: Tensor) -> Tensor:
        """(B, S') source ids, S' <= S, <pad> after the text -> (B, S', C) memory.

        Padding is masked out of attention, so the memory of real tokens does not depend on
        how much padding follows them.
        """
        if source.shape[1] > self.source_len:
            raise DataError(
                f"The source has {source.shape[1]} tokens; this model reads at most "
                f"{self.source_len} (data.block_size). Cut the source to fit."
            )
        h = self.tok_emb(source)  # (B, S', C)
        if self.source_pos is not None:
            h = h + self.source_pos(torch.arange(source.shape[1], device=source.device))
        h = self.drop(h)
        padding = source == PAD
        for block in self.encoder:
            h = block(h, key_padding=padding)
        return self.ln_memory(h)

    def decode(self, target_in: Tensor, memory: Tensor, memory_padding: Tensor) -> Tensor:
        """Teacher forcing: (B, T') decoder input ids -> (B, T', V) next-token logits.

        Args:
            target_in: <bos> + target ids; the causal mask lets position t see only 0..t.
            memory: (B, S', C) from `encode`.
            memory_padding: (B, S') True where the source is padding.
        """
        h = self._embed_target(target_in, offset=0)  # (B, T', C)
        for block in self.decoder:
            h = block(h, memory=memory, memory_padding=memory_padding)
        return self.head(self.ln_f(h))  # (B, T', V)

    def _embed_target(self, ids: Tensor, offset: int) -> Tensor:
        h = self.tok_emb(ids)
        if self.target_pos is not None:
            h = h + self.target_pos(torch.arange(offset, offset + ids.shape[1], device=ids.device))
        return self.drop(h)

    def new_state(self, memory: Tensor, memory_padding: Tensor, max_len: int) -> DecoderState:
        """Empty self-attention caches for `max_len` tokens, and the memory's keys/values."""
        b = len(memory)
        shape = (b, self.n_head, max_len, self.d_model // self.n_head)
        caches = [
            LayerCache(memory.new_zeros(shape), memory.new_zeros(shape)) for _ in self.decoder
        ]
        memory_kv = [_cross_attention(block).memory_kv(memory) for block in self.decoder]
        return DecoderState(caches, memory_kv, memory_padding)

    def step(self, target_in: Tensor, state: DecoderState) -> Tensor:
        """Feed new decoder input ids (B, t) after the cached ones -> their (B, t, V) logits.

        Does what `decode` does, block by block, reading the cached keys/values; meant for
        decoding in eval mode (attention dropout is not applied).
        """
        h = self._embed_target(target_in, offset=state.length)  # (B, t, C)
        for block, cache, kv in zip(self.decoder, state.caches, state.memory_kv):
            h = block(h, cache=cache, memory=kv, memory_padding=state.memory_padding)
        return self.head(self.ln_f(h))  # (B, t, V)


def _cross_attention(block: nn.Module) -> Attention:
    assert isinstance(block, TransformerBlock) and block.cross_attn is not None
    return block.cross_attn


# ---------------------------------------------------------------- decoding


def greedy_decode(model: Seq2Seq, source: Tensor, max_len: int) -> Tensor:
    """The likeliest next token at every step, until <eos> or `max_len` tokens.

    Args:
        source: (B, S') source ids, <bos> first, <pad> after the text.
        max_len: most tokens to generate per source (<eos> included); at most T-1.

    Returns:
        (B, L) ids, L <= max_len: tokens, <eos>, then <pad> once a row has finished.
    """
    state = model.new_state(model.encode(source), source == PAD, max_len)
    token = source.new_full((len(source), 1), BOS)
    done = torch.zeros(len(source), dtype=torch.bool, device=source.device)
    out = []
    for _ in range(max_len):
        token = model.step(token, state)[:, -1].argmax(-1, keepdim=True)  # (B, 1)
        token = token.masked_fill(done[:, None], PAD)
        out.append(token)
        done |= token[:, 0] == EOS
        if done.all():
            break
    return torch.cat(out, dim=1)


def beam_search(model: Seq2Seq, source: Tensor, max_len: int, beam_size: int) -> Tensor:
    """The best of `beam_size` hypotheses by length-normalised log-probability.

    A hypothesis scores the mean log-probability of its tokens (<eos> included). At every
    step each unfinished beam proposes all its one-token extensions, each finished beam
    proposes itself unchanged, and the `beam_size` best proposals by that score go on; search
    ends when every beam has produced <eos>, or after `max_len` tokens. With one beam this is
    greedy decoding.

    Args:
        source: (B, S') source ids, <bos> first, <pad> after the text.
        max_len: most tokens to generate per source (<eos> included); at most T-1.
        beam_size: hypotheses kept per source.

    Returns:
        (B, L) ids of each source's best hypothesis: tokens, <eos>, then <pad>.
    """
    b, k, v = len(source), beam_size, model.vocab_size
    memory = model.encode(source).repeat_interleave(k, dim=0)  # (B*K, S', C)
    state = model.new_state(memory, (source == PAD).repeat_interleave(k, dim=0), max_len)
    scores = torch.full((b, k), float("-inf"), device=source.device)  # summed log-probs
    scores[:, 0] = 0.0  # one live beam at first, so the first step expands it alone
    lengths = torch.zeros(b, k, device=source.device)  # tokens so far, <eos> included
    finished = torch.zeros(b, k, dtype=torch.bool, device=source.device)
    tokens = source.new_zeros((b, k, 0))
    last = source.new_full((b * k, 1), BOS)
    stay = torch.full((v,), float("-inf"), device=source.device)
    stay[PAD] = 0.0  # a finished beam's only proposal: itself, padded, at its own score
    for _ in range(max_len):
        logp = model.step(last, state)[:, -1].float().log_softmax(-1).view(b, k, v)
        logp = torch.where(finished[..., None], stay, logp)
        proposed = scores[..., None] + logp  # (B, K, V)
        proposed_len = lengths + (~finished).float()  # (B, K)
        ranked = (proposed / proposed_len[..., None]).flatten(1)  # (B, K*V)
        best = ranked.topk(k, dim=1).indices  # (B, K), best first
        beam, token = best // v, best % v
        scores = proposed.flatten(1).gather(1, best)
        lengths = proposed_len.gather(1, beam)
        finished = finished.gather(1, beam) | (token == EOS) | scores.isneginf()
        history = tokens.gather(1, beam[..., None].expand(-1, -1, tokens.shape[2]))
        tokens = torch.cat([history, token[..., None]], dim=2)  # (B, K, t+1)
        state.reorder((beam + torch.arange(b, device=beam.device)[:, None] * k).flatten())
        last = token.view(b * k, 1)
        if finished.all():
            break
    return tokens[:, 0]


@torch.no_grad()
def translate(
    model: Seq2Seq, source: Tensor, max_len: int, beam_size: int = 1, batch_size: int = 256
) -> list[list[int]]:
    """Decode every source, in eval mode, batch by batch, on the model's device.

    Args:
        source: (N, S') source ids, <bos> first, <pad> after the text.
        max_len: most tokens to generate per source (<eos> included); cut to the model's T-1.
        beam_size: 1 decodes greedily; more runs `beam_search`.
        batch_size: sources decoded together (each takes `beam_size` rows).

    Returns:
        N lists of token ids, without <bos>, <eos> or <pad>.
    """
    max_len = min(max_len, model.target_len)
    device = model.tok_emb.weight.device
    out: list[list[int]] = []
    with eval_mode(model):
        for start in range(0, len(source), batch_size):
            chunk = source[start : start + batch_size].to(device)
            if beam_size == 1:
                ids = greedy_decode(model, chunk, max_len)
            else:
                ids = beam_search(model, chunk, max_len, beam_size)
            out.extend(_strip(row) for row in ids.tolist())
    return out


def _strip(ids: list[int]) -> list[int]:
    """Tokens up to the first <eos>, without <bos> or <pad>."""
    if EOS in ids:
        ids = ids[: ids.index(EOS)]
    return [i for i in ids if i not in (PAD, BOS)]
