"""Serving: an HTTP app per run with dynamic batching, a prediction store and health checks.

    gradwise serve RUN [--port 8000] [--store URL] [--max-batch N] [--max-wait-ms MS]
    gradwise.serve(run, port=8000)        # runs the server (blocks)
    gradwise.serve.app(run)               # the ASGI app, to mount or test

This package is also `gradwise.serve(...)`: calling it runs `gradwise.api.serve`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradwise.callable_module import make_callable

if TYPE_CHECKING:
    from fastapi import FastAPI

    from gradwise.run import Run
    from gradwise.serve.server import ServeSettings

__all__ = ["app"]


def app(run: Run | str | Path, settings: ServeSettings | None = None, **options: Any) -> FastAPI:
    """The FastAPI app serving `run` (a Run or a run directory).

    Args:
        settings: a ServeSettings; or give its fields as keyword options
            (`max_batch=64, store="off"`).
    """
    from gradwise.serve.server import ServeSettings, create_app

    return create_app(run, settings or ServeSettings(**options))


make_callable(__name__, "serve")
