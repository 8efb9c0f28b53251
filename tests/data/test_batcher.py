"""The batcher: each sample once per epoch, seeded order, rank shares under data parallelism."""

from __future__ import annotations

import pytest
import torch

from gradwise.data.batcher import Batcher
from gradwise.data.dataset import Split


def _split(n: int = 50) -> Split:
    x = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 3)
    return Split(x, torch.arange(n) * 10)


def _epoch(batcher: Batcher) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(batcher)


@pytest.mark.parametrize("shuffle", [False, True])
def test_every_sample_comes_once_per_epoch_with_its_label(shuffle: bool):
    batcher = Batcher(_split(), 8, shuffle=shuffle, order=torch.Generator().manual_seed(0))
    for _ in range(2):
        batches = _epoch(batcher)
        assert len(batches) == len(batcher) == 7
        assert [len(xb) for xb, _ in batches] == [8] * 6 + [2]
        x = torch.cat([xb for xb, _ in batches])[:, 0]
        y = torch.cat([yb for _, yb in batches])
        assert sorted(x.long().tolist()) == list(range(50))
        assert torch.equal(y, x.long() * 10)


def test_without_shuffle_the_order_is_the_split_order():
    x = torch.cat([xb for xb, _ in Batcher(_split(), 8)])
    assert torch.equal(x, _split().x)


def test_shuffled_order_changes_each_epoch_and_repeats_with_the_seed():
    def two_epochs(seed: int) -> list[list[float]]:
        batcher = Batcher(_split(), 50, shuffle=True, order=torch.Generator().manual_seed(seed))
        return [_epoch(batcher)[0][0][:, 0].tolist() for _ in range(2)]

    first, second = two_epochs(0)
    assert first != second
    assert two_epochs(0) == [first, second]
    assert two_epochs(1)[0] != first


@pytest.mark.parametrize(("n", "batch_size", "n_shared"), [(50, 8, 7), (51, 8, 7), (17, 4, 4)])
def test_two_ranks_split_each_batch_into_disjoint_halves(n: int, batch_size: int, n_shared: int):
    def batches(**kw) -> list[torch.Tensor]:
        order = torch.Generator().manual_seed(0)
        return [xb[:, 0] for xb, _ in Batcher(_split(n), batch_size, True, order, **kw)]

    single = batches()
    rank0, rank1 = batches(rank=0, world_size=2), batches(rank=1, world_size=2)
    # a last batch of one sample cannot be shared, so both ranks skip it
    assert len(rank0) == len(rank1) == n_shared
    assert len(Batcher(_split(n), batch_size, rank=1, world_size=2)) == n_shared
    for whole, a, b in zip(single, rank0, rank1):
        assert not set(a.tolist()) & set(b.tolist())
        assert torch.equal(torch.cat([a, b]), whole)
        assert abs(len(a) - len(b)) <= 1


@pytest.mark.parametrize("world_size", [3, 4])
def test_every_rank_gets_a_non_empty_share_and_len_counts_the_batches(world_size: int):
    # 21 samples in batches of 5: the last batch (1 sample) is too small to share and is skipped
    for rank in range(world_size):
        batcher = Batcher(_split(21), 5, rank=rank, world_size=world_size)
        shares = _epoch(batcher)
        assert len(shares) == len(batcher) == 4
        assert all(len(xb) >= 1 for xb, _ in shares)
    ranks = [
        _epoch(Batcher(_split(21), 5, rank=r, world_size=world_size)) for r in range(world_size)
    ]
    together = [torch.cat([shares[i][0] for shares in ranks]) for i in range(4)]
    assert torch.equal(torch.cat(together), _split(21).x[:20])


def test_augment_applies_to_each_batch_with_the_noise_generator():
    def add_noise(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return x + torch.randn(x.shape, generator=gen)

    def run(seed: int) -> torch.Tensor:
        batcher = Batcher(
            _split(), 16, augment=add_noise, noise=torch.Generator().manual_seed(seed)
        )
        return torch.cat([xb for xb, _ in batcher])

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), _split().x)
    assert not torch.equal(run(0), run(1))
