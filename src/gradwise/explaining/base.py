"""What `gradwise explain` returns: frozen dataclasses, also written to RUN/explain/explain.json."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

Method = Literal["ig", "gradshap", "kernelshap", "saliency"]
METHODS: tuple[Method, ...] = ("ig", "gradshap", "kernelshap", "saliency")


@dataclass(frozen=True)
class RowExplanation:
    """Why the model decided what it decided for one sample.

    Attributes:
        row: the sample's row number in the source (0-based), as `--rows` takes it.
        prediction: the predicted label (classification) or value (regression).
        explained: what the attributions explain ("logit of class 7", "the output").
        top: the largest attributions, (name, attribution) with the largest |attribution|
            first: raw columns with their value (tables), tokens (text), feature@step
            (sequences), pixels (images).
        total: the sum of all attributions.
        completeness_gap: |total - (f(x) - f(baseline))| for integrated gradients (small when
            the path integral is accurate); None for the other methods.
    """

    row: int
    prediction: Any
    explained: str
    top: tuple[tuple[str, float], ...]
    total: float
    completeness_gap: float | None = None


@dataclass(frozen=True)
class FeatureImportance:
    """Global importance of each raw column of a table.

    Attributes:
        features: the raw columns (one-hot columns of a categorical feature grouped).
        mean_abs_attribution: mean |attribution| per column over `n_rows` test rows.
        permutation: mean drop of the score when the column's values are shuffled among the
            rows (sklearn.inspection.permutation_importance on the model), per column.
        permutation_std: its standard deviation over the repeats.
        score: what the permutation drop is measured on (accuracy, neg_rmse).
        top_agree: whether both rankings put the same column first.
        n_rows: test rows the attributions are averaged over.
        n_permutation_rows: test rows the shuffles are scored on.
        n_repeats: shuffles per column.
    """

    features: tuple[str, ...]
    mean_abs_attribution: tuple[float, ...]
    permutation: tuple[float, ...]
    permutation_std: tuple[float, ...]
    score: str
    top_agree: bool
    n_rows: int
    n_permutation_rows: int
    n_repeats: int


@dataclass(frozen=True)
class HeadAttention:
    """One attention head, averaged over the explained rows.

    Attributes:
        layer: the attention module's name in the model (blocks.0.attn).
        head: the head index.
        entropy: mean entropy of a query's attention, in nats (0: one key; log T: uniform).
        to_first: mean attention every query gives the first position (<bos>, [CLS]).
    """

    layer: str
    head: int
    entropy: float
    to_first: float


@dataclass(frozen=True)
class LayerActivity:
    """Activation statistics of one layer on a validation batch.

    Attributes:
        layer: module name; kind: relu | gelu | silu | tanh | sigmoid | recurrent.
        n_units: features or channels.
        dead: share of units never positive on the batch (ReLU family, GELU, SiLU; None for
            bounded activations).
        saturated: share of units saturated on every value (|tanh| > 0.99, sigmoid outside
            0.01..0.99; None for unbounded activations).
        saturated_values: share of all values that are saturated (bounded activations).
        mean, std: of the layer's outputs.
    """

    layer: str
    kind: str
    n_units: int
    dead: float | None
    saturated: float | None
    saturated_values: float | None
    mean: float
    std: float


@dataclass(frozen=True)
class Explanation:
    """Everything `explain` measured for one run; written to RUN/explain/explain.json.

    Attributes:
        kind: the run's inputs: tabular, image, sequence or tokens.
        method: the attribution method (ig, gradshap, kernelshap, saliency), or None when no
            attribution applies (language models).
        split: the split the rows come from.
        baseline: the reference input the attributions are measured against.
        rows: one explanation per explained row.
        importance: global feature importance (tables), else None.
        attention: per layer and head (transformers), else empty.
        activations: per activation layer.
        files: what was written, relative to RUN/explain.
        notes: methods that did not apply, and why.
        settings: every setting used.
        wall_s: seconds it took.
    """

    run: str
    kind: str
    method: str | None
    split: str
    baseline: str | None
    rows: tuple[RowExplanation, ...]
    importance: FeatureImportance | None = None
    attention: tuple[HeadAttention, ...] = ()
    activations: tuple[LayerActivity, ...] = ()
    files: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    settings: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
