"""Request and response schemas built from a run's data schema.

The instance model is made at start-up from `run.schema`, so the OpenAPI document shows a
client the feature names and their types, and bad input is refused with the field and the
reason before it reaches the model:

- tables with named columns: one record per instance, a number (or null: imputed with the
  training median, as in training) per numeric column, a string (or null) per categorical
  column; a missing column is refused, a column the model does not read is ignored and
  named in the instance's `warnings` (as `gradwise predict` ignores it, with a note), so
  a record may carry ids or the target.
- tables without names (npz X): `{"features": [F numbers]}`.
- images: `{"pixels": (H, W) or (C, H, W) nested lists in the training data's scale}` or
  `{"png": "<base64 PNG>"}` (resized to the training size; 0-255 mapped onto the training
  pixel range).
- series: `{"window": [T records of the feature columns]}`.
- labelled text and seq2seq: `{"<text column>": "..."}`.
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from gradwise.data.schema import Schema
from gradwise.errors import DataError

MAX_INSTANCES = 1024  # per request; the body-size limit usually binds first
MAX_PNG_PIXELS = 4096 * 4096

FLOAT32_MAX = float(np.finfo(np.float32).max)
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
# table columns: within float32, the type the model computes in
OptionalNumber = Annotated[
    float | None, Field(strict=True, allow_inf_nan=False, ge=-FLOAT32_MAX, le=FLOAT32_MAX)
]
# extra keys are kept (model_extra) to be named in the answer's warnings, never read
_RECORD_CONFIG = ConfigDict(extra="allow", coerce_numbers_to_str=True, populate_by_name=False)


@dataclass(frozen=True)
class InstanceCodec:
    """What the server needs to read instances of one run.

    Attributes:
        instance: the pydantic model of one instance (its JSON schema is in the OpenAPI).
        request: `{"instances": [instance, ...]}`.
        to_raw: validated instances -> raw input for `Schema.transform` (all rows at once).
        model_ready: `to_raw` gives model-ready arrays already (series windows).
        example: one instance as JSON, for the OpenAPI document and load tests.
        ignored: one validated instance -> the columns in it the model does not read.
    """

    instance: type[BaseModel]
    request: type[BaseModel]
    to_raw: Callable[[list[BaseModel]], Any]
    model_ready: bool = False
    example: dict[str, Any] | None = None
    ignored: Callable[[BaseModel], list[str]] = lambda instance: []

    def parse(self, body: str | bytes) -> list[BaseModel]:
        """The instances of a request body (as the store keeps it)."""
        return list(self.request.model_validate_json(body).instances)  # type: ignore[attr-defined]


def instance_codec(schema: Schema, example: dict[str, Any] | None = None) -> InstanceCodec:
    """The request schema of a run that predicts from inputs.

    Raises:
        DataError: the run's kind of input cannot be served.
    """
    model_ready = False
    to_raw: Callable[[list[BaseModel]], Any]
    ignored: Callable[[BaseModel], list[str]] = _extra_keys
    if schema.tabular is not None:
        tab = schema.tabular
        instance, to_raw = _record_model("Instance", tab.numeric, tab.categorical)
    elif schema.series is not None:
        model_ready = True
        instance, to_raw = _series_model(schema)
        ignored = _window_extra_keys
    elif schema.array is not None and schema.kind == "image":
        instance, to_raw = _image_model(schema)
    elif schema.array is not None:
        instance, to_raw = _vector_model(schema)
    elif schema.tokenizer is not None and schema.text_column is not None:
        instance, to_raw = _text_model(schema.text_column)
    else:
        raise DataError(
            f"A {schema.kind} {schema.task} run has no request schema; serve a run that "
            "predicts from tables, images, series or labelled text."
        )
    request = create_model(
        "PredictRequest",
        __config__=ConfigDict(extra="forbid"),
        instances=(
            list[instance],  # type: ignore[valid-type]
            Field(
                min_length=1,
                max_length=MAX_INSTANCES,
                description="the inputs to predict, in the model's own schema",
            ),
        ),
    )
    return InstanceCodec(instance, request, to_raw, model_ready, example, ignored)


def _extra_keys(instance: BaseModel) -> list[str]:
    return list(instance.model_extra or {})


def _window_extra_keys(instance: BaseModel) -> list[str]:
    names: dict[str, None] = {}  # each name once, in the order given
    for row in instance.window:  # type: ignore[attr-defined]
        names.update(dict.fromkeys(row.model_extra or {}))
    return list(names)


# ------------------------------------------------------------------ tables


def _record_model(
    name: str, numeric: list[str], categorical: list[str]
) -> tuple[type[BaseModel], Callable[[list[BaseModel]], pd.DataFrame]]:
    """One field per column, aliased to the column's name (names need not be identifiers)."""
    fields: dict[str, Any] = {}
    keys: list[tuple[str, str]] = []
    for i, col in enumerate(numeric):
        fields[f"n{i}"] = (OptionalNumber, Field(alias=col, description="number (null: median)"))
        keys.append((f"n{i}", col))
    for i, col in enumerate(categorical):
        fields[f"c{i}"] = (str | None, Field(alias=col, description="category (null: missing)"))
        keys.append((f"c{i}", col))
    model = create_model(name, __config__=_RECORD_CONFIG, **fields)

    def to_frame(instances: list[BaseModel]) -> pd.DataFrame:
        data = {col: [getattr(r, key) for r in instances] for key, col in keys}
        frame = pd.DataFrame(data)
        for col in numeric:
            frame[col] = frame[col].astype(np.float64)  # an all-null column stays numeric
        return frame

    return model, to_frame


def _series_model(schema: Schema) -> tuple[type[BaseModel], Callable[[list[BaseModel]], Any]]:
    series = schema.series
    assert series is not None
    record, to_frame = _record_model(
        "SeriesRow", series.features.numeric, series.features.categorical
    )
    model = create_model(
        "Instance",
        __config__=ConfigDict(extra="forbid"),
        window=(
            list[record],  # type: ignore[valid-type]
            Field(
                min_length=series.window,
                max_length=series.window,
                description=f"the {series.window} latest rows, oldest first",
            ),
        ),
    )

    def to_raw(instances: list[BaseModel]) -> np.ndarray:
        windows = [schema.transform(to_frame(list(inst.window))) for inst in instances]  # type: ignore[attr-defined]
        return np.concatenate(windows)  # already model-ready: (N, T, F)

    return model, to_raw


def _vector_model(schema: Schema) -> tuple[type[BaseModel], Callable[[list[BaseModel]], Any]]:
    n = int(np.prod(schema.input_shape))
    model = create_model(
        "Instance",
        __config__=ConfigDict(extra="forbid"),
        features=(
            list[Number],
            Field(min_length=n, max_length=n, description=f"{n} numbers, in training order"),
        ),
    )

    def to_raw(instances: list[BaseModel]) -> np.ndarray:
        return np.asarray([inst.features for inst in instances], dtype=np.float32)  # type: ignore[attr-defined]

    return model, to_raw


def _text_model(column: str) -> tuple[type[BaseModel], Callable[[list[BaseModel]], Any]]:
    model = create_model(
        "Instance",
        __config__=ConfigDict(extra="allow"),  # other columns: ignored, named in warnings
        text=(str, Field(alias=column, max_length=100_000, description="the text")),
    )

    def to_raw(instances: list[BaseModel]) -> pd.DataFrame:
        return pd.DataFrame({column: [inst.text for inst in instances]})  # type: ignore[attr-defined]

    return model, to_raw


# ------------------------------------------------------------------ images


def _image_model(schema: Schema) -> tuple[type[BaseModel], Callable[[list[BaseModel]], Any]]:
    norm = schema.array
    assert norm is not None
    c, h, w = norm.sample_shape
    described = f"({c}, {h}, {w})" + (f" or ({h}, {w})" if c == 1 else "")
    scale = f"{norm.pixel_low:g} to {norm.pixel_high:g}"
    # exact lengths, so the OpenAPI document states the shape
    Row = Annotated[list[Number], Field(min_length=w, max_length=w)]  # noqa: N806
    Rows = Annotated[list[Row], Field(min_length=h, max_length=h)]  # type: ignore[valid-type]  # noqa: N806
    Rows3 = Annotated[list[Rows], Field(min_length=c, max_length=c)]  # type: ignore[valid-type]  # noqa: N806

    class Instance(BaseModel):
        model_config = ConfigDict(
            extra="forbid",
            json_schema_extra={"oneOf": [{"required": ["pixels"]}, {"required": ["png"]}]},
        )
        pixels: Rows3 = Field(  # type: ignore[valid-type]
            None,  # type: ignore[arg-type]
            description=f"raw pixels shaped {described}, in the training data's scale ({scale})",
        )
        png: str = Field(None, description="a base64-encoded PNG (resized to fit)")  # type: ignore[assignment]

        @field_validator("pixels", mode="before")
        @classmethod
        def _grayscale(cls, value: Any) -> Any:
            if c == 1 and _depth(value) == 2:  # (H, W) for a one-channel model
                return [value]
            return value

        @field_validator("pixels", mode="after")
        @classmethod
        def _shape(cls, value: Any) -> Any:
            if value is None:
                return value
            try:
                with np.errstate(over="ignore"):  # too large for float32: refused below
                    arr = np.asarray(value, dtype=np.float32)
            except ValueError:
                raise ValueError("ragged: every row must have the same length") from None
            if arr.shape != (c, h, w):
                raise ValueError(f"shape {arr.shape}; the model takes {described}")
            if not np.isfinite(arr).all():
                raise ValueError("values beyond the float32 range")
            return arr  # kept as the array: the batch is stacked from it

        @field_validator("png", mode="after")
        @classmethod
        def _readable(cls, value: Any) -> Any:
            if value is not None:
                decode_png(value, schema)  # refuse a bad PNG here, as a 422
            return value

        @model_validator(mode="after")
        def _one_image(self) -> Instance:
            if (self.pixels is None) == (self.png is None):
                raise ValueError("give exactly one of pixels or png")
            return self

    def to_raw(instances: list[BaseModel]) -> np.ndarray:
        arrays = [
            decode_png(inst.png, schema)  # type: ignore[attr-defined]
            if inst.png is not None  # type: ignore[attr-defined]
            else inst.pixels  # type: ignore[attr-defined]
            for inst in instances
        ]
        return np.stack(arrays)

    return Instance, to_raw


def _depth(value: Any) -> int:
    depth = 0
    while isinstance(value, list) and value:
        depth += 1
        value = value[0]
    return depth


def decode_png(text: str, schema: Schema) -> np.ndarray:
    """A base64 PNG as a (C, H, W) float32 array in the training data's pixel range.

    Raises:
        ValueError: not base64, not an image, or too large (a pydantic error: a 422).
    """
    from PIL import Image, UnidentifiedImageError

    norm = schema.array
    assert norm is not None
    c, h, w = norm.sample_shape
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.width * img.height > MAX_PNG_PIXELS:
                raise ValueError(f"{img.width}x{img.height} pixels; at most {MAX_PNG_PIXELS}")
            pixels = img.convert("L" if c == 1 else "RGB")
            if pixels.size != (w, h):
                pixels = pixels.resize((w, h), Image.Resampling.BILINEAR)
            arr = np.asarray(pixels, dtype=np.float32)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, SyntaxError):
        raise ValueError("not a readable image") from None
    arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)  # (C, H, W)
    if arr.shape[0] != c:
        raise ValueError(f"{arr.shape[0]} channels; the model takes {c}")
    return arr / 255.0 * (norm.pixel_high - norm.pixel_low) + norm.pixel_low


def example_instance(schema: Schema, raw: Any) -> dict[str, Any] | None:
    """The first training sample as a request instance (OpenAPI example, load tests)."""
    if schema.tabular is not None and isinstance(raw, pd.DataFrame):
        row = raw.iloc[0]
        out: dict[str, Any] = {}
        for col in schema.tabular.columns:
            value = row[col]
            if pd.isna(value):
                out[col] = None
            elif col in schema.tabular.numeric:
                out[col] = float(value)
            else:
                out[col] = str(value).strip()
        return out
    if schema.array is not None and schema.kind == "image":
        return {"pixels": np.asarray(raw[0], dtype=np.float32).tolist()}
    if schema.array is not None and schema.kind == "tabular":
        return {"features": np.asarray(raw[0], dtype=np.float32).reshape(-1).tolist()}
    if schema.text_column is not None and isinstance(raw, pd.DataFrame):
        return {schema.text_column: str(raw[schema.text_column].iloc[0])}
    return None


def synthetic_instance(schema: Schema) -> dict[str, Any]:
    """A typical instance made from the schema alone (training medians, the commonest-looking
    category, mean pixels): for the OpenAPI example and load tests without the data."""
    if schema.tabular is not None:
        tab = schema.tabular
        out: dict[str, Any] = dict(zip(tab.numeric, tab.medians))
        out.update(
            {
                col: vocab[1] if len(vocab) > 1 else None
                for col, vocab in zip(tab.categorical, tab.vocab)
            }
        )
        return out
    if schema.series is not None:
        feats = schema.series.features
        row: dict[str, Any] = dict(zip(feats.numeric, feats.medians))
        row.update(
            {col: v[1] if len(v) > 1 else None for col, v in zip(feats.categorical, feats.vocab)}
        )
        return {"window": [row] * schema.series.window}
    if schema.array is not None:
        norm = schema.array
        mean = np.asarray(norm.mean, dtype=np.float32)
        if schema.kind == "image":
            c, h, w = norm.sample_shape
            return {"pixels": np.broadcast_to(mean.reshape(c, 1, 1), (c, h, w)).tolist()}
        n = int(np.prod(norm.sample_shape))
        return {"features": np.resize(mean, n).tolist()}  # features cycle fastest
    if schema.text_column is not None:
        return {schema.text_column: "an example text"}
    raise DataError(f"A {schema.kind} {schema.task} run has no request schema.")
