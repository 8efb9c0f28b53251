"""POST /v1/generate for language-model runs: tokens streamed as server-sent events.

Each token is sampled as `gradwise generate` samples it (the run's tokenizer, its special
tokens banned, temperature / top-k / top-p), and sent as soon as it exists:

    data: {"token": "the", "p": 0.41}
    ...
    event: done
    data: {"request_id": "...", "text": "...", "perplexity": 3.2, "n_tokens": 64}
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from gradwise.logs import LOG
from gradwise.models.sampling import generate_iter
from gradwise.run import Run

log = logging.getLogger(LOG)

MAX_TOKENS = 2048


class GenerateRequest(BaseModel):
    """What to continue and how to sample."""

    model_config = ConfigDict(extra="forbid")
    prompt: str = Field("\n", max_length=20_000, description="text to continue")
    tokens: int = Field(64, ge=1, le=MAX_TOKENS, description="tokens to generate")
    temperature: float = Field(0.8, ge=0.0, le=10.0, allow_inf_nan=False, description="0 = greedy")
    top_k: int | None = Field(None, ge=1, description="sample from the k likeliest")
    top_p: float | None = Field(None, gt=0.0, le=1.0, description="nucleus sampling")
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="for reproducible samples")
    stream: bool = Field(True, description="server-sent events, one per token; false: one JSON")


def stream_tokens(run: Run, req: GenerateRequest) -> Iterator[tuple[str, float]]:
    """(token text, its probability) one at a time.

    Grad mode is thread-local and a streaming response resumes this generator on whichever
    worker thread is free, so every step sets inference mode itself.
    """
    tok = run.schema.tokenizer
    assert tok is not None
    model: Any = run.model
    gen = torch.Generator().manual_seed(req.seed) if req.seed is not None else None
    ids = torch.from_numpy(tok.encode(req.prompt or "\n"))
    steps = generate_iter(
        model, ids, req.tokens, req.temperature, req.top_k, req.top_p, gen, tok.specials.all()
    )
    for token, p in steps:
        yield tok.token_text(token), p


def sse(data: dict[str, Any], event: str | None = None) -> bytes:
    """One server-sent event."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


def generation_events(
    run: Run, req: GenerateRequest, done: Callable[[list[str], list[float]], dict[str, Any]]
) -> Iterator[bytes]:
    """The server-sent events of one generation: a `data:` event per token, then `done`
    with `done(tokens, probs)`; a failure mid-stream (the status line is already sent) ends
    the stream with an `error` event instead of a cut connection."""
    tokens: list[str] = []
    probs: list[float] = []
    try:
        for token, p in stream_tokens(run, req):
            tokens.append(token)
            probs.append(p)
            yield sse({"token": token, "p": round(p, 6)})
    except Exception as exc:  # noqa: BLE001 - reported to the client and logged
        log.exception("generation failed after %d tokens", len(tokens))
        yield sse(
            {"error": f"generation failed after {len(tokens)} tokens ({type(exc).__name__})"},
            event="error",
        )
        return
    yield sse(done(tokens, probs), event="done")


def generate_all(run: Run, req: GenerateRequest) -> tuple[list[str], list[float]]:
    """Every token of one generation (for `"stream": false`)."""
    pairs = list(stream_tokens(run, req))
    return [t for t, _ in pairs], [p for _, p in pairs]
