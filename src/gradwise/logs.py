"""gradwise's logger: its name, the handler the CLI prints log lines through, and the log of
one run (RUN/train.log)."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

from gradwise.errors import GradwiseError

LOG = "gradwise"
CONSOLE_HANDLER = "gradwise.console"  # set by the CLI: the pipeline then adds no stderr handler

log = logging.getLogger(LOG)


@contextlib.contextmanager
def run_logging(path: Path | None, quiet: bool) -> Iterator[None]:
    """Log to the run's train.log (and to stderr unless quiet, or unless the CLI already
    prints log lines) for the length of a run."""
    handlers: list[logging.Handler] = []
    if path is not None:
        handlers.append(logging.FileHandler(path, encoding="utf-8"))
        handlers[-1].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    console = [h for h in log.handlers if h.get_name() == CONSOLE_HANDLER]
    if not quiet and not console:
        handlers.append(logging.StreamHandler(sys.stderr))
        handlers[-1].setFormatter(logging.Formatter("%(message)s"))
    hush = _WarningsOnly()
    for h in console if quiet else []:  # a quiet run inside a CLI verb (audit retrains, tune)
        h.addFilter(hush)
    previous = log.level
    log.setLevel(logging.INFO)
    for h in handlers:
        log.addHandler(h)
    try:
        yield
    except GradwiseError as exc:
        log.error("error: %s", exc)  # the run's log says why it stopped
        raise
    finally:
        for h in handlers:
            log.removeHandler(h)
            h.close()
        for h in console:
            h.removeFilter(hush)
        log.setLevel(previous)


class _WarningsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING
