"""Mixture-of-experts GPT against the dense GPT at equal active parameters per token.

    python benchmarks/moe_vs_dense.py [--seeds 2] [--epochs 2] [--limit 400000]

Both are character-level GPTs on tiny Shakespeare with the same layers, width, data, steps
and seeds. The dense feed-forward is 4 x 128 = 512 wide; the MoE layer has 8 experts of
width 256 with top-2 routing, so each token passes through 2 x 256 = 512 hidden units, as in
the dense model. Claims: the MoE's validation loss is no worse than the dense one's after
the same number of steps, and no expert is starved (each gets >= 5% of the routed tokens).
"""

from __future__ import annotations

import argparse
import datetime
import json
import tempfile
from pathlib import Path

import torch

import gradwise

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=400_000)
    args = parser.parse_args()
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
    print(json.dumps({"dense": dense_arm.mean, "moe": moe_arm.mean, "min_share": min(shares)}))


if __name__ == "__main__":
    main()
