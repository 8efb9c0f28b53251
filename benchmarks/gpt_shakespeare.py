"""Character-level GPT on tiny Shakespeare: gradwise against a plain PyTorch loop.

    python benchmarks/gpt_shakespeare.py                  # all parts
    python benchmarks/gpt_shakespeare.py --part speed     # same config, tokens/s and val loss
    python benchmarks/gpt_shakespeare.py --part speed --iters 150 --repeats 3   # shorter
    python benchmarks/gpt_shakespeare.py --part step --repeats 5 --threads 1  # CPU ms per step
    python benchmarks/gpt_shakespeare.py --part target    # val loss <= 1.80 within 5 minutes

Part `speed` trains nanoGPT's CPU configuration (4 layers, 4 heads, 128 wide, block 64,
batch 12, AdamW 1e-3 with warm-up and cosine decay, clip 1.0) for the same number of
iterations with a plain PyTorch loop written the way nanoGPT's train.py is (random windows,
model with SDPA attention), in fp32 and under bf16 autocast, and with gradwise in fp32 and
bf16. The four run interleaved `--repeats` times (the order rotating); each repeat's
tokens/s is divided by the plain fp32 loop's of the same repeat, and the table shows the
median ratio, tokens/s, validation loss, and the fraction of this CPU's measured
matrix-multiply peak that each reaches; the same ratio in CPU time (process time: gradwise's
whole call, with data, model and validation; the plain loop's training iterations), which a
shared machine disturbs far less than wall time. All run on the same thread count (`--threads`,
torch's default otherwise). `--iters N` trains N iterations (one epoch of a
corpus cut to fit) instead of two epochs of the whole corpus. Part `target` trains
gradwise's example config (examples/textgen-shakespeare-gpt.yaml) under a 5-minute budget
and reports its validation loss. Run from the repository root (the configs name ../shared/data).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import gradwise
from gradwise.training.precision import Bf16Weights

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


def plain_loop(iters: int, text: str, bf16: bool = False) -> dict[str, float]:
    """nanoGPT's loop; `bf16` wraps the forward pass and loss in bf16 autocast, as its
    train.py does with dtype='bfloat16'."""
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

    started, cpu_started = time.perf_counter(), time.process_time()
    for it in range(iters):
        for group in opt.param_groups:
            group["lr"] = lr_at(it)
        x, y = batch(train)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
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
        "tokens_per_cpu_s": iters * BATCH * BLOCK / cpu,
        "val_loss": val_loss,
        "params": sum(p.numel() for p in model.parameters()),
    }


# ---------------------------------------------------------------- gradwise, same configuration


def gradwise_config(
    epochs: int, precision: str, compile: bool = False, limit: int | None = None
) -> dict:
    return {
        "name": f"gpt-speed-{precision}",
        "data": {
            "source": f"text:{CORPUS}",
            "block_size": BLOCK,
            "limit": limit,
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
            "threads": torch.get_num_threads(),  # as the plain loop: the step is compared
            "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 0.1, "betas": [0.9, 0.99]},
            "schedule": {"name": "cosine", "warmup_steps": 100, "min_lr": 0.1},
            "grad_clip": 1.0,
            "diagnostics": False,
            "early_stopping": {"patience": None},
        },
    }


def gradwise_run(
    epochs: int, precision: str, compile: bool = False, limit: int | None = None
) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = gradwise_config(epochs, precision, compile, limit)
        cpu_started = time.process_time()  # the whole call: data, model, validation too
        run = gradwise.train(cfg, out=Path(tmp) / "r")
        cpu = time.process_time() - cpu_started
        m = run.metrics
        steps = m["n_train"] // BATCH * epochs + (epochs if m["n_train"] % BATCH else 0)
        tokens = m["n_train"] * BLOCK * epochs
        return {
            "wall_s": m["wall_s"],
            "tokens_per_s": tokens / m["wall_s"],
            "tokens_per_cpu_s": tokens / cpu,
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


def cpu_flags() -> list[str]:
    return Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []


def corpus_limit(iters: int | None) -> int | None:
    """Characters to read so that one epoch of gradwise's training windows (85% of the
    corpus after the val and test splits) is about `iters` batches; None: the whole corpus."""
    return None if iters is None else math.ceil(iters * BATCH * BLOCK / 0.85) + 4 * BLOCK


def part_speed(iters: int | None, repeats: int, with_compile: bool) -> None:
    text = CORPUS.read_text()
    peak32, peak16 = matmul_peak(torch.float32), matmul_peak(torch.bfloat16)
    print(
        f"matmul peak (1024^3): fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s "
        f"({peak16 / peak32:.2f}x)"
    )
    flags = cpu_flags()
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    if not native:
        print("bf16 contenders skipped: without native bf16 it is emulated on this CPU")
    epochs, limit = (2, None) if iters is None else (1, corpus_limit(iters))
    text = text if limit is None else text[:limit]
    steps = ITERS if iters is None else None  # gradwise's first run gives the count
    contenders = {
        "gradwise, fp32": (lambda: gradwise_run(epochs, "fp32", limit=limit), peak32),
        "plain PyTorch loop, fp32": (lambda: plain_loop(steps or 0, text), peak32),
    }
    if native:
        contenders["gradwise, bf16"] = (lambda: gradwise_run(epochs, "bf16", limit=limit), peak16)
        contenders["plain PyTorch loop, bf16 autocast"] = (
            lambda: plain_loop(steps or 0, text, bf16=True),
            peak16,
        )
    results: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
    names = list(contenders)
    for rep in range(repeats):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            results[name].append(contenders[name][0]())
            steps = steps or int(results["gradwise, fp32"][0]["iters"])
            print(f"  repeat {rep + 1}: {name}: {results[name][-1]['tokens_per_s']:,.0f} tok/s")
    print(
        f"same configuration: {N_LAYER} layers, {N_HEAD} heads, {D_MODEL} wide, block {BLOCK}, "
        f"batch {BATCH}, {steps} iterations, {repeats} interleaved repeats, "
        f"{torch.get_num_threads()} threads"
    )
    print(
        "| contender | tokens/s | x plain fp32 (median) | per repeat | tokens per CPU s "
        "| x plain fp32, CPU time | val loss | % of peak |"
    )
    print("|---|---|---|---|---|---|---|---|")
    base = results["plain PyTorch loop, fp32"]
    for name, (_, peak) in contenders.items():
        runs = results[name]
        ratios = [r["tokens_per_s"] / b["tokens_per_s"] for r, b in zip(runs, base)]
        cpu_ratios = [r["tokens_per_cpu_s"] / b["tokens_per_cpu_s"] for r, b in zip(runs, base)]
        tps = statistics.median(r["tokens_per_s"] for r in runs)
        gflops = tps * flops_per_token(int(runs[0]["params"])) / 1e9
        print(
            f"| {name} | {tps:,.0f} | {statistics.median(ratios):.2f} "
            f"| {', '.join(f'{x:.2f}' for x in ratios)} "
            f"| {statistics.median(r['tokens_per_cpu_s'] for r in runs):,.0f} "
            f"| {statistics.median(cpu_ratios):.2f} "
            f"| {statistics.median(r['val_loss'] for r in runs):.3f} "
            f"| {100 * gflops / peak:.0f}% |"
        )
    if with_compile:
        r = gradwise_run(epochs, "fp32", compile=True, limit=limit)
        print(
            f"gradwise, fp32, compile (incl. compilation), once: {r['tokens_per_s']:,.0f} tok/s, "
            f"val loss {r['val_loss']:.3f}"
        )


def part_step(repeats: int, steps: int = 10) -> None:
    """CPU time of one training step of the plain model: fp32, bf16 autocast, and gradwise's
    bf16 path (bf16 weight copies, fp32 master weights); interleaved, median of `repeats`."""
    x, y = torch.randint(65, (BATCH, BLOCK)), torch.randint(65, (BATCH, BLOCK))

    def make(kind: str) -> Callable[[], None]:
        torch.manual_seed(0)
        model = PlainGPT(65)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
        weights = Bf16Weights(model) if kind == "gradwise bf16 path" else None
        forward = weights.forward if weights is not None else model

        def step() -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=kind != "fp32"):
                loss = F.cross_entropy(forward(x).flatten(0, 1), y.flatten())
            loss.backward()
            if weights is not None:
                weights.grads_to_master()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if weights is not None:
                weights.refresh()

        return step

    kinds = ["fp32", "bf16 autocast", "gradwise bf16 path"]
    runs = {kind: make(kind) for kind in kinds}
    ms: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(repeats):
        for kind, step in runs.items():
            step()  # warm
            started = time.process_time()
            for _ in range(steps):
                step()
            ms[kind].append((time.process_time() - started) / steps * 1000)
    print(f"one step, CPU ms, median of {repeats} interleaved repeats of {steps} steps:")
    fp32 = statistics.median(ms["fp32"])
    for kind in kinds:
        median = statistics.median(ms[kind])
        print(f"  {kind}: {median:.1f} ms ({fp32 / median:.2f}x fp32's speed)")


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
    parser.add_argument("--part", choices=["speed", "step", "target", "all"], default="all")
    parser.add_argument("--budget", type=float, default=300.0)
    parser.add_argument("--iters", type=int, default=None, help="speed: iterations per run")
    parser.add_argument("--repeats", type=int, default=3, help="speed: interleaved repeats")
    parser.add_argument("--compile", action="store_true", help="speed: also torch.compile")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for all")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(
        f"# gpt_shakespeare, {datetime.date.today()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    shown = [
        f for f in cpu_flags() if "bf16" in f or f.startswith(("amx", "avx512f", "avx512_vnni"))
    ]
    print("CPU flags: " + (" ".join(dict.fromkeys(shown)) or "none of avx512/amx/bf16"))
    if args.part in ("speed", "all"):
        part_speed(args.iters, args.repeats, args.compile)
    if args.part in ("step", "all"):
        part_step(args.repeats)
    if args.part in ("target", "all"):
        part_target(args.budget)


if __name__ == "__main__":
    main()
