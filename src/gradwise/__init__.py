"""gradwise: neural networks that come with evidence.

import gradwise
run = gradwise.train("config.yaml", out="runs/x", **{"train.epochs": 5})
run = gradwise.load("runs/x")
run.predict(X); run.predict_proba(X); run.metrics
"""

from typing import TYPE_CHECKING, Any

from gradwise.errors import ConfigError, DataError, GradwiseError, NotTrainedError

if TYPE_CHECKING:
    from gradwise.api import load, train
    from gradwise.run import Run

__all__ = [
    "ConfigError",
    "DataError",
    "GradwiseError",
    "NotTrainedError",
    "Run",
    "load",
    "train",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # torch is imported on first use, so `gradwise --help` and `import gradwise` stay fast.
    if name in ("train", "load"):
        from gradwise import api

        return getattr(api, name)
    if name == "Run":
        from gradwise.run import Run

        return Run
    raise AttributeError(f"module 'gradwise' has no attribute {name!r}")
