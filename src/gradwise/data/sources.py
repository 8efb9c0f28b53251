"""From `data.source` to a Dataset: read, split (seeded), fit preprocessing on train, transform."""

from __future__ import annotations

import hashlib
import logging
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from gradwise.config import DataConfig
from gradwise.data.arrays import ArrayNormaliser, check_arrays
from gradwise.data.builtin import load_builtin
from gradwise.data.dataset import Dataset, Split
from gradwise.data.images import load_image_paths, read_idx, read_image_folder
from gradwise.data.schema import Schema
from gradwise.data.split import split_indices
from gradwise.data.tabular import TabularPreprocessor, pick_target, read_table
from gradwise.data.target import TargetSpec, infer_task
from gradwise.data.text import PAD, Tokenizer, pad_rows, read_text, windows
from gradwise.data.timeseries import SeriesPreprocessor, series_frame, supervised
from gradwise.errors import DataError

log = logging.getLogger("gradwise")

IGNORE = -100  # target positions the loss skips (padding)

SOURCE_KINDS = ("builtin", "csv", "parquet", "npz", "images", "idx", "text", "timeseries")


def parse_source(source: str) -> tuple[str, str]:
    kind, sep, location = source.partition(":")
    if not sep or kind not in SOURCE_KINDS or not location:
        raise DataError(
            f"data.source {source!r} must be KIND:LOCATION with KIND one of "
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
    data = _read(cfg, split_seed, tokenizer)
    if cfg.split.train_fraction < 1.0:
        data = _keep_fraction(data, cfg.split.train_fraction, seed)
    return data


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
    chosen = torch.from_numpy(np.sort(idx))
    train = Split(data.train.x[chosen], data.train.y[chosen])
    return Dataset(train, data.val, data.test, schema=data.schema, notes=data.notes)


def _read(cfg: DataConfig, seed: int, tokenizer: Tokenizer | None) -> Dataset:
    kind, location = parse_source(cfg.source)
    path = Path(location)
    match kind:
        case "builtin":
            loaded = load_builtin(location)
            if isinstance(loaded, pd.DataFrame):
                return build_tabular(loaded, cfg.model_copy(update={"target": "target"}), seed)
            x, y = loaded
            return build_arrays(x, y, cfg, seed)
        case "csv" | "parquet":
            df = read_table(path, kind, cfg)
            if cfg.text_column is not None:
                return build_text_table(df, cfg, seed, _sha256(path), tokenizer)
            if cfg.task in ("seq2seq", "mlm"):
                raise DataError(f"data.task {cfg.task} needs text: set data.text_column.")
            return build_tabular(df, cfg, seed, sha256=_sha256(path))
        case "npz":
            x, y = read_npz(path)
            return build_arrays(x, y, cfg, seed, sha256=_sha256(path))
        case "images":
            x, y_names, color, size = read_image_folder(path, cfg.image_size, cfg.color)
            return build_arrays(x, y_names, cfg, seed, image_size=size, color=color)
        case "idx":
            x, y = read_idx(location)
            return build_arrays(x, y, cfg, seed)
        case "text":
            return build_text(read_text(path, cfg.limit), cfg, _sha256(path), tokenizer)
        case "timeseries":
            df = read_table(path, "csv", cfg)
            return build_timeseries(df, cfg, sha256=_sha256(path))
    raise AssertionError(kind)


# ------------------------------------------------------------------ tables


def build_tabular(
    df: pd.DataFrame, cfg: DataConfig, seed: int, sha256: str | None = None
) -> Dataset:
    target = pick_target(df, cfg.target, cfg.source)
    unknown = [c for c in cfg.drop if c not in df.columns]
    if unknown:
        raise DataError(
            f"data.drop names {', '.join(unknown)}, not in the data. "
            f"Columns: {', '.join(df.columns)}."
        )
    y_raw = df[target].to_numpy()
    missing = pd.isna(df[target]).to_numpy()
    if missing.any():
        rows = ", ".join(str(i) for i in np.flatnonzero(missing)[:5])
        raise DataError(
            f"Target column {target!r} has {int(missing.sum())} missing values (rows {rows}); "
            "drop or fill those rows."
        )
    task = infer_task(y_raw, cfg.task)
    if task == "regression":
        y_raw = pd.to_numeric(df[target], errors="coerce").to_numpy()
        if np.isnan(y_raw).any():
            raise DataError(
                f"Target column {target!r} holds non-numeric values but the task is regression; "
                "set data.task: classification or clean the column."
            )
    x_df = df.drop(columns=[target, *cfg.drop])
    tr, va, te = split_indices(
        len(df), cfg.split, seed, stratify=y_raw if task == "classification" else None
    )
    prep = TabularPreprocessor.fit(x_df.iloc[tr], cfg.categorical)
    notes = tuple(
        f"imputed {n} missing values in column {col!r} (train median or <missing> category)"
        for col, n in prep.count_missing(x_df).items()
    )
    for note in notes:
        log.info(note)
    spec = (
        TargetSpec.fit_classes(y_raw, target)
        if task == "classification"
        else TargetSpec.fit_regression(y_raw[tr], target)
    )
    x = prep.transform(x_df)
    y = spec.encode(y_raw)
    schema = Schema(
        kind="tabular",
        task=task,  # type: ignore[arg-type]
        input_shape=[prep.n_features],
        n_outputs=len(spec.classes) if spec.classes else 1,
        target=spec,
        source=cfg.source,
        sha256=sha256,
        tabular=prep,
    )
    return _dataset(x, y, (tr, va, te), schema, notes)


# ------------------------------------------------------------------ arrays and images


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Arrays X (or x) and y from an .npz archive; object arrays are refused (no pickles)."""
    if not path.is_file():
        raise DataError(f"npz file {path} not found; check data.source.")
    arrays = _load_numpy(path)
    if not isinstance(arrays, dict) or "y" not in arrays or not {"X", "x"} & arrays.keys():
        found = ", ".join(sorted(arrays)) if isinstance(arrays, dict) else "a single array"
        raise DataError(
            f"{path} must be an .npz archive holding arrays named X and y; found {found}. "
            "Write it with np.savez(path, X=X, y=y)."
        )
    return arrays["X"] if "X" in arrays else arrays["x"], arrays["y"]


def _load_numpy(path: Path) -> dict[str, np.ndarray] | np.ndarray:
    """The array in an .npy file, or every array in an .npz archive by name.

    Raises:
        DataError: the file is missing, is not numpy data, or holds object arrays.
    """
    if not path.is_file():
        raise DataError(f"numpy file {path} not found; check the path.")
    # our own handle: np.load(path) leaves the file open when the archive is corrupt
    with path.open("rb") as fh:
        if not fh.read(6).startswith((b"PK", b"\x93NUMPY")):  # zip (.npz) or .npy header
            raise DataError(f"{path} is not numpy data; write it with np.savez(path, X=X, y=y).")
        fh.seek(0)
        try:
            loaded = np.load(fh, allow_pickle=False)
            if isinstance(loaded, np.ndarray):
                return loaded
            with loaded:
                return {k: np.asarray(loaded[k]) for k in loaded.files}
        except ValueError as exc:
            if "pickle" in str(exc) or "Object arrays" in str(exc):
                raise DataError(
                    f"{path} holds object (pickled) arrays, which are refused because loading "
                    "them can run code; save plain numeric or string arrays."
                ) from None
            raise DataError(f"Cannot read {path} as numpy data: {exc}") from None
        except (OSError, EOFError, zipfile.BadZipFile) as exc:
            raise DataError(f"Cannot read {path} as numpy data: {exc}") from None


def build_arrays(
    x: np.ndarray,
    y: np.ndarray,
    cfg: DataConfig,
    seed: int,
    sha256: str | None = None,
    image_size: int | None = None,
    color: str | None = None,
) -> Dataset:
    if cfg.limit is not None:
        x, y = x[: cfg.limit], y[: cfg.limit]
    check_arrays(x, y, cfg.source)
    y = y.reshape(len(y)) if y.ndim == 2 and y.shape[1] == 1 else y
    task = infer_task(y, cfg.task)
    if task == "regression" and y.dtype.kind not in "iufb":
        raise DataError(
            f"{cfg.source}: the target y holds labels ({', '.join(map(str, np.unique(y)[:3]))}, "
            "...), not numbers, but the task is regression; set data.task: classification."
        )
    if task == "classification" and y.ndim != 1:
        raise DataError(
            f"{cfg.source}: classification takes one label per sample, but y has shape "
            f"{y.shape}; for several numeric targets set data.task: regression."
        )
    tr, va, te = split_indices(
        len(x), cfg.split, seed, stratify=y if task == "classification" else None
    )
    norm = ArrayNormaliser.fit(x[tr])
    spec = (
        TargetSpec.fit_classes(y) if task == "classification" else TargetSpec.fit_regression(y[tr])
    )
    kind = {2: "tabular", 3: "sequence", 4: "image"}[x.ndim]
    n_out = len(spec.classes) if spec.classes else (y.shape[1] if y.ndim == 2 else 1)
    schema = Schema(
        kind=kind,  # type: ignore[arg-type]
        task=task,  # type: ignore[arg-type]
        input_shape=list(x.shape[1:]),
        n_outputs=n_out,
        target=spec,
        source=cfg.source,
        sha256=sha256,
        array=norm,
        image_size=image_size,
        color=color,  # type: ignore[arg-type]
    )
    return _dataset(norm.transform(x), spec.encode(y), (tr, va, te), schema)


# ------------------------------------------------------------------ text


def build_text(
    text: str, cfg: DataConfig, sha256: str | None = None, tokenizer: Tokenizer | None = None
) -> Dataset:
    """Contiguous train/val/test parts of the corpus, cut into non-overlapping windows.

    `lm` (the default) predicts each next token; `mlm` keeps the windows whole for masked-token
    pretraining (the objective masks them batch by batch).
    """
    if cfg.task not in ("auto", "mlm"):
        raise DataError(
            f"data.task {cfg.task} does not apply to a text corpus (text:); for labelled text "
            "use csv: with data.text_column and data.target."
        )
    n = len(text)
    n_test, n_val = int(n * cfg.split.test), int(n * cfg.split.val)
    parts = text[: n - n_val - n_test], text[n - n_val - n_test : n - n_test], text[n - n_test :]
    tok = tokenizer or Tokenizer.fit(parts[0], cfg.tokenizer, cfg.vocab_size)
    splits = []
    for name, part in zip(("train", "val", "test"), parts):
        try:
            w = torch.from_numpy(windows(tok.encode(part), cfg.block_size))
        except DataError:
            raise DataError(
                f"The {name} part of the text ({len(part)} characters) is shorter than one "
                f"window of data.block_size={cfg.block_size}; use more text or a smaller "
                "block_size."
            ) from None
        if cfg.task == "mlm":
            splits.append(Split(w[:, :-1].contiguous(), w[:, :-1].contiguous()))
        else:
            splits.append(Split(w[:, :-1], w[:, 1:]))
    schema = Schema(
        kind="tokens",
        task="mlm" if cfg.task == "mlm" else "lm",
        input_shape=[cfg.block_size],
        n_outputs=tok.vocab_size,
        target=TargetSpec(),
        source=cfg.source,
        sha256=sha256,
        tokenizer=tok,
    )
    train, val, test = splits
    return Dataset(train, val, test, schema=schema)


def build_text_table(
    df: pd.DataFrame,
    cfg: DataConfig,
    seed: int,
    sha256: str | None = None,
    tokenizer: Tokenizer | None = None,
) -> Dataset:
    """Labelled text: `data.text_column` -> a class or value, or (seq2seq) another text.

    Inputs become <bos> + tokens, cut or padded to `data.block_size`; seq2seq targets become
    <bos> + tokens + <eos> in `data.target_block_size`, and x packs source and target input.
    """
    column = cfg.text_column
    assert column is not None
    if column not in df.columns:
        raise DataError(
            f"Text column {column!r} not found in {cfg.source}. Columns: {', '.join(df.columns)}."
        )
    target = pick_target(df, cfg.target, cfg.source)
    texts = df[column].fillna("").astype(str).tolist()
    if cfg.task == "seq2seq":
        return _build_seq2seq(
            texts, df[target].fillna("").astype(str).tolist(), cfg, seed, sha256, tokenizer
        )
    y_raw = df[target].to_numpy()
    if pd.isna(df[target]).any():
        raise DataError(f"Target column {target!r} has missing values; drop or fill those rows.")
    task = infer_task(y_raw, cfg.task)
    tr, va, te = split_indices(
        len(df), cfg.split, seed, stratify=y_raw if task == "classification" else None
    )
    tok = tokenizer or Tokenizer.fit([texts[i] for i in tr], cfg.tokenizer, cfg.vocab_size)
    spec = (
        TargetSpec.fit_classes(y_raw, target)
        if task == "classification"
        else TargetSpec.fit_regression(y_raw[tr].astype(np.float64), target)
    )
    schema = Schema(
        kind="tokens",
        task=task,  # type: ignore[arg-type]
        input_shape=[cfg.block_size],
        n_outputs=len(spec.classes) if spec.classes else 1,
        target=spec,
        source=cfg.source,
        sha256=sha256,
        tokenizer=tok,
        text_column=column,
    )
    x = schema.encode_texts(texts)
    return _dataset(x, spec.encode(y_raw), (tr, va, te), schema)


def _build_seq2seq(
    sources: list[str],
    targets: list[str],
    cfg: DataConfig,
    seed: int,
    sha256: str | None,
    tokenizer: Tokenizer | None,
) -> Dataset:
    tr, va, te = split_indices(len(sources), cfg.split, seed)
    tok = tokenizer or Tokenizer.fit(
        [sources[i] for i in tr] + [targets[i] for i in tr], cfg.tokenizer, cfg.vocab_size
    )
    s_len, t_len = cfg.block_size, cfg.target_block_size
    schema = Schema(
        kind="tokens",
        task="seq2seq",
        input_shape=[s_len + t_len - 1],
        n_outputs=tok.vocab_size,
        target=TargetSpec(name=cfg.target),
        source=cfg.source,
        sha256=sha256,
        tokenizer=tok,
        text_column=cfg.text_column,
        source_len=s_len,
    )
    src = schema.encode_texts(sources)  # (N, S)
    tgt = pad_rows(tok.encode_many(targets), t_len, bos=True, eos=True)  # (N, T)
    x = np.concatenate([src, tgt[:, :-1]], axis=1)  # source + decoder input
    y = np.where(tgt[:, 1:] == PAD, IGNORE, tgt[:, 1:])  # next target tokens
    return _dataset(x, y, (tr, va, te), schema)


# ------------------------------------------------------------------ time series


def build_timeseries(df: pd.DataFrame, cfg: DataConfig, sha256: str | None = None) -> Dataset:
    target = _series_target(df, cfg)
    frame = series_frame(df, target, cfg.features)
    n = len(frame)
    n_test, n_val = int(round(n * cfg.split.test)), int(round(n * cfg.split.val))
    n_train = n - n_val - n_test
    features = TabularPreprocessor.fit(frame.iloc[:n_train], "onehot")
    prep = SeriesPreprocessor(target, features, cfg.window, cfg.horizon)
    y_rows = pd.to_numeric(df[target]).to_numpy(dtype=np.float64)
    mean, std = float(y_rows[:n_train].mean()), float(y_rows[:n_train].std() or 1.0)
    spec = TargetSpec(name=target, mean=[mean] * cfg.horizon, std=[std] * cfg.horizon)
    x, y = supervised(prep.matrix(frame), y_rows, cfg.window, cfg.horizon)
    first = np.arange(len(x)) + cfg.window  # row of each window's first target value
    last = first + cfg.horizon - 1
    tr = np.flatnonzero(last < n_train)
    va = np.flatnonzero((first >= n_train) & (last < n_train + n_val))
    te = np.flatnonzero(first >= n_train + n_val)
    for name, idx in (("train", tr), ("validation", va), ("test", te)):
        if len(idx) == 0:
            raise DataError(
                f"The {name} part of the series is too short for data.window={cfg.window} and "
                f"data.horizon={cfg.horizon}; shorten them or change data.split."
            )
    schema = Schema(
        kind="sequence",
        task="regression",
        input_shape=[cfg.window, features.n_features],
        n_outputs=cfg.horizon,
        target=spec,
        source=cfg.source,
        sha256=sha256,
        series=prep,
    )
    return _dataset(x, spec.encode(y), (tr, va, te), schema)


def _series_target(df: pd.DataFrame, cfg: DataConfig) -> str:
    if cfg.target is not None:
        return pick_target(df, cfg.target, cfg.source)
    numeric = [c for c in df.columns if df[c].dtype.kind in "iuf"]
    if len(numeric) == 1:
        return numeric[0]
    return pick_target(df, None, cfg.source)


# ------------------------------------------------------------------ helpers


def _dataset(
    x: np.ndarray,
    y: np.ndarray,
    idx: tuple[np.ndarray, np.ndarray, np.ndarray],
    schema: Schema,
    notes: tuple[str, ...] = (),
) -> Dataset:
    xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))
    train, val, test = (
        Split(xt[i].contiguous(), yt[i].contiguous()) for i in map(torch.from_numpy, idx)
    )
    return Dataset(train, val, test, schema=schema, notes=notes)


def _sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_inputs(location: str, schema: Schema) -> Any:
    """Raw inputs for `predict` from a file, in the form `Schema.transform` takes."""
    path = Path(location)
    if (
        schema.kind == "image"
        and schema.image_size
        and (path.is_dir() or path.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp"})
    ):
        return load_image_paths(path, schema.image_size, schema.color or "rgb")
    if location.startswith("idx:"):
        return read_idx(location[4:])[0]
    if not path.exists():
        raise DataError(f"Input {path} not found.")
    match path.suffix.lower():
        case ".csv" | ".txt" if schema.kind in ("tabular", "sequence") and schema.array is None:
            return read_table(path, "csv", DataConfig())
        case ".csv" if schema.text_column is not None:
            return read_table(path, "csv", DataConfig())
        case ".parquet":
            return read_table(path, "parquet", DataConfig())
        case ".npz" | ".npy":
            arrays = _load_numpy(path)
            if isinstance(arrays, np.ndarray):
                return arrays
            if not {"X", "x"} & arrays.keys():
                raise DataError(
                    f"{path} must hold an array named X; found {', '.join(sorted(arrays))}."
                )
            return arrays["X"] if "X" in arrays else arrays["x"]
        case ".txt" if schema.kind == "tokens":
            return path.read_text(encoding="utf-8")
    if schema.text_column is not None:
        needed = f"a .csv or .parquet file with a {schema.text_column!r} column, or a .txt file"
    else:
        needed = {
            "tabular": "a .csv or .parquet file with the training columns (or .npz with X)",
            "image": "an image file, a folder of images, or an .npz with X",
            "sequence": "a .csv of consecutive rows or an .npz with X",
            "tokens": "a .txt file",
        }[schema.kind]
    raise DataError(f"Cannot read {path} as input for a {schema.kind} model; give {needed}.")


def load_labelled(source: str, schema: Schema, cfg: DataConfig) -> Split:
    """New labelled data (a whole file, no split), preprocessed with a trained run's schema.

    Args:
        source: a data.source string, e.g. csv:new.csv or idx:data/t10k.
        schema: the trained run's schema (its fitted preprocessing is reused, not refitted).
        cfg: the run's data config (CSV reading options, window sizes).
    """
    kind, location = parse_source(source)
    path = Path(location)
    x: Any
    match kind:
        case "csv" | "parquet" | "builtin":
            loaded = load_builtin(location) if kind == "builtin" else read_table(path, kind, cfg)
            if not isinstance(loaded, pd.DataFrame):
                x, y = loaded
            else:
                target = pick_target(loaded, schema.target.name or "target", source)
                x, y = loaded, loaded[target].to_numpy()
                missing = pd.isna(loaded[target]).to_numpy()
                if missing.any():
                    raise DataError(
                        f"Target column {target!r} of {source} has {int(missing.sum())} missing "
                        "values; drop or fill those rows."
                    )
        case "npz":
            x, y = read_npz(path)
            check_arrays(x, y, source)
        case "idx":
            x, y = read_idx(location)
        case "images":
            x, y, _, _ = read_image_folder(path, schema.image_size, schema.color or "rgb")
        case "timeseries":
            if schema.series is None:
                raise DataError(
                    f"{source} is a time series but the run was trained on {schema.kind}."
                )
            df = read_table(path, "csv", cfg)
            s = schema.series
            # the checks training made: target and feature columns present, target filled
            series_frame(df, pick_target(df, s.target, source), s.features.columns)
            rows = pd.to_numeric(df[s.target]).to_numpy(dtype=np.float64)
            xs, ys = supervised(s.matrix(df), rows, s.window, s.horizon)
            return Split(torch.from_numpy(xs), torch.from_numpy(schema.target.encode(ys)))
        case "text":
            if schema.tokenizer is None:
                raise DataError(f"{source} is text but the run was trained on {schema.kind}.")
            w = torch.from_numpy(
                windows(schema.tokenizer.encode(read_text(path, cfg.limit)), schema.input_shape[0])
            )
            return Split(w[:, :-1], w[:, 1:])
        case _:
            raise DataError(f"Cannot evaluate on {source}.")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:  # a column of labels, as build_arrays takes it
        y = y.reshape(len(y))
    return Split(torch.from_numpy(schema.transform(x)), torch.from_numpy(schema.target.encode(y)))
