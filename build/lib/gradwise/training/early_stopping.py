"""Early stopping on any logged metric, with patience, keeping track of the best epoch."""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass
from typing import Any

from gradwise.config import EarlyStoppingConfig
from gradwise.errors import ConfigError
from gradwise.evaluate.metrics import lower_is_better


@dataclass
class EarlyStopping:
    metric: str
    minimize: bool
    patience: int | None
    min_delta: float
    best: float = math.inf
    best_epoch: int = 0
    bad_epochs: int = 0

    @staticmethod
    def from_config(cfg: EarlyStoppingConfig) -> EarlyStopping:
        minimize = lower_is_better(cfg.metric) if cfg.mode == "auto" else cfg.mode == "min"
        return EarlyStopping(cfg.metric, minimize, cfg.patience, cfg.min_delta)

    def check_metric(self, logged: tuple[str, ...]) -> None:
        """Before training: the metric is one the loop will log, or a ConfigError with the
        closest name."""
        if self.metric in logged:
            return
        close = difflib.get_close_matches(self.metric, logged, n=1, cutoff=0.5)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ConfigError(
            f"train.early_stopping.metric {self.metric!r} is not logged for this run; {hint}"
            f"choose one of {', '.join(logged)}."
        )

    def update(self, record: dict[str, Any], epoch: int) -> bool:
        """Record an epoch's metrics; True if it is the best so far."""
        if self.metric not in record:
            known = ", ".join(k for k in record if k.startswith(("val.", "train.")))
            raise ConfigError(
                f"train.early_stopping.metric {self.metric!r} is not logged; choose one of {known}."
            )
        score = float(record[self.metric]) * (1 if self.minimize else -1)
        if score < self.best - self.min_delta or self.best_epoch == 0:
            self.best, self.best_epoch, self.bad_epochs = score, epoch, 0
            return True
        self.bad_epochs += 1
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self.bad_epochs >= self.patience

    @property
    def best_value(self) -> float:
        return self.best if self.minimize else -self.best

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)
