"""How many epochs to train: train.epochs when given, else enough for train.min_steps steps."""

from __future__ import annotations

import math

from gradwise.config import TrainConfig

AUTO_EPOCHS = (30, 1000)  # the fewest and the most epochs chosen when train.epochs is null


def steps_per_epoch(n_train: int, tc: TrainConfig) -> int:
    """Optimizer steps in one epoch over `n_train` samples: batches of train.batch_size (split
    among the ranks under DDP), train.accumulate of them per step."""
    return max(1, math.ceil(math.ceil(n_train / tc.batch_size) / tc.accumulate))


def resolved_epochs(tc: TrainConfig, steps: int) -> int:
    """The epochs to train: train.epochs when given; else enough for train.min_steps
    optimizer steps at `steps` per epoch, within AUTO_EPOCHS. Early stopping may end sooner.

    A fixed 30 epochs gave the 86 training windows of the airline series (2 steps an epoch)
    60 updates; big data reaches min_steps within 30 epochs and keeps 30.
    """
    if tc.epochs is not None:
        return tc.epochs
    low, high = AUTO_EPOCHS
    return min(high, max(low, math.ceil(tc.min_steps / steps)))


def epochs_reason(tc: TrainConfig, steps: int) -> str:
    """Why `resolved_epochs` chose its number, for the log and the resolved config."""
    epochs = resolved_epochs(tc, steps)
    if tc.epochs is not None:
        return f"train.epochs: {epochs} as given"
    low, high = AUTO_EPOCHS
    bound = (
        " (the most chosen)" if epochs == high else " (the fewest chosen)" if epochs == low else ""
    )
    return (
        f"train.epochs not set: {epochs}{bound}, for at least {tc.min_steps} optimizer steps "
        f"(train.min_steps) at {steps} steps per epoch"
    )
