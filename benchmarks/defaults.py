"""Defaults that win: a config naming only the architecture against the tuned example and a
plain PyTorch loop with the same network on the same split.

    python benchmarks/defaults.py [--seeds 3] [--only digits-mlp,mnist-cnn,...] [--set k=v ...]

For each shared data set with a tuned example config, three arms, `--seeds` seeds each:

- defaults: the example's data section as it describes the data (source, columns, target,
  text column, window and horizon, split) and `model: {arch: <the example's arch>}`;
  nothing else — every training choice is gradwise's default.
- tuned: the example config itself.
- plain loop: the network the defaults build, on the same split tensors, trained by a plain
  loop (Adam, lr 1e-3, batch 64, the default number of epochs, no schedule, no early
  stopping, no augmentation), evaluated at its last epoch.

Prints mean ± std of the example's headline test metric per arm and whether the defaults are
within 0.5 point of the tuned example (accuracy, macro-F1, ROC-AUC; 5% for RMSE) and no
worse than the plain loop.
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import gradwise
from gradwise.config import load_config
from gradwise.pipeline import prepare
from gradwise.run import Run
from gradwise.training.epochs import resolved_epochs, steps_per_epoch

ROOT = Path(__file__).resolve().parent.parent
# name -> (tuned example, headline test metric)
CASES = {
    "digits-mlp": ("examples/digits-mlp.yaml", "accuracy"),
    "digits-cnn": ("examples/digits-cnn.yaml", "accuracy"),
    "mnist-cnn": ("examples/defects-mnist-cnn.yaml", "accuracy"),
    "credit-mlp": ("examples/credit-german.yaml", "roc_auc"),
    "fraud-mlp": ("examples/fraud-mammography.yaml", "roc_auc"),
    "maintenance-mlp": ("examples/maintenance-ai4i.yaml", "roc_auc"),
    "airline-mlp": ("examples/demand-airline.yaml", "rmse"),
    "melbourne-lstm": ("examples/weather-melbourne-lstm.yaml", "rmse"),
    "sms-bert": ("examples/sms-spam-bert-scratch.yaml", "f1_macro"),
}
# data keys that describe the data and the task, not a tuning choice
DESCRIBES = (
    "source",
    "target",
    "task",
    "split",
    "columns",
    "separator",
    "quoting",
    "drop",
    "na_values",
    "text_column",
    "features",
    "window",
    "horizon",
    "tokenizer",
    "block_size",
    "vocab_size",
)


def defaults_config(tuned: dict[str, Any]) -> dict[str, Any]:
    data = {k: v for k, v in tuned["data"].items() if k in DESCRIBES}
    return {
        "name": f"{tuned['name']}-defaults",
        "data": data,
        "model": {"arch": tuned["model"]["arch"]},
    }


def plain_loop(cfg: dict[str, Any], seed: int, metric: str) -> float:
    """The same network and split, trained the way a first script would."""
    resolved = load_config(cfg, {"seed": seed})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        data, loss_name, model, _ = prepare(resolved)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x, y = data.train.x, data.train.y
        g = torch.Generator().manual_seed(seed)
        regression = data.schema.task == "regression"
        epochs = resolved_epochs(resolved.train, steps_per_epoch(len(data.train), resolved.train))
        for _ in range(epochs):
            model.train()
            for idx in torch.randperm(len(x), generator=g).split(64):
                out = model(x[idx])
                loss = F.mse_loss(out, y[idx]) if regression else F.cross_entropy(out, y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        run = Run(Path("."), resolved, data.schema, model.eval(), loss_name)
        return run.objective(data.train.y).metrics(run.model, data.test, run.eval_settings)[metric]


def trained(cfg: Any, seed: int, metric: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        run = gradwise.train(cfg, out=Path(tmp) / "r", seed=seed)
        return float(run.metrics["test"][metric])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--only", default="", help="comma-separated case names")
    parser.add_argument("--set", action="append", default=[], help="override the defaults arm")
    args = parser.parse_args()
    only = [n for n in args.only.split(",") if n] or list(CASES)
    print(
        f"# defaults benchmark, {datetime.date.today()}, {platform.processor() or 'cpu'}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(
        "| data, arch | metric | defaults | tuned example | plain loop | defaults vs tuned | "
        "vs plain | wall s (defaults) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in only:
        example, metric = CASES[name]
        tuned_cfg = load_config(ROOT / example).model_dump(mode="json")
        base = defaults_config(tuned_cfg)
        arms: dict[str, list[float]] = {"defaults": [], "tuned": [], "plain": []}
        started = time.perf_counter()
        for seed in range(args.seeds):
            arms["defaults"].append(trained(load_config(base, list(args.set)), seed, metric))
        wall = (time.perf_counter() - started) / args.seeds
        for seed in range(args.seeds):
            arms["tuned"].append(trained(ROOT / example, seed, metric))
            arms["plain"].append(plain_loop(base, seed, metric))
        m = {k: statistics.mean(v) for k, v in arms.items()}
        s = {k: statistics.stdev(v) if len(v) > 1 else math.nan for k, v in arms.items()}
        lower = metric == "rmse"
        gap = m["defaults"] - m["tuned"]
        within = (gap <= 0.05 * m["tuned"]) if lower else (gap >= -0.005)
        beats = (
            (m["defaults"] <= m["plain"] + s["plain"])
            if lower
            else (m["defaults"] >= m["plain"] - s["plain"])
        )
        print(
            f"| {name} | test.{metric} | {m['defaults']:.4f} ± {s['defaults']:.4f} | "
            f"{m['tuned']:.4f} ± {s['tuned']:.4f} | {m['plain']:.4f} ± {s['plain']:.4f} | "
            f"{gap:+.4f} ({'within' if within else 'OUTSIDE'}) | "
            f"{'no worse' if beats else 'WORSE'} | {wall:.0f} |",
            flush=True,
        )
        print(
            f"<!-- {name} per seed: "
            + "; ".join(f"{k} {', '.join(f'{v:.4f}' for v in vals)}" for k, vals in arms.items())
            + " -->",
            flush=True,
        )


if __name__ == "__main__":
    main()
