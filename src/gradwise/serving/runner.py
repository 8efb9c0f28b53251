"""Running the app under uvicorn: one process, or `--workers N` processes on one port.

With several workers uvicorn starts N processes that share the listening socket; each
builds its own app from the settings passed in the environment, so each has its own
batcher and its own store writer (and replica id, host:pid).

Shutdown (Ctrl-C or SIGTERM): uvicorn stops accepting connections, waits for the requests
in flight (up to `GRACE_S`), then the app answers whatever the batcher still holds and the
store writes what it has queued.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import gc
import json
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gradwise.errors import ConfigError
from gradwise.logs import LOG

log = logging.getLogger(LOG)

ENV = "GRADWISE_SERVE"  # the worker processes' settings, as JSON
GRACE_S = 30  # longest a graceful shutdown waits for requests in flight


def serve_forever(
    run_dir: str | Path,
    settings: Any,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    log_level: str = "warning",
    threads: int | None = None,
    on_listening: Callable[[], None] | None = None,
) -> None:
    """Serve `run_dir` until interrupted.

    Args:
        threads: torch threads per process (None: torch's default). With small batches on a
            few cores, 1 leaves a core to the HTTP side.
        on_listening: called once the port accepts requests (one worker: after the app's
            start-up; several: once the port is bound and the run checked, as the workers
            start).

    Raises:
        ConfigError: the port is taken or a setting is bad (checked before serving).
        GradwiseError: the run cannot be served.
    """
    import uvicorn

    from gradwise.serving.server import create_app

    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}.")
    sock = bind_port(host, port)  # a busy port fails first, before the model loads
    set_threads(threads)
    app = create_app(run_dir, settings)  # also checks the run and the settings up front
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": False,
        "timeout_graceful_shutdown": GRACE_S,
        "lifespan": "on",
    }
    if workers == 1:
        tune_gc()
        _serve_on(uvicorn.Server(uvicorn.Config(app, **common)), sock, on_listening)
        return
    del app  # each worker builds its own
    sock.close()  # uvicorn binds the port itself for its workers
    os.environ[ENV] = json.dumps(
        {
            "run": str(Path(run_dir).resolve()),
            "settings": dataclasses.asdict(settings),
            "threads": threads,
        }
    )
    if on_listening is not None:
        on_listening()
    uvicorn.run("gradwise.serving.runner:app_from_env", factory=True, workers=workers, **common)


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
    from gradwise.serving.server import ServeSettings, create_app

    spec = json.loads(os.environ[ENV])
    set_threads(spec.get("threads"))
    app = create_app(spec["run"], ServeSettings(**spec["settings"]))
    tune_gc()
    return app


def set_threads(threads: int | None) -> None:
    """torch's intra-op threads for this server process."""
    if threads is None:
        return
    if threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {threads}.")
    import torch

    torch.set_num_threads(threads)


def tune_gc() -> None:
    """Garbage collection for a server process, once the model is loaded.

    With dozens of requests in flight, Python's default collector (a young-generation pass
    every 700 allocations, full passes over torch's and pandas' objects) spent more CPU
    than the requests themselves: a suspended request cost about 130 us of collection (measured
    with 64 concurrent requests through the app). Freezing what start-up allocated and
    collecting the young generation less often brings that to a few microseconds.
    """
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
