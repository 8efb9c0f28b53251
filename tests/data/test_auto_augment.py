"""data.augment: auto shifts a CNN's small set of images (12 pixels a side or more) and leaves
everything else alone; the choice is written into the run's config.yaml and said in train.log."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import gradwise
from gradwise.config import load_config
from gradwise.data.augment import SMALL_IMAGE_SET, auto_augment
from gradwise.errors import ConfigError
from tests.conftest import tiny_config


def _cnn_run(tmp_path: Path, source: str, **data: object) -> tuple[list[dict], str]:
    """The augmentations a 1-epoch CNN run's config.yaml holds, and its train.log."""
    cfg = tiny_config(
        data={"source": source, **data},
        model={"arch": "cnn", "channels": [4], "convs_per_block": 1},
        train={"epochs": 1, "diagnostics": False},
    )
    gradwise.train(cfg, out=tmp_path / "run")
    saved = load_config(tmp_path / "run" / "config.yaml")
    assert saved.data.augment != "auto"
    augments = [a.model_dump() for a in saved.data.augment]
    return augments, (tmp_path / "run" / "train.log").read_text()


def _images_12px(tmp_path: Path) -> str:
    rng = np.random.default_rng(0)
    x = rng.random((120, 1, 12, 12)).astype(np.float32)
    np.savez(tmp_path / "small.npz", X=x, y=np.arange(120) % 2)
    return f"npz:{tmp_path / 'small.npz'}"


def test_auto_shifts_a_cnns_small_image_set_and_says_so(tmp_path: Path):
    augments, log = _cnn_run(tmp_path, _images_12px(tmp_path))
    assert augments == [{"name": "shift", "pixels": 1}]
    assert "data.augment: auto chose [{name: shift, pixels: 1}]" in log


def test_a_given_empty_list_turns_it_off(tmp_path: Path):
    augments, log = _cnn_run(tmp_path, _images_12px(tmp_path), augment=[])
    assert augments == []
    assert "data.augment: auto" not in log


def test_auto_leaves_8x8_digits_unshifted(tmp_path: Path):
    augments, log = _cnn_run(tmp_path, "builtin:digits")
    assert augments == []
    assert "data.augment: auto" not in log


def test_auto_leaves_large_sets_other_models_and_regression_alone():
    small, mnist = SMALL_IMAGE_SET - 1, (1, 28, 28)
    assert auto_augment("auto", "cnn", "image", "classification", small, mnist)[0][0].pixels == 2
    untouched = ([], None)
    assert auto_augment("auto", "cnn", "image", "classification", SMALL_IMAGE_SET, mnist) == (
        untouched
    )
    assert auto_augment("auto", "mlp", "image", "classification", small, mnist) == untouched
    assert auto_augment("auto", "cnn", "image", "regression", small, mnist) == untouched
    assert auto_augment("auto", "cnn", "tabular", "classification", small, (64,)) == untouched


def test_a_word_other_than_auto_is_refused_with_the_forms_that_work():
    for bad in ("foo", 7):
        with pytest.raises(ConfigError, match=r"data.augment must be auto, \[\] \(none\) or"):
            load_config({"data": {"augment": bad}})
