"""Held-out test accuracy of the example configs against the targets gradwise promises.

    python benchmarks/accuracy.py [--seeds 3] [--only digits|mnist]

digits MLP >= 0.975, digits CNN >= 0.985, digits ViT >= 0.97 (mean over seeds), MNIST CNN
>= 0.98, all on test splits the models never saw. Prints one row per config: mean, min and
max over seeds.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

import gradwise

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {
    "digits-mlp": ("examples/digits-mlp.yaml", 0.975),
    "digits-cnn": ("examples/digits-cnn.yaml", 0.985),
    "digits-vit": ("examples/digits-vit.yaml", 0.97),
    "defects-mnist-cnn": ("examples/defects-mnist-cnn.yaml", 0.98),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", choices=["digits", "mnist"])
    args = parser.parse_args()
    print(f"# accuracy benchmark, {datetime.date.today()}, {_cpu()}, torch {torch.__version__}")
    print("| config | seeds | test accuracy mean | min | max | target | wall s (mean) | met |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (config, target) in TARGETS.items():
        if (
            args.only == "digits"
            and "digits" not in name
            or args.only == "mnist"
            and "mnist" not in name
        ):
            continue
        seeds = 1 if "mnist" in name else args.seeds
        accs, walls = [], []
        for seed in range(seeds):
            with tempfile.TemporaryDirectory() as tmp:
                started = time.perf_counter()
                run = gradwise.train(ROOT / config, out=Path(tmp) / "r", seed=seed)
                walls.append(time.perf_counter() - started)
                accs.append(run.metrics["test"]["accuracy"])
        mean = statistics.mean(accs)
        print(
            f"| {name} | {seeds} | {mean:.4f} | {min(accs):.4f} | {max(accs):.4f} | "
            f">= {target} | {statistics.mean(walls):.1f} | {'yes' if mean >= target else 'NO'} |"
        )


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return f"{line.split(':', 1)[1].strip()} x{torch.get_num_threads()} threads"
    return platform.processor()


if __name__ == "__main__":
    main()
