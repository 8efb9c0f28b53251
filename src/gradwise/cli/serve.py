"""The serve verb: an HTTP server for a run, or (--tune) a measured choice of batching."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from gradwise.cli.console import (
    JsonOpt,
    QuietOpt,
    RunArg,
    SetOpt,
    console_logging,
    err_console,
    flag,
    handles_errors,
    out_console,
    verb_changes,
)


@handles_errors
def serve(
    run_dir: RunArg,
    host: Annotated[
        str | None,
        typer.Option(
            metavar="ADDR",
            help="address to listen on (default 127.0.0.1; 0.0.0.0: every interface)",
        ),
    ] = None,
    port: Annotated[int | None, typer.Option(metavar="PORT", help="default 8000")] = None,
    store: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="prediction log: a SQLite path, postgresql+psycopg://USER@HOST/DB, or off "
            "(default RUN/monitor/predictions.sqlite)",
        ),
    ] = None,
    max_batch: Annotated[
        int | None, typer.Option(metavar="N", help="most rows per forward pass (default 32)")
    ] = None,
    max_wait_ms: Annotated[
        float | None,
        typer.Option(metavar="MS", help="longest a request waits for a batch (default 2)"),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(metavar="N", help="processes sharing the port (default 1)")
    ] = None,
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
        typer.Option(metavar="N", help="torch threads per worker (default: torch's)"),
    ] = None,
    max_body_kb: Annotated[
        int | None, typer.Option(metavar="N", help="larger request bodies get 413 (default 1024)")
    ] = None,
    flush_interval_s: Annotated[
        float | None,
        typer.Option(metavar="S", help="the store commits at least this often (default 0.5)"),
    ] = None,
    abstain: Annotated[
        bool,
        flag(
            "--abstain",
            "answer only where the certified abstention threshold (`gradwise audit RUN "
            "--checks selective`) is met: each instance gets decision (answer/abstain) and "
            "abstain_score, each response the guarantee",
        ),
    ] = False,
    tune: Annotated[
        bool, flag("--tune", "measure max-batch x max-wait under load and recommend one")
    ] = False,
    p95_ms: Annotated[
        float | None,
        typer.Option(metavar="MS", help="with --tune: the p95 latency budget (default 20)"),
    ] = None,
    tune_seconds: Annotated[
        float | None, typer.Option(metavar="S", help="with --tune: load per setting (default 5)")
    ] = None,
    tune_batches: Annotated[
        str | None,
        typer.Option(
            metavar="N,N,...", help="with --tune: max-batch values to try (default 1,8,32,128)"
        ),
    ] = None,
    tune_waits: Annotated[
        str | None,
        typer.Option(
            metavar="MS,MS,...", help="with --tune: max-wait-ms values to try (default 0,1,2,5)"
        ),
    ] = None,
    set_: SetOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Serve a run over HTTP: POST /v1/predict (or /v1/generate), /v1/feedback, /healthz,
    /readyz, /metrics, /docs. Ctrl-C stops it after answering every accepted request."""
    import gradwise
    from gradwise.config import settings_with

    changes = verb_changes(
        "serve",
        set_,
        host=host,
        port=port,
        store=store,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        workers=workers,
        api_key_env=api_key_env,
        threads=threads,
        max_body_kb=max_body_kb,
        flush_interval_s=flush_interval_s,
        abstain=abstain,
        tune=tune,
        p95_ms=p95_ms,
        tune_seconds=tune_seconds,
        tune_batches=tune_batches,
        tune_waits=tune_waits,
    )
    settings = settings_with(_run_config(run_dir).serve, "serve", changes)
    from gradwise.serving.runner import dedicate_process

    dedicate_process()  # this process exists to serve: tune its collector and threads for it
    if settings.tune:
        _tune(run_dir, settings, quiet, as_json)
        return
    settings.api_key()  # an unset variable is an error before anything starts

    def listening() -> None:  # said once the port is bound and the app started, not before
        if quiet:
            return
        abstaining = "; abstaining below the certified threshold" if settings.abstain else ""
        err_console.print(
            f"serving {run_dir} on http://{settings.host}:{settings.port} (docs: /docs; "
            f"batching: up to {settings.max_batch} rows or {settings.max_wait_ms:g} ms; "
            f"{settings.workers} worker(s){abstaining}); Ctrl-C stops",
            highlight=False,
        )

    with console_logging(quiet=quiet, progress=False):
        gradwise.serve(run_dir, settings, on_listening=listening)


def _run_config(run_dir: Path) -> Any:
    """The run's config (its serve: section holds the defaults), without loading the model."""
    from gradwise.config import Config, load_config

    path = run_dir / "config.yaml"
    return load_config(path) if path.is_file() else Config()


def _tune(run_dir: Path, settings: Any, quiet: bool, as_json: bool) -> None:
    import json

    import gradwise
    from gradwise.serving.tune import BATCHING_FILE, TuneTrial

    n = len(settings.tune_batches) * len(settings.tune_waits)
    show = not (quiet or as_json)
    if show:
        err_console.print(
            f"measuring {n} settings for {settings.tune_seconds:g} s each under wrk load "
            "(64 connections) ...",
            highlight=False,
        )

    def progress(trial: TuneTrial) -> None:
        if show:
            err_console.print(
                f"  max-batch {trial.max_batch:>4}  max-wait {trial.max_wait_ms:>4g} ms: "
                f"{trial.load.rps:8.0f} req/s, p95 {trial.load.p95_ms:6.1f} ms, "
                f"{trial.load.errors} errors",
                highlight=False,
            )

    result = gradwise.serve(run_dir, settings, on_trial=progress)
    assert result is not None  # with tune, serve measures and returns
    if as_json:
        out_console.print_json(json.dumps(result.to_dict()))
        return
    p95_ms = settings.p95_ms
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
    out_console.print(f"details: {run_dir}/{BATCHING_FILE}")
