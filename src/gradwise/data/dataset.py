"""The in-memory dataset: three tensor splits and the schema that made them."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from gradwise.data.schema import Schema


@dataclass(frozen=True)
class Split:
    """Model-ready tensors: x is preprocessed input, y is the encoded target."""

    x: Tensor
    y: Tensor

    def __len__(self) -> int:
        return len(self.x)


@dataclass(frozen=True)
class Dataset:
    train: Split
    val: Split
    test: Split
    schema: Schema
    notes: tuple[str, ...] = ()  # what preprocessing did (imputed values, dropped columns)
