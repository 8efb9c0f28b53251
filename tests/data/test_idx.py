"""The MNIST idx format: plain and gzip, every element type, clear errors for broken files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from gradwise.data.images import read_idx, read_idx_file
from gradwise.data.readers import load_labelled, read_inputs
from gradwise.data.sources import load_dataset
from gradwise.errors import DataError
from tests.data.conftest import data_config, idx_bytes, matching_rows, write_idx
from tests.shared import need_shared


def _digits(n: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 5, 4), dtype=np.uint8), np.arange(n, dtype=np.uint8) % 3


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_images_and_labels_are_read_back_exactly(tmp_path: Path, compress: bool):
    x, y = _digits()
    write_idx(tmp_path / "train", x, y, compress)
    images, labels = read_idx(str(tmp_path / "train"))
    assert images.shape == (30, 1, 5, 4) and images.dtype == np.uint8
    assert np.array_equal(images[:, 0], x)
    assert labels.dtype == np.int64 and labels.tolist() == y.tolist()


@pytest.mark.parametrize(
    ("type_code", "values"),
    [
        (0x09, np.array([-128, -1, 0, 127])),
        (0x0B, np.array([-30000, -1, 2, 30000])),
        (0x0C, np.array([-(2**31), -1, 70000, 2**31 - 1])),
        (0x0D, np.array([-1.5, 0.0, 3.25, 1e30])),
        (0x0E, np.array([-1.5, 0.0, 1e-300, 1e300])),
    ],
    ids=["int8", "int16", "int32", "float32", "float64"],
)
def test_every_idx_element_type_is_big_endian(tmp_path: Path, type_code: int, values: np.ndarray):
    (tmp_path / "v").write_bytes(idx_bytes(values.reshape(2, 2), type_code))
    read = read_idx_file(tmp_path / "v")
    assert read.shape == (2, 2)
    assert read.ravel().tolist() == pytest.approx(values.tolist())


def test_idx_source_gives_an_image_dataset(tmp_path: Path):
    x, y = _digits(60)
    write_idx(tmp_path / "t10k", x, y, compress=True)
    data = load_dataset(data_config(f"idx:{tmp_path / 't10k'}"), seed=0)
    schema = data.schema
    assert (schema.kind, schema.task, schema.input_shape) == ("image", "classification", [1, 5, 4])
    assert schema.classes == [0, 1, 2]
    rows = matching_rows(data.train.x, schema.transform(x[:, None]))
    assert schema.array.mean == pytest.approx([x[rows].mean()])
    assert torch.equal(data.train.y, torch.from_numpy(y[rows].astype(np.int64)))


def test_load_labelled_and_read_inputs_take_an_idx_prefix(tmp_path: Path):
    x, y = _digits(30)
    write_idx(tmp_path / "train", x, y, compress=False)
    new_x, new_y = _digits(6, seed=1)
    write_idx(tmp_path / "new", new_x, new_y, compress=True)
    cfg = data_config(f"idx:{tmp_path / 'train'}")
    schema = load_dataset(cfg, seed=0).schema
    split = load_labelled(f"idx:{tmp_path / 'new'}", schema, cfg)
    assert torch.equal(split.x, torch.from_numpy(schema.transform(new_x[:, None])))
    assert split.y.tolist() == new_y.tolist()
    assert np.array_equal(read_inputs(f"idx:{tmp_path / 'new'}", schema)[:, 0], new_x)


def test_real_mnist_test_set_reads_whole():
    need_shared("mnist", "t10k-images-idx3-ubyte.gz")
    images, labels = read_idx(str(need_shared("mnist") / "t10k"))
    assert images.shape == (10000, 1, 28, 28)
    assert sorted(set(labels.tolist())) == list(range(10))
    assert images.max() == 255 and images.min() == 0


def test_missing_idx_files_name_the_prefix(tmp_path: Path):
    with pytest.raises(DataError, match=f"No idx file {tmp_path / 'mnist'}-images-idx3-ubyte"):
        load_dataset(data_config(f"idx:{tmp_path / 'mnist'}"), seed=0)


def test_bad_magic_number_is_refused(tmp_path: Path):
    (tmp_path / "f").write_bytes(b"\x89PNG" + bytes(20))
    with pytest.raises(DataError, match="is not an idx file \\(bad magic number\\)"):
        read_idx_file(tmp_path / "f")
    (tmp_path / "g").write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="bad magic number"):
        read_idx_file(tmp_path / "g")


@pytest.mark.parametrize("type_code", [0x08, 0x0C], ids=["uint8", "int32"])
def test_truncated_data_is_refused(tmp_path: Path, type_code: int):
    raw = idx_bytes(np.arange(24).reshape(2, 3, 4), type_code)
    (tmp_path / "f").write_bytes(raw[:-3])
    with pytest.raises(DataError, match=r"truncated or corrupt: header says shape \[2, 3, 4\]"):
        read_idx_file(tmp_path / "f")


def test_truncated_header_is_refused(tmp_path: Path):
    (tmp_path / "f").write_bytes(idx_bytes(np.zeros((2, 3, 4)))[:9])
    with pytest.raises(DataError, match="header of 3 dimensions is cut off"):
        read_idx_file(tmp_path / "f")


def test_cut_off_or_corrupt_gzip_is_refused(tmp_path: Path):
    packed = gzip.compress(idx_bytes(np.random.default_rng(0).integers(0, 256, (50, 8, 8))))
    (tmp_path / "cut.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(DataError, match="Cannot read idx file .*cut.gz"):
        read_idx_file(tmp_path / "cut.gz")
    (tmp_path / "bad.gz").write_bytes(packed[:10] + b"garbage" * 10)
    with pytest.raises(DataError, match="Cannot read idx file .*bad.gz"):
        read_idx_file(tmp_path / "bad.gz")


def test_images_and_labels_that_disagree_are_refused(tmp_path: Path):
    x, y = _digits(10)
    write_idx(tmp_path / "t", x, y[:9], compress=False)
    with pytest.raises(DataError, match=r"idx files disagree: images \(10, 5, 4\), labels \(9,\)"):
        read_idx(str(tmp_path / "t"))
