"""From `data.source` to a Dataset: pick the builder of the source's kind, record the source's
content hash, keep the training fraction.

Each kind's reading and building lives beside its preprocessing (`tabular`, `arrays`,
`images`, `text`, `timeseries`); reading new data at predict time is in `readers`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from gradwise.config import DataConfig
from gradwise.data.arrays import build_arrays, read_npz_arrays
from gradwise.data.builtin import load_builtin
from gradwise.data.dataset import Dataset, Split
from gradwise.data.images import idx_files, read_idx, read_image_folder
from gradwise.data.registry import check_present
from gradwise.data.stream import stream_table, table_shards
from gradwise.data.stream_train import build_stream
from gradwise.data.tabular import build_tabular, read_table
from gradwise.data.text import Tokenizer, build_text_source, build_text_table
from gradwise.data.timeseries import build_timeseries
from gradwise.errors import DataError

SOURCE_KINDS = (
    "builtin",
    "csv",
    "parquet",
    "npz",
    "images",
    "idx",
    "text",
    "timeseries",
    "memory",  # arrays held in memory (gradwise.data.memory): written nowhere, never re-read
)
STREAM_ROWS = 262_144  # rows per read when a folder of shards is read whole


def parse_source(source: str, key: str = "data.source") -> tuple[str, str]:
    kind, sep, location = source.partition(":")
    if not sep or kind not in SOURCE_KINDS or not location:
        raise DataError(
            f"{key} {source!r} must be KIND:LOCATION with KIND one of "
            f"{', '.join(SOURCE_KINDS)}, e.g. builtin:digits or csv:data/train.csv."
        )
    return kind, location


def load_dataset(cfg: DataConfig, seed: int, tokenizer: Tokenizer | None = None) -> Dataset:
    """Read `cfg.source` and return model-ready train/val/test splits with their schema.

    Args:
        seed: the run's seed: it draws the split (unless data.split.seed is set) and the
            subset kept by data.split.train_fraction.
        tokenizer: reuse this tokenizer for text instead of fitting one (fine-tuning a run
            that was pretrained on text must keep its vocabulary).

    Raises:
        DataError: the source is missing, unreadable, or does not fit the task.
    """
    split_seed = seed if cfg.split.seed is None else cfg.split.seed
    data = _build(cfg, split_seed, tokenizer, seed)
    schema = dataclasses.replace(data.schema, sha256=source_hash(cfg.source, data))
    data = dataclasses.replace(data, schema=schema)
    if cfg.split.train_fraction < 1.0:
        data = _keep_fraction(data, cfg.split.train_fraction, seed)
    return data


def _read_whole(path: Path, kind: str, cfg: DataConfig) -> pd.DataFrame:
    """A table in memory: one file, or a folder of shards or a glob read shard by shard."""
    shards = None if path.is_file() else table_shards(f"{kind}:{path}")
    if shards is None:
        return read_table(path, kind, cfg)  # type: ignore[arg-type]
    df = pd.concat(stream_table(shards, cfg, None, None, STREAM_ROWS))
    return df.iloc[: cfg.limit] if cfg.limit is not None else df


def _build(cfg: DataConfig, seed: int, tokenizer: Tokenizer | None, run_seed: int = 0) -> Dataset:
    kind, location = parse_source(cfg.source)
    check_present(kind, location)  # a missing example data set names the command that gets it
    path = Path(location)
    match kind:
        case "builtin":
            loaded = load_builtin(location)
            if isinstance(loaded, pd.DataFrame):
                target = cfg.target or "target"
                return build_tabular(loaded, cfg.model_copy(update={"target": target}), seed)
            if cfg.target is not None:
                raise DataError(
                    f"data.target does not apply to builtin:{location}, an image set whose "
                    "labels are its classes; remove data.target."
                )
            x, y = loaded
            return build_arrays(x, y, cfg, seed)
        case "csv" | "parquet" if cfg.stream:
            return build_stream(cfg, seed, run_seed)
        case "csv" | "parquet":
            df = _read_whole(path, kind, cfg)
            if cfg.text_column is not None:
                return build_text_table(df, cfg, seed, tokenizer)
            if cfg.task in ("seq2seq", "mlm"):
                raise DataError(f"data.task {cfg.task} needs text: set data.text_column.")
            return build_tabular(df, cfg, seed)
        case "npz":
            x, y, extras = read_npz_arrays(path)
            return build_arrays(x, y, cfg, seed, extras=extras)
        case "images":
            x, y_names, color, size = read_image_folder(path, cfg.image_size, cfg.color)
            return build_arrays(x, y_names, cfg, seed, image_size=size, color=color)
        case "idx":
            x, y = read_idx(location)
            return build_arrays(x, y, cfg, seed)
        case "text":
            return build_text_source(path, cfg, seed, tokenizer)
        case "timeseries":
            return build_timeseries(read_table(path, "csv", cfg), cfg)
        case "memory":
            raise DataError(
                f"data.source {cfg.source}: this run was trained on arrays held in memory "
                "(gradwise.sklearn), which were not saved, so its data cannot be read back; "
                "evaluate it on data you pass in (gradwise evaluate RUN --data FILE, "
                "Run.evaluate(split))."
            )
    raise AssertionError(kind)


def source_hash(source: str, data: Dataset | None = None) -> str:
    """sha256 of what a source holds: a file's bytes; an image folder's file names and bytes;
    both idx files; a built-in set's samples (`data`, read already, or read here)."""
    kind, location = parse_source(source)
    digest = hashlib.sha256()
    match kind:
        case "images" | "text" if Path(location).is_dir():
            root = Path(location)
            for f in sorted(p for p in root.rglob("*") if p.is_file()):
                digest.update(str(f.relative_to(root)).encode())
                _update_file(digest, f)
        case "idx":
            for f in idx_files(location):
                _update_file(digest, f)
        case "builtin":
            raw = data.raw if data is not None else load_builtin(location)
            if isinstance(raw, tuple):
                raw = raw[0]
            if isinstance(raw, pd.DataFrame):
                digest.update(pd.util.hash_pandas_object(raw, index=True).to_numpy().tobytes())
            else:
                digest.update(np.ascontiguousarray(raw).tobytes())
        case "csv" | "parquet" if not Path(location).is_file():
            shards = table_shards(source)
            if shards is None:
                raise DataError(f"data.source {source}: no csv or parquet table there.")
            for f in shards.files:  # a folder of shards or a glob: names and bytes
                digest.update(f.name.encode())
                _update_file(digest, f)
        case _:
            _update_file(digest, Path(location))
    return digest.hexdigest()


def _update_file(digest: hashlib._Hash, path: Path) -> None:
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)


def _keep_fraction(data: Dataset, fraction: float, seed: int) -> Dataset:
    """A seeded (stratified, for classes) subset of the training split; val and test stay."""
    n = len(data.train)
    keep = max(1, int(round(n * fraction)))
    y = data.train.y.numpy()
    stratify = y if data.schema.task == "classification" and y.ndim == 1 else None
    idx = np.arange(n)
    if keep < n:
        try:
            idx, _ = train_test_split(
                idx, train_size=keep, random_state=seed % 2**32, stratify=stratify
            )
        except ValueError:  # too few samples per class to stratify
            idx, _ = train_test_split(idx, train_size=keep, random_state=seed % 2**32)
    chosen = np.sort(idx)
    train = Split(data.train.x[chosen], data.train.y[chosen])
    rows = {**data.rows, "train": data.rows["train"][chosen]} if data.rows else {}
    return dataclasses.replace(data, train=train, rows=rows)
