"""Rebuild a Schema from its stored form (model.json's `schema`, `Schema.to_dict`).

It lives above the preprocessors' modules: each of them builds its data and so imports
Schema, and Schema itself imports none of them at run time.
"""

from __future__ import annotations

from typing import Any

from gradwise.data.arrays import ArrayNormaliser
from gradwise.data.schema import Schema
from gradwise.data.tabular import TabularPreprocessor
from gradwise.data.target import TargetSpec
from gradwise.data.text import Tokenizer
from gradwise.data.timeseries import SeriesPreprocessor


def schema_from_dict(d: dict[str, Any]) -> Schema:
    """The Schema `Schema.to_dict` wrote, with its fitted preprocessing."""
    d = dict(d)
    d["target"] = TargetSpec(**d["target"])
    if d.get("array"):
        d["array"] = ArrayNormaliser(**d["array"])
    if d.get("tabular"):
        d["tabular"] = TabularPreprocessor(**d["tabular"])
    if d.get("series"):
        s = dict(d["series"])
        s["features"] = TabularPreprocessor(**s["features"])
        d["series"] = SeriesPreprocessor(**s)
    if d.get("tokenizer"):
        d["tokenizer"] = Tokenizer(**d["tokenizer"])
    return Schema(**d)
