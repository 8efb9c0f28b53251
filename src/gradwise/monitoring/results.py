"""One window's evidence: the result the monitor keeps for each window, its drift summaries
and the alerts its numbers raise."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from typing import Any

from gradwise.auditing.drift import DriftReport
from gradwise.config import MonitorSettings
from gradwise.monitoring.alerts import Alert
from gradwise.monitoring.baseline import Baseline
from gradwise.monitoring.groups import group_alerts
from gradwise.monitoring.selective import rise_alert


@dataclass(frozen=True)
class WindowResult:
    """One window's evidence (JSON-able through `to_dict`).

    Attributes:
        drifted: the inputs drifted by the monitor's rule (see `MonitorSettings.agree`);
            `raw_drift` and `embed_drift` hold each representation's own verdict.
        guarantee: served with --abstain: the window's decisions, its abstention test, the
            labels' confidence sequence at the window's end and whether the certified error
            rate holds there (`monitoring.selective.window_guarantee`); None otherwise.
        groups: with groups named: per column, the instances without it (`absent`) and each
            group's served and labelled instances, accuracy with its exact interval, audited
            accuracy, gap and test (`monitoring.groups.group_numbers`); None otherwise.
    """

    index: int
    start: int
    end: int
    complete: bool
    start_time: float
    end_time: float
    replicas: dict[str, int]
    versions: dict[str, int]
    raw_drift: dict[str, Any] | None
    embed_drift: dict[str, Any] | None
    output_drift: dict[str, Any] | None
    drifted: bool
    most_drifted: list[str]
    mean_confidence: float | None
    n_labelled: int
    accuracy: float | None
    rmse: float | None
    guarantee: dict[str, Any] | None
    groups: dict[str, Any] | None
    alerts: tuple[Alert, ...]

    @property
    def n(self) -> int:
        return self.end - self.start

    @property
    def estimated_accuracy(self) -> float | None:
        """Label-free: the mean calibrated top probability (classification)."""
        return self.mean_confidence

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["n"] = self.n
        out["estimated_accuracy"] = self.estimated_accuracy
        out["alerts"] = [a.to_dict() for a in self.alerts]
        return out


def drift_summary(report: DriftReport) -> dict[str, Any]:
    return {
        "drifted": report.drifted,
        "n_reference": report.n_reference,
        "n_current": report.n_current,
        "detectors": {
            r.detector: {
                "effect": round(float(r.effect), 6),
                "threshold": r.threshold,
                "p_value": None if r.p_value is None else float(r.p_value),
                "drifted": r.drifted,
                "n_drifted": r.n_drifted,
            }
            for r in report.results
        },
    }


def most_drifted(report: DriftReport, names: list[str] | None, k: int = 5) -> list[str]:
    best: dict[int, float] = {}
    for r in report.results:
        if r.features is None:
            continue
        for col, eff, hit in zip(r.features.columns, r.features.effect, r.features.drifted):
            if hit:
                best[int(col)] = max(best.get(int(col), 0.0), float(eff))
    order = sorted(best, key=lambda c: -best[c])[:k]
    return [names[c] if names else f"feature {c}" for c in order]


def drift_where(
    raw_drift: dict[str, Any] | None, embed_drift: dict[str, Any] | None, most: list[str]
) -> str:
    """Where inputs drifted, in words: "raw features and embeddings (most: age, city)"."""
    where = [
        n
        for n, d in (("raw features", raw_drift), ("embeddings", embed_drift))
        if d and d["drifted"]
    ]
    named = f" (most: {', '.join(most)})" if most else ""
    return " and ".join(where) + named


def with_alerts(w: WindowResult, base: Baseline | None, s: MonitorSettings) -> WindowResult:
    alerts: list[Alert] = []
    if w.drifted:
        void = ""
        if w.guarantee is not None:
            void = "; the certified error rate among answered instances does not hold on them"
        where = drift_where(w.raw_drift, w.embed_drift, w.most_drifted)
        alerts.append(Alert("drift", w.index, f"inputs drifted from training in {where}{void}"))
    if w.guarantee is not None and w.guarantee["abstention_rise"]:
        alerts.append(rise_alert(w.index, w.guarantee, s.alpha))
    if w.output_drift is not None and w.output_drift["drifted"]:
        alerts.append(
            Alert(
                "prediction_shift",
                w.index,
                "the predictions' distribution moved away from validation's",
            )
        )
    if base is not None and base.val_confidence is not None and w.mean_confidence is not None:
        floor = base.val_confidence - s.confidence_drop
        if w.mean_confidence < floor:
            alerts.append(
                Alert(
                    "confidence_drop",
                    w.index,
                    f"mean confidence {w.mean_confidence:.3f} (the label-free accuracy "
                    f"estimate) is below validation's {base.val_confidence:.3f} - "
                    f"{s.confidence_drop:g}",
                    w.mean_confidence,
                    floor,
                )
            )
    if (
        base is not None
        and base.val_accuracy is not None
        and w.accuracy is not None
        and w.n_labelled >= s.min_labels
        and w.accuracy < base.val_accuracy - s.accuracy_drop
    ):
        floor = base.val_accuracy - s.accuracy_drop
        alerts.append(
            Alert(
                "accuracy_drop",
                w.index,
                f"accuracy {w.accuracy:.3f} on {w.n_labelled} labelled instances is below "
                f"validation's {base.val_accuracy:.3f} - {s.accuracy_drop:g}",
                w.accuracy,
                floor,
            )
        )
    alerts += group_alerts(w.index, w.groups, s)
    return dataclasses.replace(w, alerts=tuple(alerts))
