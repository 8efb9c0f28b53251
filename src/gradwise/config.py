"""Typed config: YAML in, every default written out, helpful errors for typos and wrong types."""

from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from gradwise.arch_config import (
    Activation,
    BERTConfig,
    CNNConfig,
    DiffusionConfig,
    GPTConfig,
    HFEncoderConfig,
    Init,
    MLPConfig,
    ModelConfig,
    MoEConfig,
    RNNConfig,
    Seq2SeqConfig,
    ViTConfig,
)
from gradwise.audit_config import (
    AuditSettings,
    BaselineAudit,
    CalibrationAudit,
    DataQualityAudit,
    FairnessAudit,
    GeneralisationAudit,
    RobustnessAudit,
    SelectiveAudit,
    ShiftAudit,
    SlicesAudit,
    UncertaintyAudit,
)
from gradwise.errors import ConfigError
from gradwise.settings import (
    BenchSettings,
    ExplainSettings,
    MonitorSettings,
    OptimizeSettings,
    ReportSettings,
    ServeSettings,
    TuneSettings,
    expand_data_home,
)
from gradwise.settings import Strict as _Strict

__all__ = [
    "Activation",
    "AuditSettings",
    "BaselineAudit",
    "BenchSettings",
    "ExplainSettings",
    "MonitorSettings",
    "OptimizeSettings",
    "ReportSettings",
    "ServeSettings",
    "TuneSettings",
    "CalibrationAudit",
    "DataQualityAudit",
    "GeneralisationAudit",
    "RobustnessAudit",
    "ShiftAudit",
    "SlicesAudit",
    "FairnessAudit",
    "SelectiveAudit",
    "UncertaintyAudit",
    "BERTConfig",
    "CNNConfig",
    "Config",
    "DataConfig",
    "DiffusionConfig",
    "GPTConfig",
    "HFEncoderConfig",
    "Init",
    "MLPConfig",
    "ModelConfig",
    "MoEConfig",
    "RNNConfig",
    "Seq2SeqConfig",
    "TrainConfig",
    "VERB_SECTIONS",
    "ViTConfig",
    "apply_overrides",
    "dump_config",
    "load_config",
    "parse_overrides",
    "settings_with",
]


# ---------------------------------------------------------------- data

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
    augment: list[Augment] = Field(default_factory=list)
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

    @model_validator(mode="before")
    @classmethod
    def _tab_escape(cls, data: Any) -> Any:
        # '\t' in single-quoted YAML or in --set arrives as backslash + t: it means a tab
        if isinstance(data, dict) and data.get("separator") == "\\t":
            return {**data, "separator": "\t"}
        return data


# ---------------------------------------------------------------- training


class OptimizerConfig(_Strict):
    name: Literal["sgd", "adam", "adamw", "rmsprop"] = "adamw"
    lr: float = Field(1e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(1e-4, ge=0)
    momentum: float | None = Field(
        None, ge=0, lt=1, description="sgd and rmsprop; null: 0.9 for sgd, 0 for rmsprop"
    )
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)
    alpha: float = Field(0.99, gt=0, lt=1, description="rmsprop smoothing")

    @model_validator(mode="after")
    def _nesterov_needs_sgd_momentum(self) -> OptimizerConfig:
        if self.nesterov and (self.name != "sgd" or self.momentum == 0.0):
            raise ValueError("train.optimizer.nesterov needs name: sgd and a momentum above 0")
        return self


class ScheduleConfig(_Strict):
    name: Literal["constant", "step", "exponential", "cosine", "plateau", "onecycle"] = "cosine"
    warmup_steps: int = Field(0, ge=0, description="linear warm-up, in optimizer steps")
    step_size: int = Field(10, ge=1, description="step: epochs between decays")
    gamma: float | None = Field(
        None,
        gt=0,
        le=1,
        description="decay factor; null: 0.1 per step_size (step), 0.95 per epoch (exponential)",
    )
    min_lr: float = Field(0.0, ge=0, description="cosine: floor as a fraction of the peak")
    factor: float = Field(0.5, gt=0, lt=1, description="plateau: decay factor")
    patience: int = Field(2, ge=0, description="plateau: epochs without improvement")
    pct_start: float = Field(0.3, gt=0, lt=1, description="onecycle: fraction spent rising")


class LossConfig(_Strict):
    name: Literal["auto", "cross_entropy", "bce", "mse", "mae", "huber"] = "auto"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    class_weights: Literal["none", "balanced"] | list[float] = "none"
    huber_delta: float = Field(1.0, gt=0)


class EarlyStoppingConfig(_Strict):
    metric: str = Field("val.loss", description="any logged metric, e.g. val.accuracy")
    mode: Literal["auto", "min", "max"] = "auto"
    patience: int | None = Field(10, ge=1, description="epochs without improvement; null: off")
    min_delta: float = Field(0.0, ge=0)
    restore_best: bool = True


class AdversarialConfig(_Strict):
    """Adversarial training (Madry et al.): a share `mix` of each batch is replaced by PGD
    examples found within `eps` of it (L-inf), made with the current weights in eval mode."""

    eps: float = Field(
        ..., gt=0, description="L-inf radius, in `units` (the raw data's units for arrays)"
    )
    steps: int = Field(3, ge=1, description="PGD steps per batch (1: FGSM-like)")
    step_size: float | None = Field(
        None, gt=0, description="per-step size in eps units; null: 2.5 * eps / steps"
    )
    mix: float = Field(0.5, ge=0, le=1, description="share of each batch replaced by attacks")
    units: Literal["auto", "raw", "std"] = Field(
        "auto",
        description="raw: the data's own units (normalisation undone); std: standard "
        "deviations of each column; auto: raw for arrays and images, std for tables",
    )


class TrainConfig(_Strict):
    epochs: int | None = Field(
        None,
        ge=1,
        description="the most epochs to train (early stopping may end sooner); null: enough "
        "for train.min_steps optimizer steps, at least 30 and at most 1000; config.yaml "
        "holds the number chosen",
    )
    min_steps: int = Field(
        2000,
        ge=1,
        description="with epochs null: the fewest optimizer steps the epochs must allow, so "
        "small data gets enough updates",
    )
    batch_size: int = Field(64, ge=1)
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    loss: LossConfig = LossConfig()
    l1: float = Field(0.0, ge=0, description="L1 penalty on weights, added to the loss")
    l2: float = Field(0.0, ge=0, description="L2 penalty on weights, added to the loss")
    grad_clip: float | None = Field(
        1.0, ge=0, description="max global gradient norm; 0 or null: no clipping"
    )
    accumulate: int = Field(1, ge=1, description="micro-batches per optimizer step")
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False
    channels_last: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads for torch; null: GRADWISE_THREADS, else 1 for small models "
        "and the free cores for large ones (parameters x batch >= 5e7); the choice is in "
        "metrics.json",
    )
    explode_threshold: float = Field(
        1e4, gt=0, description="a gradient norm above this stops the run as exploded"
    )
    diagnostics: bool = Field(True, description="log per-layer gradient norms and dead ReLUs")
    checkpoint: bool = Field(
        True, description="save a resumable checkpoint (how often: checkpoint_every_s)"
    )
    checkpoint_every_s: float = Field(
        30.0,
        ge=0,
        description="seconds between saves of the checkpoint and model.safetensors; 0: after "
        "every epoch. The last epoch and an early stop are always saved; --resume continues "
        "from the last save",
    )
    freeze: list[str] = Field(
        default_factory=list, description="parameter name prefixes to keep fixed, e.g. [encoder]"
    )
    unfreeze_epoch: int | None = Field(
        None, ge=2, description="epoch from which the frozen parts train too"
    )
    eval_batch_size: int = Field(1024, ge=1)
    adversarial: AdversarialConfig | None = None


VERB_SECTIONS = ("audit", "explain", "optimize", "bench", "serve", "monitor", "tune", "report")
"""The config's sections that hold a verb's settings (the others describe what is trained)."""


class Config(_Strict):
    name: str = Field("run", min_length=1)
    seed: int = Field(0, ge=0)
    data: DataConfig = DataConfig()
    model: ModelConfig = MLPConfig()
    train: TrainConfig = TrainConfig()
    # each verb's settings: the run's defaults for it (`gradwise audit RUN` reads `audit:`)
    audit: AuditSettings = AuditSettings()
    explain: ExplainSettings = ExplainSettings()
    optimize: OptimizeSettings = OptimizeSettings()
    bench: BenchSettings = BenchSettings()
    serve: ServeSettings = ServeSettings()
    monitor: MonitorSettings = MonitorSettings()
    tune: TuneSettings = TuneSettings()
    report: ReportSettings = ReportSettings()


# ---------------------------------------------------------------- loading


def load_config(
    source: str | Path | dict[str, Any] | Config,
    overrides: dict[str, Any] | list[str] | None = None,
) -> Config:
    """Read a config from YAML (or a dict), apply `key=value` overrides, validate once.

    A relative data path (`data.source: csv:data/train.csv`) in a YAML file is read from the
    file's folder, as compose files and most tools do; one in a dict or an override, from the
    current folder. Either way the Config holds it as an absolute path, so the run finds its
    data from wherever it is used later.

    Args:
        source: path to a YAML file, a plain dict, or an existing Config.
        overrides: `{"train.epochs": 5}` or `["train.epochs=5"]` as given to `--set`.

    Raises:
        ConfigError: the file is missing or unreadable, a key is unknown, or a value is invalid.
    """
    origin = "config"
    base = Path.cwd()
    if isinstance(source, Config):
        raw: dict[str, Any] = source.model_dump(mode="json")
    elif isinstance(source, dict):
        raw = _deep_copy(source)
    else:
        path = Path(source)
        origin = str(path)
        if not path.is_file():
            raise ConfigError(f"Config file {path} not found; check the path.")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from None
        if loaded is None:  # an empty file (or only comments): never the defaults, silently
            raise ConfigError(
                f"{path} is empty; give at least data.source and model.arch "
                "(examples/digits-mlp.yaml is a complete config)."
            )
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a mapping of keys (name:, data:, model:, ...).")
        raw = loaded
        base = path.parent
    _absolute_source(raw, base)
    parsed = parse_overrides(overrides)
    if "model" not in raw and any(k.startswith("model.") for k in parsed):
        raw["model"] = {"arch": MLPConfig().arch}  # --set model.x on the default model (an MLP)
    for key, value in parsed.items():
        _set_dotted(raw, key, value)
    _absolute_source(raw, Path.cwd())  # an override's path is relative to where it was typed
    return _validate(raw, origin)


# the data sources whose location is a path (builtin names a data set; idx a path prefix)
_PATH_KINDS = ("csv", "parquet", "npz", "images", "idx", "text", "timeseries")


def _absolute_source(raw: dict[str, Any], base: Path) -> None:
    """Make a relative path in raw["data"]["source"] absolute, relative to `base`; a leading
    `${GRADWISE_DATA:-DIR}` becomes the data home it stands for (gradwise.settings)."""
    data = raw.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("source"), str):
        return
    source: str = data["source"]
    kind, sep, location = source.partition(":")
    if sep and kind in _PATH_KINDS:
        location = expand_data_home(location, base)
        data["source"] = f"{kind}:{location}"
    if sep and kind in _PATH_KINDS and location and not Path(location).expanduser().is_absolute():
        absolute = os.path.normpath(base.absolute() / Path(location).expanduser())
        data["source"] = f"{kind}:{absolute}"


def apply_overrides(cfg: Config, overrides: dict[str, Any], origin: str) -> Config:
    """`cfg` with dotted keys set to new values, validated once.

    Args:
        overrides: `{"train.optimizer.lr": 3e-4}`.
        origin: where the keys came from (a search-space file, say), named in errors.

    Raises:
        ConfigError: a key is unknown (with the key meant: "did you mean ...?") or a value is
            invalid, as for a config file.
    """
    raw = cfg.model_dump(mode="json")
    for key, value in overrides.items():
        _set_dotted(raw, key, value)
    return _validate(raw, origin)


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML, every default written out."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def parse_overrides(overrides: dict[str, Any] | list[str] | None) -> dict[str, Any]:
    """`["key=value", ...]` (as given to --set) as `{key: value}`; a dict is returned as is.

    A value is typed by the field it sets: text for a text field (`data.target=2020` and
    `name=nan` stay strings; `null` is None where the field allows it), YAML otherwise
    (`3e-4`, `true`, `[64, 64]`, `{name: sgd}`).

    Raises:
        ConfigError: an item is not key=value.
    """
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    parsed: dict[str, Any] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r} must look like key=value, e.g. train.epochs=5.")
        key = key.strip()
        parsed[key] = _parse_value(text, _field_type(Config, key.split(".")))
    return parsed


def _parse_value(text: str, annotation: Any = None) -> Any:
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


def _field_type(cls: Any, parts: list[str]) -> Any:
    """The annotation of the field at `parts` below the model `cls`; None when not found
    (an unknown key, reported by validation) or ambiguous (different model kinds disagree)."""
    if not parts:
        return None
    found = []
    for model in _models(cls):
        field = model.model_fields.get(parts[0])
        if field is not None:
            found.append(
                field.annotation if len(parts) == 1 else _field_type(field.annotation, parts[1:])
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


def _set_dotted(raw: dict[str, Any], key: str, value: Any, merge: bool = False) -> None:
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
        merged = _deep_copy(old)
        for k, v in value.items():
            _set_dotted(merged, str(k), v, merge=True)
        value = merged
    node[parts[-1]] = value


def _deep_copy(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in raw.items()}


S = TypeVar("S", bound=BaseModel)


def settings_with(base: S, section: str, changes: dict[str, Any] | None = None) -> S:
    """`base` (a verb's settings) with `changes` applied, validated once, as the config's
    `section` would be: errors name the key (`serve.port: ...`) and the key meant.

    Args:
        base: the settings to start from (the defaults, or the run's config section).
        section: the verb's section of the config (audit, serve, ...), named in errors.
        changes: field names, or dotted keys into a sub-section (`calibration.bins`); a dict
            for a sub-section changes only the keys it names.

    Raises:
        ConfigError: an unknown key or a value out of its bounds.
    """
    raw = base.model_dump()
    for key, value in (changes or {}).items():
        _set_dotted(raw, key, value, merge=True)
    try:
        return type(base).model_validate(raw)
    except ValidationError:
        pass
    try:  # again as the config's section, so that errors name the key as a config has it
        Config.model_validate({section: raw})
    except ValidationError as exc:
        from gradwise.config_errors import explain

        raise ConfigError(explain(exc, {section: raw}, f"the {section} settings", Config)) from None
    raise AssertionError(f"{section} settings refused alone but accepted in a config")


def _validate(raw: dict[str, Any], origin: str) -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        from gradwise.config_errors import explain

        raise ConfigError(explain(exc, raw, origin, Config)) from None
