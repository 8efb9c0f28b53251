"""gradwise: neural networks that come with evidence.

import gradwise
run = gradwise.train("config.yaml", out="runs/x", **{"train.epochs": 5})
run = gradwise.load("runs/x")
run.predict(X); run.predict_proba(X); run.metrics
gradwise.audit(run, checks=["calibration", "robustness"])

The names below load on first use, so `import gradwise` (and `gradwise --help`) does not
pay for torch until a function needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gradwise.errors import ConfigError, DataError, GradwiseError, NotTrainedError, TrainingDiverged

if TYPE_CHECKING:
    from gradwise.api import (
        audit,
        bench,
        compare,
        explain,
        load,
        lr_find,
        monitor,
        optimize,
        report,
        serve,
        train,
        tune,
    )
    from gradwise.run import Run

__version__ = "0.1.0"

_LAZY = {
    "Run": "gradwise.run",
    "audit": "gradwise.api",
    "bench": "gradwise.api",
    "compare": "gradwise.api",
    "explain": "gradwise.api",
    "load": "gradwise.api",
    "lr_find": "gradwise.api",
    "monitor": "gradwise.api",
    "optimize": "gradwise.api",
    "report": "gradwise.api",
    "serve": "gradwise.api",
    "train": "gradwise.api",
    "tune": "gradwise.api",
}

__all__ = [
    "ConfigError",
    "DataError",
    "GradwiseError",
    "NotTrainedError",
    "Run",
    "TrainingDiverged",
    "audit",
    "bench",
    "compare",
    "explain",
    "load",
    "lr_find",
    "monitor",
    "optimize",
    "report",
    "serve",
    "train",
    "tune",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return module if module.__name__ == f"gradwise.{name}" else getattr(module, name)
    raise AttributeError(f"module 'gradwise' has no attribute {name!r}")
