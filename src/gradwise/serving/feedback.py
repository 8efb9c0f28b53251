"""POST /v1/feedback: the true label of a served prediction, by request id.

One label for one instance (`row`, default 0), or `labels` for every instance of the
request in order. Labels arrive later than predictions, so the server cannot check that
the request id exists (its record may not be flushed yet); the monitor joins them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from gradwise.errors import GradwiseError
from gradwise.run import Run
from gradwise.serving.schemas import MAX_INSTANCES


def feedback_model(run: Run) -> type[BaseModel]:
    """The request schema of /v1/feedback for this run's labels."""
    if run.schema.task == "classification":
        classes = ", ".join(map(str, run.schema.classes or []))
        label_type: Any = str | int | float
        described = f"the true class, one of {classes}"
    else:
        value = Annotated[float, Field(allow_inf_nan=False)]
        label_type = value | list[value]  # type: ignore[valid-type]
        described = "the true value (a list for several outputs)"

    class FeedbackRequest(BaseModel):
        model_config = ConfigDict(
            extra="forbid",
            json_schema_extra={"oneOf": [{"required": ["label"]}, {"required": ["labels"]}]},
        )
        request_id: str = Field(min_length=1, max_length=64, description="from /v1/predict")
        row: int = Field(0, ge=0, lt=MAX_INSTANCES, description="which instance of the request")
        label: label_type = Field(None, description=described)  # type: ignore[valid-type]
        labels: list[label_type] = Field(  # type: ignore[valid-type]
            None,  # type: ignore[arg-type]
            min_length=1,
            max_length=MAX_INSTANCES,
            description="one label per instance of the request, in order (instead of label)",
        )

        @model_validator(mode="after")
        def _one_of(self) -> FeedbackRequest:
            if (self.label is None) == (self.labels is None):
                raise ValueError("give exactly one of label or labels")
            return self

    return FeedbackRequest


def feedback_rows(run: Run, body: Any) -> list[tuple[int, Any]]:
    """(row, label) pairs of a feedback request, each label checked against the run.

    Raises:
        GradwiseError: a label that is not a class of the run, or the wrong number of values.
    """
    if body.labels is not None:
        return [(i, check_label(run, label, f"labels.{i}")) for i, label in enumerate(body.labels)]
    return [(body.row, check_label(run, body.label, "label"))]


def check_label(run: Run, label: Any, field: str = "label") -> Any:
    """The label as the class it names (classification), or the value(s).

    Raises:
        GradwiseError: not a class of the run, or the wrong number of values.
    """
    if run.schema.task == "classification":
        for cls in run.schema.classes or []:
            if str(cls) == str(label) or (
                isinstance(label, int | float) and isinstance(cls, int | float) and cls == label
            ):
                return cls
        raise GradwiseError(
            f"{field}: {label!r} is not a class of this model; classes: "
            f"{', '.join(map(str, run.schema.classes or []))}."
        )
    values = label if isinstance(label, list) else [label]
    if len(values) != run.schema.n_outputs:
        raise GradwiseError(
            f"{field}: {len(values)} value(s) given; the model predicts {run.schema.n_outputs}."
        )
    return values[0] if len(values) == 1 else values
