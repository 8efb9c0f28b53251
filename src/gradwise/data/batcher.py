"""The in-memory batcher: whole tensors, one permutation per epoch, slices for batches."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from gradwise.data.augment import AugmentFn
from gradwise.data.dataset import Split


class Batcher:
    """Mini-batches of a Split by slicing, not per-sample indexing and collation.

    With `shuffle`, each epoch gathers the whole split once in a fresh random order (one
    memory copy), and batches are then contiguous views of it. Under data parallelism every
    rank draws the same order and takes its own share of each global batch.

    Args:
        split: the tensors to iterate over.
        batch_size: samples per (global) batch.
        order: generator for the epoch order; its state is part of a checkpoint.
        augment: applied to training batches only, with the `noise` generator.
    """

    def __init__(
        self,
        split: Split,
        batch_size: int,
        shuffle: bool = False,
        order: torch.Generator | None = None,
        augment: AugmentFn | None = None,
        noise: torch.Generator | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.x, self.y = split.x, split.y
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.order = order
        self.augment = augment
        self.noise = noise
        self.rank, self.world_size = rank, world_size

    def begin(self, epoch: int, skip: int = 0) -> None:
        """Nothing to choose per epoch: the `order` generator carries from one to the next
        (a streamed table's batcher draws each epoch's order from its number). An epoch in
        memory is checkpointed at its end only, so it never starts part-done."""
        assert skip == 0, "an epoch in memory resumes from its start"

    def __len__(self) -> int:
        n_batches = -(-len(self.x) // self.batch_size)
        last = len(self.x) - (n_batches - 1) * self.batch_size
        if self.world_size > 1 and n_batches and last < self.world_size:
            return n_batches - 1  # __iter__ skips a last batch too small to share
        return n_batches

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        x, y = self.x, self.y
        if self.shuffle:
            perm = torch.randperm(len(x), generator=self.order)
            x, y = x[perm], y[perm]
        bs = self.batch_size
        for start in range(0, len(x), bs):
            xb, yb = x[start : start + bs], y[start : start + bs]
            if self.world_size > 1:
                if len(xb) < self.world_size:
                    break  # every rank needs a share, or DDP waits forever
                # shares differ by at most one sample, so no rank is left empty
                start_r, stop_r = share_of(len(xb), self.rank, self.world_size)
                xb, yb = xb[start_r:stop_r], yb[start_r:stop_r]
            if self.augment is not None:
                assert self.noise is not None
                xb = self.augment(xb, self.noise)
            yield xb, yb


def share_of(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Start and stop of `rank`'s slice of n samples; the first n % world_size get one more."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)
