"""npz arrays: tables, sequences and images; per-channel statistics from train; bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gradwise.data.arrays import ArrayNormaliser
from gradwise.data.readers import load_labelled, read_inputs
from gradwise.data.sources import load_dataset
from gradwise.errors import DataError
from tests.data.conftest import data_config, matching_rows

SPLIT = {"val": 0.2, "test": 0.2}


def _save(path: Path, **arrays: np.ndarray) -> str:
    np.savez(path, **arrays)
    return f"npz:{path}"


def _labels(n: int) -> np.ndarray:
    return np.arange(n) % 3


@pytest.mark.parametrize(
    ("shape", "kind", "channel_axis"),
    [((60, 5), "tabular", -1), ((60, 4, 3), "sequence", -1), ((60, 2, 5, 5), "image", 1)],
)
def test_arrays_are_standardised_per_channel_with_train_statistics(
    tmp_path: Path, shape: tuple[int, ...], kind: str, channel_axis: int
):
    x = np.random.default_rng(0).normal(3.0, 2.0, shape).astype(np.float32)
    y = _labels(len(x))
    clean = load_dataset(data_config(_save(tmp_path / "a.npz", X=x, y=y), split=SPLIT), seed=0)
    test_rows = matching_rows(clean.test.x, clean.schema.transform(x))
    x[test_rows] += 1000.0  # outliers only in the test samples

    data = load_dataset(data_config(_save(tmp_path / "a.npz", X=x, y=y), split=SPLIT), seed=0)
    schema = data.schema
    assert (schema.kind, schema.input_shape) == (kind, list(shape[1:]))
    assert schema.array.channel_axis == channel_axis
    all_x = schema.transform(x)
    rows = [matching_rows(split.x, all_x) for split in (data.train, data.val, data.test)]
    assert sorted(np.concatenate(rows)) == list(range(len(x)))  # each sample in one split
    assert sorted(rows[2]) == sorted(test_rows)
    channels = np.moveaxis(x[rows[0]].astype(np.float64), channel_axis, -1)
    channels = channels.reshape(-1, channels.shape[-1])
    assert schema.array.mean == pytest.approx(channels.mean(axis=0).tolist())
    assert schema.array.std == pytest.approx(channels.std(axis=0).tolist())
    for split, idx in zip((data.train, data.val, data.test), rows):
        assert torch.equal(split.y, torch.from_numpy(y[idx]))


def test_a_constant_channel_keeps_unit_std(tmp_path: Path):
    x = np.zeros((30, 3), dtype=np.float32)
    x[:, 0] = np.arange(30)
    data = load_dataset(data_config(_save(tmp_path / "a.npz", X=x, y=_labels(30))), seed=0)
    assert data.schema.array.std[1:] == [1.0, 1.0]
    assert torch.isfinite(data.train.x).all()


def test_lowercase_x_and_column_y_are_accepted(tmp_path: Path):
    x = np.random.default_rng(0).normal(size=(30, 4))
    source = _save(tmp_path / "a.npz", x=x, y=_labels(30)[:, None])
    data = load_dataset(data_config(source), seed=0)
    assert data.schema.classes == [0, 1, 2]
    assert data.train.y.ndim == 1


def test_float_targets_give_regression_with_several_outputs(tmp_path: Path):
    rng = np.random.default_rng(0)
    source = _save(tmp_path / "a.npz", X=rng.normal(size=(40, 4)), y=rng.normal(size=(40, 2)))
    data = load_dataset(data_config(source), seed=0)
    assert (data.schema.task, data.schema.n_outputs) == ("regression", 2)
    assert data.train.y.shape == (len(data.train), 2)


def test_targets_that_do_not_fit_the_task_are_refused(tmp_path: Path):
    x = np.random.default_rng(0).normal(size=(20, 3))
    source = _save(tmp_path / "a.npz", X=x, y=np.array(["cat", "dog"] * 10))
    with pytest.raises(DataError, match="holds labels \\(cat, dog, ...\\).*set data.task: class"):
        load_dataset(data_config(source, task="regression"), seed=0)
    source = _save(tmp_path / "b.npz", X=x, y=np.arange(40).reshape(20, 2) % 3)
    with pytest.raises(DataError, match=r"one label per sample, but y has shape \(20, 2\)"):
        load_dataset(data_config(source), seed=0)
    assert load_dataset(data_config(source, task="regression"), seed=0).schema.n_outputs == 2


def test_transform_accepts_one_sample_flattened_samples_and_grayscale_planes():
    x = np.random.default_rng(0).normal(size=(10, 1, 4, 4))
    norm = ArrayNormaliser.fit(x)
    batch = norm.transform(x)
    assert np.array_equal(norm.transform(x[3]), batch[3:4])
    assert np.array_equal(norm.transform(x.reshape(10, 16)), batch)
    assert np.array_equal(norm.transform(x[:, 0]), batch)
    with pytest.raises(DataError, match=r"shape \(5, 5\) per sample.*trained on \(1, 4, 4\)"):
        norm.transform(np.zeros((2, 5, 5)))
    with pytest.raises(DataError, match="NaN or infinite"):
        norm.transform(np.full((1, 1, 4, 4), np.nan))


def test_missing_x_or_y_is_named(tmp_path: Path):
    source = _save(tmp_path / "a.npz", features=np.zeros((3, 2)), y=np.zeros(3))
    with pytest.raises(DataError, match="arrays named X and y; found features, y"):
        load_dataset(data_config(source), seed=0)
    source = _save(tmp_path / "b.npz", X=np.zeros((3, 2)))
    with pytest.raises(DataError, match="arrays named X and y; found X"):
        load_dataset(data_config(source), seed=0)


def test_object_arrays_are_refused(tmp_path: Path):
    x = np.array([[1, "a"], [2, None]], dtype=object)
    source = _save(tmp_path / "a.npz", X=x, y=np.array([0, 1]))
    with pytest.raises(DataError, match="object \\(pickled\\) arrays, which are refused"):
        load_dataset(data_config(source), seed=0)


def test_files_that_are_not_npz_archives_are_refused(tmp_path: Path):
    np.save(tmp_path / "a.npy", np.zeros((3, 2)))
    with pytest.raises(DataError, match="must be an .npz archive.*found a single array"):
        load_dataset(data_config(f"npz:{tmp_path / 'a.npy'}"), seed=0)
    (tmp_path / "b.npz").write_text("x,y\n1,2\n")
    with pytest.raises(DataError, match="b.npz is not numpy data"):
        load_dataset(data_config(f"npz:{tmp_path / 'b.npz'}"), seed=0)
    np.savez(tmp_path / "c.npz", X=np.zeros((50, 50)), y=np.zeros(50))
    raw = (tmp_path / "c.npz").read_bytes()
    (tmp_path / "c.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="Cannot read .*c.npz as numpy data"):
        load_dataset(data_config(f"npz:{tmp_path / 'c.npz'}"), seed=0)


@pytest.mark.parametrize(
    ("x", "y", "message"),
    [
        (np.zeros(5), np.zeros(5), r"X has shape \(5,\); expected \(N, F\) table"),
        (np.zeros((5, 2)), np.zeros(4), "X has 5 samples but y has 4"),
        (
            np.array([[0.0, 1.0]] * 4 + [[np.inf, 0.0]]),
            np.zeros(5),
            "1 samples of X hold NaN or inf",
        ),
        (np.zeros((5, 2)), np.array([0.0, 1.0, np.nan, 1.0, 0.0]), "y has 1 NaN values"),
        (np.array([["a", "b"]] * 5), np.zeros(5), "X must be numeric"),
    ],
    ids=["1-d", "lengths", "nan-x", "nan-y", "strings"],
)
def test_bad_arrays_are_refused(tmp_path: Path, x: np.ndarray, y: np.ndarray, message: str):
    with pytest.raises(DataError, match=message):
        load_dataset(data_config(_save(tmp_path / "a.npz", X=x, y=y)), seed=0)


def test_load_labelled_npz_reuses_the_fitted_normaliser(tmp_path: Path):
    rng = np.random.default_rng(0)
    cfg = data_config(_save(tmp_path / "a.npz", X=rng.normal(size=(40, 3)), y=_labels(40)))
    schema = load_dataset(cfg, seed=0).schema
    new_x = rng.normal(100.0, 5.0, size=(7, 3))  # far from the training data: a refit would hide it
    new_y = np.array([2, 0, 1, 1, 0, 2, 2])
    split = load_labelled(_save(tmp_path / "new.npz", X=new_x, y=new_y[:, None]), schema, cfg)
    assert torch.equal(split.x, torch.from_numpy(schema.transform(new_x)))
    assert torch.equal(split.y, torch.from_numpy(new_y))
    assert split.x.mean() > 10


def test_load_labelled_refuses_labels_never_seen_in_training(tmp_path: Path):
    cfg = data_config(_save(tmp_path / "a.npz", X=np.random.rand(30, 2), y=_labels(30)))
    schema = load_dataset(cfg, seed=0).schema
    source = _save(tmp_path / "new.npz", X=np.random.rand(2, 2), y=np.array([0, 7]))
    with pytest.raises(DataError, match="Label 7 was not seen in training; known labels: 0, 1, 2"):
        load_labelled(source, schema, cfg)


def test_read_inputs_takes_x_from_npz_and_npy(tmp_path: Path):
    x = np.random.default_rng(0).normal(size=(4, 3))
    cfg = data_config(_save(tmp_path / "a.npz", X=np.random.rand(30, 3), y=_labels(30)))
    schema = load_dataset(cfg, seed=0).schema
    np.savez(tmp_path / "in.npz", X=x)
    np.save(tmp_path / "in.npy", x)
    assert np.array_equal(read_inputs(str(tmp_path / "in.npz"), schema), x)
    assert np.array_equal(read_inputs(str(tmp_path / "in.npy"), schema), x)
    np.savez(tmp_path / "other.npz", inputs=x)
    with pytest.raises(DataError, match="must hold an array named X; found inputs"):
        read_inputs(str(tmp_path / "other.npz"), schema)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match="refused"):
        read_inputs(str(tmp_path / "obj.npy"), schema)
