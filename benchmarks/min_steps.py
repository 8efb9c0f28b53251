"""Epochs when train.epochs is unset: the old fixed 30 against train.min_steps' choice.

    python benchmarks/min_steps.py [--seeds 3] [--only airline-mlp,...] [--min-steps 2000,3000]

For each case, arms trained on the same split with the same seeds, interleaved seed by seed
so machine load falls on all of them alike:

- fixed-30: the defaults config (the example's data section and `model: {arch}` only, as
  benchmarks/defaults.py builds it) with `train.epochs: 30`, what an unset epochs meant before.
- min-steps N: the same config with epochs unset and `train.min_steps: N`.
- tuned: the example config itself (airline cases only; the digits example sets its epochs).
- for the airline cases, the min-steps and tuned arms again with `data.difference: true`.

Prints, per arm, the test metric (mean ± std over seeds), the epochs chosen (from the run's
config.yaml, or resolved_epochs when it holds null) and run, and the wall time as a ratio to
the fixed-30 arm's, with the CPU flags that matter to speed.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from machine import cpu_flags  # benchmarks/machine.py (scripts run from this folder)

import gradwise
from gradwise.config import load_config
from gradwise.training.epochs import resolved_epochs, steps_per_epoch

ROOT = Path(__file__).resolve().parent.parent
# name -> (example, headline test metric, whether the tuned example is an arm)
CASES = {
    "airline-mlp": ("examples/demand-airline.yaml", "rmse", True),
    "airline-lstm": ("examples/demand-airline-lstm.yaml", "rmse", True),
    "digits-mlp": ("examples/digits-mlp.yaml", "accuracy", False),
}
DESCRIBES = ("source", "target", "task", "split", "columns", "features", "window", "horizon")


def defaults_config(example: Path) -> dict[str, Any]:
    tuned = load_config(example).model_dump(mode="json")
    data = {k: v for k, v in tuned["data"].items() if k in DESCRIBES}
    return {
        "name": f"{tuned['name']}-defaults",
        "data": data,
        "model": {"arch": tuned["model"]["arch"]},
    }


def one_run(cfg: Any, seed: int, metric: str) -> dict[str, float]:
    """Train once; the test metric, epochs planned and run, and wall seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        run = gradwise.train(cfg, out=Path(tmp) / "r", seed=seed)
        wall = time.perf_counter() - started
        m = run.metrics
        tc = run.config.train
        planned = tc.epochs or resolved_epochs(tc, steps_per_epoch(int(m["n_train"]), tc))
        return {
            "metric": float(m["test"][metric]),
            "planned": float(planned),
            "ran": float(m["epochs"]),
            "wall_s": wall,
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated case names")
    parser.add_argument("--min-steps", default="2000,3000", help="comma-separated values")
    args = parser.parse_args()
    only = [n for n in args.only.split(",") if n] or list(CASES)
    steps = [int(s) for s in args.min_steps.split(",")]
    print(
        f"# min_steps benchmark, {datetime.date.today()}, {cpu_flags()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print("| case | arm | test metric | epochs chosen | epochs run | wall s | wall / fixed-30 |")
    print("|---|---|---|---|---|---|---|")
    for name in only:
        example, metric, with_tuned = CASES[name]
        base = defaults_config(ROOT / example)
        arms: dict[str, Any] = {"fixed-30": load_config(base, {"train.epochs": 30})}
        for n in steps:
            arms[f"min_steps {n}"] = load_config(base, {"train.min_steps": n})
        if with_tuned:
            arms["tuned example"] = ROOT / example
            for n in steps:  # series: the same, forecasting changes (data.difference)
                arms[f"min_steps {n} + difference"] = load_config(
                    base, {"train.min_steps": n, "data.difference": True}
                )
            arms["tuned + difference"] = load_config(ROOT / example, {"data.difference": True})
        results: dict[str, list[dict[str, float]]] = {arm: [] for arm in arms}
        for seed in range(args.seeds):
            for arm, cfg in arms.items():
                results[arm].append(one_run(cfg, seed, metric))
        peer = statistics.mean(r["wall_s"] for r in results["fixed-30"])
        for arm, rows in results.items():
            vals = [r["metric"] for r in rows]
            wall = statistics.mean(r["wall_s"] for r in rows)
            print(
                f"| {name} | {arm} | {statistics.mean(vals):.4f} ± {statistics.stdev(vals):.4f} "
                f"| {', '.join(str(int(r['planned'])) for r in rows)} "
                f"| {', '.join(str(int(r['ran'])) for r in rows)} | {wall:.1f} "
                f"| {wall / peer:.2f} |",
                flush=True,
            )
            print(f"<!-- {name} {arm} per seed: {', '.join(f'{v:.4f}' for v in vals)} -->")


if __name__ == "__main__":
    main()
