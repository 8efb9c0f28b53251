"""Claim: the learning curve fitted on 10..50% of the digits training data predicts the test
accuracy reached with 100% within 1 point.

    python benchmarks/learning_curve.py [--seeds 3] [--full-seeds 3]

The generalisation check's own machinery does the work: the digits MLP example
(examples/digits-mlp.yaml) is retrained on 10, 20, 30, 40 and 50% of its training split
(`--seeds` seeds at each fraction below 50%, one at 50%; the run's split; epochs scaled by
1 / fraction, or the run's 60 with `--no-scale-epochs`), a power law error = a * n^-b + c
is fitted to the test errors, and read at the full training-set size. The truth is the mean
test accuracy of `--full-seeds` runs on 100% of the training data (same split, seeds 0, 1,
...). Prints the prediction, its 90% band, the truth, and the error in points.
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
from gradwise.auditing.base import AuditContext
from gradwise.auditing.generalisation import check
from gradwise.config import GeneralisationAudit

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "examples" / "digits-mlp.yaml"
FRACTIONS = [0.1, 0.2, 0.3, 0.4, 0.5]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3, help="seeds per fraction below 0.5")
    parser.add_argument("--full-seeds", type=int, default=3, help="runs on 100% (the truth)")
    parser.add_argument(
        "--no-scale-epochs",
        action="store_true",
        help="retrain every fraction for the run's epochs (audit.generalisation.scale_epochs off)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"# learning curve benchmark, {datetime.date.today()}, {platform.processor() or ''}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        full = [
            gradwise.train(CONFIG, out=Path(tmp) / f"full-{s}", seed=s, **{"data.split.seed": 0})
            for s in range(args.full_seeds)
        ]
        truth = [r.metrics["test"]["accuracy"] for r in full]
        settings = GeneralisationAudit(
            fractions=FRACTIONS, seeds=args.seeds, scale_epochs=not args.no_scale_epochs
        )
        run = full[0]
        result = check(run, settings, AuditContext(out=Path(tmp) / "audit", seed=0))
    curve = result.metrics["learning_curve"]
    at = curve["predictions"]["1x"]
    mean_truth = statistics.mean(truth)
    error = at["value"] - mean_truth
    print(
        f"fractions {FRACTIONS}, {args.seeds} seeds below 0.5, {len(curve['points'])} runs, "
        f"epochs {'the run' + chr(39) + 's' if args.no_scale_epochs else 'scaled by 1 / fraction'}"
    )
    print("| fraction | seed | n_train | test accuracy |")
    print("|---|---|---|---|")
    for p in curve["points"]:
        print(f"| {p['fraction']:g} | {p['seed']} | {p['n_train']} | {p['value']:.4f} |")
    fit = curve["fit"]
    print(f"power law: error = {fit['a']:.3g} * n^-{fit['b']:.3f} + {fit['c']:.4f}")
    print(
        f"| predicted at n={at['n']} | 90% band | truth (mean of {len(truth)} runs on 100%) | "
        "truth min-max | error (points) | within 1 point |"
    )
    print("|---|---|---|---|---|---|")
    print(
        f"| {at['value']:.4f} | {at['band'][0]:.4f}-{at['band'][1]:.4f} | {mean_truth:.4f} | "
        f"{min(truth):.4f}-{max(truth):.4f} | {100 * error:+.2f} | "
        f"{'yes' if abs(error) <= 0.01 else 'NO'} |"
    )
    print(f"wall {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
