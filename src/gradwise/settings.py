"""One settings model per verb: explain, optimize, bench, serve, monitor, tune, report.

Each is a section of the config (`serve:`, `monitor:` ...), a `--set verb.key=value` target,
and the one object `gradwise.<verb>(run, settings, **changes)` validates and hands down; the
audit's live in `audit_config.py`. A field's bounds are the only check of its value, and its
description is the reference documentation: adding an option is adding a field.
`gradwise.config` re-exports every name here.

Also where the example data sets live (`data_home`, `expand_data_home`): a data.source may
start with `${GRADWISE_DATA:-DIR}`, which config loading expands once (see
`expand_data_home`), so one example config works beside ../shared/data and in a clone that
fetched its data with `gradwise datasets get NAME`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from gradwise.errors import ConfigError

__all__ = [
    "BenchSettings",
    "ExplainSettings",
    "MonitorSettings",
    "OptimizeSettings",
    "ReportSettings",
    "ServeSettings",
    "TuneSettings",
    "comma_list",
]


class Strict(BaseModel):
    """The base of every config section and settings model (here, config.py, arch_config.py,
    audit_config.py): unknown keys are errors ("did you mean ...?"), not silently ignored, and
    a validated object is frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def comma_list(value: Any) -> Any:
    """`"1,8,32"` (a flag or a --set value) as `["1", "8", "32"]`; the field types the items."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, int | float):
        return [value]
    return value


def _not_empty(value: tuple[Any, ...], info: ValidationInfo) -> tuple[Any, ...]:
    if not value:
        raise ValueError(f"{info.field_name}: give at least one value (e.g. 1,8,32)")
    return value


def _path_text(value: Any) -> Any:
    return os.fspath(value) if isinstance(value, os.PathLike) else value


# ---------------------------------------------------------------- explain

ExplainMethod = Literal["ig", "gradshap", "kernelshap", "saliency"]


class ExplainSettings(Strict):
    rows: list[Annotated[int, Field(ge=0)]] | None = Field(
        None,
        description="source row numbers (0-based) to explain, all in `split`; null: its first four",
    )
    method: ExplainMethod = Field(
        "ig",
        description="ig (integrated gradients), gradshap, kernelshap (tables) or saliency",
    )
    split: Literal["train", "val", "test"] = Field("test", description="the split explained")
    seed: int | None = Field(
        None, ge=0, description="seed of the sampled parts (SHAP, importance); null: the run's"
    )

    _rows = field_validator("rows", mode="before")(comma_list)


# ---------------------------------------------------------------- optimize and bench


class OptimizeSettings(Strict):
    quantize: Literal["int8"] | None = Field(
        None,
        description="int8: torch dynamic int8 (Linear/LSTM), plus calibrated static int8 for "
        "CNNs and transformers; with onnx / openvino, through that engine",
    )
    onnx: bool = Field(False, description="export to ONNX and run it in ONNX Runtime")
    openvino: bool = Field(False, description="run it in OpenVINO (int8 through NNCF)")
    precision: Literal["fp32", "bf16"] = Field(
        "fp32", description="bf16: only on CPUs that multiply bf16 natively"
    )
    distill: str | dict[str, Any] | None = Field(
        None,
        description="a student config (a YAML path, or its model: and train: sections) "
        "trained on the run's soft targets; the other levers then apply to it too",
    )
    temperature: float = Field(4.0, gt=0, description="distillation temperature")
    alpha: float = Field(0.7, ge=0, le=1, description="distillation: weight of soft targets")
    auto: bool = Field(
        False, description="make every variant this machine supports; recommend the fastest"
    )
    budget_pt: float = Field(
        0.5,
        ge=0,
        description="accuracy points a variant may lose (RMSE or loss units for other tasks)",
    )
    calibration_samples: int = Field(
        256, ge=1, description="training inputs that static int8 calibrates on"
    )
    robust_samples: int | None = Field(
        None, ge=1, description="test samples attacked for robust accuracy; null: the audit's"
    )
    seconds: float = Field(1.0, gt=0, description="latency measuring time per model and batch")

    _distill = field_validator("distill", mode="before")(_path_text)


class BenchSettings(Strict):
    variants: Literal["base", "all"] = Field(
        "base", description="base: the run alone; all: also every variant under RUN/artifacts/"
    )
    batches: tuple[Annotated[int, Field(ge=1)], ...] = Field(
        (1, 8, 32, 128), description="batch sizes of the latency sweep"
    )
    price_per_core_hour: float = Field(
        0.05, ge=0, description="USD per CPU core-hour, for the cost per million predictions"
    )
    seconds: float = Field(1.0, gt=0, description="measuring time per model and batch size")

    _batches = field_validator("batches", mode="before")(comma_list)
    _some = field_validator("batches")(_not_empty)


# ---------------------------------------------------------------- serve


class ServeSettings(Strict):
    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0: every interface)")
    port: int = Field(8000, ge=1, le=65535, description="TCP port")
    store: str | None = Field(
        None,
        description="prediction log: null (RUN/monitor/predictions.sqlite), a SQLite path, a "
        "SQLAlchemy URL (postgresql+psycopg://...), or off",
    )
    max_batch: int = Field(32, ge=1, le=4096, description="most rows per forward pass")
    max_wait_ms: float = Field(
        2.0, ge=0, le=1000, description="longest the first request of a batch waits for others"
    )
    workers: int = Field(
        1, ge=1, le=64, description="processes sharing the port, each with its own batcher"
    )
    threads: int | None = Field(
        None, ge=1, description="torch threads per worker process; null: torch's default"
    )
    api_key_env: str | None = Field(
        None,
        description="environment variable holding the API key every route but /healthz and "
        "/readyz requires; null: no key",
    )
    max_body_kb: int = Field(1024, ge=1, description="larger request bodies are answered 413")
    flush_interval_s: float = Field(
        0.5, gt=0, description="the store commits at least this often (what a kill -9 loses)"
    )
    replica_id: str | None = Field(
        None, description="written with every prediction; null: host:pid"
    )
    abstain: bool = Field(
        False,
        description="answer only where the run's certified abstention threshold (`gradwise "
        "audit RUN --checks selective`) is met: every instance gets `decision` (answer or "
        "abstain, for a person) and `abstain_score`, every response the `guarantee` "
        "(alpha, delta, threshold, n, ...); serving fails at start without a certified one",
    )
    tune: bool = Field(
        False,
        description="instead of serving, measure max_batch x max_wait_ms under load and "
        "recommend one (RUN/serve/tune.json)",
    )
    p95_ms: float = Field(20.0, ge=0.1, description="tune: the p95 latency budget")
    tune_seconds: float = Field(5.0, ge=1, description="tune: load per setting, in seconds")
    tune_batches: tuple[Annotated[int, Field(ge=1)], ...] = Field(
        (1, 8, 32, 128), description="tune: max_batch values tried"
    )
    tune_waits: tuple[Annotated[float, Field(ge=0)], ...] = Field(
        (0.0, 1.0, 2.0, 5.0), description="tune: max_wait_ms values tried"
    )

    _lists = field_validator("tune_batches", "tune_waits", mode="before")(comma_list)
    _some = field_validator("tune_batches", "tune_waits")(_not_empty)
    _store = field_validator("store", mode="before")(_path_text)

    def api_key(self) -> str | None:
        """The key from the environment.

        Raises:
            ConfigError: the variable is named but unset or empty.
        """
        if self.api_key_env is None:
            return None
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise ConfigError(
                f"--api-key-env {self.api_key_env}: that environment variable is unset or "
                f"empty; export {self.api_key_env}=<a long random string> first."
            )
        return key


# ---------------------------------------------------------------- monitor

MonitorDetector = Literal["ks", "chi2", "psi", "wasserstein", "mmd", "domain_auc"]
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|min|h|d)")


class MonitorSettings(Strict):
    store: str | None = Field(
        None,
        description="the store the server wrote: null (RUN/monitor/predictions.sqlite), a "
        "SQLite path or postgresql+psycopg://...",
    )
    window: str = Field(
        "1000",
        description="instances per window (at least 10), or a duration: 90s, 30m, 1h, 1d",
    )
    webhook: str | None = Field(None, description="POST alerts here as JSON")
    follow: bool = Field(False, description="keep watching until interrupted")
    poll_s: float = Field(10.0, gt=0, description="follow: seconds between reads")
    alpha: float = Field(
        0.01,
        gt=0,
        lt=1,
        description="false-alarm rate of each drift test (after the per-feature correction) "
        "and of each window's group-accuracy tests (after the per-group correction)",
    )
    raw_detectors: tuple[MonitorDetector, ...] = Field(
        ("ks", "chi2", "psi"), description="the shift audit's detectors on the raw features"
    )
    embed_detectors: tuple[MonitorDetector, ...] = Field(
        ("ks", "mmd"), description="the shift audit's detectors on the model's embeddings"
    )
    confidence_drop: float = Field(
        0.05,
        ge=0,
        description="alert when a window's mean confidence (the label-free accuracy estimate) "
        "falls this far below validation's",
    )
    accuracy_drop: float = Field(
        0.05,
        ge=0,
        description="alert when measured accuracy falls this far below validation's (a "
        "group's: significantly below its audited test accuracy minus this)",
    )
    min_labels: int = Field(
        50,
        ge=1,
        description="fewest labelled instances before a window's accuracy (or a group's in "
        "it) is judged",
    )
    agree: bool = Field(
        True,
        description="a drift alert needs both the raw features and the embeddings to drift "
        "(where both are compared): each alone false-alarmed in about 3% of undrifted windows "
        "of 150 digits (alpha 0.01), together in none of 32; false: either",
    )
    persist: int = Field(
        2, ge=1, description="drifted windows in a row after which a retrain window is named"
    )
    guarantee_delta: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="served with --abstain: the chance of a false 'guarantee likely broken' "
        "alert over the whole stream (the confidence sequence's delta); null: the delta the "
        "guarantee was certified with",
    )
    reference_rows: int = Field(
        5000, ge=10, description="most training rows in the reference sample"
    )
    groups: list[str] | None = Field(
        None,
        description="columns whose groups' accuracy is tracked from feedback and held against "
        "the audited test accuracy (e.g. [sex, race]); null: the run's audit.fairness.groups; "
        "empty: none. A column the model does not read is tracked when clients send it with "
        "each instance (the server keeps it in the stored request, ignored)",
    )

    _lists = field_validator("raw_detectors", "embed_detectors", "groups", mode="before")(
        comma_list
    )
    _store = field_validator("store", mode="before")(_path_text)

    @field_validator("window", mode="before")
    @classmethod
    def _window(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            return value
        text = value.strip().lower()
        if text.isdigit():
            if int(text) < 10:
                raise ValueError(f"monitor.window {value}: a window needs at least 10 instances")
            return text
        match = _DURATION.fullmatch(text)
        if match is None or float(match.group(1)) <= 0:
            raise ValueError(
                f"monitor.window {value!r} is neither a number of instances (e.g. 1000) nor a "
                "duration (e.g. 30m, 1h, 1d)"
            )
        return text


# ---------------------------------------------------------------- tune


class TuneSettings(Strict):
    trials: int = Field(30, ge=1, description="trials in the study; a rerun continues up to it")
    timeout_s: float | None = Field(
        None, gt=0, description="start no trial after this many seconds; null: no limit"
    )
    budget_s: float | None = Field(
        None,
        gt=0,
        description="bound the whole call (search in 2/3 of it, then only the seed and "
        "sensitivity retrains that fit); null: no bound",
    )
    space: str | None = Field(
        None,
        description="a space file (config keys to ranges); null: the architecture's usual "
        "space, written to DIR/space.yaml",
    )
    metric: str | None = Field(
        None,
        description="the validation metric searched, e.g. val.accuracy; null: the task's "
        "primary one",
    )
    direction: Literal["max", "min", "maximize", "minimize"] | None = Field(
        None, description="max or min; null: from the metric"
    )
    storage: str | None = Field(
        None,
        description="an RDB URL shared by several machines (postgresql+psycopg://...); null: "
        "SQLite in the output folder",
    )
    nproc: int = Field(1, ge=1, description="worker processes on this machine sharing the study")
    seeds: int = Field(
        3,
        ge=0,
        description="retrain the best config over this many seeds (0: skip, and skip "
        "the sensitivity check)",
    )
    sampler_seed: int = Field(0, ge=0, description="seed of the TPE sampler")
    pruner: Literal["median", "halving", "none"] = Field(
        "median", description="stop poor trials early: median, halving (successive) or none"
    )
    prune_startup: int = Field(
        5, ge=0, description="trials that run to the end before the median pruner prunes"
    )
    prune_warmup: int | None = Field(
        None,
        ge=0,
        description="the first epochs of every trial, which the median pruner never judges; "
        "null: a tenth of train.epochs, at least 1 (1 when train.epochs is null)",
    )
    cv: Literal["auto", "off"] | Annotated[int, Field(ge=2)] = Field(
        "auto",
        description="score each trial by k-fold cross-validation over train+val (the test "
        "split is never touched): an integer k >= 2, off (the validation split alone), or "
        "auto (5 folds when the validation split has fewer than cv_below rows and its order "
        "is not time)",
    )
    cv_below: int = Field(
        2000, ge=1, description="cv: auto cross-validates when validation has fewer rows"
    )
    keep_given: bool = Field(
        True,
        description="when the best trial cannot be told apart from the config as given "
        "(trial 0; paired over the folds of cross-validated scores), best.yaml keeps the config "
        "as given and top.yaml holds the best trial: a search does not move a config on "
        "validation noise. false: best.yaml is always the best trial",
    )

    _space = field_validator("space", mode="before")(_path_text)

    @field_validator("metric")
    @classmethod
    def _validation_metric(cls, metric: str | None) -> str | None:
        if metric is None:
            return None
        split, dot, name = metric.partition(".")
        if split == "test":
            raise ValueError(
                f"tune.metric {metric}: searching on the test split would pick the config that "
                f"fits the test data; search val.{name} and read the test metric of the result"
            )
        if split != "val" or not dot or not name:
            raise ValueError(
                f"tune.metric {metric!r} must be a validation metric like val.accuracy"
            )
        return metric


# ---------------------------------------------------------------- report


class ReportSettings(Strict):
    tune: str | None = Field(
        None,
        description="a tuning study's folder; null: the study the run lies inside, if any",
    )
    compare: str | None = Field(
        None,
        description="a comparison's folder whose seeds give the noise; null: the comparison "
        "the run lies inside, if any",
    )
    context: str | None = Field(
        None,
        description="a YAML file of item id -> text: the answers only a person knows "
        "(intended purpose, users, limitations, oversight) for --template documents",
    )

    _paths = field_validator("tune", "compare", "context", mode="before")(_path_text)


# ---------------------------------------------------------------- the data home

DATA_ENV = "GRADWISE_DATA"
DEFAULT_DATA_HOME = "~/gradwise_data"

_REFERENCE = re.compile(r"^\$\{" + DATA_ENV + r"(?::-(?P<fallback>[^}]*))?\}")


def data_home() -> Path:
    """The folder `gradwise datasets get` fills: $GRADWISE_DATA, else ~/gradwise_data."""
    given = os.environ.get(DATA_ENV)
    return Path(given or DEFAULT_DATA_HOME).expanduser()


def names_data_home(location: str) -> bool:
    """True when a data.source location starts with `${GRADWISE_DATA...}`."""
    return _REFERENCE.match(location) is not None


def expand_data_home(location: str, base: Path) -> str:
    """`location` with a leading `${GRADWISE_DATA}` or `${GRADWISE_DATA:-DIR}` replaced by
    the folder it stands for, as an absolute path: $GRADWISE_DATA when set; else DIR
    (relative to the config file's folder) when it exists; else ~/gradwise_data. Any other
    location is returned as it is.

    Args:
        location: the part of data.source after `KIND:`.
        base: the folder a relative DIR is read from (the config file's).
    """
    found = _REFERENCE.match(location)
    if found is None:
        return location
    rest = location[found.end() :].lstrip("/")
    fallback = found.group("fallback")
    home = data_home()
    if not os.environ.get(DATA_ENV) and fallback:
        beside = Path(fallback).expanduser()
        beside = beside if beside.is_absolute() else base / beside
        if beside.is_dir():
            home = beside
    return os.path.normpath(home.absolute() / rest) if rest else os.path.normpath(home.absolute())
