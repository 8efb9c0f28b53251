"""`make demo`: train the example models on built-in data and print what they achieved."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.table import Table

import gradwise
from gradwise.cli import make_console
from gradwise.config import load_config

DEFAULT_CONFIGS = ["examples/digits-mlp.yaml", "examples/digits-cnn.yaml"]


def main(argv: list[str] | None = None) -> int:
    console = make_console()
    paths = [Path(p) for p in (argv if argv else DEFAULT_CONFIGS)]
    table = Table(title="test split (held out, never seen in training)", title_justify="left")
    for col in (
        "model",
        "accuracy",
        "macro-F1",
        "log-loss",
        "params",
        "epochs",
        "seconds",
        "run directory",
    ):
        table.add_column(col, justify="left" if col in ("model", "run directory") else "right")
    for path in paths:
        cfg = load_config(path)
        out = Path("runs") / cfg.name
        console.print(f"training [bold]{cfg.name}[/] ({cfg.model.arch} on {cfg.data.source}) ...")
        started = time.perf_counter()
        run = gradwise.train(path, out=out, overwrite=True)
        m = run.metrics
        test = m["test"]
        table.add_row(
            cfg.name,
            f"{test['accuracy']:.4f}",
            f"{test['f1_macro']:.4f}",
            f"{test['log_loss']:.4f}",
            f"{m['n_params']:,}",
            f"{m['epochs']} (best {m['best_epoch']})",
            f"{time.perf_counter() - started:.1f}",
            str(out),
        )
    console.print(table)
    console.print(
        "Each run directory holds config.yaml, model.safetensors, model.json, "
        "metrics.json(l), train.log and checkpoints/."
    )
    console.print(
        "Next: gradwise evaluate runs/digits-cnn   |   gradwise predict runs/digits-cnn INPUT.npz"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
