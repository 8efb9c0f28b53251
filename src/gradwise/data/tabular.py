"""Tables (csv, parquet, built-in): read, split, then impute, standardise, one-hot or embed
with statistics from the training rows only."""

from __future__ import annotations

import csv
import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from gradwise.config import DataConfig
from gradwise.data.dataset import Dataset
from gradwise.data.schema import Schema
from gradwise.data.split import SplitResult, split_columns, split_table
from gradwise.data.target import TargetSpec, infer_task
from gradwise.errors import DataError

OTHER = "<other>"
MISSING = "<missing>"


def read_table(path: Path, kind: Literal["csv", "parquet"], cfg: DataConfig) -> pd.DataFrame:
    """Read a CSV or parquet file into a DataFrame; a DataError names what went wrong."""
    if not path.is_file():
        raise DataError(f"Data file {path} not found; check data.source.")
    try:
        if kind == "parquet":
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(
                path,
                sep=cfg.separator or ",",
                quoting=csv.QUOTE_NONE if cfg.quoting == "none" else csv.QUOTE_MINIMAL,
                header=None if cfg.columns else "infer",
                names=cfg.columns,
                skipinitialspace=True,
                na_values=cfg.na_values or None,
                encoding="utf-8-sig",
                nrows=cfg.limit,
            )
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        hint = ""
        if "EOF inside string" in str(exc):
            hint = (
                '; a quote (") opens a field that never closes: if quotes in this file are '
                "ordinary text, set data.quoting: none"
            )
        raise DataError(f"Cannot read {path} as {kind}: {exc}{hint}") from None
    if cfg.limit is not None:
        df = df.iloc[: cfg.limit]
    if df.empty:
        raise DataError(f"{path} holds no rows.")
    df.columns = [str(c).strip() for c in df.columns]
    return df


def check_columns(df: pd.DataFrame, names: list[str], key: str) -> None:
    """Every name is a column of df, or a DataError that suggests the closest column."""
    unknown = [c for c in names if c not in df.columns]
    if unknown:
        hints = [
            f"{c!r} (did you mean {close!r}?)" if (close := closest_column(c, df)) else repr(c)
            for c in unknown
        ]
        raise DataError(
            f"{key} names {', '.join(hints)}, not in the data. Columns: {', '.join(df.columns)}."
        )


def closest_column(name: str, df: pd.DataFrame) -> str | None:
    match = difflib.get_close_matches(name, [str(c) for c in df.columns], n=1, cutoff=0.6)
    return match[0] if match else None


def pick_target(df: pd.DataFrame, target: str | None, origin: str) -> str:
    if target is None:
        raise DataError(
            f"{origin}: set data.target to the column to predict. Columns: {', '.join(df.columns)}."
        )
    if target not in df.columns:
        hint = ""
        if close := closest_column(target, df):
            hint = f" Did you mean {close!r}?"
        if looks_headerless(df):
            hint = (
                " The first row looks like data, not a header: name the columns with data.columns."
            )
        raise DataError(
            f"Target column {target!r} not found in {origin}. Columns: {', '.join(df.columns)}."
            + hint
        )
    return target


@dataclass(frozen=True)
class TabularPreprocessor:
    """Fitted column transforms; `transform` turns raw rows into the model's float matrix.

    Numeric columns: missing values take the train median, then (x - mean) / std.
    Categorical columns: a vocabulary from train (plus <other> for unseen values), then
    either one-hot columns or, with `encoding='embed'`, one integer code per column that
    the model embeds. `order` keeps the input columns as the data gave them (raw series
    windows hold them so); empty in runs saved before it was kept.
    """

    numeric: list[str]
    medians: list[float]
    means: list[float]
    stds: list[float]
    categorical: list[str] = field(default_factory=list)
    vocab: list[list[str]] = field(default_factory=list)
    encoding: Literal["onehot", "embed"] = "onehot"
    order: list[str] = field(default_factory=list)

    @staticmethod
    def fit(
        df: pd.DataFrame,
        encoding: Literal["onehot", "embed"],
        categorical_columns: Sequence[str] = (),
    ) -> TabularPreprocessor:
        """Column kinds and statistics from the training rows `df`.

        Args:
            categorical_columns: columns read as categories whatever their values
                (data.categorical_columns); the others by their values (`_column_kinds`).

        Raises:
            DataError: no input columns, a categorical column that is not an input column,
                or text cells in a numeric column.
        """
        check_columns(df, list(categorical_columns), "data.categorical_columns")
        numeric, categorical = _column_kinds(df, categorical_columns)
        if not numeric and not categorical:
            raise DataError("No input columns are left after removing the target and data.drop.")
        num = df[numeric].apply(pd.to_numeric, errors="coerce").astype(np.float64)
        _check_numeric(df[numeric], num)  # text in a column of numbers: refused, not one-hot
        medians = num.median().fillna(0.0)
        filled = num.fillna(medians)
        stds = filled.std(ddof=0).replace(0.0, 1.0).fillna(1.0)
        vocab = [[OTHER, *sorted(_as_text(df[c]).unique().tolist())] for c in categorical]
        return TabularPreprocessor(
            numeric=numeric,
            medians=medians.tolist(),
            means=filled.mean().tolist(),
            stds=stds.tolist(),
            categorical=categorical,
            vocab=vocab,
            encoding=encoding,
            order=[str(c) for c in df.columns],
        )

    @property
    def columns(self) -> list[str]:
        return self.numeric + self.categorical

    @property
    def raw_columns(self) -> list[str]:
        """The input columns in the data's own order (dates, which are not used, included)."""
        return self.order or self.columns

    @property
    def n_features(self) -> int:
        if self.encoding == "embed":
            return len(self.numeric) + len(self.categorical)
        return len(self.numeric) + sum(len(v) for v in self.vocab)

    @property
    def cardinalities(self) -> list[int]:
        """Vocabulary size of each embedded column (empty for one-hot)."""
        return [len(v) for v in self.vocab] if self.encoding == "embed" else []

    @property
    def feature_names(self) -> list[str]:
        if self.encoding == "embed":
            return self.columns
        return self.numeric + [
            f"{c}={v}" for c, vs in zip(self.categorical, self.vocab) for v in vs
        ]

    def count_missing(self, df: pd.DataFrame) -> dict[str, int]:
        counts = df[self.columns].isna().sum()
        return {c: int(n) for c, n in counts.items() if n}

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """Raw rows (any extra columns are ignored) to an (N, n_features) float32 matrix."""
        missing = [c for c in self.columns if c not in df.columns]
        if missing:
            raise DataError(
                f"Input lacks the column(s) {', '.join(missing)} the model was trained on; "
                f"expected columns: {', '.join(self.columns)}."
            )
        given = df[self.numeric]
        num = given.apply(pd.to_numeric, errors="coerce").astype(np.float64)
        _check_numeric(given, num)
        num = num.fillna(pd.Series(self.medians, index=self.numeric))
        parts = [((num.to_numpy() - np.array(self.means)) / np.array(self.stds))]
        for col, vocab in zip(self.categorical, self.vocab):
            index = {v: i for i, v in enumerate(vocab)}
            codes = _as_text(df[col]).map(lambda v, index=index: index.get(v, 0)).to_numpy()
            if self.encoding == "embed":
                parts.append(codes[:, None].astype(np.float64))
            else:
                parts.append(np.eye(len(vocab))[codes])
        return np.concatenate(parts, axis=1).astype(np.float32)


def _check_numeric(given: pd.DataFrame, parsed: pd.DataFrame) -> None:
    """A value that is there but is not a number (text in a numeric column) is an error, not a
    missing value to impute or a category to one-hot: either would learn from, or predict
    from, a number nobody gave. Rows are the table's own (0-based data rows)."""
    bad = parsed.isna().to_numpy(dtype=bool) & given.notna().to_numpy(dtype=bool)
    if not bad.any():
        return
    col = int(np.flatnonzero(bad.any(axis=0))[0])
    rows = np.flatnonzero(bad[:, col])
    name = given.columns[col]
    labels = [str(given.index[r]) for r in rows[:5]]
    shown = ", ".join(labels) + (", ..." if len(rows) > 5 else "")
    values = list(dict.fromkeys(str(given.iloc[r, col]) for r in rows))
    listed = ", ".join(repr(v) for v in values[:5]) + (", ..." if len(values) > 5 else "")
    raise DataError(
        f"Column {name!r} is numeric but holds text in {len(rows)} row(s) (rows {shown}: "
        f"{listed}); if the column is a category (codes, not quantities), train with "
        f"data.categorical_columns: [{name}]; otherwise fix those values, or leave them empty "
        "to have them imputed with the training median (strings that mark a missing value go "
        "in data.na_values; a column to leave out, in data.drop)."
    )


# a text column is a column of numbers with a few bad cells when at least this share of its
# filled cells reads as numbers; below it, a category whose codes may look like numbers
MOSTLY_NUMERIC = 0.9


def _column_kinds(
    df: pd.DataFrame, categorical_columns: Sequence[str] = ()
) -> tuple[list[str], list[str]]:
    """Numeric and categorical input columns, in the data's order: the columns named in
    `categorical_columns` are categories; numbers (and text columns whose filled cells mostly
    read as numbers) are numeric; dates are left out; the rest is categorical."""
    numeric, categorical = [], []
    forced = set(categorical_columns)
    for col in df.columns:
        kind = df[col].dtype.kind
        if col in forced:
            categorical.append(col)
        elif kind in "iufb" or (kind == "O" and _numeric_share(df[col]) >= MOSTLY_NUMERIC):
            numeric.append(col)
        elif kind == "M" or kind == "m":
            continue  # dates are not features by themselves
        else:
            categorical.append(col)
    return numeric, categorical


def _numeric_share(col: pd.Series) -> float:
    """The share of a column's filled cells that read as numbers (0 when none is filled)."""
    filled = col.dropna()
    if filled.empty:
        return 0.0
    parsed = pd.to_numeric(filled.astype(str).str.strip(), errors="coerce")
    return float(parsed.notna().mean())


def _as_text(col: pd.Series) -> pd.Series:
    """A categorical column's values as the vocabulary's strings; a whole number reads the same
    whether it came as an int or a float (94110 and 94110.0: a column with gaps, a window)."""
    return col.astype(object).map(_category_text).where(col.notna(), MISSING).str.strip()


def _category_text(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def looks_headerless(df: pd.DataFrame) -> bool:
    """Whether the column names read from a first row look like data (numbers)."""
    names = [str(c) for c in df.columns]
    return sum(_is_number(c) for c in names) >= max(1, len(names) // 2)


def _is_number(text: str) -> bool:
    try:
        float(text.strip("'\""))
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------ building a dataset


TRANSFORM_ROWS = 65_536  # rows transformed at a time: float64 temporaries of that many rows


def transform_in_chunks(prep: TabularPreprocessor, x_df: pd.DataFrame) -> np.ndarray:
    """`prep.transform` of every row, a chunk at a time (rows are transformed one by one, so
    the result is the same): memory holds the float32 result, not float64 copies of all."""
    n = len(x_df)
    if n <= TRANSFORM_ROWS:
        return prep.transform(x_df)
    out = np.empty((n, prep.n_features), dtype=np.float32)
    for start in range(0, n, TRANSFORM_ROWS):
        out[start : start + TRANSFORM_ROWS] = prep.transform(
            x_df.iloc[start : start + TRANSFORM_ROWS]
        )
    return out


def build_tabular(
    df: pd.DataFrame,
    cfg: DataConfig,
    seed: int,
    indices: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    classes: np.ndarray | None = None,
) -> Dataset:
    """A table: the target column's classes or values from the other columns.

    Args:
        indices: the train, val and test row positions; None: drawn from cfg.split.
        classes: the target's classes when `df` holds a sample of the table (a stream's
            held rows); None: the classes in `df`.

    Raises:
        DataError: the target or a dropped column is missing, or the target has gaps.
    """
    target = pick_target(df, cfg.target, cfg.source)
    check_columns(df, cfg.drop, "data.drop")
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
    x_df = df.drop(columns=[target, *cfg.drop, *split_columns(cfg.split)], errors="ignore")
    if indices is None:
        stratify = y_raw if task == "classification" else None
        split = split_table(df, cfg.split, seed, x_df, stratify)
    else:
        split = SplitResult(*indices, rule={"method": "given"})
    tr, va, te = split.indices
    prep = TabularPreprocessor.fit(x_df.iloc[tr], cfg.categorical, cfg.categorical_columns)
    notes = split.notes + tuple(
        f"imputed {n} missing values in column {col!r} (train median or <missing> category)"
        for col, n in prep.count_missing(x_df).items()
    )
    spec = (
        TargetSpec.fit_classes(y_raw if classes is None else classes, target)
        if task == "classification"
        else TargetSpec.fit_regression(y_raw[tr], target)
    )
    x = transform_in_chunks(prep, x_df)
    y = spec.encode(y_raw)
    schema = Schema(
        kind="tabular",
        task=task,  # type: ignore[arg-type]
        input_shape=[prep.n_features],
        n_outputs=len(spec.classes) if spec.classes else 1,
        target=spec,
        source=cfg.source,
        tabular=prep,
    )
    return Dataset.from_arrays(
        x, y, (tr, va, te), schema, notes, raw=df, split_rule=split.rule, fold_key=split.fold_key
    )
