"""The in-memory dataset: three tensor splits, the schema that made them, and where each
sample came from in the source (so a split can be read back exactly)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from gradwise.artifacts import write_json
from gradwise.data.schema import Schema

if TYPE_CHECKING:
    from gradwise.data.stream_train import TrainStream

SPLITS = ("train", "val", "test")
SPLITS_FILE = "splits.json"


@dataclass(frozen=True)
class Split:
    """Model-ready tensors: x is preprocessed input, y is the encoded target."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class Dataset:
    """Train / val / test tensors with their schema.

    Attributes:
        notes: what preprocessing did (imputed values, dropped columns).
        rows: per split, each sample's position among the source's samples (table rows,
            array samples, text windows, series windows), in split order.
        raw: the source's samples as read, before preprocessing: a DataFrame (tables,
            labelled text), an array (arrays, images, raw series windows) or token windows
            (a corpus); `raw_rows` takes a split's part of it.
        split_rule: how the splits were drawn and what the leakage scan found
            (`gradwise.data.split.SplitResult.rule`); written to splits.json.
        fold_key: per source sample, what k-fold retrains must keep together or in order
            (`gradwise.data.split.SplitResult.fold_key`); None: samples are independent.
        stream: a table too big for memory (`data.stream`): training reads its rows epoch
            by epoch; `train` holds a uniform sample of them, `val` and `test` the held rows,
            and `raw` those rows indexed by their positions in the table.
    """

    train: Split
    val: Split
    test: Split
    schema: Schema
    notes: tuple[str, ...] = ()
    rows: dict[str, np.ndarray] = field(default_factory=dict)
    raw: Any = None
    split_rule: dict[str, Any] = field(default_factory=dict)
    fold_key: np.ndarray | None = None
    stream: TrainStream | None = None

    @property
    def n_train(self) -> int:
        """Training samples in the source: the stream's count, else the train split's."""
        return self.stream.n_train if self.stream is not None else len(self.train)

    def part(self, name: str) -> Split:
        return {"train": self.train, "val": self.val, "test": self.test}[name]

    def keep_train(self, positions: np.ndarray) -> Dataset:
        """The same data with only the training samples at `positions` (0-based positions
        within the training split, e.g. the folds of a k-fold retrain); val, test and the
        schema (fitted on the whole training split) stay. A streamed table's retrains train
        on its held training sample."""
        idx = torch.as_tensor(np.sort(np.asarray(positions, dtype=np.int64)))
        train = Split(self.train.x[idx].contiguous(), self.train.y[idx].contiguous())
        rows = {**self.rows, "train": self.rows["train"][idx.numpy()]} if self.rows else {}
        return dataclasses.replace(self, train=train, rows=rows, stream=None)

    def source_rows(self, name: str) -> np.ndarray:
        """Split `name`'s samples' positions in the source (`rows` index a streamed
        table's held rows; their positions in the table are the held frame's index)."""
        if self.stream is not None:
            return np.asarray(self.raw.index.to_numpy()[self.rows[name]], dtype=np.int64)
        return self.rows[name]

    def raw_rows(self, name: str) -> Any:
        """The raw samples of split `name`, in the order of its tensors."""
        idx = self.rows[name]
        if isinstance(self.raw, pd.DataFrame):
            return self.raw.iloc[idx].reset_index(drop=True)
        return self.raw[idx]

    def save_splits(self, run_dir: Path) -> None:
        """RUN/splits.json: the source, its content hash, the rule that drew the splits (and
        what its leakage scan found), and each split's row positions (a streamed table's:
        the positions of its held rows in the table)."""
        rows = {name: self.source_rows(name) for name in self.rows}
        write_json(
            run_dir / SPLITS_FILE,
            {
                "source": self.schema.source,
                "sha256": self.schema.sha256,
                "n_rows": int(sum(len(v) for v in rows.values())),
                "rule": self.split_rule,
                **{name: rows[name].tolist() for name in SPLITS},
            },
        )

    @staticmethod
    def from_arrays(
        x: np.ndarray,
        y: np.ndarray,
        idx: tuple[np.ndarray, np.ndarray, np.ndarray],
        schema: Schema,
        notes: tuple[str, ...] = (),
        raw: Any = None,
        split_rule: dict[str, Any] | None = None,
        fold_key: np.ndarray | None = None,
    ) -> Dataset:
        """Split preprocessed arrays of every sample by the row positions `idx`."""
        xt = torch.from_numpy(np.ascontiguousarray(x))
        yt = torch.from_numpy(np.ascontiguousarray(y))
        train, val, test = (
            Split(xt[i].contiguous(), yt[i].contiguous()) for i in map(torch.from_numpy, idx)
        )
        rows = {name: np.asarray(i, dtype=np.int64) for name, i in zip(SPLITS, idx)}
        return Dataset(
            train,
            val,
            test,
            schema=schema,
            notes=notes,
            rows=rows,
            raw=raw,
            split_rule=split_rule or {},
            fold_key=fold_key,
        )
