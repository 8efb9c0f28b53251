"""Served traffic read back from the prediction store, one entry per instance.

The store keeps each request as it went over the wire (the body, the answer); here they are
split into instances again, with the feedback that arrived for them.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import sqlalchemy as sa
from pydantic import BaseModel, ValidationError

from gradwise.serving.schemas import InstanceCodec
from gradwise.serving.store import feedback, predictions


@dataclass
class Served:
    """Served instances in arrival order (columns of equal length).

    Attributes:
        time: Unix seconds the request was answered.
        request_id, row: which request, which instance of it.
        replica_id, model_version: who answered, with which model.
        confidence: the top probability served (NaN for regression).
        prediction: the served prediction (label, value or text).
        decision: "answer" or "abstain" (`serve --abstain`); None: served without abstention.
        instances: the validated request instances (raw input for the run's transform).
        last_id: the store id of the newest request read (to read on from there).
    """

    time: list[float] = field(default_factory=list)
    request_id: list[str] = field(default_factory=list)
    row: list[int] = field(default_factory=list)
    replica_id: list[str] = field(default_factory=list)
    model_version: list[str] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)
    prediction: list[Any] = field(default_factory=list)
    decision: list[str | None] = field(default_factory=list)
    instances: list[BaseModel] = field(default_factory=list)
    last_id: int = 0
    n_unreadable: int = 0  # requests whose body no longer fits the run's schema

    def __len__(self) -> int:
        return len(self.time)

    def extend(self, other: Served) -> None:
        for name in _COLUMNS:
            getattr(self, name).extend(getattr(other, name))
        self.last_id = max(self.last_id, other.last_id)
        self.n_unreadable += other.n_unreadable

    def between(self, start: int, end: int) -> Served:
        """The instances start..end (a copy of those columns; counters not carried)."""
        return Served(**{name: getattr(self, name)[start:end] for name in _COLUMNS})

    def drop_first(self, n: int) -> None:
        """Forget the first `n` instances (the monitor's look-backs no longer need them)."""
        for name in _COLUMNS:
            del getattr(self, name)[:n]


_COLUMNS = tuple(f.name for f in fields(Served) if f.name not in ("last_id", "n_unreadable"))


@dataclass
class Tally:
    """Running counts over every instance served so far (report.json's totals), kept instead
    of the instances themselves."""

    n: int = 0
    replicas: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)
    decided: int = 0  # instances carrying a decision (served with --abstain)
    abstained: int = 0

    def add(self, served: Served) -> None:
        self.n += len(served)
        self.replicas.update(served.replica_id)
        self.versions.update(served.model_version)
        self.decided += sum(d is not None for d in served.decision)
        self.abstained += sum(d == "abstain" for d in served.decision)


@dataclass
class Ledger:
    """What a label arriving late needs of a served instance, without its inputs: which
    instance it is, what was served and decided (`monitoring.selective.labelled_answers`,
    the groups' accuracy over the whole watch). Entries are in served order.

    Attributes:
        index: each entry's served instance (0-based over the whole watch).
    """

    index: list[int] = field(default_factory=list)
    request_id: list[str] = field(default_factory=list)
    row: list[int] = field(default_factory=list)
    prediction: list[Any] = field(default_factory=list)
    decision: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.index)

    def add(self, served: Served, start: int, keep: list[bool]) -> None:
        """Enter the instances of `served` (the first is instance `start`) where `keep`."""
        for i, kept in enumerate(keep):
            if kept:
                self.index.append(start + i)
                self.request_id.append(served.request_id[i])
                self.row.append(served.row[i])
                self.prediction.append(served.prediction[i])
                self.decision.append(served.decision[i])

    def key_of(self, instance: int) -> tuple[str, int]:
        """(request id, row) of served instance `instance` (it must be entered)."""
        at = bisect_left(self.index, instance)
        assert self.index[at] == instance
        return self.request_id[at], self.row[at]


def read_served(engine: sa.Engine, codec: InstanceCodec | None, after_id: int = 0) -> Served:
    """Every request stored after `after_id`, split into instances.

    Args:
        codec: the run's request schema; None (language models): the inputs are not parsed.
    """
    query = (
        sa.select(
            predictions.c.id,
            predictions.c.time,
            predictions.c.request_id,
            predictions.c.replica_id,
            predictions.c.model_version,
            predictions.c.inputs,
            predictions.c.outputs,
        )
        .where(predictions.c.id > after_id)
        .order_by(predictions.c.time, predictions.c.id)
    )
    out = Served(last_id=after_id)
    with engine.connect() as conn:
        for rid, t, request_id, replica, version, inputs, outputs in conn.execute(query):
            out.last_id = max(out.last_id, int(rid))
            answers = json.loads(outputs)
            try:
                parsed: list[Any] = codec.parse(inputs) if codec else [None] * len(answers)
            except ValidationError:
                out.n_unreadable += 1
                continue
            for i, (inst, answer) in enumerate(zip(parsed, answers)):
                out.time.append(float(t))
                out.request_id.append(request_id)
                out.row.append(i)
                out.replica_id.append(replica)
                out.model_version.append(version)
                conf = answer.get("confidence")
                out.confidence.append(float(conf) if conf is not None else float("nan"))
                out.prediction.append(answer.get("prediction"))
                out.decision.append(answer.get("decision"))
                out.instances.append(inst)
    return out


def read_feedback(engine: sa.Engine) -> dict[tuple[str, int], Any]:
    """The latest label given for each (request id, row), in the order the first label of
    each arrived (the confidence sequence of the answered error rate reads them in it)."""
    query = sa.select(feedback.c.request_id, feedback.c.row, feedback.c.label).order_by(
        feedback.c.time, feedback.c.id
    )
    with engine.connect() as conn:
        return {(r, int(i)): json.loads(label) for r, i, label in conn.execute(query)}


def labels_for(
    served: Served, start: int, end: int, labels: dict[tuple[str, int], Any]
) -> list[Any]:
    """The label of each instance in served[start:end] (None where none arrived)."""
    return [labels.get((served.request_id[i], served.row[i])) for i in range(start, end)]


def counts(values: list[str]) -> dict[str, int]:
    keys, n = np.unique(np.asarray(values, dtype=object), return_counts=True)
    return {str(k): int(c) for k, c in zip(keys, n)}
