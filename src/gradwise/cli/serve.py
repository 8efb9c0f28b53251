"""The serve verb: an HTTP server for a run, or (--tune) a measured choice of batching."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from gradwise.cli.console import (
    RunArg,
    console_logging,
    err_console,
    flag,
    handles_errors,
    out_console,
)


@handles_errors
def serve(
    run_dir: RunArg,
    host: Annotated[
        str, typer.Option(metavar="ADDR", help="address to listen on (0.0.0.0: every interface)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, metavar="PORT")] = 8000,
    store: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="prediction log: a SQLite path, postgresql+psycopg://USER@HOST/DB, or off "
            "(default RUN/monitor/predictions.sqlite)",
        ),
    ] = None,
    max_batch: Annotated[
        int, typer.Option(min=1, max=4096, metavar="N", help="most rows per forward pass")
    ] = 32,
    max_wait_ms: Annotated[
        float,
        typer.Option(min=0.0, max=1000.0, metavar="MS", help="longest a request waits for a batch"),
    ] = 2.0,
    workers: Annotated[
        int, typer.Option(min=1, max=64, metavar="N", help="processes sharing the port")
    ] = 1,
    api_key_env: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="environment variable holding the API key every route but /healthz and "
            "/readyz requires",
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(min=1, metavar="N", help="torch threads per worker (default: torch's)"),
    ] = None,
    max_body_kb: Annotated[
        int, typer.Option(min=1, metavar="N", help="larger request bodies get 413")
    ] = 1024,
    tune: Annotated[
        bool, flag("--tune", "measure max-batch x max-wait under load and recommend one")
    ] = False,
    p95_ms: Annotated[
        float, typer.Option(min=0.1, metavar="MS", help="with --tune: the p95 latency budget")
    ] = 20.0,
    tune_seconds: Annotated[
        float, typer.Option(min=1.0, metavar="S", help="with --tune: load per setting")
    ] = 5.0,
    tune_batches: Annotated[
        str, typer.Option(metavar="N,N,...", help="with --tune: max-batch values to try")
    ] = "1,8,32,128",
    tune_waits: Annotated[
        str, typer.Option(metavar="MS,MS,...", help="with --tune: max-wait-ms values to try")
    ] = "0,1,2,5",
) -> None:
    """Serve a run over HTTP: POST /v1/predict (or /v1/generate), /v1/feedback, /healthz,
    /readyz, /metrics, /docs. Ctrl-C stops it after answering every accepted request."""
    from gradwise.serving.server import ServeSettings

    settings = ServeSettings(
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        store=store,
        api_key_env=api_key_env,
        max_body_kb=max_body_kb,
    )
    if tune:
        from gradwise.serving.runner import set_threads

        set_threads(threads)
        batches = tuple(int(v) for v in _numbers(tune_batches, "--tune-batches", integer=True))
        waits = tuple(_numbers(tune_waits, "--tune-waits"))
        _tune(run_dir, settings, p95_ms, tune_seconds, batches, waits)
        return
    from gradwise.serving.runner import serve_forever

    settings.api_key()  # an unset variable is an error before anything starts

    def listening() -> None:  # said once the port is bound and the app started, not before
        err_console.print(
            f"serving {run_dir} on http://{host}:{port} (docs: /docs; batching: up to "
            f"{max_batch} rows or {max_wait_ms:g} ms; {workers} worker(s)); Ctrl-C stops",
            highlight=False,
        )

    with console_logging(quiet=False, progress=False):
        serve_forever(
            run_dir,
            settings,
            host=host,
            port=port,
            workers=workers,
            threads=threads,
            on_listening=listening,
        )


def _numbers(text: str, flag: str, integer: bool = False) -> list[float]:
    from gradwise.errors import ConfigError

    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v < (1 if integer else 0) or (integer and v != int(v)) for v in values):
        kind = "whole numbers of at least 1" if integer else "numbers of at least 0"
        raise ConfigError(f"{flag} {text!r}: give {kind}, comma-separated (e.g. 1,8,32).")
    return values


def _tune(
    run_dir: Path,
    settings: object,
    p95_ms: float,
    seconds: float,
    batches: tuple[int, ...],
    waits: tuple[float, ...],
) -> None:
    from gradwise.serving.tune import TUNE_FILE, tune_batching

    n = len(batches) * len(waits)
    err_console.print(
        f"measuring {n} settings for {seconds:g} s each under wrk load (64 connections) ...",
        highlight=False,
    )

    def progress(trial: object) -> None:
        from gradwise.serving.tune import TuneTrial

        assert isinstance(trial, TuneTrial)
        err_console.print(
            f"  max-batch {trial.max_batch:>4}  max-wait {trial.max_wait_ms:>4g} ms: "
            f"{trial.load.rps:8.0f} req/s, p95 {trial.load.p95_ms:6.1f} ms, "
            f"{trial.load.errors} errors",
            highlight=False,
        )

    result = tune_batching(
        run_dir, p95_ms, batches, waits, seconds=seconds, settings=settings, on_trial=progress
    )
    table = Table(title=f"batching under load, p95 budget {p95_ms:g} ms", title_justify="left")
    for col in ("max-batch", "max-wait ms", "req/s", "p50 ms", "p95 ms", "errors", "fits"):
        table.add_column(col, justify="right")
    for t in result.trials:
        mark = "*" if t is result.best else ("yes" if result.fits(t) else "")
        table.add_row(
            str(t.max_batch),
            f"{t.max_wait_ms:g}",
            f"{t.load.rps:.0f}",
            f"{t.load.p50_ms:.1f}",
            f"{t.load.p95_ms:.1f}",
            str(t.load.errors),
            mark,
        )
    out_console.print(table)
    if result.best is None:
        out_console.print(
            f"no setting kept p95 within {p95_ms:g} ms without errors; the machine cannot meet "
            "that budget at this load (fewer connections, more replicas, or an optimised "
            "variant may)."
        )
    else:
        b = result.best
        out_console.print(
            f"recommended: gradwise serve {run_dir} --max-batch {b.max_batch} --max-wait-ms "
            f"{b.max_wait_ms:g}  ({b.load.rps:.0f} req/s, p95 {b.load.p95_ms:.1f} ms)"
        )
    out_console.print(f"details: {run_dir}/{TUNE_FILE}")
