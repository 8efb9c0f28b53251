"""Character-level GPT on tiny Shakespeare: gradwise against a plain PyTorch loop.

    python benchmarks/gpt_shakespeare.py                  # all parts
    python benchmarks/gpt_shakespeare.py --part speed     # same config, tokens/s and val loss
    python benchmarks/gpt_shakespeare.py --part target    # val loss <= 1.80 within 5 minutes

Part `speed` trains nanoGPT's CPU configuration (4 layers, 4 heads, 128 wide, block 64,
batch 12, AdamW 1e-3 with warm-up and cosine decay, clip 1.0) for the same number of
iterations with a plain PyTorch loop written the way nanoGPT's train.py is (random windows,
model with SDPA attention) and with gradwise in fp32 and bf16, and reports tokens/s, the
ratio to the plain loop, validation loss, and the fraction of this CPU's measured
matrix-multiply peak that each reaches. Part `target` trains gradwise's example config
(examples/textgen-shakespeare-gpt.yaml) under a 5-minute budget and reports its validation
loss. Run from the repository root (the configs name ../shared/data).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import gradwise

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"
N_LAYER, N_HEAD, D_MODEL, BLOCK, BATCH = 4, 4, 128, 64, 12
ITERS = 2470  # two epochs of gradwise's non-overlapping windows over the training split


# ---------------------------------------------------------------- the plain loop (nanoGPT-style)


class PlainBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(D_MODEL, bias=False), nn.LayerNorm(D_MODEL, bias=False)
        self.qkv = nn.Linear(D_MODEL, 3 * D_MODEL, bias=False)
        self.proj = nn.Linear(D_MODEL, D_MODEL, bias=False)
        self.fc = nn.Linear(D_MODEL, 4 * D_MODEL, bias=False)
        self.out = nn.Linear(4 * D_MODEL, D_MODEL, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, N_HEAD, c // N_HEAD).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.out(F.gelu(self.fc(self.ln2(x))))


class PlainGPT(nn.Module):
    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab, D_MODEL)
        self.pos = nn.Embedding(BLOCK, D_MODEL)
        self.blocks = nn.Sequential(*[PlainBlock() for _ in range(N_LAYER)])
        self.ln = nn.LayerNorm(D_MODEL, bias=False)
        self.head = nn.Linear(D_MODEL, vocab, bias=False)
        self.head.weight = self.tok.weight
        for name, p in self.named_parameters():
            if p.ndim >= 2:
                std = (
                    0.02 / math.sqrt(2 * N_LAYER)
                    if name.endswith(("proj.weight", "out.weight"))
                    else 0.02
                )
                nn.init.normal_(p, std=std)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        return self.head(self.ln(self.blocks(x)))


def plain_loop(iters: int, text: str) -> dict[str, float]:
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    n = len(data)
    train, val = data[: int(0.85 * n)], data[int(0.85 * n) : int(0.95 * n)]
    torch.manual_seed(0)
    model = PlainGPT(len(chars))
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
        lr=1e-3,
        betas=(0.9, 0.99),
        fused=True,
    )
    g = torch.Generator().manual_seed(0)

    def batch(split: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ix = torch.randint(len(split) - BLOCK - 1, (BATCH,), generator=g)
        x = torch.stack([split[i : i + BLOCK] for i in ix])
        y = torch.stack([split[i + 1 : i + 1 + BLOCK] for i in ix])
        return x, y

    def lr_at(it: int) -> float:
        if it < 100:
            return 1e-3 * (it + 1) / 100
        ratio = (it - 100) / max(1, iters - 100)
        return 1e-4 + 0.5 * (1 + math.cos(math.pi * ratio)) * (1e-3 - 1e-4)

    started = time.perf_counter()
    for it in range(iters):
        for group in opt.param_groups:
            group["lr"] = lr_at(it)
        x, y = batch(train)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    wall = time.perf_counter() - started
    model.eval()
    with torch.no_grad():
        windows = val[: (len(val) - 1) // BLOCK * BLOCK + 1]
        xs = windows[:-1].view(-1, BLOCK)
        ys = windows[1:].view(-1, BLOCK)
        losses = [
            F.cross_entropy(model(xs[i : i + 256]).flatten(0, 1), ys[i : i + 256].flatten())
            for i in range(0, len(xs), 256)
        ]
        val_loss = float(torch.stack(losses).mean())
    return {
        "wall_s": wall,
        "tokens_per_s": iters * BATCH * BLOCK / wall,
        "val_loss": val_loss,
        "params": sum(p.numel() for p in model.parameters()),
    }


# ---------------------------------------------------------------- gradwise, same configuration


def gradwise_config(epochs: int, precision: str, compile: bool = False) -> dict:
    return {
        "name": f"gpt-speed-{precision}",
        "data": {
            "source": f"text:{CORPUS}",
            "block_size": BLOCK,
            "split": {"val": 0.1, "test": 0.05},
        },
        "model": {
            "arch": "gpt",
            "n_layer": N_LAYER,
            "n_head": N_HEAD,
            "d_model": D_MODEL,
            "dropout": 0.0,
        },
        "train": {
            "epochs": epochs,
            "batch_size": BATCH,
            "precision": precision,
            "compile": compile,
            "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.1, "betas": [0.9, 0.99]},
            "schedule": {"name": "cosine", "warmup_steps": 100, "min_lr": 0.1},
            "grad_clip": 1.0,
            "diagnostics": False,
            "early_stopping": {"patience": None},
        },
    }


def gradwise_run(epochs: int, precision: str, compile: bool = False) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        run = gradwise.train(gradwise_config(epochs, precision, compile), out=Path(tmp) / "r")
        m = run.metrics
        steps = m["n_train"] // BATCH * epochs + (epochs if m["n_train"] % BATCH else 0)
        tokens = m["n_train"] * BLOCK * epochs
        return {
            "wall_s": m["wall_s"],
            "tokens_per_s": tokens / m["wall_s"],
            "val_loss": m["val"]["loss"],
            "params": m["n_params"],
            "iters": steps,
        }


def flops_per_token(params: int, vocab: int = 65) -> float:
    """6N for the weights (forward + backward) plus the attention scores, per token."""
    attention = 6 * N_LAYER * BLOCK * D_MODEL  # 2 * n_layer * T * d for QK^T and AV, x3 for bwd
    return 6 * (params - vocab * D_MODEL) + attention


def matmul_peak(dtype: torch.dtype, n: int = 1024, reps: int = 20) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    started = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - started) / 1e9


def part_speed() -> None:
    text = CORPUS.read_text()
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    print(
        f"matmul peak (1024^3): fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s "
        f"({peak16 / peak32:.1f}x)"
    )
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    native = [f for f in ("avx512_bf16", "amx_bf16") if f in flags.split()]
    print(
        "native bf16 matrix multiply: "
        + (", ".join(native) if native else "none (no AVX512-BF16 or AMX: bf16 is emulated)")
    )
    # The machine's speed drifts over minutes: the plain loop runs before and after gradwise
    # and each gradwise contender is compared with the mean of the two.
    plain_before = plain_loop(ITERS, text)
    contenders = [("gradwise, fp32", gradwise_run(2, "fp32"), peak32)]
    if native:
        contenders.append(("gradwise, bf16", gradwise_run(2, "bf16"), peak16))
    else:
        print("gradwise bf16 skipped: without native bf16 it is slower than fp32 on this CPU")
    contenders.append(
        (
            "gradwise, fp32, compile (incl. compilation)",
            gradwise_run(2, "fp32", compile=True),
            peak32,
        )
    )
    plain_after = plain_loop(ITERS, text)
    plain_tps = (plain_before["tokens_per_s"] + plain_after["tokens_per_s"]) / 2
    print(
        f"same configuration: {N_LAYER} layers, {N_HEAD} heads, {D_MODEL} wide, block {BLOCK}, "
        f"batch {BATCH}, {ITERS} iterations (2 epochs of gradwise's windows)"
    )
    print("| contender | tokens/s | x plain loop | val loss | GFLOP/s | % of matmul peak |")
    print("|---|---|---|---|---|---|")
    rows = [
        ("plain PyTorch loop, fp32 (before)", plain_before, peak32),
        *contenders,
        ("plain PyTorch loop, fp32 (after)", plain_after, peak32),
    ]
    for name, r, peak in rows:
        gflops = r["tokens_per_s"] * flops_per_token(int(r["params"])) / 1e9
        speedup = r["tokens_per_s"] / plain_tps
        print(
            f"| {name} | {r['tokens_per_s']:,.0f} | {speedup:.2f} "
            f"| {r['val_loss']:.3f} | {gflops:.0f} | {100 * gflops / peak:.0f}% |"
        )


def part_target(budget_s: float) -> None:
    config = ROOT / "examples" / "textgen-shakespeare-gpt.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        run = gradwise.train(config, out=Path(tmp) / "r")
        wall = time.perf_counter() - started
        m = run.metrics
        history = run.history
    print(
        f"example config {config.name}: {m['n_params']:,} parameters, {m['epochs']} epochs, "
        f"training {m['wall_s']:.0f} s (whole call {wall:.0f} s, budget {budget_s:.0f} s)"
    )
    for r in history:
        print(f"  epoch {r['epoch']}: val.loss {r['val.loss']:.3f} after {r['epoch_s']:.0f} s")
    ok = m["val"]["loss"] <= 1.80 and m["wall_s"] <= budget_s
    print(
        f"validation loss {m['val']['loss']:.3f} (target <= 1.80 within {budget_s:.0f} s): "
        f"{'met' if ok else 'NOT met'}"
    )
    print(json.dumps({"val_loss": m["val"]["loss"], "wall_s": m["wall_s"]}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=["speed", "target", "all"], default="all")
    parser.add_argument("--budget", type=float, default=300.0)
    args = parser.parse_args()
    print(
        f"# gpt_shakespeare, {datetime.date.today()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    if args.part in ("speed", "all"):
        part_speed()
    if args.part in ("target", "all"):
        part_target(args.budget)


if __name__ == "__main__":
    main()
