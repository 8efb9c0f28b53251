"""Tables bigger than memory: read in batches of rows, written batch by batch.

`predict`, `evaluate --data` and the samples of `audit --against` read a CSV or parquet table
given as a file, a folder of shards or a glob, one batch of at most `batch_rows` rows at a
time, so memory holds one batch, not the input. Each shard is read by the rules the in-memory
reader applies to a single file (`readers.csv_reading`: the training file's separator,
quoting, missing-value strings, column names and header setting), so a table streamed reads
the values the in-memory path reads, to the last digit.

CSV shards are parsed by pandas' reader in chunks, with the options of the in-memory reader:
pyarrow's CSV parser infers types its own way (a category "1.50" would read as 1.5), which
would change what the model sees. Parquet shards are scanned with pyarrow datasets.
"""

from __future__ import annotations

import contextlib
import csv
import glob
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from gradwise.artifacts import atomic_path
from gradwise.config import DataConfig
from gradwise.data.readers import check_header_row, csv_reading
from gradwise.errors import DataError

TableKind = Literal["csv", "parquet"]
_SUFFIXES: dict[str, TableKind] = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True)
class Shards:
    """A table as files of one kind, read in this order (sorted by name)."""

    kind: TableKind
    files: list[Path]
    location: str


def table_shards(location: str) -> Shards | None:
    """The files of a table given as KIND:PATH or a path: a .csv/.tsv/.parquet file, a folder
    holding such files (hidden files and _SUCCESS-style markers skipped), or a glob.

    Returns:
        None when `location` names no table (an image folder, an .npz file, a missing file):
        the in-memory readers handle those, with their own messages.

    Raises:
        DataError: a glob that matches no file, or shards of more than one kind.
    """
    forced, sep, rest = location.partition(":")
    kind: TableKind | None = None
    if sep and forced in ("csv", "parquet") and rest:
        kind, location = forced, rest  # type: ignore[assignment]
    path = Path(location)
    if glob.has_magic(location):
        files = sorted(Path(p) for p in glob.glob(location) if Path(p).is_file())
        if not files:
            raise DataError(f"{location} matches no file; check the pattern.")
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.name[0] not in "._")
        if kind is None:
            files = [p for p in files if p.suffix.lower() in _SUFFIXES]
        if not files:
            return None
    elif path.is_file() and (kind is not None or path.suffix.lower() in _SUFFIXES):
        files = [path]
    else:
        return None
    kinds = {kind} if kind is not None else {_SUFFIXES.get(p.suffix.lower()) for p in files}
    if len(kinds) != 1 or None in kinds:
        found = ", ".join(sorted({p.suffix or p.name for p in files}))
        raise DataError(
            f"{location} holds files of several kinds ({found}); give the shards of one "
            "table (all .csv or all .parquet), e.g. a glob such as DIR/*.parquet."
        )
    return Shards(kinds.pop(), files, location)  # type: ignore[arg-type]


def stream_table(
    shards: Shards,
    cfg: DataConfig,
    header: bool | None,
    expected: list[str] | None,
    batch_rows: int,
    allow_empty: bool = False,
) -> Iterator[pd.DataFrame]:
    """The table's rows in frames of exactly `batch_rows` rows (the last may hold fewer),
    indexed by row position in the whole table (0-based, across shards).

    Args:
        cfg: the run's data config (how its training file was read).
        header: whether each CSV's first row names the columns (None: as `csv_reading`).
        expected: the columns the run reads; a shard lacking one is refused by name.
        allow_empty: a table without rows yields nothing (one shard of many may be empty).

    Raises:
        DataError: a shard cannot be read (the message names it), lacks a column the run
            reads, or the table holds no rows.
    """
    n_rows = 0
    for frame in _rebatch(_shard_frames(shards, cfg, header, expected, batch_rows), batch_rows):
        frame.index = pd.RangeIndex(n_rows, n_rows + len(frame))
        n_rows += len(frame)
        yield frame
    if n_rows == 0 and not allow_empty:
        raise DataError(f"{shards.location} holds no rows.")


def _shard_frames(
    shards: Shards,
    cfg: DataConfig,
    header: bool | None,
    expected: list[str] | None,
    batch_rows: int,
) -> Iterator[pd.DataFrame]:
    """Each shard's rows, in pieces of at most `batch_rows`; a read error names the shard."""
    n = len(shards.files)
    for i, path in enumerate(shards.files, start=1):
        which = f" (shard {i} of {n})" if n > 1 else ""
        try:
            if shards.kind == "csv":
                yield from _csv_pieces(path, cfg, header, expected, batch_rows)
            else:
                yield from _parquet_pieces(path, expected, batch_rows)
        except (ValueError, OSError, pa.ArrowException) as exc:  # ParserError is a ValueError
            fix = "fix or remove that file" if n > 1 else "check the file"
            raise DataError(f"Cannot read {path}{which} as {shards.kind}: {exc}; {fix}.") from None


def _csv_pieces(
    path: Path,
    cfg: DataConfig,
    header: bool | None,
    expected: list[str] | None,
    batch_rows: int,
) -> Iterator[pd.DataFrame]:
    how = csv_reading(path, cfg, header, expected)
    reader = pd.read_csv(
        path,  # the options of `tabular.read_table`, so values parse the same way
        sep=how.separator or ",",
        quoting=csv.QUOTE_NONE if how.quoting == "none" else csv.QUOTE_MINIMAL,
        header=None if how.columns else "infer",
        names=how.columns,
        skipinitialspace=True,
        na_values=how.na_values or None,
        encoding="utf-8-sig",
        chunksize=batch_rows,
    )
    with reader:
        for i, piece in enumerate(reader):
            piece.columns = [str(c).strip() for c in piece.columns]
            if i == 0:
                check_header_row(piece, path, cfg, how, expected)
                _check_columns(list(piece.columns), path, expected)
            yield piece


def _parquet_pieces(
    path: Path, expected: list[str] | None, batch_rows: int
) -> Iterator[pd.DataFrame]:
    dataset = ds.dataset(path, format="parquet")
    _check_columns(dataset.schema.names, path, expected)
    # one batch read ahead keeps the disk busy while the model works, and memory at a batch
    # (plus the row group being decoded) rather than pyarrow's default of 16 batches; without
    # pre-buffering, which reads a file's column chunks ahead in bulk (it pays on object
    # stores, and took 1.7x the file's size in memory on a local disk)
    unbuffered = ds.ParquetFragmentScanOptions(pre_buffer=False)
    batches = dataset.to_batches(
        batch_size=batch_rows,
        batch_readahead=1,
        fragment_readahead=1,
        fragment_scan_options=unbuffered,
    )
    for batch in batches:
        if batch.num_rows:
            yield batch.to_pandas()


def _check_columns(names: list[str], path: Path, expected: list[str] | None) -> None:
    missing = [c for c in expected or [] if c not in names]
    if missing:
        raise DataError(
            f"{path} lacks the column(s) {', '.join(missing)} the run reads; every shard must "
            f"hold the training columns ({', '.join(expected or [])}). Columns found: "
            f"{', '.join(names)}."
        )


def _rebatch(pieces: Iterable[pd.DataFrame], batch_rows: int) -> Iterator[pd.DataFrame]:
    """Pieces of any size (shards end where they end) regrouped into frames of exactly
    `batch_rows` rows, the last one shorter: the caller's batches then start at fixed row
    positions, whatever the shard sizes."""
    held: list[pd.DataFrame] = []
    n_held = 0
    for piece in pieces:
        held.append(piece)
        n_held += len(piece)
        while n_held >= batch_rows:
            joined = pd.concat(held) if len(held) > 1 else held[0]
            yield joined.iloc[:batch_rows]
            rest = joined.iloc[batch_rows:]
            held, n_held = ([rest] if len(rest) else []), len(rest)
    if n_held:
        yield pd.concat(held) if len(held) > 1 else held[0]


def sample_rows(frames: Iterable[pd.DataFrame], n: int, rng: np.random.Generator) -> pd.DataFrame:
    """A uniform sample of at most `n` rows of a stream, without replacement, in the stream's
    order, holding at most `n` rows plus one batch (see `BottomK`). For `audit --against` and
    monitor replays over tables bigger than memory.

    Args:
        frames: the table's batches (`stream_table`), indexed by row position.
        rng: the source of the keys (the caller's seed).
    """
    sample = BottomK(n, rng)
    for frame in frames:
        sample.add(frame)
    return sample.rows()


class BottomK:
    """A uniform sample of at most `n` rows of a stream, without replacement: each row draws a
    uniform key and the `n` smallest keys win, so every subset of `n` rows is equally likely,
    as with a reservoir. Holds at most `n` rows plus the frame being added."""

    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self.n, self.rng = n, rng
        self.kept: pd.DataFrame | None = None
        self.keys = np.empty(0)

    def add(self, frame: pd.DataFrame) -> None:
        drawn = self.rng.random(len(frame))
        if self.kept is not None and len(self.kept) >= self.n:
            # a full sample keeps only keys below its largest: the rest never enter, and
            # leaving them out before joining saves copying the sample for every frame
            enter = drawn < self.keys.max() if self.n else np.zeros(len(frame), bool)
            frame, drawn = frame[enter], drawn[enter]
            if len(frame) == 0:
                return
        joined = frame if self.kept is None else pd.concat([self.kept, frame])
        keys = np.concatenate([self.keys, drawn])
        if len(joined) > self.n:
            best = np.argpartition(keys, self.n - 1)[: self.n] if self.n else np.empty(0, int)
            joined, keys = joined.iloc[best], keys[best]
        self.kept, self.keys = joined, keys

    def rows(self) -> pd.DataFrame:
        """The sample in the stream's order (by index: the rows' positions)."""
        if self.kept is None:
            return pd.DataFrame()
        order = np.argsort(self.kept.index.to_numpy(), kind="stable")
        return self.kept.iloc[order]


@contextlib.contextmanager
def table_writer(out: Path) -> Iterator[Callable[[pd.DataFrame], None]]:
    """A function that appends a frame to `out`: parquet when its name ends in .parquet,
    CSV otherwise. The rows go through a temporary file renamed into place at the end, so a
    run that fails leaves no half-written output.

    Raises:
        DataError: (parquet) a later frame's column has another type than the first's.
    """
    with atomic_path(out) as tmp:
        sink = _TableSink(tmp, out)
        try:
            yield sink.write
        finally:
            sink.close()


class _TableSink:
    """Appends frames to one file. A column that is integer in the first frame stays integer
    (nullable, empty where a later frame has a gap), so a batch with a missing id does not
    turn the ids of that batch into 7.0."""

    def __init__(self, tmp: Path, out: Path) -> None:
        self.tmp, self.out = tmp, out
        self.integers: list[str] | None = None  # set by the first frame
        self.parquet: pq.ParquetWriter | None = None
        self.text = None if out.suffix.lower() == ".parquet" else tmp.open("w", newline="")

    def write(self, frame: pd.DataFrame) -> None:
        first = self.integers is None
        if self.integers is None:
            self.integers = [c for c in frame.columns if pd.api.types.is_integer_dtype(frame[c])]
        frame = _keep_integers(frame, self.integers)
        if self.text is not None:
            frame.to_csv(self.text, index=False, header=first)
            return
        if self.parquet is None:
            self.parquet = pq.ParquetWriter(
                self.tmp, pa.Schema.from_pandas(frame, preserve_index=False)
            )
        self.parquet.write_table(_arrow_table(frame, self.parquet.schema, self.out))

    def close(self) -> None:
        if self.text is not None:
            self.text.close()
        if self.parquet is not None:
            self.parquet.close()


def _keep_integers(frame: pd.DataFrame, integers: list[str]) -> pd.DataFrame:
    changed = {}
    for col in integers:
        if col in frame.columns and not pd.api.types.is_integer_dtype(frame[col]):
            with contextlib.suppress(TypeError, ValueError):  # 2.5: written as read
                changed[col] = frame[col].astype("Int64")
    return frame.assign(**changed) if changed else frame


def _arrow_table(frame: pd.DataFrame, schema: pa.Schema, out: Path) -> pa.Table:
    try:
        return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as exc:
        raise DataError(
            f"Cannot append rows to {out}: a column's type changed between batches ({exc}); "
            "write CSV instead (--out FILE.csv), or give that column one type in every shard."
        ) from None


def sample_table(
    location: str,
    cfg: DataConfig,
    expected: list[str] | None,
    n: int,
    rng: np.random.Generator,
    batch_rows: int,
) -> tuple[pd.DataFrame, int] | None:
    """A uniform sample of at most `n` rows of a table (file, folder of shards or glob; see
    `table_shards`), read `batch_rows` at a time, and the rows the table held: memory holds
    the sample plus one batch. For `audit --against`, which states its sample as n of N rows.

    Returns:
        None when `location` names no table (the in-memory readers handle it).

    Raises:
        DataError: as `table_shards` and `stream_table` (unreadable shard, missing column,
            no rows).
    """
    shards = table_shards(location)
    if shards is None:
        return None
    n_rows = 0

    def counted() -> Iterator[pd.DataFrame]:
        nonlocal n_rows
        for frame in stream_table(shards, cfg, None, expected, batch_rows):
            n_rows += len(frame)
            yield frame

    sample = sample_rows(counted(), n, rng)
    return sample, n_rows
