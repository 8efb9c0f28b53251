"""Verbs that train: train, lr-find, compare."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gradwise.cli.console import (
    AddressOpt,
    BackendOpt,
    ConfigArg,
    QuietOpt,
    SetOpt,
    console_logging,
    flag,
    handles_errors,
    metrics_table,
    out_console,
    overrides_dict,
)
from gradwise.cli.threads import TrainThreadsOpt
from gradwise.errors import GradwiseError


@handles_errors
def train(
    config: ConfigArg,
    set_: SetOpt = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="RUN_DIR", help="run directory (default: runs/NAME)"),
    ] = None,
    resume: Annotated[bool, flag("--resume", "continue an interrupted run")] = False,
    overwrite: Annotated[bool, flag("--overwrite", "replace the run in --out")] = False,
    nproc: Annotated[
        int, typer.Option("--nproc", min=1, metavar="N", help="processes (DDP via torchrun)")
    ] = 1,
    nnodes: Annotated[
        int, typer.Option("--nnodes", min=1, metavar="N", help="machines (with --nproc)")
    ] = 1,
    node_rank: Annotated[
        int, typer.Option("--node-rank", min=0, metavar="K", help="this machine's rank")
    ] = 0,
    master: Annotated[
        str | None, typer.Option("--master", metavar="HOST:PORT", help="address of node 0")
    ] = None,
    threads: TrainThreadsOpt = None,
    backend: BackendOpt = None,
    address: AddressOpt = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, metavar="N", help="with --backend ray: workers")
    ] = 2,
    quiet: QuietOpt = False,
) -> None:
    """Train a model from CONFIG and write its run directory (here, under torchrun with
    --nproc, or on a Ray cluster with --backend ray)."""
    import gradwise
    from gradwise.config import load_config

    overrides = list(set_ or []) + ([f"train.threads={threads}"] if threads else [])
    if backend is None:
        backend = load_config(config, overrides).backend
    if backend != "local":
        run = gradwise.train(
            config,
            out,
            resume=resume,
            overwrite=overwrite,
            backend=backend,  # type: ignore[arg-type]  # checked by the verb
            address=address,
            workers=workers,
            **overrides_dict(overrides),
        )
    elif nproc > 1 or nnodes > 1:
        from gradwise.pipeline import resolve_out

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
                **overrides_dict(overrides),
            )
    out_console.print(metrics_table(run.metrics, f"{run.config.name}: {run.config.model.arch}"))
    out_console.print(f"run directory: {run.path}")


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
    cmd += ["-m", "gradwise.pipeline", str(config), "--out", str(run_dir)]
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


@handles_errors
def lr_find(
    config: ConfigArg,
    set_: SetOpt = None,
    out: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="output folder (default: runs/NAME-lr-find)"),
    ] = None,
    steps: Annotated[int, typer.Option(min=10, metavar="N", help="sweep length in batches")] = 200,
) -> None:
    """Learning-rate range test: sweep the LR, plot loss against it, suggest a value."""
    import gradwise.api
    from gradwise.config import load_config

    overrides = overrides_dict(set_)
    folder = out or gradwise.api.lr_find_folder(load_config(config, overrides))
    replaced = (folder / "lr_find.json").is_file()
    result = gradwise.api.lr_find(config, folder, steps=steps, **overrides)
    out_console.print(
        f"suggested learning rate: {result.suggestion:.2e}  "
        f"(lowest loss at {result.min_loss_lr:.2e}, {len(result.lrs)} steps)"
    )
    out_console.print(f"use it:  --set train.optimizer.lr={result.suggestion:.1e}")
    note = " (replaced the earlier result there)" if replaced else ""
    out_console.print(f"plot: {folder / 'lr_find.png'}{note}")


@handles_errors
def compare(
    config_a: Annotated[
        Path, typer.Argument(help="first config", metavar="CONFIG_A", show_default=False)
    ],
    config_b: Annotated[
        Path, typer.Argument(help="second config", metavar="CONFIG_B", show_default=False)
    ],
    seeds: Annotated[int, typer.Option(min=1, metavar="N", help="seeds per config")] = 3,
    fractions: Annotated[
        str,
        typer.Option(metavar="F,F,...", help="fractions of the training data, e.g. 0.1,0.3,1.0"),
    ] = "1.0",
    metric: Annotated[
        str | None,
        typer.Option(
            metavar="METRIC", help="e.g. test.f1_macro (default: the task's primary test metric)"
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(metavar="DIR", help="folder for the runs and compare.json")
    ] = None,
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
