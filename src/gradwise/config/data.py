"""The `data:` section of a config: where the data is, how it is read, split and augmented."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from gradwise.settings import Strict as _Strict

_TABLES = ("csv", "parquet", "builtin")
_TEXT = ("text", "csv", "parquet")
# which source kinds each data key applies to (keys not named apply to every kind)
_KEY_KINDS: dict[str, tuple[str, ...]] = {
    "target": ("csv", "parquet", "builtin", "timeseries"),
    "columns": ("csv", "timeseries"),
    "separator": ("csv", "timeseries"),
    "quoting": ("csv", "timeseries"),
    "na_values": ("csv", "timeseries"),
    "drop": _TABLES,
    "categorical": _TABLES,
    "image_size": ("images",),
    "color": ("images",),
    "tokenizer": _TEXT,
    "vocab_size": _TEXT,
    "block_size": _TEXT,
    "text_column": ("csv", "parquet"),
    "target_block_size": ("csv", "parquet"),
    "features": ("timeseries",),
    "window": ("timeseries",),
    "horizon": ("timeseries",),
    "fill": ("timeseries",),
    "difference": ("timeseries",),
    "stream": ("csv", "parquet"),
    "stream_buffer": ("csv", "parquet"),
    "stream_sample": ("csv", "parquet"),
    "stream_holdout": ("csv", "parquet"),
}
_SOURCE_KEYS_KINDS = ("builtin", "csv", "parquet", "npz", "images", "idx", "text", "timeseries")


class SplitConfig(_Strict):
    val: float = Field(0.15, gt=0, lt=1, description="fraction held out for validation")
    test: float = Field(0.2, gt=0, lt=1, description="fraction held out for the final test")
    seed: int | None = Field(
        None, ge=0, description="seed of the split; null: the run's seed (compare fixes it)"
    )
    train_fraction: float = Field(
        1.0, gt=0, le=1, description="train on this fraction of the training split (seeded)"
    )
    by: str | None = Field(
        None,
        description="keep every sample of one group in one split: a column (a machine, "
        "patient, customer, store; it is then not a feature) or, for npz, `groups` (an array "
        "in the archive, used by default when present)",
    )
    order: Literal["auto", "random", "time", "hash"] = Field(
        "auto",
        description="random: shuffled (stratified for classes), exact copies kept together; "
        "time: chronological, test last, with a gap; hash: each row's split from a stable hash "
        "of its `by` group (or its row position) and the split seed, the same rows whether the "
        "table is read whole or streamed (data.stream always splits so); auto: time for "
        "overlapping windows without groups, random otherwise",
    )
    time: str | None = Field(
        None,
        description="order: time - the column (or npz array `time`) that orders the samples; "
        "null: their order in the source (for npz, its `time` array when present)",
    )
    gap: int | None = Field(
        None,
        ge=0,
        description="order: time - samples left out before validation and before test; "
        "null: one window's length for overlapping windows, else 0",
    )
    allow_overlap: bool = Field(
        False,
        description="accept a split whose validation or test windows overlap training ones; "
        "every number is then optimistic and every report shows it in red",
    )

    @model_validator(mode="after")
    def _leaves_training_data(self) -> SplitConfig:
        if self.val + self.test >= 0.95:
            raise ValueError(
                f"data.split.val + data.split.test = {self.val + self.test:.2f} leaves almost "
                "nothing to train on; keep the sum below 0.95"
            )
        return self


class ShiftAugment(_Strict):
    name: Literal["shift"]
    pixels: int = Field(1, ge=1, description="largest translation, in pixels")


class CropAugment(_Strict):
    name: Literal["crop"]
    padding: int = Field(
        2, ge=1, description="pad-and-crop: largest translation, in pixels; edges repeat the border"
    )


class RotateAugment(_Strict):
    name: Literal["rotate"]
    degrees: float = Field(10.0, gt=0, le=180)


class FlipAugment(_Strict):
    name: Literal["flip"]
    horizontal: bool = True
    vertical: bool = False


class NoiseAugment(_Strict):
    name: Literal["noise"]
    std: float = Field(0.05, gt=0, description="gaussian noise std, in standardised units")


Augment = Annotated[
    ShiftAugment | CropAugment | RotateAugment | FlipAugment | NoiseAugment,
    Field(discriminator="name"),
]


AugmentSetting = list[Augment] | Literal["auto"]
"""data.augment: the augmentations, or `auto` (chosen for the data by `auto_augment`)."""


class DataConfig(_Strict):
    source: str = Field(
        "builtin:digits",
        description="builtin:NAME | csv:PATH | parquet:PATH | npz:PATH | images:DIR | "
        "idx:PREFIX | text:PATH | timeseries:PATH",
    )
    target: str | None = Field(None, description="target column (csv, parquet, timeseries)")
    task: Literal["auto", "classification", "regression", "lm", "seq2seq", "mlm"] = Field(
        "auto",
        description="auto infers classification/regression (or lm, next-token prediction, "
        "for text:); seq2seq: text_column -> target text; mlm: masked-token pretraining",
    )
    split: SplitConfig = SplitConfig()
    augment: AugmentSetting = Field(
        "auto",
        description="augmentations of training batches; auto: a whole-pixel shift of 1/12 "
        "of the side when a CNN classifies under 10,000 training images of 12 pixels or "
        "more a side, else none; []: none. config.yaml holds the choice",
    )
    # tabular
    columns: list[str] | None = Field(None, description="column names for a CSV without header")
    separator: str | None = Field(
        None,
        min_length=1,
        max_length=1,
        description='csv: the column separator, one character ("\\t" for tab); null: a comma',
    )
    quoting: Literal["minimal", "none"] = Field(
        "minimal",
        description='csv: none reads quote characters (") as ordinary text, for files that '
        "never quote fields but have stray quotes in them",
    )
    drop: list[str] = Field(default_factory=list, description="columns to ignore (ids, leaks)")
    categorical: Literal["onehot", "embed"] = "onehot"
    categorical_columns: list[str] = Field(
        default_factory=list,
        description="input columns read as categories whatever their values (a zip code, "
        "a code with a few text cells); the others: numbers are numeric, text categorical",
    )
    na_values: list[str] = Field(default_factory=list, description="extra strings read as missing")
    # images
    image_size: int | None = Field(None, ge=4, description="resize images to this square size")
    color: Literal["auto", "gray", "rgb"] = "auto"
    # text
    tokenizer: Literal["char", "byte", "bpe"] = "char"
    vocab_size: int = Field(1000, ge=64, description="bpe: vocabulary size to learn")
    block_size: int = Field(64, ge=2, description="tokens per window (text) or per input text")
    text_column: str | None = Field(None, description="csv: the column holding input text")
    target_block_size: int = Field(32, ge=2, description="seq2seq: tokens per target text")
    # timeseries
    features: list[str] | None = Field(None, description="input columns (default: the target only)")
    window: int = Field(24, ge=1, description="past steps the model sees")
    horizon: int = Field(1, ge=1, description="future steps it predicts")
    fill: Literal["none", "interpolate", "ffill", "drop"] = Field(
        "none",
        description="missing target values in a series: none (an error), interpolate "
        "(linearly, in row order), ffill (the last value before), drop (the rows)",
    )
    difference: bool | Literal["auto"] = Field(
        False,
        description="forecast changes from each window's last target value, so a trending "
        "series is forecast beyond the levels seen in training; predictions and metrics stay "
        "in the target's units. auto: when a straight line explains at least half the "
        "variance of the training part (R² >= 0.5); the choice is in model.json",
    )
    limit: int | None = Field(None, ge=1, description="use only the first N rows/samples")
    # tables bigger than memory
    stream: bool = Field(
        False,
        description="read a csv/parquet table (a file, a folder of shards or a glob) as a "
        "stream: training rows are never all in memory; the split is data.split.order: hash",
    )
    stream_buffer: int = Field(
        65_536, ge=1, description="stream: rows shuffled together (shards come in a new order)"
    )
    stream_sample: int = Field(
        200_000,
        ge=1,
        description="stream: the training rows (a uniform sample) that preprocessing "
        "statistics and class weights are fitted on",
    )
    stream_holdout: int = Field(
        200_000,
        ge=1,
        description="stream: at most this many validation and as many test rows held in memory "
        "(a uniform sample of each when there are more; metrics say n of N)",
    )

    @model_validator(mode="after")
    def _keys_apply_to_the_source(self) -> DataConfig:
        kind = self.source.partition(":")[0]
        if kind not in _SOURCE_KEYS_KINDS:
            return self  # an unknown kind is reported when the source is read
        for key in sorted(_KEY_KINDS):
            field = DataConfig.model_fields[key]
            default = field.default_factory() if field.default_factory else field.default  # type: ignore[call-arg]
            if getattr(self, key) == default:  # a written-out default (config.yaml) is fine
                continue
            kinds = _KEY_KINDS[key]
            if kind not in kinds:
                raise ValueError(
                    f"data.{key} does not apply to a {kind}: source (it is for "
                    f"{', '.join(k + ':' for k in kinds)}); remove it, or change data.source"
                )
        return self

    @field_validator("augment", mode="before")
    @classmethod
    def _augment_is_auto_or_a_list(cls, value: Any) -> Any:
        if isinstance(value, str) and value != "auto" or not isinstance(value, str | list):
            raise ValueError(
                f"data.augment must be auto, [] (none) or a list such as [{{name: shift, "
                f"pixels: 1}}, {{name: flip}}]; got {value!r}"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _tab_escape(cls, data: Any) -> Any:
        # '\t' in single-quoted YAML or in --set arrives as backslash + t: it means a tab
        if isinstance(data, dict) and data.get("separator") == "\\t":
            return {**data, "separator": "\t"}
        return data
