"""Search spaces: config key paths to distributions, a default per architecture, and the
one-step neighbours of a value (the sensitivity check).

A space file maps dotted config keys to what to try:

    train.optimizer.lr: {log_uniform: [1.0e-4, 1.0e-2]}   # floats, log scale
    model.dropout: {uniform: [0.0, 0.5]}                  # floats, linear scale
    train.schedule.warmup_steps: {int: [0, 200]}          # integers (log_int: log scale)
    train.batch_size: {choice: [32, 64, 128, 256]}        # one of a list
    model.hidden: {layers: [1, 3], width: [32, 512]}      # a list of equal widths
    train.epochs: 20                                      # a plain value: fixed, not searched

`layers` is an integer range (or a fixed count) and `width` an integer range searched on a
log scale (or `{int: [a, b]}`, `{choice: [...]}`); each trial's list holds `layers` copies
of one width, so the importance of depth and of width can be told apart.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from gradwise.config import (
    BERTConfig,
    CNNConfig,
    Config,
    DiffusionConfig,
    GPTConfig,
    HFEncoderConfig,
    MLPConfig,
    RNNConfig,
    Seq2SeqConfig,
    ViTConfig,
    apply_overrides,
)
from gradwise.errors import ConfigError

if TYPE_CHECKING:
    import optuna

Kind = Literal["log_uniform", "uniform", "int", "log_int", "choice"]
KINDS: tuple[Kind, ...] = ("log_uniform", "uniform", "int", "log_int", "choice")
STEPS = {  # how far the sensitivity check moves a value, per kind
    "log_uniform": "x2 and /2",
    "uniform": "10% of the range either way",
    "int": "+-1, or +- a tenth of the range when that is more (rounded)",
    "log_int": "x2 and /2 (rounded)",
    "choice": "the neighbouring choices in the list",
}


@dataclass(frozen=True)
class Param:
    """One searched value: `name` is the Optuna parameter (the config key, or KEY.layers /
    KEY.width for a list)."""

    name: str
    kind: Kind
    low: float = 0.0
    high: float = 0.0
    choices: tuple[Any, ...] = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        match self.kind:
            case "log_uniform" | "uniform":
                return trial.suggest_float(
                    self.name, self.low, self.high, log=self.kind == "log_uniform"
                )
            case "int" | "log_int":
                return trial.suggest_int(
                    self.name, int(self.low), int(self.high), log=self.kind == "log_int"
                )
            case "choice":
                return _decode(
                    trial.suggest_categorical(self.name, [_encode(c) for c in self.choices])
                )
        raise AssertionError(self.kind)

    @property
    def is_log(self) -> bool:
        return self.kind in ("log_uniform", "log_int")

    def neighbours(self, value: Any) -> list[tuple[str, Any]]:
        """(step, value) one step below and above `value` (see STEPS); a step past the end
        of the range stops at the end and says so."""
        raw: list[tuple[str, Any]]
        match self.kind:
            case "log_uniform":
                raw = [("/2", value / 2), ("x2", value * 2)]
            case "uniform":
                step = (self.high - self.low) / 10
                raw = [(f"-{step:.3g}", value - step), (f"+{step:.3g}", value + step)]
            case "int":
                step = max(1, round((self.high - self.low) / 10))
                raw = [(f"-{step}", value - step), (f"+{step}", value + step)]
            case "log_int":
                raw = [("/2", round(value / 2)), ("x2", round(value * 2))]
            case "choice":
                i = list(self.choices).index(value)
                return [
                    (label, self.choices[j])
                    for label, j in (("previous", i - 1), ("next", i + 1))
                    if 0 <= j < len(self.choices)
                ]
        out: list[tuple[str, Any]] = []
        for label, v in raw:
            clipped = min(max(v, self.low), self.high)
            clipped = int(clipped) if "int" in self.kind else clipped
            if clipped != v:
                label += " (range end)"
            if clipped != value and clipped not in [o[1] for o in out]:
                out.append((label, clipped))
        return out

    def to_spec(self) -> Any:
        if self.kind == "choice":
            return {"choice": list(self.choices)}
        bounds = [self.low, self.high]
        return {self.kind: [int(b) for b in bounds] if "int" in self.kind else bounds}


@dataclass(frozen=True)
class ListParam:
    """A list key (model.hidden, model.channels) searched as a depth and one width."""

    key: str
    layers: Param
    width: Param


@dataclass(frozen=True)
class Space:
    """What a study searches, and the keys it fixes for every trial."""

    params: tuple[Param | ListParam, ...]
    fixed: tuple[tuple[str, Any], ...] = ()

    @property
    def optuna_params(self) -> list[Param]:
        """Every Optuna parameter, in the order of the space."""
        out: list[Param] = []
        for p in self.params:
            out += [p.layers, p.width] if isinstance(p, ListParam) else [p]
        return out

    def param(self, name: str) -> Param:
        return next(p for p in self.optuna_params if p.name == name)

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """One trial's Optuna parameters, by name."""
        return {p.name: p.suggest(trial) for p in self.optuna_params}

    def values(self, params: dict[str, Any]) -> dict[str, Any]:
        """Optuna's stored parameters (a trial's `params`) as the space's values: a list
        choice comes back from its JSON."""
        return {name: _decode(v) for name, v in params.items()}

    def overrides(self, params: dict[str, Any]) -> dict[str, Any]:
        """Config overrides (dotted keys) for the space's values (`suggest`, `values`)."""
        out: dict[str, Any] = dict(self.fixed)
        for p in self.params:
            if isinstance(p, ListParam):
                out[p.key] = [int(params[p.width.name])] * int(params[p.layers.name])
            else:
                out[p.name] = params[p.name]
        return out

    def to_dict(self) -> dict[str, Any]:
        """The space in the space-file format (what DIR/space.yaml holds)."""
        out: dict[str, Any] = {}
        for p in self.params:
            if isinstance(p, ListParam):
                fixed_layers = p.layers.choices[0] if p.layers.choices else None
                layers = fixed_layers or [int(p.layers.low), int(p.layers.high)]
                out[p.key] = {"layers": layers, "width": p.width.to_spec()}
            else:
                out[p.name] = p.to_spec()
        out.update(dict(self.fixed))
        return out

    def check(self, base: Config, origin: str) -> None:
        """Every key exists in `base` and both ends of every range make a valid config.

        Raises:
            ConfigError: with "did you mean ...?" for a mistyped key, as for a config file.
        """
        fixed = dict(self.fixed)
        apply_overrides(base, fixed, origin)
        for p in self.params:
            if isinstance(p, ListParam):
                w = p.width.choices or (p.width.low, p.width.high)
                for layers in {int(p.layers.low), int(p.layers.high)}:
                    for width in {w[0], w[-1]}:
                        apply_overrides(base, {**fixed, p.key: [int(width)] * layers}, origin)
            else:
                for value in p.choices or {p.low, p.high}:
                    if "int" in p.kind:
                        value = int(value)
                    apply_overrides(base, {**fixed, p.name: value}, origin)


# ------------------------------------------------------------------ reading a space file


def load_space(path: str | Path, base: Config) -> Space:
    """Read and check a space file (see the module docstring for its format).

    Raises:
        ConfigError: the file is missing or not YAML, a spec is malformed, or a key is not
            a config key (with "did you mean ...?").
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"Space file {path} not found; check --space.")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(
            f"{path} must map config keys to ranges, e.g. "
            "train.optimizer.lr: {log_uniform: [1.0e-4, 1.0e-2]}."
        )
    space = parse_space(raw, str(path))
    space.check(base, str(path))
    return space


def parse_space(raw: dict[str, Any], origin: str) -> Space:
    """A Space from the space-file mapping (keys are not checked against a config here)."""
    params: list[Param | ListParam] = []
    fixed: list[tuple[str, Any]] = []
    for key, spec in raw.items():
        key = str(key)
        if not isinstance(spec, dict):
            fixed.append((key, spec))
        elif "layers" in spec or "width" in spec:
            params.append(_list_param(key, spec, origin))
        else:
            params.append(_param(key, spec, origin))
    if not params:
        raise ConfigError(f"{origin} searches nothing: give at least one key a range.")
    return Space(tuple(params), tuple(fixed))


def _param(name: str, spec: dict[str, Any], origin: str) -> Param:
    kinds = [k for k in spec if k in KINDS]
    if len(spec) != 1 or len(kinds) != 1:
        raise ConfigError(
            f"{origin}: {name}: {spec} must be one of {{log_uniform: [a, b]}}, "
            "{uniform: [a, b]}, {int: [a, b]}, {log_int: [a, b]}, {choice: [...]}."
        )
    kind: Kind = kinds[0]
    value = spec[kind]
    if kind == "choice":
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{origin}: {name}: choice takes a non-empty list, got {value!r}.")
        return Param(name, kind, choices=tuple(value))
    ok = (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )
    if not ok:
        raise ConfigError(f"{origin}: {name}: {kind} takes [low, high], got {value!r}.")
    low, high = float(value[0]), float(value[1])
    if "int" in kind and (low != round(low) or high != round(high)):
        raise ConfigError(f"{origin}: {name}: {kind} takes whole numbers, got {value!r}.")
    if not low < high:
        raise ConfigError(f"{origin}: {name}: {kind} needs low < high, got {value!r}.")
    if kind in ("log_uniform", "log_int") and low <= 0:
        raise ConfigError(
            f"{origin}: {name}: {kind} needs low > 0 (a log scale), got {value!r}; "
            "use uniform or int for ranges that include 0."
        )
    return Param(name, kind, low, high)


def _list_param(key: str, spec: dict[str, Any], origin: str) -> ListParam:
    if set(spec) != {"layers", "width"}:
        raise ConfigError(
            f"{origin}: {key}: a list is searched as {{layers: [a, b], width: [a, b]}}, got {spec}."
        )
    layers, width = spec["layers"], spec["width"]
    if isinstance(layers, int) and not isinstance(layers, bool):
        layers = [layers, layers]
    if not isinstance(layers, list) or len(layers) != 2 or layers[0] < 1:
        raise ConfigError(
            f"{origin}: {key}.layers takes [low, high] with low >= 1, got {layers!r}."
        )
    layers_p = (
        Param(f"{key}.layers", "int", layers[0], layers[1])
        if layers[0] < layers[1]
        else Param(f"{key}.layers", "choice", choices=(int(layers[0]),))
    )
    width_spec = {"log_int": width} if isinstance(width, list) else width
    if not isinstance(width_spec, dict):
        raise ConfigError(f"{origin}: {key}.width takes [low, high] or a range, got {width!r}.")
    width_p = _param(f"{key}.width", width_spec, origin)
    if width_p.kind in ("uniform", "log_uniform"):
        raise ConfigError(f"{origin}: {key}.width must be whole numbers: use int or log_int.")
    return ListParam(key, layers_p, width_p)


def _encode(value: Any) -> Any:
    """Optuna's categorical values are numbers, strings or booleans: lists go as JSON."""
    return json.dumps(value) if isinstance(value, list | dict) else value


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        return json.loads(value)
    return value


# ------------------------------------------------------------------ the default spaces


def default_space(cfg: Config) -> Space:
    """What `gradwise tune CONFIG` searches with no space file: the learning rate (log
    scale), batch size, weight decay, schedule and warm-up for every architecture, plus
    its depth, width, dropout and initialisation."""
    train: list[Param | ListParam] = [
        Param("train.optimizer.lr", "log_uniform", 1e-4, 1e-2),
        Param("train.batch_size", "choice", choices=(32, 64, 128, 256)),
        Param("train.optimizer.weight_decay", "log_uniform", 1e-6, 1e-2),
        Param("train.schedule.name", "choice", choices=("constant", "cosine", "onecycle")),
        Param("train.schedule.warmup_steps", "int", 0, 200),
    ]
    init = Param("model.init", "choice", choices=("he", "xavier", "default"))
    dropout = Param("model.dropout", "uniform", 0.0, 0.5)
    model: list[Param | ListParam]
    match cfg.model:
        case MLPConfig():
            width = Param("model.hidden.width", "log_int", 32, 512)
            model = [ListParam("model.hidden", _layers("model.hidden", 1, 3), width), dropout, init]
        case CNNConfig():
            width = Param("model.channels.width", "log_int", 16, 128)
            model = [ListParam("model.channels", _layers("model.channels", 1, 3), width)]
            model += [dropout, init]
        case RNNConfig():
            model = [
                Param("model.hidden", "log_int", 32, 256),
                Param("model.layers", "int", 1, 3),
                dropout,
                init,
            ]
        case GPTConfig() | BERTConfig() | ViTConfig():
            model = [
                Param("model.d_model", "choice", choices=(64, 128, 256)),
                Param("model.n_layer", "int", 2, 6),
                Param("model.dropout", "uniform", 0.0, 0.3),
            ]
            train[0] = Param("train.optimizer.lr", "log_uniform", 1e-4, 3e-3)
        case Seq2SeqConfig():
            model = [
                Param("model.d_model", "choice", choices=(64, 128, 256)),
                Param("model.n_layer", "int", 1, 4),
                Param("model.n_decoder_layer", "int", 1, 4),
                Param("model.dropout", "uniform", 0.0, 0.3),
            ]
            train[0] = Param("train.optimizer.lr", "log_uniform", 1e-4, 3e-3)
        case DiffusionConfig():
            model = [Param("model.cond_dropout", "uniform", 0.0, 0.3)]
            train[0] = Param("train.optimizer.lr", "log_uniform", 1e-4, 3e-3)
        case HFEncoderConfig():
            model = [Param("model.dropout", "uniform", 0.0, 0.3)]
            train[0] = Param("train.optimizer.lr", "log_uniform", 1e-5, 1e-3)
            train[1] = Param("train.batch_size", "choice", choices=(8, 16, 32))
    return Space(tuple(train + model))


def _layers(key: str, low: int, high: int) -> Param:
    return Param(f"{key}.layers", "int", low, high)


def best_config(base: Config, space: Space, params: dict[str, Any]) -> Config:
    """The base config with the best trial's values, named NAME-tuned."""
    cfg = apply_overrides(base, space.overrides(space.values(params)), "the best trial")
    return cfg.model_copy(update={"name": f"{base.name}-tuned"})


def default_params(base: Config, space: Space) -> tuple[dict[str, Any] | None, str]:
    """The base config's own values as Optuna parameters (to queue as trial 0, so the
    result compares the best against the config as given), or None and why not: a value
    outside the space, or a list of unequal widths, cannot be drawn from it."""
    config = base.model_dump(mode="json")
    params: dict[str, Any] = {}
    for p in space.params:
        key = p.key if isinstance(p, ListParam) else p.name
        value = _lookup(config, key)
        if isinstance(p, ListParam):
            if not isinstance(value, list) or not value or len(set(value)) != 1:
                return None, f"{key} {value} is not a list of equal widths"
            pairs = [(p.layers, len(value)), (p.width, value[0])]
        else:
            pairs = [(p, value)]
        for param, v in pairs:
            if not _inside(param, v):
                return None, f"{param.name} {v!r} lies outside the space ({param.to_spec()})"
            params[param.name] = _encode(v)
    return params, ""


def _lookup(config: dict[str, Any], key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _inside(param: Param, value: Any) -> bool:
    if param.kind == "choice":
        return value in param.choices
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    return param.low <= value <= param.high
