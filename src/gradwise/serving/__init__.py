"""Serving: an HTTP app per run with dynamic batching, a prediction store and health checks.

gradwise serve RUN [--port 8000] [--store URL] [--max-batch N] [--max-wait-ms MS]
gradwise.serve(run, port=8000)        # runs the server (blocks)
gradwise.serving.app(run)               # the ASGI app, to mount or test

"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from gradwise.config import ServeSettings
    from gradwise.run import Run

__all__ = ["app"]


def app(run: Run | str | Path, settings: ServeSettings | None = None, **options: Any) -> FastAPI:
    """The FastAPI app serving `run` (a Run or a run directory).

    Args:
        settings: a ServeSettings; or give its fields as keyword options
            (`max_batch=64, store="off"`).
    """
    from gradwise.config import ServeSettings, settings_with
    from gradwise.serving.server import create_app

    return create_app(run, settings_with(settings or ServeSettings(), "serve", options))
