"""gradwise: neural networks that come with evidence.

import gradwise
run = gradwise.train("config.yaml", out="runs/x", **{"train.epochs": 5})
run = gradwise.load("runs/x")
run.predict(X); run.predict_proba(X); run.metrics
gradwise.audit(run, checks=["calibration", "robustness"])
gradwise.audit(run, gradwise.AuditSettings(checks=["calibration"]))

Every verb is a plain function of `gradwise.api`; each takes its settings object (or the
run's config section) and `**changes` to it. The names below load on first use, so
`import gradwise` (and `gradwise --help`) does not pay for torch until a function needs it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gradwise.errors import ConfigError, DataError, GradwiseError, NotTrainedError, TrainingDiverged
from gradwise.version import __version__ as __version__

if TYPE_CHECKING:
    from gradwise.api import (
        audit,
        bench,
        compare,
        evaluate_file,
        explain,
        explain_file,
        load,
        lr_find,
        monitor,
        optimize,
        predict_file,
        report,
        serve,
        train,
        tune,
    )
    from gradwise.config import (
        AuditSettings,
        BenchSettings,
        Config,
        ExplainSettings,
        MonitorSettings,
        OptimizeSettings,
        ReportSettings,
        ServeSettings,
        TuneSettings,
    )
    from gradwise.run import Run

_LAZY = {
    "AuditSettings": "gradwise.config",
    "BenchSettings": "gradwise.config",
    "Config": "gradwise.config",
    "ExplainSettings": "gradwise.config",
    "MonitorSettings": "gradwise.config",
    "OptimizeSettings": "gradwise.config",
    "ReportSettings": "gradwise.config",
    "Run": "gradwise.run",
    "ServeSettings": "gradwise.config",
    "TuneSettings": "gradwise.config",
    "audit": "gradwise.api",
    "bench": "gradwise.api",
    "compare": "gradwise.api",
    "evaluate_file": "gradwise.api",
    "explain": "gradwise.api",
    "explain_file": "gradwise.api",
    "load": "gradwise.api",
    "lr_find": "gradwise.api",
    "monitor": "gradwise.api",
    "optimize": "gradwise.api",
    "predict_file": "gradwise.api",
    "report": "gradwise.api",
    "serve": "gradwise.api",
    "train": "gradwise.api",
    "tune": "gradwise.api",
}

__all__ = [
    "AuditSettings",
    "BenchSettings",
    "Config",
    "ConfigError",
    "DataError",
    "ExplainSettings",
    "GradwiseError",
    "MonitorSettings",
    "NotTrainedError",
    "OptimizeSettings",
    "ReportSettings",
    "Run",
    "ServeSettings",
    "TrainingDiverged",
    "TuneSettings",
    "audit",
    "bench",
    "compare",
    "evaluate_file",
    "explain",
    "explain_file",
    "load",
    "lr_find",
    "monitor",
    "optimize",
    "predict_file",
    "report",
    "serve",
    "train",
    "tune",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gradwise' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
