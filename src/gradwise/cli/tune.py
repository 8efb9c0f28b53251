"""The tune verb: hyperparameter search, then which hyperparameters mattered and how
fragile the best choice is."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from gradwise.cli.console import (
    AddressOpt,
    BackendOpt,
    ConfigArg,
    QuietOpt,
    SetOpt,
    err_console,
    handles_errors,
    out_console,
)
from gradwise.errors import ConfigError

TUNE_LOG = "gradwise.tuning"


@handles_errors
def tune(
    config: ConfigArg,
    trials: Annotated[
        int | None,
        typer.Option(
            metavar="N", help="trials in the study; a rerun continues it up to N (default 30)"
        ),
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(metavar="DURATION", help="start no trial after this long: 90s, 10m, 2h"),
    ] = None,
    budget: Annotated[
        float | None,
        typer.Option(
            metavar="MINUTES",
            help="bound the whole command: search in 2/3 of it, then only the seed and "
            "sensitivity retrains that fit",
        ),
    ] = None,
    space: Annotated[
        Path | None,
        typer.Option(
            metavar="SPACE.yaml",
            help="what to search, by config key (default: the architecture's usual space, "
            "written to DIR/space.yaml)",
        ),
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(
            metavar="METRIC", help="validation metric (default: val.accuracy, val.rmse...)"
        ),
    ] = None,
    direction: Annotated[
        str | None, typer.Option(metavar="max|min", help="default: from the metric")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(metavar="DIR", help="study, trials and results (default: runs/NAME-tune)"),
    ] = None,
    storage: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="a shared study database for several machines, e.g. "
            "postgresql+psycopg://user:pass@host/db (default: DIR/study.sqlite3)",
        ),
    ] = None,
    nproc: Annotated[
        int | None, typer.Option(metavar="N", help="worker processes on this machine (default 1)")
    ] = None,
    seeds: Annotated[
        int | None,
        typer.Option(metavar="N", help="retrain the best config over N seeds (default 3)"),
    ] = None,
    sampler_seed: Annotated[
        int | None, typer.Option(metavar="N", help="seed of the TPE sampler (default 0)")
    ] = None,
    pruner: Annotated[
        str | None,
        typer.Option(metavar="median|halving|none", help="stop poor trials early (default median)"),
    ] = None,
    backend: BackendOpt = None,
    address: AddressOpt = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Search hyperparameters with Optuna, retrain the best over seeds, and measure which
    hyperparameters mattered (fANOVA, PED-ANOVA) and how sensitive the optimum is.
    --set changes any config key, the tune: section too (--set tune.prune_startup=2)."""
    import gradwise

    flags: dict[str, Any] = {
        "trials": trials,
        "timeout_s": parse_duration(timeout) if timeout is not None else None,
        "budget_s": budget * 60 if budget is not None else None,
        "space": space,
        "metric": metric,
        "direction": direction,
        "storage": storage,
        "nproc": nproc,
        "seeds": seeds,
        "sampler_seed": sampler_seed,
        "pruner": pruner,
    }
    changes = {k: v for k, v in flags.items() if v is not None}
    with _tune_logging(quiet) as progress:
        result = gradwise.tune(
            config,
            out,
            overrides=set_,
            progress=progress,
            backend=backend,  # type: ignore[arg-type]  # checked by the verb
            address=address,
            **changes,
        )
    print_result(result)


def print_result(result: Any) -> None:
    """The study's counts, the best trial over seeds, importance and sensitivity."""
    counts = f"{result.n_complete} finished, {result.n_pruned} pruned, {result.n_failed} failed"
    if result.n_interrupted:
        counts += f", {result.n_interrupted} interrupted (run again)"
    if result.n_running:
        counts += f", {result.n_running} still running elsewhere"
    out_console.print(f"{result.n_trials} trials: {counts}", highlight=False)
    noise = f" ± {result.best_se:.4f}" if result.best_se is not None else ""
    what = f"best: trial {result.best_trial}"
    if result.kept_given and result.comparison is not None:
        top = result.comparison.best.trial
        what = f"best.yaml: trial {result.best_trial}, the config as given (kept over trial {top})"
    out_console.print(f"{what}, {result.metric} {result.best_value:.4f}{noise}", highlight=False)
    if result.cv_rule:
        out_console.print(f"trials scored by {result.cv_rule}", highlight=False)
    if result.comparison is not None:
        out_console.print(result.comparison.sentence, highlight=False)
    if result.seeds is not None:
        s = result.seeds
        test = result.metric.replace("val.", "test.", 1)
        out_console.print(
            f"over {len(s.seeds)} seeds: {result.metric} {s.val_mean:.4f} ± {s.val_std:.4f}, "
            f"{test} {s.test_mean:.4f} ± {s.test_std:.4f}",
            highlight=False,
        )
    if result.importance is not None:
        out_console.print(importance_table(result.importance))
        out_console.print(result.importance.sentence, highlight=False)
    if result.top_agreement is not None:
        out_console.print(result.top_agreement.sentence, highlight=False)
    if result.sensitivity:
        out_console.print(sensitivity_table(result))
    for note in result.notes:
        out_console.print(note, highlight=False)
    out_console.print(f"best config: {result.best_config}", highlight=False)
    if result.plots:
        shown = ", ".join(f"{Path(result.out) / p}" for p in result.plots.values())
        out_console.print(f"plots: {shown}", highlight=False)
    out_console.print(f"details: {Path(result.out) / 'tune.json'}", highlight=False)


def importance_table(imp: Any) -> Table:
    table = Table(
        title=f"importance for {imp.metric} ({imp.n_trials} finished trials)",
        title_justify="left",
    )
    table.add_column("hyperparameter")
    table.add_column("fANOVA (share of variance)", justify="right")
    table.add_column("PED-ANOVA (share)", justify="right")
    for p in imp.params:
        table.add_row(p.name, f"{p.fanova:.0%}", f"{p.ped_anova:.0%}")
    return table


def sensitivity_table(result: Any) -> Table:
    steps = result.sensitivity
    noise = result.seeds.val_std
    table = Table(
        title=f"sensitivity at the optimum ({result.metric} over {len(result.seeds.seeds)} "
        f"seeds; best {result.seeds.val_mean:.4f} ± {noise:.4f})",
        title_justify="left",
    )
    for col in (
        "hyperparameter",
        "best",
        "step",
        "value",
        "mean",
        "change",
        "noise band",
        "verdict",
    ):
        table.add_column(
            col, justify="left" if col in ("hyperparameter", "step", "verdict") else "right"
        )
    for s in steps:
        table.add_row(
            s.param,
            _value(s.best),
            s.step,
            _value(s.value),
            f"{s.runs.val_mean:.4f}",
            f"{s.delta:+.4f}",
            f"±{s.threshold:.4f}",
            s.verdict,
        )
    return table


def _value(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?$")


def parse_duration(text: str) -> float:
    """Seconds in `90`, `90s`, `10m`, `2h`, `1h30m`.

    Raises:
        ConfigError: anything else.
    """
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None or not any(match.groups()):
        raise ConfigError(f"--timeout {text!r} must look like 90s, 10m, 2h or 1h30m.")
    h, m, s = (float(g) if g else 0.0 for g in match.groups())
    return h * 3600 + m * 60 + s


@contextmanager
def _tune_logging(quiet: bool) -> Iterator[Callable[[int, int, float | None], None] | None]:
    """The search's log lines on stderr (not every epoch of every trial), and on a terminal
    a bar over the trials with the best value so far; nothing with --quiet."""
    logger = logging.getLogger(TUNE_LOG)
    handler = _Lines()
    previous = (logger.level, logger.propagate)
    if not quiet:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        if quiet or not err_console.is_terminal:
            yield None
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        bar = Progress(
            TextColumn("trials"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("best {task.fields[best]}"),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
        )
        task = bar.add_task("", total=None, best="-")

        def advance(done: int, total: int, best: float | None) -> None:
            shown = "-" if best is None else f"{best:.4f}"
            bar.update(task, completed=done, total=total, best=shown)

        with bar:
            yield advance
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous[0])
        logger.propagate = previous[1]


class _Lines(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(record.getMessage(), markup=False, highlight=False)
