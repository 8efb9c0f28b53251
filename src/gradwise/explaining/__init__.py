"""Explain: why does the model decide what it decides?

    gradwise explain RUN [--rows 0,5,17] [--method ig|gradshap|kernelshap|saliency] [--split test]
    gradwise.explain(run, rows=[0, 5, 17], method="ig")
    gradwise explain RUN --data TABLE --out FILE [--batch-rows N]     (every row, streamed)
    gradwise.explain_file(run, "new.parquet", "attributions.csv")

Attributions through Captum for chosen rows (integrated gradients, GradientSHAP, saliency;
KernelSHAP for tables), global feature importance for tables (mean |attribution| and
permutation importance), attention maps for transformers, and activation statistics per
layer (dead and saturated units), each as numbers in RUN/explain/explain.json and a picture.
"""

from __future__ import annotations

from gradwise.config import ExplainSettings
from gradwise.explaining.base import (
    METHODS,
    Explanation,
    FeatureImportance,
    HeadAttention,
    LayerActivity,
    RowExplanation,
)
from gradwise.explaining.explainer import EXPLAIN_FOLDER, explain_run
from gradwise.explaining.stream import StreamExplanation, explain_file
from gradwise.run import Run

__all__ = [
    "EXPLAIN_FOLDER",
    "METHODS",
    "Explanation",
    "FeatureImportance",
    "HeadAttention",
    "LayerActivity",
    "RowExplanation",
    "StreamExplanation",
    "explain_file",
    "explain_run",
    "explain_with",
]


def explain_with(run: Run, settings: ExplainSettings) -> Explanation:
    """Explain `run` as `settings` say (the layer below `gradwise.explain`); the settings
    used are written into RUN/explain/explain.json."""
    return explain_run(run, settings.rows, settings.method, settings.split, settings.seed)
