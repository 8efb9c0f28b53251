"""The configuration reference, generated from the pydantic models (run by docs/hooks/build.py).

It walks `gradwise.config.Config` and every model it nests (a union of models, such as
`model:` or `data.augment`, gets one table per member), then every other settings model that
`gradwise.config.__all__` exports, so a new field or a new settings model appears in the docs
without an edit here. Each row: key, type, default, bounds, description.
"""

from __future__ import annotations

import html
import json
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Union

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

_BOUNDS = (
    (annotated_types.Ge, "ge", "≥"),
    (annotated_types.Gt, "gt", ">"),
    (annotated_types.Le, "le", "≤"),
    (annotated_types.Lt, "lt", "<"),
    (annotated_types.MinLen, "min_length", "length ≥"),
    (annotated_types.MaxLen, "max_length", "length ≤"),
)


@dataclass(frozen=True)
class Row:
    key: str
    type: str
    default: str
    bounds: str
    description: str


@dataclass(frozen=True)
class Section:
    """One settings model at one place in the config: its heading and its rows."""

    key: str  # dotted prefix, e.g. "train.optimizer"; "" for the top level
    model: type[BaseModel]
    tag: str  # "arch: mlp" for a member of a tagged union, else ""
    rows: tuple[Row, ...]


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation names, in order (through unions, lists, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        for model in _models_in(arg):
            if model not in found:
                found.append(model)
    return found


def _is_list(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_is_list(a) for a in typing.get_args(annotation))
    return origin in (list, tuple)


def type_name(annotation: Any) -> str:
    """A short, readable name for a field's type: `int | None`, `"he" | "xavier"`, ..."""
    if annotation is type(None):
        return "null"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0])
    if origin is Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin in (list, tuple, dict):
        inner = ", ".join("..." if a is Ellipsis else type_name(a) for a in args)
        return f"{origin.__name__}[{inner}]"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _bounds_of(metadata: list[Any]) -> list[str]:
    out = []
    for item in metadata:
        for cls, attr, sign in _BOUNDS:
            if isinstance(item, cls):
                out.append(f"{sign} {getattr(item, attr)}")
    return out


def _item_bounds(annotation: Any) -> list[str]:
    """Bounds on the items of a list, such as `list[Annotated[int, Field(ge=1)]]`."""
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is typing.Annotated:
            for meta in typing.get_args(arg)[1:]:
                inner = getattr(meta, "metadata", [meta])
                found = _bounds_of(list(inner))
                if found:
                    return [f"each {b}" for b in found]
        found = _item_bounds(arg)
        if found:
            return found
    return []


def bounds(field: FieldInfo) -> str:
    return ", ".join(_bounds_of(field.metadata) + _item_bounds(field.annotation))


def default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return ""  # a section: its keys are listed below
    return json.dumps(value, default=str)


def _literal_values(model: type[BaseModel], name: str) -> tuple[Any, ...]:
    field = model.model_fields.get(name)
    if field is None or typing.get_origin(field.annotation) is not Literal:
        return ()
    return typing.get_args(field.annotation)


def _tags(members: list[type[BaseModel]]) -> list[str]:
    """`arch: mlp` for each member of a tagged union: the Literal field they all have."""
    if len(members) < 2:
        return [""] * len(members)
    for name in members[0].model_fields:
        if all(_literal_values(m, name) for m in members):
            return [f"{name}: {' | '.join(map(str, _literal_values(m, name)))}" for m in members]
    return [m.__name__ for m in members]


def sections(model: type[BaseModel], key: str = "", tag: str = "") -> Iterator[Section]:
    """The model's own rows, then, depth first, a section for each model it nests."""
    rows = []
    nested: list[tuple[str, type[BaseModel], str]] = []
    for name, field in model.model_fields.items():
        path = f"{key}.{name}" if key else name
        members = _models_in(field.annotation)
        where = f"{path}[]" if _is_list(field.annotation) else path
        for member, member_tag in zip(members, _tags(members), strict=True):
            nested.append((where, member, member_tag or tag))
        description = (field.description or "").replace("\n", " ")
        if members:
            description = (description + " " if description else "") + "(see below)"
        rows.append(
            Row(path, type_name(field.annotation), default(field), bounds(field), description)
        )
    yield Section(key, model, tag, tuple(rows))
    for path, member, member_tag in nested:
        yield from sections(member, path, member_tag)


def all_sections() -> list[Section]:
    """Config and everything it nests, then the other settings models `__all__` exports."""
    from gradwise import config

    found = list(sections(config.Config))
    reached = {s.model for s in found}
    for name in config.__all__:
        obj = getattr(config, name)
        if isinstance(obj, type) and issubclass(obj, BaseModel) and obj not in reached:
            for section in sections(obj, key=""):
                found.append(section if section.key else Section(name, obj, "", section.rows))
                reached.add(section.model)
    return found


def _cell(text: str) -> str:
    """Table-cell text: HTML-escaped, with `|` as an entity (a `\\|` shows its backslash
    inside code)."""
    return html.escape(text, quote=False).replace("|", "&#124;")


def _code(text: str) -> str:
    return f"<code>{_cell(text)}</code>" if text else ""


def render() -> str:
    """The whole page, in Markdown."""
    lines = [
        "# Configuration reference",
        "",
        "Every key of every settings model, generated from the pydantic models in",
        "`gradwise.config` each time the site is built (`docs/hooks/config_reference.py`), so",
        "it cannot fall behind the code. Set a key in the YAML file under its section, or on",
        "the command line with `--set KEY=VALUE` (`--set train.optimizer.lr=3e-4`). Unknown",
        "keys and values outside the bounds are refused before any work starts.",
        "",
        "A union of sections (`model:` by `arch`, `data.augment` by `name`) lists each member",
        "under its tag.",
        "",
    ]
    for section in all_sections():
        title = section.key or "top level"
        if section.tag:
            title = f"{title} ({section.tag})"
        lines += [
            f"## `{title}`" if section.key else f"## {title}",
            "",
            f"Model: `{section.model.__name__}`.",
            "",
            "| key | type | default | bounds | description |",
            "|---|---|---|---|---|",
        ]
        for row in section.rows:
            lines.append(
                f"| {_code(row.key)} | {_code(row.type)} | {_code(row.default)} "
                f"| {_cell(row.bounds)} | {_cell(row.description)} |"
            )
        lines.append("")
    return "\n".join(lines)
