"""Image folders: DIR/<class>/<image>, colour and size handling, clear errors for bad folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gradwise.data.images import read_image_folder
from gradwise.data.readers import load_labelled, read_inputs
from gradwise.data.sources import load_dataset
from gradwise.errors import DataError
from tests.data.conftest import data_config, matching_rows, write_image_folder

SPLIT = {"val": 0.25, "test": 0.25}


def test_folder_pixels_and_labels_are_read_exactly(tmp_path: Path):
    written = write_image_folder(tmp_path, n_per_class=3, size=6, mode="L")
    x, y, color, size = read_image_folder(tmp_path, None, "auto")
    assert (color, size, x.shape, x.dtype) == ("gray", 6, (6, 1, 6, 6), np.uint8)
    assert y.tolist() == ["cat"] * 3 + ["dog"] * 3
    assert np.array_equal(x[:, 0], np.stack(written["cat"] + written["dog"]))


def test_rgb_images_are_read_channels_first(tmp_path: Path):
    written = write_image_folder(tmp_path, n_per_class=2, size=5, mode="RGB")
    x, _, color, _ = read_image_folder(tmp_path, None, "auto")
    assert color == "rgb" and x.shape == (4, 3, 5, 5)
    assert np.array_equal(x[0], written["cat"][0].transpose(2, 0, 1))
    gray, _, _, _ = read_image_folder(tmp_path, None, "gray")
    assert gray.shape == (4, 1, 5, 5)


def test_images_are_resized_to_image_size(tmp_path: Path):
    write_image_folder(tmp_path, n_per_class=2, size=12)
    x, _, _, size = read_image_folder(tmp_path, 6, "auto")
    assert size == 6 and x.shape == (4, 1, 6, 6)


def test_image_dataset_splits_are_the_transform_of_the_raw_pixels(tmp_path: Path):
    write_image_folder(tmp_path / "imgs", n_per_class=8, size=6, mode="RGB")
    data = load_dataset(data_config(f"images:{tmp_path / 'imgs'}", split=SPLIT), seed=0)
    schema = data.schema
    assert (schema.kind, schema.color, schema.image_size) == ("image", "rgb", 6)
    assert schema.classes == ["cat", "dog"] and schema.input_shape == [3, 6, 6]
    raw, names, _, _ = read_image_folder(tmp_path / "imgs", 6, "rgb")
    all_x = schema.transform(raw)
    rows = [matching_rows(s.x, all_x) for s in (data.train, data.val, data.test)]
    assert sorted(np.concatenate(rows)) == list(range(16))
    train = raw[rows[0]].astype(np.float64)
    assert schema.array.mean == pytest.approx(train.mean(axis=(0, 2, 3)).tolist())
    for split, idx in zip((data.train, data.val, data.test), rows):
        assert [schema.classes[i] for i in split.y] == names[idx].tolist()


def test_read_inputs_loads_one_image_or_a_folder_at_the_training_size(tmp_path: Path):
    write_image_folder(tmp_path / "imgs", n_per_class=4, size=6)
    schema = load_dataset(data_config(f"images:{tmp_path / 'imgs'}"), seed=0).schema
    big = np.random.default_rng(0).integers(0, 256, (12, 12), dtype=np.uint8)
    Image.fromarray(big).save(tmp_path / "one.png")
    one = read_inputs(str(tmp_path / "one.png"), schema)
    assert one.shape == (1, 1, 6, 6)
    assert read_inputs(str(tmp_path / "imgs"), schema).shape == (8, 1, 6, 6)
    assert schema.transform(one).shape == (1, 1, 6, 6)


def test_load_labelled_folder_uses_training_classes_and_statistics(tmp_path: Path):
    write_image_folder(tmp_path / "train", n_per_class=4, size=6, seed=0)
    write_image_folder(tmp_path / "new", n_per_class=2, size=6, seed=1)
    cfg = data_config(f"images:{tmp_path / 'train'}")
    schema = load_dataset(cfg, seed=0).schema
    split = load_labelled(f"images:{tmp_path / 'new'}", schema, cfg)
    raw, _, _, _ = read_image_folder(tmp_path / "new", 6, "gray")
    assert torch.equal(split.x, torch.from_numpy(schema.transform(raw)))
    assert split.y.tolist() == [0, 0, 1, 1]


def test_hidden_folders_are_not_classes(tmp_path: Path):
    write_image_folder(tmp_path, n_per_class=2, size=4)
    (tmp_path / ".ipynb_checkpoints").mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / ".ipynb_checkpoints" / "a.png")
    _, y, _, _ = read_image_folder(tmp_path, None, "auto")
    assert sorted(set(y)) == ["cat", "dog"]


def test_missing_folder_is_named(tmp_path: Path):
    with pytest.raises(DataError, match=f"Image folder {tmp_path / 'nope'} not found"):
        load_dataset(data_config(f"images:{tmp_path / 'nope'}"), seed=0)


def test_folder_without_images_says_what_it_expects(tmp_path: Path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "notes.txt").write_text("no images here")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "loose.png")  # not in a class
    with pytest.raises(DataError, match="No images found under .*one sub-folder per class"):
        read_image_folder(tmp_path, None, "auto")


def test_a_single_class_is_refused(tmp_path: Path):
    (tmp_path / "cat").mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "cat" / f"{i}.png")
    with pytest.raises(DataError, match="only one class; classification needs two or more"):
        read_image_folder(tmp_path, None, "auto")


@pytest.mark.parametrize("name", ["00.png", "99.png"], ids=["first-file", "later-file"])
@pytest.mark.parametrize("size", [None, 4])
def test_an_unreadable_image_is_named(tmp_path: Path, name: str, size: int | None):
    write_image_folder(tmp_path, n_per_class=2, size=4)
    bad = tmp_path / "cat" / name
    bad.write_bytes(b"this is not a png")
    with pytest.raises(DataError, match=f"Cannot read image {bad}.*Remove or replace the file"):
        read_image_folder(tmp_path, size, "auto")
