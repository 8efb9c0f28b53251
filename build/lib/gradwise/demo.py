"""`make demo`: train the example models on built-in data and print what they achieved."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

import gradwise
from gradwise.cli.console import make_console
from gradwise.config import load_config
from gradwise.errors import GradwiseError

DEFAULT_CONFIGS = ["examples/digits-mlp.yaml", "examples/digits-cnn.yaml"]
LANGUAGE_MODEL = "examples/demo-gpt.yaml"


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
    if not argv and Path(LANGUAGE_MODEL).is_file():
        _language_model(console, Path(LANGUAGE_MODEL))
    console.print(
        "Each run directory holds config.yaml, model.safetensors, model.json, "
        "metrics.json(l), train.log and checkpoints/."
    )
    console.print(
        "Next: gradwise evaluate runs/digits-cnn   |   gradwise predict runs/digits-cnn INPUT.npz"
    )
    return 0


def _language_model(console: Console, path: Path) -> None:
    """Train the small GPT and print what it writes."""
    cfg = load_config(path)
    out = Path("runs") / cfg.name
    console.print(
        f"training [bold]{cfg.name}[/] ({cfg.model.arch}, a character-level "
        "transformer, on tiny Shakespeare; about a minute) ..."
    )
    try:
        run = gradwise.train(path, out=out, overwrite=True)
    except GradwiseError as exc:  # e.g. the corpus is not where the config says
        console.print(f"skipped {cfg.name}: {exc}", markup=False, highlight=False)
        return
    m = run.metrics
    console.print(
        f"{cfg.name}: {m['n_params']:,} parameters, {m['epochs']} epochs in {m['wall_s']:.0f} s; "
        f"validation loss {m['val']['loss']:.3f} nats/char (perplexity "
        f"{m['val']['perplexity']:.2f}); run directory {out}"
    )
    sample = run.generate_scored("ROMEO:", 300, temperature=0.8, seed=0)
    console.print(
        "[bold]gradwise generate runs/demo-gpt --prompt 'ROMEO:' --tokens 300 --seed 0[/]"
    )
    console.print("ROMEO:" + sample.text, markup=False, highlight=False)
    console.print(f"(perplexity of the sample under the model: {sample.perplexity:.2f})")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
