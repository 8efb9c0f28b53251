"""The audit's retrains as small, self-contained jobs, run through a `RetrainMap` (in this
process, or as Ray tasks): each job carries only a config and its overrides, or a run's
directory and a fold's positions, and builds everything else itself, so it gives the same
result wherever it runs.

    curve_retrain(CurveJob)   one learning-curve point: the run's config on a fraction
    fold_retrain(FoldJob)     one out-of-fold retrain: the held-out rows' probabilities
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gradwise.logs import CONSOLE_HANDLER, LOG

if TYPE_CHECKING:
    from gradwise.config import Config

log = logging.getLogger(LOG)


@dataclass(frozen=True)
class CurveJob:
    """One learning-curve retrain: `config` with dotted `overrides` (seed, train_fraction,
    epochs)."""

    config: Config
    overrides: dict[str, Any]


def curve_retrain(job: CurveJob) -> dict[str, Any]:
    """The retrain's metrics.json summary (train/val/test metrics, n_train), trained quietly
    in a temporary folder that is removed afterwards."""
    from gradwise.config import load_config
    from gradwise.pipeline import train_run

    with tempfile.TemporaryDirectory(prefix="gradwise-curve-") as tmp, _console_silenced():
        run = train_run(load_config(job.config, job.overrides), Path(tmp) / "run", quiet=True)
        return dict(run.metrics)


@dataclass(frozen=True)
class FoldJob:
    """Out-of-fold retrain number `fold`: the run at `run_dir` retrained with `config` on the
    training samples at positions `keep`, scored on those at `held_out` (positions within
    the training split)."""

    run_dir: str
    config: Config
    fold: int
    keep: np.ndarray
    held_out: np.ndarray


def fold_retrain(job: FoldJob) -> np.ndarray:
    """(len(held_out), K) uncalibrated class probabilities of the held-out samples from a
    model trained without them (the run's data and preprocessing, only `keep` trained on),
    trained quietly in a temporary folder that is removed afterwards."""
    from gradwise.pipeline import train_run
    from gradwise.run import Run

    run = Run.load(job.run_dir)
    train_x = run.split("train").x
    fold_data = run.dataset().keep_train(job.keep)
    with tempfile.TemporaryDirectory(prefix="gradwise-fold-") as tmp, _console_silenced():
        fold_run = train_run(job.config, Path(tmp) / "run", quiet=True, data=fold_data)
        logits = fold_run.logits(train_x[job.held_out])
        return np.asarray(fold_run.probabilities(logits, calibrated=False))


@contextlib.contextmanager
def _console_silenced() -> Iterator[None]:
    """The retrains' own log lines (epochs, summaries) stay off the audit's console."""
    handlers = [h for h in log.handlers if h.get_name() == CONSOLE_HANDLER]

    def drop(record: logging.LogRecord) -> bool:
        return False

    for h in handlers:
        h.addFilter(drop)
    try:
        yield
    finally:
        for h in handlers:
            h.removeFilter(drop)
