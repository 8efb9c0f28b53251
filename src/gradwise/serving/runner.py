"""Running the app under uvicorn: one process, or `--workers N` processes on one port.

With several workers uvicorn starts N processes that share the listening socket; each
builds its own app from the settings passed in the environment, so each has its own
batcher and its own store writer (and replica id, host:pid). Their Prometheus numbers meet in
a folder made fresh for each start (`shared_metrics_dir`), so /metrics shows the totals of
every worker whichever one answers the scrape.

Shutdown (Ctrl-C or SIGTERM): uvicorn stops accepting connections, waits for the requests
in flight (up to `GRACE_S`), then the app answers whatever the batcher still holds and the
store writes what it has queued.

Only a process that exists to serve is tuned for it: `gradwise serve` and the workers call
`dedicate_process()`, and serving then tunes the garbage collector (`tune_gc`) and keeps
torch's thread count. `gradwise.serve(run)` called from Python leaves the caller's process as
it was: its collector untouched, its torch threads and environment given back when serving
ends.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import json
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gradwise.config import ServeSettings
from gradwise.errors import ConfigError
from gradwise.logs import LOG
from gradwise.serving.metrics import MULTIPROC_ENV

log = logging.getLogger(LOG)

ENV = "GRADWISE_SERVE"  # the worker processes' settings, as JSON
GRACE_S = 30  # longest a graceful shutdown waits for requests in flight

_dedicated = False  # dedicate_process() was called: this process exists to serve


def dedicate_process() -> None:
    """Say that this process exists to serve (`gradwise serve`, a uvicorn worker), so serving
    may tune it for good: the garbage collector (`tune_gc`) and torch's thread count. Without
    it, the process is left as it was when serving ends."""
    global _dedicated
    _dedicated = True


def serve_forever(
    run_dir: str | Path,
    settings: ServeSettings,
    on_listening: Callable[[], None] | None = None,
    log_level: str = "warning",
) -> None:
    """Serve `run_dir` on `settings.host:port` with `settings.workers` processes until
    interrupted.

    Args:
        settings: everything but the run; `threads` is torch's threads per process (None:
            torch's default; with small batches on a few cores, 1 leaves a core to the HTTP
            side).
        on_listening: called once the port accepts requests (one worker: after the app's
            start-up; several: once the port is bound and the run checked, as the workers
            start).

    Raises:
        ConfigError: the port is taken or a setting is bad (checked before serving).
        GradwiseError: the run cannot be served.
    """
    # a busy port fails first, before the model loads
    sock = bind_port(settings.host, settings.port)
    with serving_process(settings.threads):
        _serve(run_dir, settings, sock, on_listening, log_level)


def _serve(
    run_dir: str | Path,
    settings: ServeSettings,
    sock: socket.socket,
    on_listening: Callable[[], None] | None,
    log_level: str,
) -> None:
    import uvicorn

    from gradwise.serving.server import create_app

    host, port = settings.host, settings.port
    app = create_app(run_dir, settings)  # also checks the run and the settings up front
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": False,
        "timeout_graceful_shutdown": GRACE_S,
        "lifespan": "on",
    }
    if settings.workers == 1:
        tune_gc()  # in a dedicated process only
        _serve_on(uvicorn.Server(uvicorn.Config(app, **common)), sock, on_listening)
        return
    del app  # each worker builds its own
    sock.close()  # uvicorn binds the port itself for its workers
    os.environ[ENV] = json.dumps(
        {"run": str(Path(run_dir).resolve()), "settings": settings.model_dump(mode="json")}
    )
    if on_listening is not None:
        on_listening()
    with shared_metrics_dir():
        uvicorn.run(
            "gradwise.serving.runner:app_from_env",
            factory=True,
            workers=settings.workers,
            **common,
        )


@contextmanager
def shared_metrics_dir() -> Iterator[str]:
    """A fresh, empty folder in $PROMETHEUS_MULTIPROC_DIR while the workers serve, removed
    afterwards with the variable given back as it was.

    The workers inherit the variable and import prometheus_client after it is set, so their
    values go to files there, which every worker's /metrics adds up. Fresh per start: the
    counters of an earlier server (or another server on this machine) are not mixed in.
    """
    before = os.environ.get(MULTIPROC_ENV)
    folder = tempfile.mkdtemp(prefix="gradwise-metrics-")
    os.environ[MULTIPROC_ENV] = folder
    try:
        yield folder
    finally:
        if before is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = before
        shutil.rmtree(folder, ignore_errors=True)


def _serve_on(server: Any, sock: socket.socket, on_listening: Callable[[], None] | None) -> None:
    """Run a uvicorn server on a bound socket; `on_listening` once it has started."""

    async def main() -> None:
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started and not serving.done():
            await asyncio.sleep(0.02)
        if server.started and on_listening is not None:
            on_listening()
        await serving

    make_loop = server.config.get_loop_factory() or asyncio.new_event_loop  # uvloop if there
    loop = make_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
        sock.close()


def app_from_env() -> Any:
    """The app of one worker process, from the settings in $GRADWISE_SERVE."""
    from gradwise.serving.server import create_app

    dedicate_process()  # a worker exists to serve
    spec = json.loads(os.environ[ENV])
    settings = ServeSettings.model_validate(spec["settings"])
    set_threads(settings.threads)
    app = create_app(spec["run"], settings)
    tune_gc()
    return app


def set_threads(threads: int | None) -> None:
    """torch's intra-op threads for this server process (ServeSettings bounds it)."""
    if threads is None:
        return
    import torch

    torch.set_num_threads(threads)


@contextmanager
def serving_process(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to `threads` (None: left alone) while serving; on exit,
    unless the process is dedicated to serving, they and $GRADWISE_SERVE are given back."""
    import torch

    threads_before, env_before = torch.get_num_threads(), os.environ.get(ENV)
    set_threads(threads)
    try:
        yield
    finally:
        if not _dedicated:
            torch.set_num_threads(threads_before)
            if env_before is None:
                os.environ.pop(ENV, None)
            else:
                os.environ[ENV] = env_before


def tune_gc() -> None:
    """Garbage collection for a server process, once the model is loaded; only in a process
    dedicated to serving (`dedicate_process`): a Python caller's collector is its own.

    With dozens of requests in flight, Python's default collector (a young-generation pass
    every 700 allocations, full passes over torch's and pandas' objects) spent more CPU
    than the requests themselves: a suspended request cost about 130 us of collection (measured
    with 64 concurrent requests through the app). Freezing what start-up allocated and
    collecting the young generation less often brings that to a few microseconds.
    """
    if not _dedicated:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 50, 50)


def check_port(host: str, port: int) -> None:
    """Raise a ConfigError naming the fix when `host:port` cannot be bound."""
    bind_port(host, port).close()


def bind_port(host: str, port: int) -> socket.socket:
    """A socket bound to `host:port` (the server listens on it), or a ConfigError naming
    the port and the fix."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is already in use; stop what holds it or pick "
                "another with --port."
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}.") from None
    return sock


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (for tests, benchmarks and the tuning sweep)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])
