"""New data at predict and evaluate time, read the way the training data was read.

One table reader serves `predict`, `evaluate --data` and the server: it applies the training
file's separator, quoting, missing-value strings, column names and header setting, so a file
shaped like the training file reads the same way (a flag overrides the header detection).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from gradwise.config import DataConfig
from gradwise.data.arrays import check_arrays, load_numpy, read_npz
from gradwise.data.builtin import load_builtin
from gradwise.data.dataset import Split
from gradwise.data.images import IMAGE_SUFFIXES, load_image_paths, read_idx, read_image_folder
from gradwise.data.schema import Schema
from gradwise.data.tabular import looks_headerless, pick_target, read_table
from gradwise.data.text import read_text, windows
from gradwise.data.timeseries import series_frame, supervised
from gradwise.errors import DataError

_SUFFIX_KINDS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".parquet": "parquet",
    ".npz": "npz",
    ".npy": "npz",
    ".txt": "text",
}
KINDS = ("csv", "parquet", "npz", "images", "idx", "text", "timeseries", "builtin")


def locate(location: str, flag: str) -> tuple[str, str]:
    """A source given as KIND:PATH, or a plain path whose kind its suffix (or folder) tells
    ("" when it tells none).

    Raises:
        DataError: the path does not exist.
    """
    kind, sep, rest = location.partition(":")
    if sep and kind in KINDS and rest:
        _check_exists(rest, kind, flag)
        return kind, rest
    path = Path(location)
    if path.is_dir():
        return "images", location
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return "images", location
    if path.suffix.lower() in _SUFFIX_KINDS:
        _check_exists(location, _SUFFIX_KINDS[path.suffix.lower()], flag)
        return _SUFFIX_KINDS[path.suffix.lower()], location
    _check_exists(location, "", flag)
    return "", location  # a kind the name does not tell: the caller says what it reads


def _check_exists(location: str, kind: str, flag: str) -> None:
    if kind in ("idx", "builtin") or Path(location).exists():
        return  # idx names a prefix; builtin a name
    label = "Input" if flag == "INPUT" else flag
    raise DataError(
        f"{label} {location} not found (looked for {Path(location).resolve()}); check the path."
    )


def read_new_table(
    path: Path,
    kind: Literal["csv", "parquet"],
    cfg: DataConfig,
    header: bool | None,
    expected: list[str] | None = None,
) -> pd.DataFrame:
    """A table shaped like the training file.

    Args:
        cfg: the run's data config: separator, quoting, na_values and, for a training file
            without a header, the column names (data.columns).
        header: whether the first row names the columns; None: like the training file, unless
            the first row of a file trained without a header holds exactly those names.
        expected: the columns the run reads (to say so when a header-less file is given to a
            run trained with a header).
    """
    if kind == "parquet":
        return read_table(path, "parquet", cfg)
    how = csv_reading(path, cfg, header, expected)
    df = read_table(path, "csv", how)
    check_header_row(df, path, cfg, how, expected)
    return df


def csv_reading(
    path: Path, cfg: DataConfig, header: bool | None, expected: list[str] | None
) -> DataConfig:
    """How to read a new CSV file the way the training file was read: the run's data config
    with the column names to give (None: the first row names them) and no row limit. The
    streaming reader applies the same rules to each shard (`gradwise.data.stream`).

    Raises:
        DataError: a header-less file whose columns cannot be named by position.
    """
    names = cfg.columns
    if header is None:
        header = names is None or _names_columns(_first_row(path, cfg), names)
    if header:
        return cfg.model_copy(update={"columns": None, "limit": None})
    if names is None:
        raise DataError(
            f"--no-header: the run was trained on a file with a header, so the columns of "
            f"{path} cannot be named by position; add the header row."
        )
    if cfg.target in names and len(_first_row(path, cfg)) == len(names) - 1:
        # every training column but the target, in the training order (wherever the target
        # stood): name them so, or every column after the target would shift by one
        names = [c for c in names if c != cfg.target]
    _check_field_count(path, cfg, names, expected)
    return cfg.model_copy(update={"limit": None, "columns": names})


def check_header_row(
    df: pd.DataFrame, path: Path, cfg: DataConfig, how: DataConfig, expected: list[str] | None
) -> None:
    """A first row read as the header (`how.columns` None) that looks like data, in a file
    lacking the run's columns, is refused when the training file had a header (no
    data.columns): the new file lacks it.

    Args:
        df: the rows read so far (the first batch, when streaming).
        how: what `csv_reading` said to read `path` with.
    """
    if how.columns is not None or cfg.columns is not None or expected is None:
        return
    if not looks_headerless(df):
        return
    missing = [c for c in expected if c not in df.columns]
    if missing:
        raise DataError(
            f"The first row of {path} looks like data, not a header, and the file lacks "
            f"the columns the run was trained on ({', '.join(expected)}); add the "
            "header row the training file had."
        )


def _names_columns(first: list[str], names: list[str]) -> bool:
    """Whether a first row is a header: at least half of its fields are training column
    names (a file may hold only some of the columns, in any order; a data row of a header-less
    file names none)."""
    fields = [f for f in first if f]
    known = sum(f in set(map(str, names)) for f in fields)
    return bool(fields) and known >= max(1, len(fields) / 2)


def _check_field_count(
    path: Path, cfg: DataConfig, names: list[str], expected: list[str] | None
) -> None:
    """A header-less file names its columns by position, so it must have as many fields as
    the training file: with fewer, the last columns would be read as missing everywhere and
    imputed; with more, every column would shift."""
    n = len(_first_row(path, cfg))
    if n in (0, len(names)):
        return  # an empty file is refused by the reader, with its own message
    if n > len(names):
        raise DataError(
            f"{path} has no header and {n} fields per row, but the run names {len(names)} "
            f"columns by position (data.columns: {', '.join(names)}); give the columns the "
            "training file had, in its order, or add a header row naming them."
        )
    absent = [c for c in names[n:] if expected is None or c in expected]
    if absent:
        raise DataError(
            f"{path} has no header and {n} fields per row, but the run reads {len(names)} "
            f"columns by position, so column(s) {', '.join(absent)} would be missing in every "
            "row. Give all the columns the training file had, in its order (a value may be "
            "left empty), or add a header row naming the columns you have."
        )


def _first_row(path: Path, cfg: DataConfig) -> list[str]:
    """The first line's fields, split and unquoted as the CSV reader splits them."""
    if not path.is_file():
        raise DataError(f"Data file {path} not found ({path.resolve()}).")
    sep = cfg.separator or ","
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
        if cfg.quoting == "none":
            reader = csv.reader(fh, delimiter=sep, quoting=csv.QUOTE_NONE, skipinitialspace=True)
        else:
            reader = csv.reader(fh, delimiter=sep, skipinitialspace=True)
        row = next(reader, [])
    return [f.strip() for f in row]


def read_inputs(
    location: str, schema: Schema, cfg: DataConfig | None = None, header: bool | None = None
) -> Any:
    """Raw inputs for `predict`, in the form `Schema.transform` takes.

    Args:
        location: KIND:PATH or a plain path (see `locate`).
        cfg: the run's data config (how its training file was read).

    Raises:
        DataError: the file is missing, empty, or not data this run reads.
    """
    cfg = cfg or DataConfig()
    kind, where = locate(location, "INPUT")
    path = Path(where)
    match kind:
        case "images" if schema.kind == "image" and schema.image_size:
            return load_image_paths(path, schema.image_size, schema.color or "rgb")
        case "idx":
            return read_idx(where)[0]
        case "csv" | "parquet" if schema.kind in ("tabular", "sequence") and schema.array is None:
            return read_new_table(path, kind, cfg, header, model_columns(schema))  # type: ignore[arg-type]
        case "csv" | "parquet" if schema.text_column is not None:
            return read_new_table(path, kind, cfg, header)  # type: ignore[arg-type]
        case "npz":
            arrays = load_numpy(path)
            if isinstance(arrays, np.ndarray):
                return arrays
            if not {"X", "x"} & arrays.keys():
                raise DataError(
                    f"{path} must hold an array named X; found {', '.join(sorted(arrays))}."
                )
            return arrays["X"] if "X" in arrays else arrays["x"]
        case "text" if schema.kind == "tokens" and schema.text_column is None:
            return read_text(path, None)
    raise DataError(
        f"Cannot read {path} as input for a {schema.kind} model; give {_needed(schema)} "
        "(a file of another name can be given as KIND:PATH, e.g. csv:rows.dat)."
    )


def model_columns(schema: Schema) -> list[str] | None:
    """The input columns a table run reads (None for runs that read no table columns)."""
    if schema.tabular is not None:
        return schema.tabular.columns
    return schema.series.features.columns if schema.series is not None else None


def _needed(schema: Schema) -> str:
    if schema.text_column is not None:
        return f"a .csv or .parquet file with a {schema.text_column!r} column"
    return {
        "tabular": "a .csv or .parquet file with the training columns (or .npz with X)",
        "image": "an image file, a folder of images, or an .npz with X",
        "sequence": "a .csv of consecutive rows or an .npz with X",
        "tokens": "a .txt file",
    }[schema.kind]


def kept_columns(raw: Any, keep: list[str]) -> pd.DataFrame | None:
    """The input columns `keep` names (ids to match predictions back), or None.

    Raises:
        DataError: the input is not a table, or lacks a named column.
    """
    if not keep:
        return None
    if not isinstance(raw, pd.DataFrame):
        raise DataError("--keep copies columns of a table; this input is not one.")
    missing = [c for c in keep if c not in raw.columns]
    if missing:
        raise DataError(
            f"--keep names {', '.join(missing)}, not in the input. Columns: "
            f"{', '.join(map(str, raw.columns))}."
        )
    return raw[keep]


def unused_columns(raw: Any, schema: Schema, keep: list[str] | None = None) -> list[str]:
    """The columns of an input table the model does not read (ids, the target, anything
    else), besides those `keep` copies to the output and empty ones (a header-less file
    without the target has it as an empty column): predicting ignores them."""
    used = model_columns(schema)
    if not isinstance(raw, pd.DataFrame) or used is None:
        return []
    skip = set(used) | set(keep or [])
    return [str(c) for c in raw.columns if c not in skip and raw[c].notna().any()]


def forecast_positions(n_rows: int, window: int) -> pd.DataFrame:
    """Where each forecast of a series input comes from and what it is for.

    A forecaster given `n_rows` consecutive rows makes one forecast per full window, in
    order: forecast i reads rows i .. i + window - 1 and predicts the `horizon` steps after
    them, rows i + window .. i + window + horizon - 1 (the last forecasts are for rows past the
    input's end: the future).

    Args:
        n_rows: rows of the input table (0-based positions below).
        window: data.window of the run.

    Returns:
        One row per forecast, in the order `Run.predict` returns them: `window_first` and
        `window_last` (the input rows it read) and `for_row` (the row of its first step;
        step k is for row for_row + k - 1).
    """
    first = np.arange(max(n_rows - window + 1, 0))
    return pd.DataFrame(
        {"window_first": first, "window_last": first + window - 1, "for_row": first + window}
    )


def load_labelled(
    source: str, schema: Schema, cfg: DataConfig, header: bool | None = None, flag: str = "--data"
) -> Split:
    """New labelled data (a whole file, no split), preprocessed with a trained run's schema.

    Args:
        source: KIND:PATH (csv:new.csv, idx:data/t10k, ...) or a plain path.
        schema: the trained run's schema (its fitted preprocessing is reused, not refitted).
        cfg: the run's data config (how its training file was read, window sizes).
    """
    kind, location = locate(source, flag)
    path = Path(location)
    x: Any
    match kind:
        case "csv" | "parquet" | "builtin":
            loaded = (
                load_builtin(location)
                if kind == "builtin"
                else read_new_table(path, kind, cfg, header, model_columns(schema))  # type: ignore[arg-type]
            )
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
            return _labelled_series(path, schema, cfg, source)
        case "text":
            if schema.tokenizer is None:
                raise DataError(f"{source} is text but the run was trained on {schema.kind}.")
            w = torch.from_numpy(
                windows(schema.tokenizer.encode(read_text(path, cfg.limit)), schema.input_shape[0])
            )
            return Split(w[:, :-1], w[:, 1:])
        case _:
            raise DataError(
                f"Cannot evaluate on {source}: give labelled data as KIND:PATH with KIND one "
                f"of {', '.join(KINDS)} (e.g. csv:new.csv)."
            )
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:  # a column of labels, as build_arrays takes it
        y = y.reshape(len(y))
    return Split(torch.from_numpy(schema.transform(x)), torch.from_numpy(schema.target.encode(y)))


def _labelled_series(path: Path, schema: Schema, cfg: DataConfig, source: str) -> Split:
    if schema.series is None:
        raise DataError(f"{source} is a time series but the run was trained on {schema.kind}.")
    df = read_table(path, "csv", cfg)
    s = schema.series
    # the checks training made: target and feature columns present, target filled
    series_frame(df, pick_target(df, s.target, source), s.features.columns)
    rows = pd.to_numeric(df[s.target]).to_numpy(dtype=np.float64)
    xs, ys = supervised(s.matrix(df), rows, s.window, s.horizon)
    return Split(torch.from_numpy(xs), torch.from_numpy(schema.target.encode(ys)))
