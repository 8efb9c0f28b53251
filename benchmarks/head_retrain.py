"""Head-only retrains against full retrains on a trained text encoder.

    python benchmarks/head_retrain.py RUN_DIR [--repeats 2] [--full-curve]

RUN_DIR is a trained classification run (e.g. examples/sms-spam-bert-scratch.yaml trained
with --set train.epochs=2). Arms, interleaved repeat by repeat so machine load falls on all
of them alike:

- data_quality head: audit.data_quality.retrain=head, folds 3 (heads on frozen embeddings);
- data_quality full (the peer): retrain=full, folds 3, epochs 1 (full retrains);
- generalisation head: retrain=head, the default fractions (0.1 .. 1.0, 2 seeds below 0.5);
- generalisation full (only with --full-curve; slow): retrain=full, the auto-planned curve.

Prints each arm's wall time, its ratio to the full data_quality arm measured in the same
run, the out-of-fold accuracy and label-issue share of each data_quality arm, the head
curve's reads, and the CPU flags that matter to speed. Note: the audits write into
RUN_DIR/audit/.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time
from pathlib import Path
from typing import Any

from machine import cpu_flags  # benchmarks/machine.py (scripts run from this folder)

import gradwise

ARMS: dict[str, tuple[str, dict[str, Any]]] = {
    "data_quality head": ("data_quality", {"retrain": "head", "folds": 3}),
    "data_quality full": ("data_quality", {"retrain": "full", "folds": 3, "epochs": 1}),
    "generalisation head": ("generalisation", {"retrain": "head"}),
    "generalisation full": ("generalisation", {"retrain": "full"}),
}
PEER = "data_quality full"


def timed(run: gradwise.Run, arm: str) -> tuple[float, dict[str, Any]]:
    """Seconds of one audit arm and the metrics it wrote."""
    check, section = ARMS[arm]
    started = time.perf_counter()
    report = gradwise.audit(run, checks=[check], **{check: section})
    return time.perf_counter() - started, report[check].metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--full-curve", action="store_true")
    args = parser.parse_args()
    run = gradwise.load(args.run)
    arms = [a for a in ARMS if args.full_curve or a != "generalisation full"]
    wall: dict[str, list[float]] = {a: [] for a in arms}
    last: dict[str, dict[str, Any]] = {}
    for _ in range(args.repeats):
        for arm in arms:
            seconds, last[arm] = timed(run, arm)
            wall[arm].append(seconds)
            print(f"# {arm}: {seconds:.1f} s", flush=True)  # as it goes: the arms are long
    peer = statistics.median(wall[PEER])
    print(f"# head_retrain benchmark, {datetime.date.today()}, {cpu_flags()}, {args.run}")
    print(f"# n_train {run.metrics['n_train']}, repeats {args.repeats} (medians)")
    for arm in arms:
        s = statistics.median(wall[arm])
        print(f"{arm:22s} {s:8.1f} s   {s / peer:6.3f} x the full data_quality arm")
    for arm in ("data_quality head", "data_quality full"):
        labels = last[arm]["labels"]
        print(
            f"{arm}: out-of-fold accuracy {labels['out_of_fold_accuracy']:.4f}, "
            f"label issues {labels['n_issues']} ({labels['share']:.2%})"
        )
    for arm in ("generalisation head", "generalisation full"):
        curve = (last.get(arm) or {}).get("learning_curve") or {}
        if curve.get("predictions"):
            reads = {k: round(v["value"], 4) for k, v in curve["predictions"].items()}
            print(f"{arm}: {len(curve['points'])} points, reads {reads}")


if __name__ == "__main__":
    main()
