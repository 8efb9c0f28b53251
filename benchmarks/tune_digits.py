"""Claims (issue "hyperparameter search"): on the digits MLP with a 30-trial budget,
`gradwise tune` (default space, TPE, median pruning)

1. finds a config whose test accuracy (mean over 3 seeds) is at least as good as
   examples/digits-mlp.yaml's over the same 3 seeds and the same split;
2. prunes at least a third of the trials;
3. takes less wall time than 30 full runs: the same 30 configs trained to the end (the
   finished trials' own time plus each pruned trial's config retrained in full here);
4. names the same top hyperparameter (fANOVA) for two sampler seeds.

Every study starts from examples/digits-mlp.yaml (60 epochs, early stopping on val.loss with
patience 15) and searches the default MLP space; every run uses one thread (the machine is
shared; the numbers compare runs made here, in this process, one after another).

    .venv/bin/python benchmarks/tune_digits.py                 # about 15-25 minutes
    .venv/bin/python benchmarks/tune_digits.py --trials 8      # smoke run
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import torch

import gradwise
from gradwise.config import load_config

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "digits-mlp.yaml"


def example_over_seeds(out: Path, seeds: int) -> tuple[list[float], float]:
    """examples/digits-mlp.yaml's test accuracy over seeds 0.. on split seed 0, and seconds."""
    base = load_config(EXAMPLE, {"data.split.seed": 0})
    values, started = [], time.perf_counter()
    for seed in range(seeds):
        run = gradwise.train(
            base.model_copy(update={"seed": seed}), out / f"seed-{seed}", overwrite=True
        )
        values.append(run.metrics["test"]["accuracy"])
    return values, time.perf_counter() - started


def study(out: Path, trials: int, sampler_seed: int, pruner: str, seeds: int) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    result = gradwise.tune(
        EXAMPLE, out, trials=trials, sampler_seed=sampler_seed, pruner=pruner, seeds=seeds
    )
    top = result.importance.params[0] if result.importance else None
    return {
        "wall_s": time.perf_counter() - started,
        "search_wall_s": result.search_wall_s,
        "trial_wall_s": result.trial_wall_s,
        "pruned": result.n_pruned,
        "complete": result.n_complete,
        "failed": result.n_failed,
        "best_value": result.best_value,
        "best_params": result.best_params,
        "epochs": sum(t.epochs or 0 for t in result.trials),
        "test": list(result.seeds.test) if result.seeds else [],
        "val": list(result.seeds.val) if result.seeds else [],
        "top": (top.name, round(top.fanova, 3)) if top else None,
        "importance": result.importance.to_dict() if result.importance else None,
        "sensitivity": [s.to_dict() for s in result.sensitivity],
    }


def full_runs(out: Path, study_dir: Path) -> tuple[float, int, int]:
    """Seconds and epochs the study's 30 configs take trained to the end: the finished
    trials' own wall time, plus each pruned trial's config trained in full now."""
    import optuna

    from gradwise.tuning.space import best_config, parse_space

    storage = optuna.storages.RDBStorage(f"sqlite:///{(study_dir / 'study.sqlite3').resolve()}")
    study = optuna.load_study(study_name="digits-mlp", storage=storage)
    base = load_config(EXAMPLE)
    space = parse_space(study.user_attrs["gradwise"]["space"], "the study")
    wall, epochs, retrained = 0.0, 0, 0
    for t in study.trials:
        if t.state == optuna.trial.TrialState.COMPLETE:
            wall += (t.datetime_complete - t.datetime_start).total_seconds()
            epochs += t.user_attrs["epochs"]
        elif t.state == optuna.trial.TrialState.PRUNED:
            cfg = best_config(base, space, t.params)
            started = time.perf_counter()
            run = gradwise.train(cfg, out / f"trial-{t.number}", overwrite=True)
            wall += time.perf_counter() - started
            epochs += run.metrics["epochs"]
            retrained += 1
    return wall, epochs, retrained


def mean_std(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4f} ± {sd:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("runs/bench/tune_digits"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out: Path = args.out
    print(
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}  {platform.processor() or platform.machine()}"
        f"  torch {torch.__version__}, {args.threads} thread(s)"
    )

    example, example_s = example_over_seeds(out / "example", args.seeds)
    print(
        f"example digits-mlp.yaml, {args.seeds} seeds: test accuracy {mean_std(example)} "
        f"({example_s:.0f} s)"
    )
    pruned = study(out / "pruned", args.trials, 0, "median", args.seeds)
    print(f"tune, median pruning, sampler seed 0: {json.dumps(pruned, default=str)}")
    other = study(out / "pruned-seed1", args.trials, 1, "median", 0)
    print(f"tune, median pruning, sampler seed 1: top {other['top']}, pruned {other['pruned']}")
    full_s, full_epochs, retrained = full_runs(out / "full", out / "pruned")
    print(
        f"the same {args.trials} configs trained in full ({retrained} pruned ones retrained "
        f"here): {full_s:.0f} s, {full_epochs} epochs"
    )

    tuned = pruned["test"]
    gain = statistics.fmean(tuned) - statistics.fmean(example)
    print()
    print(
        f"1. test accuracy over {args.seeds} seeds: tuned {mean_std(tuned)} vs example "
        f"{mean_std(example)}: difference {gain:+.4f}  -> {'PASS' if gain >= 0 else 'FAIL'}"
    )
    share = pruned["pruned"] / args.trials
    print(
        f"2. pruned {pruned['pruned']} of {args.trials} trials ({share:.0%})"
        f"  -> {'PASS' if share >= 1 / 3 else 'FAIL'}"
    )
    ratio = pruned["search_wall_s"] / full_s
    print(
        f"3. search wall time with pruning {pruned['search_wall_s']:.0f} s vs {args.trials} full "
        f"runs {full_s:.0f} s: ratio {ratio:.2f} (epochs {pruned['epochs']} vs {full_epochs})"
        f"  -> {'PASS' if ratio < 1 else 'FAIL'}; the final phase (best over seeds, "
        f"sensitivity) added {pruned['wall_s'] - pruned['search_wall_s']:.0f} s"
    )
    same = pruned["top"] and other["top"] and pruned["top"][0] == other["top"][0]
    print(
        f"4. top hyperparameter (fANOVA): sampler seed 0 {pruned['top']}, seed 1 {other['top']}"
        f"  -> {'PASS' if same else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
