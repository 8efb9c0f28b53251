"""Dotted keys (`train.optimizer.lr`) over nested config dicts: the type a key sets, a
`--set` value parsed as that type, and setting a key in place."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel

from gradwise.errors import ConfigError


def parse_value(text: str, annotation: Any = None) -> Any:
    if annotation is not None and _is_text(annotation):
        if text.strip() in ("null", "~", "") and _allows_none(annotation):
            return None
        return text
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:  # YAML 1.1 reads 3e-4 as a string
            return float(value)
        except ValueError:
            return value
    return value


def field_type(cls: Any, parts: list[str]) -> Any:
    """The annotation of the field at `parts` below the model `cls`; None when not found
    (an unknown key, reported by validation) or ambiguous (different model kinds disagree)."""
    if not parts:
        return None
    found = []
    for model in _models(cls):
        field = model.model_fields.get(parts[0])
        if field is not None:
            found.append(
                field.annotation if len(parts) == 1 else field_type(field.annotation, parts[1:])
            )
    kinds = {repr(f) for f in found}
    return found[0] if len(kinds) == 1 else None


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation names (a union's members, Annotated unwrapped)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) is Annotated:
        return _models(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _models(arg)]
    return []


def _members(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) is Annotated:
        return _members(typing.get_args(annotation)[0])
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for arg in typing.get_args(annotation) for m in _members(arg)]
    return [annotation]


def _is_text(annotation: Any) -> bool:
    """A field whose every value is text (str, a path, a Literal of strings), None aside."""
    members = [m for m in _members(annotation) if m is not type(None)]

    def text(m: Any) -> bool:
        if typing.get_origin(m) is Literal:
            return all(isinstance(v, str) for v in typing.get_args(m))
        return m is str or m is Path

    return bool(members) and all(text(m) for m in members)


def _allows_none(annotation: Any) -> bool:
    return type(None) in _members(annotation)


def set_dotted(raw: dict[str, Any], key: str, value: Any, merge: bool = False) -> None:
    """Set `raw[a][b][c] = value` for key `a.b.c`; with `merge`, a dict value updates the
    section it lands on rather than replacing it."""
    node = raw
    parts = key.split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            prefix = ".".join(parts[: depth + 1])
            raise ConfigError(f"--set {key}: {prefix} is a value, not a section.")
        node = child
    old = node.get(parts[-1])
    if merge and isinstance(value, dict) and isinstance(old, dict):
        merged = deep_copy(old)
        for k, v in value.items():
            set_dotted(merged, str(k), v, merge=True)
        value = merged
    node[parts[-1]] = value


def deep_copy(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: deep_copy(v) if isinstance(v, dict) else v for k, v in raw.items()}
