"""The batch function the server's batcher calls: instances in, one answer per request out.

All of it runs in the batcher's worker thread, off the event loop: the instances of every
request in the batch are turned into one raw input, preprocessed with the run's own
`transform`, run through one forward pass, and split back per request.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel

from gradwise.errors import DataError, GradwiseError
from gradwise.run import Run
from gradwise.serving.abstention import Abstention
from gradwise.serving.input_warnings import InputWarning, input_checker
from gradwise.serving.schemas import InstanceCodec


@dataclass(frozen=True)
class Answer:
    """The outputs for one request's instances, encoded in the worker thread.

    Attributes:
        predictions: the JSON list sent back, one object per instance: `prediction`, and for
            classifiers `probabilities` (class -> calibrated probability) and `confidence`
            (the top probability); for forecasters `steps_ahead` (what each value is for:
            k steps after the window's last row); conformal `prediction_set` or `interval`
            when the run has them; `warnings` when the instance held something the model
            does not read (ignored); with abstention (`serve --abstain`) `decision` (answer or
            abstain) and `abstain_score` (the certified score; abstained instances keep their
            prediction and probabilities, so a person sees what the model thought).
        confidence: the mean top probability over the instances (None for regression).
    """

    predictions: str
    confidence: float | None


def model_version(run: Run) -> str:
    """`<run name>@<12 hex digits>`: a hash of the weights and of model.json (which holds the
    calibration), so a refitted temperature is a new version too."""
    digest = hashlib.sha256()
    for name in ("model.safetensors", "model.json"):
        path = Path(run.path) / name
        if path.is_file():
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
    return f"{run.config.name}@{digest.hexdigest()[:12]}"


class Predictor:
    """Answers a batch of requests with one forward pass (the batcher's `fn`).

    Args:
        run: the served run; its model is used read-only.
        codec: the run's request schema (turns instances into raw input).
        on_warnings: called with each instance's input warnings (e.g. counts them).
        abstention: the certified threshold each row is decided with; None: no decisions.
        on_decisions: with `abstention`: called with (answered, abstained) instance counts
            of each batch's successful requests (e.g. counts them in /metrics).
    """

    def __init__(
        self,
        run: Run,
        codec: InstanceCodec,
        on_warnings: Callable[[list[InputWarning]], None] | None = None,
        abstention: Abstention | None = None,
        on_decisions: Callable[[int, int], None] | None = None,
    ) -> None:
        run.check_predicts()
        thresholds = run.calibration.group_thresholds
        if thresholds:
            raise GradwiseError(
                f"{run.path} decides by group thresholds on the column "
                f"{thresholds.get('column')!r} (the fairness check's variant), which the server "
                f"does not apply; serve the run it was made from, or use `gradwise predict "
                f"{run.path} FILE` with the column in the file."
            )
        self.run = run
        self.codec = codec
        self.check = input_checker(run.schema, codec.ignored)
        self.on_warnings = on_warnings  # e.g. counts them in /metrics
        self.task = run.schema.task
        self.classes = [str(c) for c in (run.schema.classes or [])]
        self.conformal = conformal_maker(run)
        self.abstention = abstention
        self.on_decisions = on_decisions

    def __call__(self, batch: list[list[BaseModel]]) -> list[Answer | GradwiseError]:
        flat = [inst for item in batch for inst in item]
        raw = self.codec.to_raw(flat)
        if self.task == "seq2seq":
            texts = self.run.predict(raw)
            outputs = self._warned([{"prediction": str(t)} for t in texts], flat)
            return self._split(batch, outputs, [None] * len(flat))
        x = torch.as_tensor(raw) if self.codec.model_ready else self.run.transform(raw)
        last = self._last_levels(flat)
        logits = self._forward(x)
        finite = np.isfinite(logits.numpy()).all(axis=1)
        outputs, confidence = self._outputs(logits, last)
        if self.conformal is not None and finite.any():
            keep = np.flatnonzero(finite)
            more_rows = self.conformal(
                x[torch.from_numpy(keep)], None if last is None else last[keep]
            )
            for row, more in zip(keep.tolist(), more_rows):
                outputs[row].update(more)
        is_answer = self._decide(outputs, x, logits)
        answers = self._split(batch, self._warned(outputs, flat), confidence)
        start = 0
        for i, item in enumerate(batch):  # a row the model cannot answer fails its request
            rows = finite[start : start + len(item)]
            if not rows.all():
                bad = int(np.flatnonzero(~rows)[0])
                answers[i] = DataError(
                    f"instances.{bad}: the model's output is not finite for these values; they "
                    "lie far outside the training data (check units and scale)."
                )
            start += len(item)
        if is_answer is not None:
            self._count_decisions(batch, answers, is_answer)
        return answers

    def _decide(
        self, outputs: list[dict[str, Any]], x: torch.Tensor, logits: torch.Tensor
    ) -> np.ndarray | None:
        """With abstention, each output's `decision` and `abstain_score`; returns the (N,)
        answer flags (None without abstention)."""
        if self.abstention is None:
            return None
        scores = self.abstention.scores(self.run, x, logits)
        is_answer = self.abstention.answers(scores)
        for out, answer, score in zip(outputs, is_answer.tolist(), scores.tolist()):
            out["decision"] = "answer" if answer else "abstain"
            out["abstain_score"] = score
        return is_answer

    def _count_decisions(
        self,
        batch: list[list[BaseModel]],
        answers: list[Answer | GradwiseError],
        is_answer: np.ndarray,
    ) -> None:
        """Report (answered, abstained) over the instances of the requests that succeed."""
        if self.on_decisions is None:
            return
        sent = np.repeat([isinstance(a, Answer) for a in answers], [len(i) for i in batch])
        self.on_decisions(int(is_answer[sent].sum()), int((~is_answer[sent]).sum()))

    @torch.inference_mode()
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """What `Run.logits` computes, for one batch the batcher already bounded: the model
        is kept in eval mode (Run does so), so the per-call `eval_mode` walk over every
        module that `Run.logits` pays (a third of a one-row request's time, measured) is
        skipped. Optimised variants are served the same way: their `Run.model` is the
        engine's module."""
        model = self.run.model
        if model.training:
            model.eval()
        return model(x.to(self.run.device)).float().cpu()

    def _warned(
        self, outputs: list[dict[str, Any]], instances: list[BaseModel]
    ) -> list[dict[str, Any]]:
        """Each output with the instance's `warnings` (unseen categories, numbers sent for
        categories, columns the model does not read: see `serve.input_warnings`)."""
        for out, inst in zip(outputs, instances):
            if found := self.check(inst):
                out["warnings"] = [w.message for w in found]
                if self.on_warnings is not None:
                    self.on_warnings(found)
        return outputs

    def _last_levels(self, instances: list[BaseModel]) -> np.ndarray | None:
        """(N,) for a forecaster of changes (data.difference), each window's last target
        value, which its forecast and interval are added to (the model-ready windows no
        longer hold it); None for any other run.

        Raises:
            DataError: a window's last target value is null (it cannot be imputed: the
                forecast is a change from it).
        """
        series = self.run.schema.series
        if series is None or not series.difference:
            return None
        last = [inst.window[-1].model_dump(by_alias=True)[series.target] for inst in instances]  # type: ignore[attr-defined]
        missing = [i for i, v in enumerate(last) if v is None]
        if missing:
            raise DataError(
                f"instances.{missing[0]}: the window's last {series.target!r} is null; this "
                "forecaster predicts changes from that value, so send it."
            )
        return np.asarray(last, dtype=np.float64)

    def _outputs(
        self, logits: torch.Tensor, last: np.ndarray | None = None
    ) -> tuple[list[dict[str, Any]], list[float | None]]:
        """Per-row answers and confidences; `last` (data.difference) turns a forecaster's
        changes into levels."""
        run = self.run
        if self.task == "classification":
            probs = run.probabilities(logits)  # rows that are not finite fail their request
            top = probs.argmax(axis=1)
            labels = run.schema.target.decode(top)
            confidence = probs[np.arange(len(probs)), top]
            outputs = [
                {
                    "prediction": _plain(label),
                    "probabilities": dict(
                        zip(self.classes, np.round(p.astype(np.float64), 6).tolist())
                    ),
                    "confidence": round(float(conf), 6),
                }
                for label, p, conf in zip(labels, probs, confidence)
            ]
            conf_list: list[float | None] = [float(c) for c in confidence]
        else:
            values = np.asarray(run.schema.target.decode(logits.numpy()), dtype=np.float64)
            values = values if last is None else values + last[:, None]
            outputs = [
                {"prediction": float(v[0]) if len(v) == 1 else [float(a) for a in v]}
                for v in values
            ]
            if run.schema.series is not None:  # value k is for k steps after the window
                steps = 1 if values.shape[1] == 1 else list(range(1, values.shape[1] + 1))
                for out in outputs:
                    out["steps_ahead"] = steps
            conf_list = [None] * len(values)
        return outputs, conf_list

    @staticmethod
    def _split(
        batch: list[list[BaseModel]], outputs: list[dict[str, Any]], confidence: list[float | None]
    ) -> list[Answer | GradwiseError]:
        answers: list[Answer | GradwiseError] = []
        start = 0
        for item in batch:
            end = start + len(item)
            conf = [c for c in confidence[start:end] if c is not None]
            mean = sum(conf) / len(conf) if conf else None
            answers.append(Answer(json.dumps(outputs[start:end], separators=(",", ":")), mean))
            start = end
        return answers


def conformal_maker(
    run: Run,
) -> Callable[[torch.Tensor, np.ndarray | None], list[dict[str, Any]]] | None:
    """A function from a batch's model-ready inputs to per-row conformal outputs, when the
    run has quantiles stored by the uncertainty audit; None otherwise.

    The sets and intervals come from `gradwise.run_conformal` (`prediction_sets`,
    `prediction_intervals`), which recomputes the outputs it needs, so a run with conformal
    quantiles pays a second forward pass per batch.
    """
    if not run.calibration.conformal:
        return None
    # looked up when the server starts, so a test can stand a module in for it
    conformal = importlib.import_module("gradwise.run_conformal")
    classes = run.schema.classes or []

    def outputs(x: torch.Tensor, last: np.ndarray | None) -> list[dict[str, Any]]:
        if run.schema.task == "classification":
            member = np.asarray(conformal.prediction_sets(run, x), dtype=bool)  # (N, K)
            return [
                {"prediction_set": [_plain(classes[j]) for j in np.flatnonzero(row)]}
                for row in member
            ]
        _, lower, upper = conformal.prediction_intervals(run, x, last)
        lo = np.asarray(lower, dtype=np.float64).reshape(len(x), -1)
        hi = np.asarray(upper, dtype=np.float64).reshape(len(x), -1)
        if lo.shape[1] == 1:
            return [{"interval": [float(a), float(b)]} for a, b in zip(lo[:, 0], hi[:, 0])]
        return [{"interval": [lo[i].tolist(), hi[i].tolist()]} for i in range(len(lo))]

    return outputs


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
