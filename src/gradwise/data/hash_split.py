"""Splits by a stable hash: each row's split depends on its own key and the seed alone.

A shuffled split needs every row at once; a hash split does not, so a table read whole and the
same table streamed in batches (`data.stream`) put exactly the same rows in each split. The key
is the row's `data.split.by` group (every row of a group lands in one split) or its position in
the table. The fractions hold in expectation: with n rows, the validation count is binomial
(n, val), so its relative spread is about 1/sqrt(n * val) (1% at 100,000 rows).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TRAIN, VAL, TEST = 0, 1, 2
_MASK = np.uint64(0xFFFFFFFFFFFFFFFF)


def split_codes(
    positions: np.ndarray, groups: pd.Series | None, seed: int, val: float, test: float
) -> np.ndarray:
    """Each row's split (TRAIN, VAL or TEST, int8) from its key hashed with the seed.

    Args:
        positions: the rows' positions in the whole table (the key without groups).
        groups: the rows' `data.split.by` values; their string form is hashed, so 7 and 7.0
            (an integer column read with gaps) are the same group.
    """
    if groups is not None:
        text = groups.astype(object).map(_group_text)
        keys = pd.util.hash_pandas_object(text, index=False).to_numpy(dtype=np.uint64)
    else:
        keys = np.asarray(positions, dtype=np.uint64)
    u = _unit(_mix(keys ^ _mix(np.full(1, seed, dtype=np.uint64))))
    codes = np.full(len(u), TRAIN, dtype=np.int8)
    codes[u < val + test] = VAL
    codes[u < test] = TEST
    return codes


def hash_indices(
    n: int, groups: pd.Series | None, seed: int, val: float, test: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The train, val and test positions of n rows under `split_codes`."""
    codes = split_codes(np.arange(n), groups, seed, val, test)
    return tuple(np.flatnonzero(codes == c) for c in (TRAIN, VAL, TEST))  # type: ignore[return-value]


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit moves every output bit (a bijection on 64
    bits), so consecutive positions get unrelated hashes."""
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK
        return z ^ (z >> np.uint64(31))


def _unit(z: np.ndarray) -> np.ndarray:
    """The top 53 bits of each hash as a float in [0, 1)."""
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _group_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
