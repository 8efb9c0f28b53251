"""Turn pydantic's validation errors into sentences a person can act on.

error: unknown key train.lr_rate in config.yaml; did you mean train.optimizer.lr?
"""

from __future__ import annotations

import difflib
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

_TAGGED = {"model": "arch", "augment": "name"}


def explain(exc: ValidationError, raw: dict[str, Any], origin: str, root: type[BaseModel]) -> str:
    """One line per problem, naming the key, what was wrong and what would be right.

    Args:
        raw: the mapping that was validated; origin: where it came from (a file name).
        root: the model `raw` was validated against (the config), whose keys the lines name.
    """
    lines = [_line(err, raw, origin, root) for err in exc.errors()]
    return "\n".join(f"error: {line}" if i else line for i, line in enumerate(lines))


def _line(err: Any, raw: dict[str, Any], origin: str, root: type[BaseModel]) -> str:
    loc = [str(p) for p in err["loc"]]
    key, model_cls = _user_path(loc, raw, root)
    ctx = err.get("ctx") or {}
    match err["type"]:
        case "extra_forbidden":
            return f"unknown key {key} in {origin}; {suggest(key, model_cls)}"
        case "union_tag_invalid":
            tag = ctx.get("discriminator", "").strip("'")
            return f"{key}.{tag}: {ctx.get('tag')!r} is not one of {ctx.get('expected_tags')}"
        case "union_tag_not_found":
            tag = ctx.get("discriminator", "").strip("'")
            return f"{key}.{tag} is missing; choose one of {_tags(root, key, tag)}"
        case "value_error" | "assertion_error":
            # our validators' messages name their keys already ("model.d_model (30) must ...")
            return str(ctx.get("error", err["msg"])).removeprefix("Value error, ")
        case "missing":
            return f"{key} is required in {origin}"
    got = err.get("input")
    shown = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"{key}: {err['msg'].rstrip('.')}{shown}"


def _tags(root: type[BaseModel], key: str, tag: str) -> str:
    """The values a tagged section's tag may take (model.arch: mlp, cnn, ...)."""
    annotation: Any = root
    for part in key.split("."):
        if part.isdigit():  # an item of a list (data.augment.0)
            continue
        owners = [m for m in _models(annotation) if part in m.model_fields]
        if not owners:
            return "the documented values"
        annotation = owners[0].model_fields[part].annotation
    members = [m for m in _models(annotation) if tag in m.model_fields]
    return ", ".join(
        str(v) for m in members for v in typing.get_args(m.model_fields[tag].annotation)
    )


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation holds: itself, a union's members, a list's items."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def suggest(key: str, model_cls: type[BaseModel] | None) -> str:
    """'did you mean ...?' from the keys valid where the typo sits, nested ones included."""
    parent, _, name = key.rpartition(".")
    valid = _dotted_keys(model_cls) if model_cls else []
    top = [k for k in valid if "." not in k]
    match = _closest(name, {k: k for k in top})
    if match is None:
        match = _closest(name, {k.rsplit(".", 1)[-1]: k for k in reversed(valid) if "." in k})
    if match is None:
        return f"valid keys here: {', '.join(top)}."
    return f"did you mean {parent + '.' if parent else ''}{match}?"


def _closest(name: str, candidates: dict[str, str]) -> str | None:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    if close:
        return candidates[close[0]]
    stems = [c for c in candidates if name.startswith(c) or c.startswith(name)]
    return candidates[max(stems, key=len)] if stems else None


def _dotted_keys(cls: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in cls.model_fields.items():
        keys.append(prefix + name)
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys.extend(_dotted_keys(ann, f"{prefix}{name}."))
    return keys


def _user_path(
    loc: list[str], raw: dict[str, Any], root: type[BaseModel]
) -> tuple[str, type[BaseModel] | None]:
    """Drop pydantic's union tags from a location and find the model class that owns it."""
    parts: list[str] = []
    cls: type[BaseModel] | None = root
    node: Any = raw
    i = 0
    while i < len(loc):
        part = loc[i]
        parts.append(part)
        owner_field = parts[-1]
        next_node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            next_node = node[int(part)]
        node = next_node
        tag_field = _TAGGED.get(owner_field) if owner_field in _TAGGED else None
        if owner_field.isdigit() and len(parts) >= 2 and parts[-2] in _TAGGED:
            tag_field = _TAGGED[parts[-2]]
        if (
            tag_field
            and i + 1 < len(loc)
            and isinstance(node, dict)
            and loc[i + 1] == str(node.get(tag_field))
        ):
            i += 1  # skip the discriminator value pydantic inserts
        cls = _field_model(cls, part, node, tag_field)
        i += 1
    return ".".join(parts), cls


def _field_model(
    cls: type[BaseModel] | None, part: str, node: Any, tag_field: str | None
) -> type[BaseModel] | None:
    if cls is None:
        return None
    if part.isdigit():
        return cls
    field = cls.model_fields.get(part)
    if field is None:
        return cls
    return _model_in(field.annotation, node, tag_field)


def _model_in(annotation: Any, node: Any, tag_field: str | None) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    candidates = []
    for arg in typing.get_args(annotation):
        found = _model_in(arg, node, tag_field)
        if found is not None:
            candidates.append(found)
    if tag_field and isinstance(node, dict):
        for cand in candidates:
            tag = cand.model_fields.get(tag_field)
            if tag is not None and node.get(tag_field) in typing.get_args(tag.annotation):
                return cand
    return candidates[0] if candidates else None
