"""Mixture-of-experts GPT against the dense GPT at equal active parameters per token.

    python benchmarks/moe_vs_dense.py [--seeds 2] [--epochs 2] [--limit 400000] [--timing-only]

Both are character-level GPTs on tiny Shakespeare with the same layers, width, data, steps
and seeds. The dense feed-forward is 4 x 128 = 512 wide; the MoE layer has 8 experts of
width 256 with top-2 routing, so each token passes through 2 x 256 = 512 hidden units, as in
the dense model. Claims: the MoE's validation loss is no worse than the dense one's after
the same number of steps, and no expert is starved (each gets >= 5% of the routed tokens).

Timing first: the wall time of a training step (forward, backward, AdamW) and of an inference
forward pass of the MoE GPT over the dense GPT, the two interleaved step by step in one
process. Claim: both ratios <= 1.5 (the experts are dispatched by sorting tokens by expert).
"""

from __future__ import annotations

import argparse
import datetime
import json
import tempfile
import time
from pathlib import Path

import torch
from machine import cpu_flags  # benchmarks/machine.py (scripts run from this folder)

import gradwise
from gradwise.config import GPTConfig
from gradwise.models import InputSpec, build_model

CORPUS = (
    Path(__file__).resolve().parent.parent.parent
    / "shared"
    / "data"
    / "tinyshakespeare"
    / "input.txt"
)


def config(name: str, moe: dict | None, epochs: int, limit: int) -> dict:
    return {
        "name": name,
        "data": {
            "source": f"text:{CORPUS}",
            "block_size": 64,
            "limit": limit,
            "split": {"val": 0.1, "test": 0.05},
        },
        "model": {
            "arch": "gpt",
            "n_layer": 4,
            "n_head": 4,
            "d_model": 128,
            "ffn_mult": 4,
            "moe": moe,
        },
        "train": {
            "epochs": epochs,
            "batch_size": 32,
            "optimizer": {"name": "adamw", "lr": 2e-3, "weight_decay": 0.1},
            "schedule": {"name": "cosine", "warmup_steps": 100},
            "early_stopping": {"patience": None},
        },
    }


def timing(steps: int = 30, clock: str = "wall") -> dict[str, float]:
    """Median seconds per training step and per inference pass, MoE over dense.

    clock: wall (perf_counter) or cpu (this process's CPU time, which a neighbour's load
    on a shared machine inflates far less; meaningful at one thread).
    """
    now = time.perf_counter if clock == "wall" else time.process_time
    spec = InputSpec("tokens", (64,), 65, vocab_size=65, per_token=True)
    base = {"arch": "gpt", "n_layer": 4, "n_head": 4, "d_model": 128, "ffn_mult": 4}
    models = {
        "dense": build_model(GPTConfig(**base), spec),
        "moe": build_model(GPTConfig(**base, moe={"experts": 8, "top_k": 2, "hidden": 256}), spec),
    }
    opts = {k: torch.optim.AdamW(m.parameters(), lr=1e-3) for k, m in models.items()}
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 65, (32, 64), generator=gen)
    y = torch.randint(0, 65, (32, 64), generator=gen)
    train: dict[str, list[float]] = {k: [] for k in models}
    infer: dict[str, list[float]] = {k: [] for k in models}
    for step in range(steps + 3):
        for name, model in models.items():  # interleaved: a neighbour's load hits both
            model.train()
            t0 = now()
            loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
            loss.backward()
            opts[name].step()
            opts[name].zero_grad(set_to_none=True)
            t1 = now()
            model.eval()
            with torch.no_grad():
                model(x)
            t2 = now()
            if step >= 3:  # warm-up
                train[name].append(t1 - t0)
                infer[name].append(t2 - t1)

    def median(v: list[float]) -> float:
        return sorted(v)[len(v) // 2]

    out = {
        "train_dense_ms": median(train["dense"]) * 1e3,
        "train_moe_ms": median(train["moe"]) * 1e3,
        "infer_dense_ms": median(infer["dense"]) * 1e3,
        "infer_moe_ms": median(infer["moe"]) * 1e3,
    }
    out["train_ratio"] = out["train_moe_ms"] / out["train_dense_ms"]
    out["infer_ratio"] = out["infer_moe_ms"] / out["infer_dense_ms"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=400_000)
    parser.add_argument("--timing-only", action="store_true")
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: as torch")
    parser.add_argument("--steps", type=int, default=30, help="timed steps (interleaved)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# {cpu_flags()}; torch {torch.__version__}")
    t = timing(args.steps, args.clock)
    print(
        f"step time ({args.clock} clock), batch 32 x 64 tokens, {torch.get_num_threads()} "
        f"threads: training "
        f"dense {t['train_dense_ms']:.1f} ms, MoE {t['train_moe_ms']:.1f} ms (ratio "
        f"{t['train_ratio']:.2f}); inference dense {t['infer_dense_ms']:.1f} ms, MoE "
        f"{t['infer_moe_ms']:.1f} ms (ratio {t['infer_ratio']:.2f}); claim <= 1.5: "
        f"{t['train_ratio'] <= 1.5 and t['infer_ratio'] <= 1.5}"
    )
    if args.timing_only:
        print(json.dumps(t))
        return
    dense = config("dense", None, args.epochs, args.limit)
    moe = config("moe", {"experts": 8, "top_k": 2, "hidden": 256}, args.epochs, args.limit)
    print(f"# moe_vs_dense, {datetime.date.today()}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        result = gradwise.compare(dense, moe, seeds=args.seeds, metric="val.loss", out=Path(tmp))
        shares = []
        for seed in range(args.seeds):
            run = gradwise.load(Path(tmp) / "moe" / "f1" / f"s{seed}")
            last = run.history[-1]
            shares.append(last["moe.min_share"])
            per_expert = {k: round(v, 3) for k, v in last.items() if k.startswith("moe.blocks.0.")}
            print(f"seed {seed}: expert shares in block 0 (last epoch) {per_expert}")
    print("| model | total params | val loss mean ± std | wall s |")
    print("|---|---|---|---|")
    for arm in result.arms:
        print(
            f"| {arm.name} | {arm.n_params:,} | {arm.mean:.4f} ± {arm.std:.4f} | "
            f"{sum(arm.wall_s) / len(arm.wall_s):.0f} |"
        )
    dense_arm, moe_arm = result.arms
    print(f"verdict: {result.verdicts[0].text}")
    print(f"MoE val loss no worse than dense: {moe_arm.mean <= dense_arm.mean + dense_arm.std}")
    print(
        f"smallest expert share over all MoE layers and seeds: {min(shares):.3f} "
        f"(claim >= 0.05: {min(shares) >= 0.05})"
    )
    wall = (sum(moe_arm.wall_s) / len(moe_arm.wall_s)) / (
        sum(dense_arm.wall_s) / len(dense_arm.wall_s)
    )
    print(f"training wall time, MoE over dense (whole runs): {wall:.2f}")
    print(json.dumps({"dense": dense_arm.mean, "moe": moe_arm.mean, "min_share": min(shares), **t}))


if __name__ == "__main__":
    main()
