"""Sampling text from a language model: temperature, top-k, top-p, with carried state."""

from __future__ import annotations

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
) -> Tensor:
    """Continue `prompt` (T,) ids by `n_tokens`, feeding one token per step with carried state.

    Returns:
        (n_tokens,) generated ids.
    """
    logits, state = model.step(prompt[None], None)
    out = []
    for _ in range(n_tokens):
        token = sample_next(logits[:, -1], temperature, top_k, top_p, generator)
        out.append(token)
        logits, state = model.step(token[:, None], state)
    return torch.cat(out)
