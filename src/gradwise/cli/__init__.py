"""The command line: one module per verb or verb group, thin over the Python API.

Exit codes: 0 success; 2 bad input (one clear message, no traceback); 1 anything unexpected.
Modules here import only typer and rich at the top; torch and the rest load inside the verb
that needs them, so `gradwise --help` answers at once.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from typer._click.exceptions import ClickException, UsageError  # typer vendors click

from gradwise import __version__
from gradwise.cli import (
    audit,
    datasets,
    explain,
    generate,
    monitor,
    optimize,
    predict,
    report,
    serve,
    train,
    tune,
)
from gradwise.cli.console import Command, Group, print_error

app = typer.Typer(
    name="gradwise",
    help="Neural networks that come with evidence: train, audit, optimise and serve on your "
    "own data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=Group,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gradwise {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", metavar="", callback=_version, is_eager=True, help="print the version"
        ),
    ] = False,
) -> None:
    """Neural networks that come with evidence: train, audit, optimise and serve on your own
    data."""


VERBS: list[tuple[str, Callable[..., Any]]] = [
    ("train", train.train),
    ("lr-find", train.lr_find),
    ("compare", train.compare),
    ("evaluate", predict.evaluate),
    ("predict", predict.predict),
    ("generate", generate.generate),
    ("sample", generate.sample),
    ("audit", audit.audit),
    ("explain", explain.explain),
    ("optimize", optimize.optimize),
    ("bench", optimize.bench),
    ("serve", serve.serve),
    ("monitor", monitor.monitor),
    ("tune", tune.tune),
    ("report", report.report),
]
for name, fn in VERBS:
    app.command(name, cls=Command)(fn)
app.add_typer(datasets.app, name="datasets")  # `datasets` lists; `datasets get NAME` fetches


USAGE_HINTS = {
    "Got unexpected extra argument": "--set takes one KEY=VALUE; repeat it for several "
    "(--set train.epochs=5 --set model.dropout=0.2)",
}


def main(argv: list[str] | None = None) -> None:
    """The `gradwise` console script: usage errors become one line and exit code 2."""
    try:
        # without standalone mode the exit code of a handled error (typer.Exit) is returned
        code = app(args=argv, prog_name="gradwise", standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        print_error("aborted")
        sys.exit(130)
    except ClickException as exc:
        message = exc.format_message()
        hint = next((h for k, h in USAGE_HINTS.items() if k in message), None)
        ctx = exc.ctx if isinstance(exc, UsageError) else None
        where = f" ({ctx.command_path} --help shows the usage)" if ctx else ""
        print_error(f"{message}{'; ' + hint if hint else ''}{where}")
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
