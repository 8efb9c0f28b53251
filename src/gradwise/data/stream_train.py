"""Training on a table bigger than memory (`data.stream: true`).

One pass over the table (a csv or parquet file, a folder of shards or a glob) counts each
split's rows and keeps three uniform samples: training rows for fitting the preprocessing and
the class weights (`data.stream_sample`), and the validation and test rows (all of them, or
`data.stream_holdout` of each). The split is `data.split.order: hash`, so each row's split
follows from its own key, in any pass, in any order. Each epoch then reads the table again:
the shards in an order drawn from (seed, epoch), each in buffers of `data.stream_buffer` rows
shuffled within. Memory holds one buffer and the held rows, never the table.

Every order is a function of (seed, epoch) alone, so a run resumed from a checkpoint reads
exactly the batches it would have read.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from gradwise.config import DataConfig
from gradwise.data.augment import AugmentFn
from gradwise.data.batcher import share_of
from gradwise.data.dataset import Dataset
from gradwise.data.hash_split import TEST, TRAIN, VAL, split_codes
from gradwise.data.schema import Schema
from gradwise.data.stream import BottomK, Shards, stream_table, table_shards
from gradwise.data.tabular import build_tabular, pick_target
from gradwise.errors import DataError

MAX_CLASSES = 10_000  # distinct target values collected at most (more: a regression target)


@dataclass(frozen=True)
class TrainStream:
    """How to read a streamed table's training rows again, epoch after epoch.

    Attributes:
        offsets: each shard's first row position in the whole table.
        columns: the table's columns (every shard must hold them).
        split_seed: the hash split's seed.
        n_rows: rows of each split (train, val, test) in the whole table.
    """

    shards: Shards
    offsets: tuple[int, ...]
    columns: tuple[str, ...]
    cfg: DataConfig
    split_seed: int
    schema: Schema
    n_rows: dict[str, int]

    @property
    def n_train(self) -> int:
        return self.n_rows["train"]

    def epoch_rows(self, epoch: int, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The training rows' model-ready (x, y), a shuffled buffer at a time: the shards in
        an order drawn from (seed, epoch), each buffer permuted by (seed, epoch, shard,
        buffer)."""
        files = self.shards.files
        for s in np.random.default_rng([seed, epoch]).permutation(len(files)):
            one = Shards(self.shards.kind, [files[s]], self.shards.location)
            frames = stream_table(
                one, self.cfg, None, list(self.columns), self.cfg.stream_buffer, allow_empty=True
            )
            for k, frame in enumerate(frames):
                frame.index = frame.index + self.offsets[s]
                train = frame[_codes(frame, self.cfg, self.split_seed) == TRAIN]
                if len(train) == 0:
                    continue
                x, y = encode_rows(train, self.schema, self.cfg)
                perm = np.random.default_rng([seed, epoch, int(s), k]).permutation(len(x))
                yield x[perm], y[perm]


def encode_rows(frame: pd.DataFrame, schema: Schema, cfg: DataConfig) -> tuple[np.ndarray, Any]:
    """A frame's model inputs and encoded targets, as `build_tabular` makes them."""
    assert schema.target is not None
    y_raw = frame[schema.target.name].to_numpy()
    if schema.task == "regression":
        y_raw = pd.to_numeric(frame[schema.target.name], errors="coerce").to_numpy()
    return schema.transform(frame), schema.target.encode(y_raw)


class StreamBatcher:
    """Mini-batches of a streamed table's training rows, like `Batcher`: full batches of
    `batch_size` across buffer and shard ends, the last one shorter; under data parallelism
    each rank takes its share of every global batch. `begin(epoch)` picks the epoch's order.
    """

    def __init__(
        self,
        stream: TrainStream,
        batch_size: int,
        seed: int,
        device: torch.device,
        augment: AugmentFn | None = None,
        noise: torch.Generator | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.stream, self.batch_size, self.seed, self.device = stream, batch_size, seed, device
        self.augment, self.noise = augment, noise
        self.rank, self.world_size = rank, world_size
        self.epoch, self.skip = 1, 0

    def begin(self, epoch: int, skip: int = 0) -> None:
        """Read epoch `epoch`'s order next, leaving out its first `skip` batches (done before
        a checkpoint; they are read again but not returned)."""
        self.epoch, self.skip = epoch, skip

    def __len__(self) -> int:
        n = self.stream.n_train
        n_batches = -(-n // self.batch_size)
        last = n - (n_batches - 1) * self.batch_size
        if self.world_size > 1 and n_batches and last < self.world_size:
            return n_batches - 1  # as Batcher: a last batch too small to share is skipped
        return n_batches

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        batches = _rebatch(self.stream.epoch_rows(self.epoch, self.seed), self.batch_size)
        for xb, yb in itertools.islice(batches, self.skip, None):
            if self.world_size > 1:
                if len(xb) < self.world_size:
                    break
                start, stop = share_of(len(xb), self.rank, self.world_size)
                xb, yb = xb[start:stop], yb[start:stop]
            x, y = torch.from_numpy(xb).to(self.device), torch.from_numpy(yb).to(self.device)
            if self.augment is not None:
                assert self.noise is not None
                x = self.augment(x, self.noise)
            yield x, y


def _rebatch(
    buffers: Iterator[tuple[np.ndarray, np.ndarray]], batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Buffers of any size regrouped into batches of `batch_size` rows, the last shorter."""
    held_x: list[np.ndarray] = []
    held_y: list[np.ndarray] = []
    n_held = 0
    for x, y in buffers:
        held_x.append(x)
        held_y.append(y)
        n_held += len(x)
        if n_held < batch_size:
            continue
        xs, ys = np.concatenate(held_x), np.concatenate(held_y)
        cut = n_held - n_held % batch_size
        for start in range(0, cut, batch_size):
            yield xs[start : start + batch_size], ys[start : start + batch_size]
        held_x, held_y, n_held = [xs[cut:]], [ys[cut:]], n_held - cut
    if n_held:
        yield np.concatenate(held_x), np.concatenate(held_y)


# ------------------------------------------------------------------ the first pass


@dataclass
class _Scan:
    """What one pass over the table found."""

    samples: dict[str, BottomK]
    counts: dict[str, int] = field(default_factory=lambda: {"train": 0, "val": 0, "test": 0})
    offsets: list[int] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    classes: set[Any] = field(default_factory=set)


def build_stream(cfg: DataConfig, split_seed: int, seed: int) -> Dataset:
    """A streamed table's Dataset: the held rows in memory (a training sample, validation
    and test) and, in `Dataset.stream`, how to read the training rows epoch by epoch.

    Raises:
        DataError: the source is not a table, a key that needs the whole table is set, or a
            split holds no row.
    """
    _check_settings(cfg)
    shards = table_shards(cfg.source)
    if shards is None:
        raise DataError(
            f"data.source {cfg.source} holds no csv or parquet table; data.stream reads a "
            "table given as a file, a folder of shards or a glob."
        )
    scan = _scan(shards, cfg, split_seed, seed)
    empty = [name for name, n in scan.counts.items() if n == 0]
    if empty:
        raise DataError(
            f"data.stream: the hash split put none of {sum(scan.counts.values()):,} rows in "
            f"{' or '.join(empty)}; stream a bigger table or raise data.split fractions."
        )
    parts = [scan.samples.pop(name).rows() for name in ("train", "val", "test")]
    held_n = {name: len(part) for name, part in zip(("train", "val", "test"), parts)}
    held = pd.concat(parts)
    del parts  # the samples live on in `held` alone
    bounds = np.cumsum([0, *held_n.values()])
    indices = tuple(np.arange(bounds[i], bounds[i + 1]) for i in range(3))
    classes = np.asarray(sorted(scan.classes)) if len(scan.classes) <= MAX_CLASSES else None
    data = build_tabular(held, cfg, seed, indices, classes=classes)  # type: ignore[arg-type]
    stream = TrainStream(
        shards,
        tuple(scan.offsets),
        tuple(scan.columns),
        cfg,
        split_seed,
        data.schema,
        dict(scan.counts),
    )
    rule = {
        "method": "hash",
        "by": cfg.split.by or "row position",
        "seed": split_seed,
        "streamed": {"rows": dict(scan.counts), "held": held_n, "shards": len(shards.files)},
    }
    return dataclasses.replace(
        data, stream=stream, split_rule=rule, notes=(*data.notes, _note(scan, held_n, shards))
    )


def _check_settings(cfg: DataConfig) -> None:
    """Refuse what a stream cannot do (each needs the whole table at once)."""
    refused = {
        "data.limit": cfg.limit is not None,
        "data.split.train_fraction": cfg.split.train_fraction < 1,
        "data.split.time": cfg.split.time is not None,
        "data.text_column": cfg.text_column is not None,
    }
    for key, is_set in refused.items():
        if is_set:
            raise DataError(
                f"{key} does not apply to data.stream (it needs the whole table in memory); "
                "remove it, or set data.stream: false."
            )
    if cfg.split.order not in ("auto", "hash"):
        raise DataError(
            f"data.stream splits by a hash of each row's key; data.split.order: "
            f"{cfg.split.order} needs the whole table. Set data.split.order: hash (or remove it)."
        )


def _scan(shards: Shards, cfg: DataConfig, split_seed: int, seed: int) -> _Scan:
    """One pass: each split's row count and sample, the shards' offsets and the classes."""
    rngs = np.random.default_rng([seed, 1]).spawn(3)
    sizes = (cfg.stream_sample, cfg.stream_holdout, cfg.stream_holdout)
    scan = _Scan({n: BottomK(k, r) for n, k, r in zip(("train", "val", "test"), sizes, rngs)})
    offset = 0
    for file in shards.files:
        scan.offsets.append(offset)
        one = Shards(shards.kind, [file], shards.location)
        expected = scan.columns or None
        for frame in stream_table(one, cfg, None, expected, cfg.stream_buffer, allow_empty=True):
            if not scan.columns:
                scan.columns = [str(c) for c in frame.columns]
                pick_target(frame, cfg.target, cfg.source)
            frame.index = frame.index + offset
            codes = _codes(frame, cfg, split_seed)
            for code, name in ((TRAIN, "train"), (VAL, "val"), (TEST, "test")):
                part = frame[codes == code]
                scan.counts[name] += len(part)
                scan.samples[name].add(part)
            _collect_classes(scan, frame[cfg.target])
        offset += _shard_rows(scan)
    return scan


def _shard_rows(scan: _Scan) -> int:
    """Rows seen so far minus the offset of the shard just read: that shard's rows."""
    return sum(scan.counts.values()) - scan.offsets[-1]


def _collect_classes(scan: _Scan, target: pd.Series) -> None:
    """The target's distinct values, so a class no held row has is still a class; past
    MAX_CLASSES the target is not a class label and collecting stops."""
    if len(scan.classes) <= MAX_CLASSES:
        scan.classes.update(target.dropna().unique().tolist())


def _codes(frame: pd.DataFrame, cfg: DataConfig, split_seed: int) -> np.ndarray:
    by = cfg.split.by
    if by is not None and by not in frame.columns:
        raise DataError(f"data.split.by names {by!r}, not a column of {cfg.source}.")
    groups = frame[by] if by is not None else None
    positions = frame.index.to_numpy()
    return split_codes(positions, groups, split_seed, cfg.split.val, cfg.split.test)


def _note(scan: _Scan, held: dict[str, int], shards: Shards) -> str:
    n = scan.counts
    return (
        f"streamed {sum(n.values()):,} rows from {len(shards.files)} shard(s), split by a hash "
        f"of each row's key: {n['train']:,} train (preprocessing fitted on a uniform sample of "
        f"{held['train']:,}), validation {held['val']:,} of {n['val']:,} held, test "
        f"{held['test']:,} of {n['test']:,} held"
    )
