"""Samples that would cross splits, found cheaply by hashing: exact copies (tables, images,
texts, windows) and overlapping windows (one window's steps a shifted copy of another's).

    sample_keys(raw)             a 64-bit key per sample; equal samples, equal keys
    window_blocks(x)             keys of every run of `block` consecutive steps of each window
    overlapping_windows(blocks)  which windows share a run of steps with another window
    cross_split(...)             held-out samples with a copy or an overlap in training

No model is needed: the keys come from the raw samples, so the split can be judged before
any training. Near copies in the model's own view (cosine of embeddings) are the audit's
data-quality check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

_PRIME = np.uint64(1099511628211)  # FNV-1a's 64-bit prime: spreads the rolling hash of ids


def sample_keys(raw: Any) -> np.ndarray:
    """(N,) uint64: one key per sample, equal for equal samples.

    Args:
        raw: a DataFrame (one sample a row; text cells are compared case- and
            space-insensitively), or an array whose first axis is the samples.
    """
    if isinstance(raw, pd.DataFrame):
        frame = raw.reset_index(drop=True)
        text = [c for c in frame.columns if frame[c].dtype.kind not in "iufbMm"]
        if text:
            frame = frame.assign(**{c: _normalised_text(frame[c]) for c in text})
        return pd.util.hash_pandas_object(frame, index=False).to_numpy().astype(np.uint64)
    arr = np.asarray(raw)
    if arr.dtype.kind not in "iufb":
        return pd.util.hash_array(arr.reshape(len(arr), -1)[:, 0].astype(str)).astype(np.uint64)
    return _content_hash(arr.reshape(len(arr), -1))


def _content_hash(rows: np.ndarray) -> np.ndarray:
    """(N,) uint64 hash of each row's bytes (splitmix64 over 8-byte words): the same row
    gives the same key in any call, so keys of different splits can be compared."""
    if rows.dtype.kind == "f":
        rows = rows + 0.0  # -0.0 and 0.0 are one value
    data = np.ascontiguousarray(rows).view(np.uint8).reshape(len(rows), -1)
    if data.shape[1] % 8:
        data = np.pad(data, ((0, 0), (0, 8 - data.shape[1] % 8)))
    words = np.ascontiguousarray(data).view(np.uint64)
    h = np.full(len(rows), 0xCBF29CE484222325, dtype=np.uint64)
    with np.errstate(over="ignore"):  # the mix wraps modulo 2**64 on purpose
        for j in range(words.shape[1]):
            h = _mix(h ^ words[:, j])
    return h


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _normalised_text(col: pd.Series) -> pd.Series:
    text = col.astype(object).where(col.notna(), "").astype(str)
    return text.str.casefold().str.split().str.join(" ")


def _ids(rows: np.ndarray) -> np.ndarray:
    """(N,) int64 ids of the rows of a 2-D array: equal rows, equal ids."""
    rows = np.ascontiguousarray(rows)
    if rows.dtype.kind == "f":
        rows = rows + 0.0  # -0.0 and 0.0 are one value
    void = rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()
    _, inverse = np.unique(void, return_inverse=True)
    return inverse.astype(np.int64)


def block_length(steps: int) -> int:
    """Steps two windows must share, in order, to count as overlapping: half a window."""
    return max(2, (steps + 1) // 2)


def window_blocks(x: np.ndarray) -> np.ndarray:
    """(N, T - b + 1) uint64 keys of every run of b = `block_length(T)` consecutive steps of
    each window of x (N, T, F); a run whose steps are all equal (padding, a flat signal) gets
    key 0, which never counts as shared."""
    n, steps = x.shape[:2]
    b = block_length(steps)
    ids = _ids(x.reshape(n * steps, -1)).reshape(n, steps)
    salt = np.random.default_rng(0).integers(1, 2**63, size=int(ids.max()) + 1, dtype=np.uint64)
    h = salt[ids]  # (N, T): each step's random 64-bit code
    n_blocks = steps - b + 1
    key = np.zeros((n, n_blocks), dtype=np.uint64)
    with np.errstate(over="ignore"):  # the hash wraps modulo 2**64 on purpose
        for j in range(b):
            key = key * _PRIME + h[:, j : j + n_blocks]
    flat = np.lib.stride_tricks.sliding_window_view(ids, b, axis=1)  # (N, n_blocks, b)
    key[(flat == flat[..., :1]).all(axis=-1)] = 0
    return key


def overlapping_windows(blocks: np.ndarray) -> np.ndarray:
    """(N,) bool: the windows that share a run of steps with another window."""
    n, n_blocks = blocks.shape
    owner = np.repeat(np.arange(n), n_blocks)
    flat = blocks.ravel()
    order = np.argsort(flat, kind="stable")
    keys, owners = flat[order], owner[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    low = np.minimum.reduceat(owners, starts)
    high = np.maximum.reduceat(owners, starts)
    shared_key = (low != high) & (keys[starts] != 0)
    shared = np.repeat(shared_key, np.diff(np.r_[starts, len(keys)]))
    found = np.zeros(n, dtype=bool)
    found[owners[shared]] = True
    return found


@dataclass(frozen=True)
class Crossing:
    """Held-out samples with a copy (or an overlapping window) among the training samples.

    Attributes:
        kind: "exact copies" or "overlapping windows".
        held: per held-out split (val, test), the positions (into the source's samples) of
            the samples that cross, in order.
        train_match: per held-out split, a training position each crossing sample matches.
        n_held: how many samples the held-out splits hold together.
    """

    kind: str
    held: dict[str, np.ndarray]
    train_match: dict[str, np.ndarray]
    n_held: int

    @property
    def n(self) -> int:
        return int(sum(len(v) for v in self.held.values()))

    @property
    def share(self) -> float:
        return self.n / max(self.n_held, 1)

    def to_dict(self, limit: int = 10) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "n": self.n,
            "share": round(self.share, 6),
            **{f"n_{name}": len(rows) for name, rows in self.held.items()},
            "examples": [
                {"split": name, "row": int(r), "train_row": int(t)}
                for name, rows in self.held.items()
                for r, t in list(zip(rows, self.train_match[name]))[:limit]
            ][:limit],
        }


def cross_split(
    keys: np.ndarray, splits: dict[str, np.ndarray], kind: str = "exact copies"
) -> Crossing:
    """The val and test samples whose key (or any block key, for 2-D keys from
    `window_blocks`) also belongs to a training sample.

    Args:
        keys: (N,) sample keys, or (N, n_blocks) window block keys (key 0 never matches).
        splits: the positions of each split's samples: train, val and test.
    """
    keys2 = keys.reshape(len(keys), -1)
    train = splits["train"]
    train_keys = keys2[train].ravel()
    first_train = dict(zip(train_keys.tolist()[::-1], np.repeat(train, keys2.shape[1])[::-1]))
    first_train.pop(0, None)
    held, match = {}, {}
    for name in ("val", "test"):
        part = keys2[splits[name]]
        hit = np.isin(part, train_keys) & (part != 0)
        crossing = hit.any(axis=1)
        held[name] = splits[name][crossing]
        match[name] = np.array(
            [first_train[int(row[h][0])] for row, h in zip(part[crossing], hit[crossing])],
            dtype=np.int64,
        )
    n_held = len(splits["val"]) + len(splits["test"])
    return Crossing(kind=kind, held=held, train_match=match, n_held=n_held)
