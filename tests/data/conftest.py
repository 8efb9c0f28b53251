"""Helpers for the data tests: configs, tiny files written into tmp_path, finding split rows."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from gradwise.config import DataConfig
from gradwise.data.tabular import TabularPreprocessor


def data_config(source: str, **fields: Any) -> DataConfig:
    """A DataConfig as a YAML file would give it (nested sections as dicts)."""
    return DataConfig.model_validate({"source": source, **fields})


def row_ids(x: torch.Tensor, prep: TabularPreprocessor, column: str = "id") -> np.ndarray:
    """The raw integer ids of a tabular split's rows, undoing the standardisation of `column`."""
    j = prep.numeric.index(column)
    raw = x[:, j].double().numpy() * prep.stds[j] + prep.means[j]
    return np.rint(raw).astype(int)


def matching_rows(split_x: torch.Tensor, all_x: np.ndarray) -> np.ndarray:
    """For each row of split_x, the index of the identical row of all_x (rows must be unique)."""
    index = {row.tobytes(): i for i, row in enumerate(all_x)}
    assert len(index) == len(all_x), "rows are not unique"
    return np.array([index[row.tobytes()] for row in split_x.numpy()])


def idx_bytes(array: np.ndarray, type_code: int = 0x08) -> bytes:
    """An idx file: magic (0, 0, type, ndim), big-endian int32 dims, big-endian data."""
    dtype = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    header = bytes([0, 0, type_code, array.ndim])
    dims = b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + dims + array.astype(dtype[type_code]).tobytes()


def write_idx(prefix: Path, x: np.ndarray, y: np.ndarray, compress: bool) -> None:
    """PREFIX-images-idx3-ubyte[.gz] and PREFIX-labels-idx1-ubyte[.gz], as MNIST ships them."""
    for stem, array in (("images-idx3-ubyte", x), ("labels-idx1-ubyte", y)):
        raw = idx_bytes(array)
        if compress:
            Path(f"{prefix}-{stem}.gz").write_bytes(gzip.compress(raw))
        else:
            Path(f"{prefix}-{stem}").write_bytes(raw)


def write_image_folder(
    root: Path, n_per_class: int, size: int, mode: str = "L", seed: int = 0
) -> dict[str, list[np.ndarray]]:
    """root/<class>/<i>.png with random pixels; returns the pixels written, by class."""
    rng = np.random.default_rng(seed)
    shape = (size, size) if mode == "L" else (size, size, 3)
    written: dict[str, list[np.ndarray]] = {}
    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        written[name] = []
        for i in range(n_per_class):
            pixels = rng.integers(0, 256, shape, dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:02d}.png")
            written[name].append(pixels)
    return written
