"""What every verb shares: the consoles, error handling, log lines, progress bars, tables.

Exit codes: 0 success; 2 bad input (one clear message, no traceback); 1 anything unexpected.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer._click.core import Context  # typer vendors click
from typer.core import TyperArgument, TyperCommand, TyperGroup

from gradwise.errors import GradwiseError
from gradwise.logs import CONSOLE_HANDLER, LOG

log = logging.getLogger(LOG)

F = TypeVar("F", bound=Callable[..., Any])


def make_console(stderr: bool = False) -> Console:
    """A rich console; when piped, wide enough that tables are not squeezed to 80 columns."""
    console = Console(stderr=stderr, soft_wrap=True)
    if not console.is_terminal:
        console.width = 140
    return console


out_console = make_console()
err_console = make_console(stderr=True)


class Command(TyperCommand):
    """Usage lines as people write them (`gradwise train [OPTIONS] CONFIG`), and no type
    shown for --help."""

    def get_help_option(self, ctx: Context) -> Any:
        return _untyped(super().get_help_option(ctx))

    def collect_usage_pieces(self, ctx: Context) -> list[str]:
        pieces = [self.options_metavar or "[OPTIONS]"]
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = param.metavar or (param.name or "").upper()
                name = name if param.required else f"[{name}]"
                pieces.append(name + ("..." if param.nargs != 1 else ""))
        return pieces


class Group(TyperGroup):
    """The top-level command: no type shown for --help."""

    def get_help_option(self, ctx: Context) -> Any:
        return _untyped(super().get_help_option(ctx))


def _untyped(option: Any) -> Any:
    if option is not None:
        option.metavar = ""  # a flag takes no value: showing <bool> misleads
    return option


# Arguments and options every verb spells the same way; the metavar is what --help shows.
ConfigArg = Annotated[
    Path, typer.Argument(help="config YAML file", metavar="CONFIG", show_default=False)
]
RunArg = Annotated[
    Path, typer.Argument(help="run directory", metavar="RUN_DIR", show_default=False)
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="change a config key, repeat for several (--set train.epochs=5 --set "
        "model.dropout=0.2); a verb on a run takes its own section's keys (--set "
        "serve.port=9000). A value is read as its key's type: text for text keys "
        "(data.target=2020), YAML otherwise (3e-4, true, [64, 64]). docs/flags.md",
    ),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", metavar="", help="no progress bar or log lines")
]
JsonOpt = Annotated[bool, typer.Option("--json", metavar="", help="print JSON")]
BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        metavar="local|ray",
        help="where the work runs: this process (local) or a Ray cluster (ray; pip install "
        "'gradwise\\[ray]'); default: the config's backend: key (local)",
    ),
]
AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        metavar="HOST:PORT",
        help="with --backend ray: the Ray cluster to join (or auto); default: the config's "
        "address: key, else RAY_ADDRESS, else a local cluster is started for the command and "
        "stopped after it",
    ),
]


def flag(name: str, help: str) -> Any:
    """A yes/no option shown without a type in --help."""
    return typer.Option(name, metavar="", help=help)


def handles_errors(fn: F) -> F:
    """Bad input becomes one message on stderr and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except GradwiseError as exc:
            print_error(str(exc))
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def print_error(message: str) -> None:
    err_console.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False)


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
    handler.set_name(CONSOLE_HANDLER)
    log.addHandler(handler)
    previous = log.level
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
        log.setLevel(previous)


class _ConsoleHandler(logging.Handler):
    """Log lines through the rich console, so they print above a live progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            return  # errors reach the user once, through handles_errors
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
        table.add_row(name, *(fmt(metrics[s].get(name)) for s in splits))
    return table


def fmt(value: Any) -> str:
    return "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def overrides_dict(overrides: list[str] | None) -> dict[str, Any]:
    from gradwise.config import parse_overrides

    return parse_overrides(list(overrides or []))


def verb_changes(verb: str, overrides: list[str] | None, **flags: Any) -> dict[str, Any]:
    """The changes to a verb's settings: its `--set VERB.KEY=VALUE` items, then the flags
    given on the command line (None, or False for an on-switch, means not given), which win.

    Raises:
        ConfigError: a --set key outside the verb's section.
    """
    from gradwise.errors import ConfigError

    parsed = overrides_dict(overrides)
    other = [k for k in parsed if not k.startswith(f"{verb}.")]
    if other:
        raise ConfigError(
            f"{verb} --set changes the {verb} settings only ({verb}.<key>, e.g. the config's "
            f"{verb}: section); {', '.join(other)} would change the run itself: retrain with "
            "gradwise train --set instead."
        )
    changes = {k.removeprefix(f"{verb}."): v for k, v in parsed.items()}
    changes.update({k: v for k, v in flags.items() if v is not None and v is not False})
    return changes


@contextmanager
def rate_line(doing: str, done: str) -> Iterator[Callable[[int], None]]:
    """A progress callback for a verb that streams rows: on a terminal, one stderr line
    rewritten with rows `done` and rows per second; elsewhere (a log, a pipe) silent, the
    verb's closing line says it all."""
    started = time.perf_counter()
    if not err_console.is_terminal:
        yield lambda rows: None
        return
    with err_console.status(doing) as status:

        def show(rows: int) -> None:
            rate = rows / max(time.perf_counter() - started, 1e-9)
            status.update(f"{done} {rows:,} rows ({rate:,.0f} rows/s)")

        yield show
