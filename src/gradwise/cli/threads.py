"""`--threads N`: the CPU threads a verb's torch work uses (see gradwise.training.threads)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from gradwise.errors import ConfigError

THREADS_HELP = "CPU threads (default: GRADWISE_THREADS, else 1 for small models, all for large)"


def _apply(value: int | None) -> int | None:
    """Set the threads of this process's torch work; retrains inside the verb see
    GRADWISE_THREADS, so they use the same count unless their config names one."""
    import torch

    from gradwise.training.threads import THREADS_ENV, choose_threads

    if value is not None:
        os.environ[THREADS_ENV] = str(value)
    try:
        torch.set_num_threads(choose_threads(None).n)
    except ConfigError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value


# for verbs that run a trained model (audit, predict): the model's size is not known when
# the options are read, so the automatic choice there is one thread
ThreadsOpt = Annotated[
    int | None,
    typer.Option("--threads", min=1, metavar="N", help=THREADS_HELP, callback=_apply),
]
# for train: the value becomes train.threads, so the run's config.yaml keeps it
TrainThreadsOpt = Annotated[
    int | None, typer.Option("--threads", min=1, metavar="N", help=THREADS_HELP)
]
