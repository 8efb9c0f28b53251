"""Text corpora for language models: a character or byte vocabulary fitted on the training text."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from gradwise.errors import DataError

UNKNOWN = "\ufffd"


@dataclass(frozen=True)
class Tokenizer:
    """Characters (vocabulary from the training text) or raw UTF-8 bytes (always 256 ids).

    Attributes:
        kind: "char" or "byte".
        chars: the character vocabulary; id 0 is the stand-in for unseen characters.
    """

    kind: Literal["char", "byte"]
    chars: list[str] | None = None

    @staticmethod
    def fit(text: str, kind: Literal["char", "byte"]) -> Tokenizer:
        if kind == "byte":
            return Tokenizer(kind="byte")
        return Tokenizer(kind="char", chars=[UNKNOWN, *sorted(set(text) - {UNKNOWN})])

    @property
    def vocab_size(self) -> int:
        return 256 if self.kind == "byte" else len(self.chars or [])

    def encode(self, text: str) -> np.ndarray:
        if self.kind == "byte":
            return np.frombuffer(text.encode("utf-8"), dtype=np.uint8).astype(np.int64)
        index = {c: i for i, c in enumerate(self.chars or [])}
        return np.array([index.get(c, 0) for c in text], dtype=np.int64)

    def decode(self, ids: list[int] | np.ndarray) -> str:
        if self.kind == "byte":
            return bytes(int(i) for i in ids).decode("utf-8", errors="replace")
        chars = self.chars or []
        return "".join(chars[int(i)] for i in ids)


def read_text(path: Path, limit: int | None) -> str:
    if not path.is_file():
        raise DataError(f"Text file {path} not found; check data.source.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text; convert it or use another source.") from None
    if limit is not None:
        text = text[:limit]
    return text


def windows(ids: np.ndarray, block_size: int) -> np.ndarray:
    """Non-overlapping (block_size + 1)-token windows; input = w[:, :-1], target = w[:, 1:]."""
    n = (len(ids) - 1) // block_size
    if n < 1:
        raise DataError(
            f"The text is {len(ids)} tokens long, too short for windows of data.block_size="
            f"{block_size}; use a longer text or a smaller block_size."
        )
    starts = np.arange(n) * block_size
    return ids[starts[:, None] + np.arange(block_size + 1)]
