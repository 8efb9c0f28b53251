"""gradwise: neural networks that come with evidence.

import gradwise
run = gradwise.train("config.yaml", out="runs/x", **{"train.epochs": 5})
run = gradwise.load("runs/x")
run.predict(X); run.predict_proba(X); run.metrics
"""

from gradwise.errors import ConfigError, DataError, GradwiseError, NotTrainedError, TrainingDiverged
from gradwise.run import Run

# `gradwise.train` is both a subpackage and the API function: importing the API (which loads
# the subpackage) first and binding the function afterwards keeps the function.
from gradwise.api import compare, load, lr_find, train  # noqa: E402  isort: skip

__all__ = [
    "ConfigError",
    "DataError",
    "GradwiseError",
    "NotTrainedError",
    "Run",
    "TrainingDiverged",
    "compare",
    "load",
    "lr_find",
    "train",
]
__version__ = "0.1.0"
