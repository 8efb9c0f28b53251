"""GPT generation with the key/value cache against recomputing the whole prefix every step.

    python benchmarks/kv_cache.py [--tokens 500] [--repeats 3]

Trains a small char-level GPT with a 512-token context on tiny Shakespeare for one short epoch
(so its next-token choices are real, not ties between near-uniform logits), then generates
`--tokens` tokens at temperature 0 from the same prompt two ways:

- cached: gradwise's `generate` (each step feeds one token; keys and values of the prefix are
  kept per layer), the path `gradwise generate` uses;
- recompute: each step runs the model on the whole prefix so far and takes the last logits,
  as a model without a cache must.

Reports the wall time of each, the speed-up, and whether the two outputs are identical.
Run from the repository root.
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
import time
from pathlib import Path

import torch

import gradwise
from gradwise.models.sampling import generate

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
PROMPT = "ROMEO:"


@torch.no_grad()
def recompute(model: torch.nn.Module, prompt: torch.Tensor, n_tokens: int) -> torch.Tensor:
    ids = prompt[None]
    for _ in range(n_tokens):
        logits = model(ids)[:, -1]
        ids = torch.cat([ids, logits.argmax(dim=-1, keepdim=True)], dim=1)
    return ids[0, len(prompt) :]


def best_of(repeats: int, fn) -> tuple[float, torch.Tensor]:  # type: ignore[no-untyped-def]
    times, out = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - started)
    assert out is not None
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(
        f"# kv_cache, {datetime.date.today()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    config = {
        "name": "kv-cache",
        "data": {"source": f"text:{CORPUS}", "block_size": 512, "limit": 300_000},
        "model": {"arch": "gpt", "n_layer": 4, "n_head": 4, "d_model": 128},
        "train": {
            "epochs": 1,
            "batch_size": 8,
            "optimizer": {"name": "adamw", "lr": 2e-3},
            "schedule": {"name": "cosine", "warmup_steps": 20},
            "diagnostics": False,
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        run = gradwise.train(config, out=Path(tmp) / "r")
        metrics = run.metrics
    model = run.model.eval()
    tok = run.schema.tokenizer
    assert tok is not None
    prompt = torch.from_numpy(tok.encode(PROMPT))
    n = args.tokens
    if len(prompt) + n > 512:
        raise SystemExit(f"prompt + tokens must fit the 512-token context; got {len(prompt) + n}")
    print(
        f"model: {metrics['n_params']:,} parameters, context 512, val loss "
        f"{metrics['val']['loss']:.3f}; prompt {len(prompt)} tokens, {n} new tokens"
    )

    cached_s, cached = best_of(args.repeats, lambda: generate(model, prompt, n, temperature=0)[0])
    full_s, full = best_of(args.repeats, lambda: recompute(model, prompt, n))
    same = torch.equal(cached, full)
    print(f"| generation | seconds (best of {args.repeats}) | tokens/s |")
    print("|---|---:|---:|")
    print(f"| key/value cache | {cached_s:.2f} | {n / cached_s:.0f} |")
    print(f"| recompute the prefix | {full_s:.2f} | {n / full_s:.0f} |")
    print(
        f"speed-up {full_s / cached_s:.1f}x (target >= 3x); outputs identical at temperature 0: "
        f"{same}"
    )
    if not same:
        first = int((cached != full).nonzero()[0])
        print(f"first difference at token {first}")
    print(f"sample: {tok.decode(cached.tolist())[:200]!r}")


if __name__ == "__main__":
    main()
