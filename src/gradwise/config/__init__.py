"""Typed config: YAML in, every default written out, helpful errors for typos and wrong types."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, TypeVar

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
from gradwise.config.data import DataConfig, SplitConfig
from gradwise.config.dotted import deep_copy, field_type, parse_value, set_dotted
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
    "SplitConfig",
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
    backend: Literal["local", "ray"] = Field(
        "local",
        description="where train, tune, predict --out, evaluate --data and audit do their work: "
        "local (this machine; torchrun for train --nproc) or ray (a Ray cluster; pip install "
        "'gradwise[ray]'); a verb's --backend overrides it",
    )
    address: str | None = Field(
        None,
        description="backend: ray - the cluster to join (HOST:PORT, or auto: the one this "
        "machine joined with ray start); null: RAY_ADDRESS, else a local cluster is started "
        "for the command",
    )
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
        raw = deep_copy(source)
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
        set_dotted(raw, key, value)
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
        set_dotted(raw, key, value)
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
        parsed[key] = parse_value(text, field_type(Config, key.split(".")))
    return parsed


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
        set_dotted(raw, key, value, merge=True)
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
