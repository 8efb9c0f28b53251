"""What an instance held that the model reads differently than a client may expect.

A served answer is 200 even when the model read part of an instance as "unknown": a value
of a categorical column that training never saw (one-hot or embedded as `<other>`), a number
sent for a categorical column (read as its text, usually unseen), or a column the model does
not read (ignored). Each such instance carries `warnings` in the answer, and the server
counts them by kind in /metrics (`gradwise_input_warnings_total{kind=...}`), so a client
sending codes where training had names is seen, not silently answered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel

from gradwise.data.schema import Schema
from gradwise.data.tabular import MISSING, OTHER, TabularPreprocessor

Kind = Literal["unseen_category", "number_for_category", "ignored_columns"]
KINDS: tuple[Kind, ...] = ("unseen_category", "number_for_category", "ignored_columns")
_SHOWN = 3  # vocabulary values named in a warning


@dataclass(frozen=True)
class InputWarning:
    kind: Kind
    message: str


Checker = Callable[[BaseModel], list[InputWarning]]


def input_checker(schema: Schema, ignored: Callable[[BaseModel], list[str]]) -> Checker:
    """A function from one validated instance to its warnings (empty for most instances).

    Args:
        schema: the served run's data schema (its categorical vocabularies).
        ignored: the codec's function naming the instance's columns the model does not read.
    """
    if schema.tabular is not None:
        categories = _category_checker(schema.tabular, lambda inst: [inst])
    elif schema.series is not None:
        categories = _category_checker(
            schema.series.features,
            lambda inst: list(inst.window),  # type: ignore[attr-defined]
        )
    else:
        categories = None

    def check(instance: BaseModel) -> list[InputWarning]:
        found = categories(instance) if categories is not None else []
        if names := ignored(instance):
            found.append(
                InputWarning("ignored_columns", f"not model inputs, ignored: {', '.join(names)}")
            )
        return found

    return check


def _category_checker(
    prep: TabularPreprocessor, records: Callable[[BaseModel], list[BaseModel]]
) -> Callable[[BaseModel], list[InputWarning]] | None:
    """Warnings for values outside each categorical column's training vocabulary; `records`
    gives the instance's rows (one for a table, the window's rows for a series)."""
    if not prep.categorical:
        return None
    columns = [
        (col, set(vocab[1:]) if vocab and vocab[0] == OTHER else set(vocab), vocab)
        for col, vocab in zip(prep.categorical, prep.vocab)
    ]

    def check(instance: BaseModel) -> list[InputWarning]:
        rows = records(instance)
        found: list[InputWarning] = []
        for col, seen, vocab in columns:
            unseen: dict[str, list[int]] = {}  # value -> rows (of a window) holding it
            for i, row in enumerate(rows):
                value = _field(row, col)
                text = MISSING if value is None else str(value).strip()
                if text not in seen:
                    unseen.setdefault(text, []).append(i)
            for text, where in unseen.items():
                found.append(_unseen(col, text, where, len(rows), vocab))
        return found

    return check


def _field(record: BaseModel, column: str) -> object:
    """The value of `column` in a record whose fields are aliased to the column names."""
    names = _ALIASES.get(type(record))
    if names is None:
        fields = type(record).model_fields.items()
        names = _ALIASES[type(record)] = {info.alias or n: n for n, info in fields}
    name = names.get(column)
    return None if name is None else getattr(record, name)


_ALIASES: dict[type[BaseModel], dict[str, str]] = {}  # record model -> column -> field name


def _unseen(column: str, text: str, rows: list[int], n_rows: int, vocab: list[str]) -> InputWarning:
    known = [v for v in vocab if v not in (OTHER, MISSING)]
    examples = ", ".join(repr(v) for v in known[:_SHOWN]) + (", ..." if len(known) > _SHOWN else "")
    where = ""
    if n_rows > 1:
        more = ", ..." if len(rows) > 5 else ""
        where = f" (window rows {', '.join(str(r) for r in rows[:5])}{more})"
    if text == MISSING:
        return InputWarning(
            "unseen_category",
            f"column {column!r}: null{where}; training had no missing values there; "
            f"read as {OTHER}",
        )
    if _is_number(text):
        return InputWarning(
            "number_for_category",
            f"column {column!r}: {text}{where} is a number, but the column holds categories "
            f"({examples}); not seen in training; read as {OTHER}",
        )
    return InputWarning(
        "unseen_category",
        f"column {column!r}: {text!r}{where} was not seen in training (known: {examples}); "
        f"read as {OTHER}",
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
