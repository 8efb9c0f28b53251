"""Where an epoch stands, for checkpoints inside an epoch.

An epoch over a table bigger than memory can take hours, so a streamed run
(`data.stream`) also saves its checkpoint between optimizer steps, every
`train.checkpoint_every_s` seconds. The position says how many batches of which epoch are
done and what the epoch's loss has summed so far; a resumed run skips those batches (each
epoch's order is a function of its number) and adds to the same sum in the same order, so it
ends with the weights and the record an uninterrupted run ends with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor


@dataclass(frozen=True)
class Position:
    """An epoch's progress: `batches` done, the float64 sum of batch loss x rows over them
    in batch order, their rows and the largest gradient norm (None: no clipping)."""

    epoch: int
    batches: int = 0
    loss_total: float = 0.0
    rows: int = 0
    max_norm: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any] | None) -> Position | None:
        return Position(**d) if d else None


# called at each optimizer step with a function that builds the position (only when due)
SaveWithin = Callable[[Callable[[], Position]], None]


def loss_sum(losses: list[Tensor], sizes: list[int], start: float = 0.0) -> float:
    """`start` plus the size-weighted sum of per-batch losses, added in float64 in batch
    order (one device sync for all of them)."""
    total = start
    for loss, n in zip(torch.stack(losses).tolist() if losses else [], sizes):
        total += loss * n
    return total
