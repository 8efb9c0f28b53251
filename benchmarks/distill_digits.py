"""Knowledge distillation on digits: a student a quarter of the teacher's size or smaller.

    python benchmarks/distill_digits.py [--seeds 3] [--hidden 128] [--temperature 4] [--alpha 0.7]

The teacher is examples/digits-mlp.yaml (256-256 MLP, seed 0). The student is an MLP with one
hidden layer (`--hidden`), trained with the teacher's training settings on the same splits,
once per seed with the teacher's soft targets (`gradwise optimize --distill`) and once without.
Claims: the distilled student keeps >= 98% of the teacher's test accuracy, and beats the same
student trained without the teacher (mean over seeds, with the seed-to-seed spread).
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import tempfile
from pathlib import Path

import torch

import gradwise
from gradwise.deploy.distill import distill, student_config

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=0.7)
    args = parser.parse_args()
    print(f"# distill_digits, {datetime.date.today()}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        teacher = gradwise.train(ROOT / "examples" / "digits-mlp.yaml", out=Path(tmp) / "teacher")
        t_acc = teacher.metrics["test"]["accuracy"]
        t_params = teacher.metrics["n_params"]
        distilled, plain = [], []
        for seed in range(args.seeds):
            student = {
                "seed": seed,
                "model": {"arch": "mlp", "hidden": [args.hidden], "dropout": 0.1},
            }
            run = distill(teacher, student, args.temperature, args.alpha, Path(tmp) / f"kd{seed}")
            distilled.append(run.metrics["test"]["accuracy"])
            alone = gradwise.train(student_config(teacher, student), out=Path(tmp) / f"s{seed}")
            plain.append(alone.metrics["test"]["accuracy"])
            s_params = run.metrics["n_params"]
            print(
                f"seed {seed}: distilled {distilled[-1]:.4f}, without the teacher {plain[-1]:.4f}"
            )

    def stats(v: list[float]) -> str:
        spread = statistics.stdev(v) if len(v) > 1 else 0.0
        return f"{statistics.mean(v):.4f} ± {spread:.4f}"

    keep = statistics.mean(distilled) / t_acc
    gain = [d - p for d, p in zip(distilled, plain)]
    print(f"teacher: {t_params:,} parameters, test accuracy {t_acc:.4f}")
    print(
        f"student: {s_params:,} parameters ({s_params / t_params:.3f} of the teacher's); "
        f"T={args.temperature:g}, alpha={args.alpha:g}, {args.seeds} seeds"
    )
    print("| student | test accuracy (mean ± std) |")
    print("|---|---|")
    print(f"| distilled | {stats(distilled)} |")
    print(f"| without the teacher | {stats(plain)} |")
    print(f"keeps {keep:.1%} of the teacher's accuracy (claim >= 98%: {keep >= 0.98})")
    per_seed = ", ".join(f"{g:+.4f}" for g in gain)
    print(
        f"gain over the student alone: {stats(gain)} (per seed {per_seed}); "
        f"claim (beats it): {statistics.mean(gain) > 0}, on every seed: {min(gain) > 0}"
    )
    print(json.dumps({"teacher": t_acc, "distilled": distilled, "plain": plain, "keep": keep}))


if __name__ == "__main__":
    main()
