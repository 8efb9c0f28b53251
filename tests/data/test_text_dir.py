"""text:DIR: a folder with a subfolder per class is labelled text; any other folder is one
corpus of its files."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradwise.data.sources import load_dataset, source_hash
from gradwise.data.text import read_text_source
from gradwise.errors import DataError
from tests.data.conftest import data_config

SPLIT = {"val": 0.2, "test": 0.2}


def _reviews(root: Path, n: int = 20) -> Path:
    for label, word in (("pos", "great fine good"), ("neg", "awful bad dull")):
        (root / label).mkdir(parents=True)
        for i in range(n):
            (root / label / f"cv{i:03d}.txt").write_text(f"{word} film number {i}\n")
    (root / "pos" / ".hidden").write_text("not a review")
    return root


def test_class_subfolders_become_labelled_texts(tmp_path: Path):
    data = load_dataset(data_config(f"text:{_reviews(tmp_path / 'r')}", split=SPLIT), seed=0)
    assert data.schema.task == "classification"
    assert data.schema.target.classes == ["neg", "pos"]
    assert len(data.train) + len(data.val) + len(data.test) == 40  # the hidden file skipped


def test_the_limit_takes_files_from_the_classes_in_turn(tmp_path: Path):
    frame = read_text_source(_reviews(tmp_path / "r"), limit=6)
    assert list(frame["label"]) == ["neg", "pos"] * 3
    assert frame["text"][1] == "great fine good film number 0\n"


def test_a_folder_of_plain_files_is_one_corpus_in_name_order(tmp_path: Path):
    (tmp_path / "b.txt").write_text("second")
    (tmp_path / "a.txt").write_text("first")
    assert read_text_source(tmp_path, None) == "first\n\nsecond"
    (tmp_path / "c.txt").write_text("abcdefgh " * 300)
    data = load_dataset(data_config(f"text:{tmp_path}", block_size=16), seed=0)
    assert data.schema.task == "lm"


def test_the_folder_hash_changes_with_a_file(tmp_path: Path):
    root = _reviews(tmp_path / "r", n=3)
    before = source_hash(f"text:{root}")
    (root / "neg" / "cv000.txt").write_text("changed")
    assert source_hash(f"text:{root}") != before


def test_an_empty_or_missing_folder_says_so(tmp_path: Path):
    with pytest.raises(DataError, match="holds no text files"):
        read_text_source(tmp_path, None)
    with pytest.raises(DataError, match="not found; check data.source"):
        read_text_source(tmp_path / "nope", None)
    (tmp_path / "x.txt").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(DataError, match="x.txt is not UTF-8"):
        read_text_source(tmp_path, None)
