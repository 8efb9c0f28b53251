"""Sampling text from a language model: temperature, top-k, top-p, with carried state."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor


class LanguageModel(Protocol):
    def step(self, x: Tensor, state: Any) -> tuple[Tensor, Any]:
        """(B, T) ids and the carried state -> (B, T, V) logits and the new state."""
        ...


def sample_next(
    logits: Tensor,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    generator: torch.Generator | None,
) -> Tensor:
    """Next token ids (B,) from last-step logits (B, V); temperature 0 is greedy."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        drop = cum - sorted_logits.softmax(dim=-1) > top_p  # keep the smallest set reaching top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(
    model: LanguageModel,
    prompt: Tensor,
    n_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    banned: tuple[int, ...] = (),
) -> tuple[Tensor, Tensor]:
    """Continue `prompt` (T,) ids by `n_tokens`, feeding one token per step with carried state.

    Args:
        banned: ids never to emit (the tokenizer's special tokens: <pad> is not text).

    Returns:
        (n_tokens,) generated ids, and (n_tokens,) the probability the model gave each chosen
        token (softmax of its logits, before temperature or truncation): how sure it was.
    """
    logits, state = model.step(prompt[None], None)
    ids, probs = [], []
    for _ in range(n_tokens):
        last = logits[:, -1].float()
        if banned:
            last[:, list(banned)] = float("-inf")
        token = sample_next(last, temperature, top_k, top_p, generator)
        ids.append(token)
        probs.append(last.softmax(dim=-1).gather(-1, token[:, None])[:, 0])
        logits, state = model.step(token[:, None], state)
    return torch.cat(ids), torch.cat(probs)


@dataclass(frozen=True)
class Generation:
    """Generated text with the model's confidence in every token.

    Attributes:
        text: the continuation (without the prompt).
        tokens: each generated token as text.
        probs: the probability the model gave each token.
        perplexity: exp(mean negative log-probability) over the generated tokens.
        low_confidence: [start, end) token spans whose probability is below `threshold` —
            where a checker (a retrieval lookup, a human) should look first.
    """

    text: str
    tokens: list[str]
    probs: list[float]
    perplexity: float
    low_confidence: list[tuple[int, int]]
    threshold: float

    @staticmethod
    def of(tokens: list[str], probs: list[float], threshold: float) -> Generation:
        nll = [-math.log(max(p, 1e-12)) for p in probs]
        spans: list[tuple[int, int]] = []
        for i, p in enumerate(probs):
            if p < threshold:
                if spans and spans[-1][1] == i:
                    spans[-1] = (spans[-1][0], i + 1)
                else:
                    spans.append((i, i + 1))
        perplexity = math.exp(sum(nll) / len(nll)) if nll else float("nan")
        return Generation("".join(tokens), tokens, probs, perplexity, spans, threshold)

    def marked(self, left: str = "[[", right: str = "]]") -> str:
        """The text with every low-confidence span wrapped in `left` ... `right`."""
        starts = {a for a, _ in self.low_confidence}
        ends = {b for _, b in self.low_confidence}
        out = []
        for i, token in enumerate(self.tokens):
            out.append((left if i in starts else "") + token)
            if i + 1 in ends:
                out.append(right)
        return "".join(out)
