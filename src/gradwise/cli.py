"""The command line: one thin function per verb over the Python API.

Exit codes: 0 success; 2 bad input (one clear message, no traceback); 1 anything unexpected.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from gradwise.errors import GradwiseError

app = typer.Typer(
    name="gradwise",
    help="Neural networks that come with evidence: train, evaluate, predict on your own data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def make_console(stderr: bool = False) -> Console:
    """A rich console; when piped, wide enough that tables are not squeezed to 80 columns."""
    console = Console(stderr=stderr, soft_wrap=True)
    if not console.is_terminal:
        console.width = 140
    return console


out_console = make_console()
err_console = make_console(stderr=True)
log = logging.getLogger("gradwise")

F = TypeVar("F", bound=Callable[..., Any])

ConfigArg = Annotated[Path, typer.Argument(help="config YAML file", show_default=False)]
RunArg = Annotated[Path, typer.Argument(help="run directory", show_default=False)]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="override a config key: --set train.optimizer.lr=3e-4"),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar or log lines")]


def handles_errors(fn: F) -> F:
    """Bad input becomes one line on stderr and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GradwiseError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


@contextmanager
def console_logging(
    quiet: bool, progress: bool
) -> Iterator[Callable[[int, int, int], None] | None]:
    """Log lines on stderr (unless quiet) and, on a terminal, a progress bar per epoch."""
    if quiet:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    show_bar = progress and err_console.is_terminal
    bar = (
        Progress(
            TextColumn("epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
        )
        if show_bar
        else None
    )
    handler = _ConsoleHandler()
    handler.gradwise_console = True  # type: ignore[attr-defined]
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    task_ids: dict[int, Any] = {}

    def advance(epoch: int, done: int, total: int) -> None:
        assert bar is not None
        if epoch not in task_ids:
            for old in task_ids.values():
                bar.remove_task(old)
            task_ids.clear()
            task_ids[epoch] = bar.add_task("", total=total, epoch=epoch)
        bar.update(task_ids[epoch], completed=done)

    try:
        if bar is not None:
            with bar:
                yield advance
        else:
            yield None
    finally:
        log.removeHandler(handler)


class _ConsoleHandler(logging.Handler):
    """Log lines through the rich console, so they print above a live progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        style = "yellow" if record.levelno >= logging.WARNING else None
        err_console.print(record.getMessage(), markup=False, highlight=False, style=style)


def metrics_table(metrics: dict[str, Any], title: str) -> Table:
    """Splits as columns, metrics as rows."""
    splits = [s for s in ("train", "val", "test") if isinstance(metrics.get(s), dict)]
    names: list[str] = []
    for s in splits:
        names += [k for k in metrics[s] if k not in names]
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    for s in splits:
        table.add_column(s, justify="right")
    for name in names:
        table.add_row(name, *(_fmt(metrics[s].get(name)) for s in splits))
    return table


def _fmt(value: Any) -> str:
    return "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------- verbs


@app.command()
@handles_errors
def train(
    config: ConfigArg,
    set_: SetOpt = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="run directory (default: runs/NAME)")
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="continue an interrupted run")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="replace the run in --out")
    ] = False,
    nproc: Annotated[int, typer.Option("--nproc", min=1, help="processes (DDP via torchrun)")] = 1,
    nnodes: Annotated[int, typer.Option("--nnodes", min=1, help="machines (with --nproc)")] = 1,
    node_rank: Annotated[int, typer.Option("--node-rank", min=0, help="this machine's rank")] = 0,
    master: Annotated[str | None, typer.Option("--master", help="HOST:PORT of node 0")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Train a model from CONFIG and write its run directory."""
    import gradwise
    from gradwise.config import load_config

    overrides = list(set_ or [])
    if nproc > 1 or nnodes > 1:
        from gradwise.api import resolve_out

        cfg = load_config(config, overrides)
        run_dir = resolve_out(out, cfg, resume, overwrite)
        _torchrun(config, overrides, run_dir, resume, nproc, nnodes, node_rank, master, quiet)
        run = gradwise.load(run_dir)
    else:
        with console_logging(quiet, progress=True) as progress:
            run = gradwise.train(
                config,
                out,
                resume=resume,
                overwrite=overwrite,
                quiet=quiet,
                progress=progress,
                **_as_dict(overrides),
            )
    out_console.print(metrics_table(run.metrics, f"{run.config.name}: {run.config.model.arch}"))
    out_console.print(f"run directory: {run.path}")


def _as_dict(overrides: list[str]) -> dict[str, Any]:
    from gradwise.config import parse_overrides

    return parse_overrides(overrides)


def _torchrun(
    config: Path,
    overrides: list[str],
    run_dir: Path,
    resume: bool,
    nproc: int,
    nnodes: int,
    node_rank: int,
    master: str | None,
    quiet: bool,
) -> None:
    """Run the same job in `nproc` processes per node under torch.distributed.run (DDP)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}"]
    if nnodes > 1:
        if master is None:
            raise GradwiseError("--nnodes > 1 needs --master HOST:PORT of node 0.")
        host, _, port = master.partition(":")
        cmd += [
            f"--nnodes={nnodes}",
            f"--node-rank={node_rank}",
            f"--master-addr={host}",
            f"--master-port={port or 29500}",
        ]
    else:
        cmd += ["--standalone"]
    cmd += ["-m", "gradwise.train.distributed", str(config), "--out", str(run_dir)]
    cmd += [a for kv in overrides for a in ("--set", kv)]
    if resume:
        cmd.append("--resume")
    if quiet:
        cmd.append("--quiet")
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // nproc))}
    done = subprocess.run(cmd, env=env)
    if done.returncode == 2:
        raise typer.Exit(2)
    if done.returncode != 0:
        raise GradwiseError(
            f"distributed training failed (exit code {done.returncode}); see the messages above."
        )


@app.command("lr-find")
@handles_errors
def lr_find(
    config: ConfigArg,
    set_: SetOpt = None,
    out: Annotated[
        Path | None, typer.Option(help="output folder (default: runs/NAME-lr-find)")
    ] = None,
    steps: Annotated[int, typer.Option(min=10, help="sweep length in batches")] = 200,
) -> None:
    """Learning-rate range test: sweep the LR, plot loss against it, suggest a value."""
    import gradwise.api

    result = gradwise.api.lr_find(config, out, steps=steps, **_as_dict(list(set_ or [])))
    from gradwise.config import load_config

    cfg = load_config(config, list(set_ or []))
    folder = out or Path("runs") / f"{cfg.name}-lr-find"
    out_console.print(
        f"suggested learning rate: {result.suggestion:.2e}  "
        f"(lowest loss at {result.min_loss_lr:.2e}, {len(result.lrs)} steps)"
    )
    out_console.print(f"use it:  --set train.optimizer.lr={result.suggestion:.1e}")
    out_console.print(f"plot: {folder / 'lr_find.png'}")


@app.command()
@handles_errors
def compare(
    config_a: ConfigArg,
    config_b: ConfigArg,
    seeds: Annotated[int, typer.Option(min=1, help="seeds per config")] = 3,
    fractions: Annotated[
        str, typer.Option(help="fractions of the training data, e.g. 0.1,0.3,1.0")
    ] = "1.0",
    metric: Annotated[
        str | None,
        typer.Option(help="e.g. test.f1_macro (default: the task's primary test metric)"),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="folder for the runs and compare.json")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Train two configs on the same splits over several seeds; say which is better, if either."""
    import gradwise

    try:
        parts = tuple(float(f) for f in fractions.split(","))
    except ValueError:
        raise GradwiseError(
            f"--fractions {fractions!r} must be numbers like 0.1,0.3,1.0."
        ) from None
    if any(not 0 < f <= 1 for f in parts):
        raise GradwiseError(f"--fractions {fractions!r}: each must be in (0, 1].")
    with console_logging(quiet, progress=False):
        result = gradwise.compare(
            config_a, config_b, seeds=seeds, fractions=parts, metric=metric, out=out
        )
    table = Table(title=f"{result.metric} over {seeds} seeds (same splits)", title_justify="left")
    for col in ("config", "train fraction", "mean ± std", "min", "max", "wall s", "params"):
        table.add_column(col, justify="left" if col == "config" else "right")
    for arm in result.arms:
        table.add_row(
            arm.name,
            f"{arm.fraction:g}",
            f"{arm.mean:.4f} ± {arm.std:.4f}",
            f"{min(arm.values):.4f}",
            f"{max(arm.values):.4f}",
            f"{sum(arm.wall_s) / len(arm.wall_s):.1f}",
            f"{arm.n_params:,}",
        )
    out_console.print(table)
    for verdict in result.verdicts:
        out_console.print(f"fraction {verdict.fraction:g}: {verdict.text}", highlight=False)


@app.command()
@handles_errors
def evaluate(
    run_dir: RunArg,
    data: Annotated[
        str | None,
        typer.Option(
            help="evaluate on other labelled data, preprocessed as in training (e.g. csv:new.csv)"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Metrics of a trained run on its train/val/test splits (or on --data)."""
    import gradwise
    from gradwise.data.sources import load_labelled

    run = gradwise.load(run_dir)
    if data is not None:
        metrics: dict[str, Any] = {
            "test": run.evaluate(load_labelled(data, run.schema, run.config.data))
        }
        title = f"{run.path} on {data}"
    else:
        dataset = run.dataset()
        metrics = {s: run.evaluate(s, dataset) for s in ("train", "val", "test")}
        title = f"{run.path}"
    if as_json:
        out_console.print_json(json.dumps(metrics))
    else:
        out_console.print(metrics_table(metrics, title))


@app.command()
@handles_errors
def predict(
    run_dir: RunArg,
    inputs: Annotated[
        str,
        typer.Argument(
            help="CSV/parquet rows, .npz/.npy array, image file or folder, idx:PREFIX",
            show_default=False,
        ),
    ],
    out: Annotated[Path | None, typer.Option(help="write predictions to this CSV")] = None,
) -> None:
    """Predict on new raw data with the run's own preprocessing."""
    import gradwise
    from gradwise.data.sources import read_inputs

    run = gradwise.load(run_dir)
    frame = _prediction_frame(run, read_inputs(inputs, run.schema))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index=False)
        out_console.print(f"{len(frame)} predictions written to {out}")
    else:
        sys.stdout.write(frame.to_csv(index=False))


def _prediction_frame(run: Any, raw: Any) -> Any:
    import numpy as np
    import pandas as pd

    if run.schema.task == "classification":
        proba = run.predict_proba(raw)
        labels = run.schema.target.decode(proba.argmax(axis=1))
        frame = pd.DataFrame({"prediction": labels})
        for i, cls in enumerate(run.schema.classes):
            frame[f"p_{cls}"] = np.round(proba[:, i], 6)
        return frame
    values = np.asarray(run.predict(raw))
    if values.ndim == 1:
        return pd.DataFrame({"prediction": values})
    return pd.DataFrame({f"prediction_{i + 1}": values[:, i] for i in range(values.shape[1])})


@app.command()
@handles_errors
def generate(
    run_dir: RunArg,
    prompt: Annotated[str, typer.Option(help="text to continue")] = "\n",
    tokens: Annotated[int, typer.Option(min=1, help="tokens to generate")] = 200,
    temperature: Annotated[float, typer.Option(min=0.0, help="0 = greedy")] = 0.8,
    top_k: Annotated[int | None, typer.Option(min=1, help="sample from the k likeliest")] = None,
    top_p: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="nucleus sampling")] = None,
    seed: Annotated[int | None, typer.Option(help="seed for reproducible samples")] = None,
    scores: Annotated[
        bool, typer.Option("--scores", help="mark low-confidence spans [[...]]; report perplexity")
    ] = False,
    threshold: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="with --scores: a token below this probability is unsure"
        ),
    ] = 0.1,
    as_json: Annotated[bool, typer.Option("--json", help="print tokens and probabilities")] = False,
) -> None:
    """Sample text from a language model run."""
    import gradwise

    run = gradwise.load(run_dir)
    result = run.generate_scored(prompt, tokens, temperature, top_k, top_p, seed, threshold)
    if as_json:
        out_console.print_json(
            json.dumps(
                {
                    "prompt": prompt,
                    "text": result.text,
                    "perplexity": result.perplexity,
                    "threshold": threshold,
                    "low_confidence": result.low_confidence,
                    "tokens": [
                        {"token": t, "p": round(p, 6)} for t, p in zip(result.tokens, result.probs)
                    ],
                }
            )
        )
    elif scores:
        sys.stdout.write(prompt + result.marked() + "\n")
        n_unsure = sum(b - a for a, b in result.low_confidence)
        err_console.print(
            f"perplexity {result.perplexity:.2f} over {len(result.tokens)} tokens; "
            f"{len(result.low_confidence)} low-confidence spans [[...]] hold {n_unsure} tokens "
            f"below p={threshold:g}",
            highlight=False,
        )
    else:
        sys.stdout.write(prompt + result.text + "\n")


@app.command()
@handles_errors
def sample(
    run_dir: RunArg,
    n: Annotated[int, typer.Option("--n", min=1, max=1024, help="images to generate")] = 16,
    label: Annotated[str | None, typer.Option(help="class to generate (conditional runs)")] = None,
    steps: Annotated[int | None, typer.Option(min=1, help="DDIM steps")] = None,
    guidance: Annotated[float | None, typer.Option(min=0.0, help="guidance scale")] = None,
    seed: Annotated[int | None, typer.Option(help="seed for reproducible samples")] = None,
    out: Annotated[
        Path | None, typer.Option(help="PNG grid to write (default: RUN/samples.png)")
    ] = None,
) -> None:
    """Generate images with a diffusion run and write them as a PNG grid."""
    import gradwise
    from gradwise.report.images import save_grid

    run = gradwise.load(run_dir)
    images = run.sample(n, label, steps, guidance, seed)
    path = out or run.path / "samples.png"
    norm = run.schema.array
    assert norm is not None
    save_grid(images, path, low=norm.pixel_low, high=norm.pixel_high)
    what = f"class {label}" if label is not None else "unconditional"
    out_console.print(f"{n} samples ({what}) written to {path}")


@app.command()
def datasets() -> None:
    """List the built-in data sets and the data sources gradwise reads."""
    from gradwise.data.builtin import BUILTINS

    table = Table(title="built-in data sets (data.source: builtin:NAME)", title_justify="left")
    for col in ("name", "task", "shape", "description"):
        table.add_column(col)
    for b in BUILTINS.values():
        table.add_row(b.name, b.task, b.shape, b.description)
    out_console.print(table)
    sources = Table(title="your own data (data.source)", title_justify="left")
    sources.add_column("source")
    sources.add_column("reads")
    for src, what in [
        ("csv:PATH / parquet:PATH", "a table; data.target names the column to predict"),
        ("npz:PATH", "arrays X (N,F | N,T,F | N,C,H,W) and y"),
        ("images:DIR", "DIR/<class>/<image>.png|jpg, resized to data.image_size"),
        ("idx:PREFIX", "PREFIX-images-idx3-ubyte[.gz] + PREFIX-labels-idx1-ubyte[.gz] (MNIST)"),
        ("text:PATH", "a text corpus for a character- or byte-level language model"),
        ("timeseries:PATH", "a CSV series; data.window past rows predict data.horizon steps"),
    ]:
        sources.add_row(src, what)
    out_console.print(sources)


def main() -> None:
    app(prog_name="gradwise")


if __name__ == "__main__":
    main()
