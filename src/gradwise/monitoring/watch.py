"""The monitor: windows of served traffic compared with training and validation.

For each window it tests the inputs for drift (the shift audit's detectors, on the raw
features and on the model's embeddings), the predictions against the validation split's,
estimates accuracy from the served confidences before labels arrive (the mean top
probability, as NannyML's CBPE does from calibrated scores), and measures it where
feedback has arrived. Served with `--abstain`, it also watches the certified error rate among
answered instances (`monitoring/selective.py`); with groups named (`monitor.groups`), each
group's accuracy against its audited test accuracy (`monitoring/groups.py`). Crossed
thresholds are alerts.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from gradwise.auditing.drift import DriftReport, DriftSettings, detect
from gradwise.config import MonitorSettings
from gradwise.errors import GradwiseError
from gradwise.logs import LOG
from gradwise.monitoring.alerts import Alert
from gradwise.monitoring.baseline import Baseline, build_baseline, model_inputs, raw_features
from gradwise.monitoring.groups import (
    GroupWatch,
    correct_answers,
    group_alerts,
    group_numbers,
    groups_section,
    watch_groups,
)
from gradwise.monitoring.selective import (
    Answers,
    GuaranteeReport,
    broken_alert,
    guarantee_report,
    labelled_answers,
    load_promise,
    rise_alert,
    window_guarantee,
)
from gradwise.monitoring.stream import Served, counts, labels_for, read_feedback, read_served
from gradwise.monitoring.windows import parse_window, window_bounds
from gradwise.run import Run
from gradwise.serving.schemas import InstanceCodec, instance_codec
from gradwise.serving.store import open_store

log = logging.getLogger(LOG)


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


class Monitor:
    """Watches one run's prediction store; `update` evaluates the windows completed since
    the last call (state: the prepared reference, what was read, the windows so far).

    Args:
        run: the served run (its training data must be at hand for the reference).
        store: the store's SQLAlchemy URL.
    """

    def __init__(self, run: Run, store: str, settings: MonitorSettings = MonitorSettings()):
        self.run = run
        self.settings = settings
        self.window = parse_window(settings.window)
        self.engine = open_store(store)
        self.is_lm = run.schema.task == "lm"
        self.codec: InstanceCodec | None = None if self.is_lm else instance_codec(run.schema)
        self.baseline: Baseline | None = (
            None if self.is_lm else build_baseline(run, settings.reference_rows, run.config.seed)
        )
        self.raw = raw_features(run, self.codec) if self.codec else None
        self.served = Served()
        self.windows: list[WindowResult] = []
        self._next_start = 0
        self.promise, self.no_promise = load_promise(run, settings.guarantee_delta)
        self.answers: Answers | None = None
        self.broken: dict[str, Any] | None = None  # where the error bound first reached alpha
        self._late: list[Alert] = []  # alerts about windows evaluated in an earlier pass
        self.groups: GroupWatch | None = watch_groups(run, settings)
        # per tracked column, each served instance's group
        self.group_of: dict[str, list[str | None]] = {
            c: [] for c in (self.groups.columns if self.groups else ())
        }
        self.labels: dict[tuple[str, int], Any] = {}  # the feedback read by the last update

    def update(self, final: bool = False) -> list[WindowResult]:
        """Read new traffic and evaluate the windows it completes.

        Args:
            final: also evaluate the newest, still open window (if it holds at least a
                tenth of a count window, or 10 instances).
        """
        fresh = read_served(self.engine, self.codec, self.served.last_id)
        self.served.extend(fresh)
        if self.groups is not None:
            for column, groups in self.groups.labels(fresh.instances).items():
                self.group_of[column].extend(groups)
        labels = self.labels = read_feedback(self.engine)
        if self.promise is not None:
            self.answers = labelled_answers(self.served, labels, self.promise)
        spec = self.window
        open_min = max(10, (spec.size or 0) // 10) if final else None
        new = []
        for a, b, complete in window_bounds(self.served.time, spec, self._next_start, open_min):
            result = self._evaluate(len(self.windows), a, b, complete, labels)
            if complete:
                self._next_start = b
                self.windows.append(result)
            new.append(result)
        return self._check_broken(new)

    def late_alerts(self) -> list[Alert]:
        """Alerts raised since the last call about windows evaluated in an earlier pass (the
        labels that broke the guarantee arrived after their window was judged)."""
        late, self._late = self._late, []
        return late

    def guarantee(self, windows: list[WindowResult]) -> GuaranteeReport | None:
        """The guarantee over the whole watch (None for language models)."""
        if self.is_lm:
            return None
        return guarantee_report(
            self.promise,
            self.no_promise,
            self.served,
            self.answers,
            [(w.index, w.guarantee) for w in windows],
            self.broken,
        )

    # ------------------------------------------------------------ one window

    def _evaluate(
        self, index: int, a: int, b: int, complete: bool, labels: dict[tuple[str, int], Any]
    ) -> WindowResult:
        served, base = self.served, self.baseline
        raw_drift = embed_drift = output_drift = None
        most: list[str] = []
        if base is not None and self.codec is not None:
            instances = served.instances[a:b]
            seed = self.run.config.seed + index
            if base.raw is not None and self.raw is not None:
                report = self._detect(
                    base.raw, self.raw(instances), self.settings.raw_detectors, seed
                )
                raw_drift, most = _summary(report), _most_drifted(report, base.raw_names)
            x = model_inputs(self.run, self.codec, instances)
            emb = self.run.embed(x).double().numpy()
            if base.embed is not None:
                embed_drift = _summary(
                    self._detect(base.embed, emb, self.settings.embed_detectors, seed)
                )
            output_drift = self._output_drift(base, a, b, seed)
        compared = [d["drifted"] for d in (raw_drift, embed_drift) if d is not None]
        drifted = bool(compared) and (all(compared) if self.settings.agree else any(compared))
        guarantee = None
        if self.promise is not None and self.answers is not None:
            where = _drift_where(raw_drift, embed_drift, most) if drifted else None
            guarantee = window_guarantee(
                self.promise, self.answers, served.decision[a:b], (a, b), where, self.settings.alpha
            )
        conf = np.asarray(served.confidence[a:b], dtype=np.float64)
        mean_conf = float(conf.mean()) if np.isfinite(conf).any() else None
        n_labelled, accuracy, rmse = self._measured(a, b, labels)
        result = WindowResult(
            index=index,
            start=a,
            end=b,
            complete=complete,
            start_time=served.time[a],
            end_time=served.time[b - 1],
            replicas=counts(served.replica_id[a:b]),
            versions=counts(served.model_version[a:b]),
            raw_drift=raw_drift,
            embed_drift=embed_drift,
            output_drift=output_drift,
            drifted=drifted,
            most_drifted=most,
            mean_confidence=mean_conf,
            n_labelled=n_labelled,
            accuracy=accuracy,
            rmse=rmse,
            guarantee=guarantee,
            groups=self._groups(a, b, labels, self.settings),
            alerts=(),
        )
        return _with_alerts(result, base, self.settings)

    def _groups(
        self, a: int, b: int, labels: dict[tuple[str, int], Any], s: MonitorSettings | None
    ) -> dict[str, Any] | None:
        """Each group's numbers over served[a:b] (`s`: also test them, as a window does)."""
        if self.groups is None:
            return None
        truth = labels_for(self.served, a, b, labels)
        correct = correct_answers(self.served.prediction[a:b], truth)
        of = {column: groups[a:b] for column, groups in self.group_of.items()}
        return group_numbers(self.groups, of, correct, s)

    def group_summary(self) -> dict[str, Any] | None:
        """report.json's `groups`: every served instance with the labels read so far, and
        what is not tracked; None when no groups are named."""
        n = len(self.served)
        return groups_section(self.groups, self._groups(0, n, self.labels, None), n)

    def _detect(
        self, reference: Any, current: np.ndarray, detectors: tuple[str, ...], seed: int
    ) -> DriftReport:
        settings = DriftSettings(alpha=self.settings.alpha, detectors=detectors)  # type: ignore[arg-type]
        return detect(reference, current, settings, seed=seed)

    def _output_drift(self, base: Baseline, a: int, b: int, seed: int) -> dict[str, Any] | None:
        if base.outputs is None:
            return None
        preds = self.served.prediction[a:b]
        if base.outputs_categorical:
            index = {str(c): i for i, c in enumerate(self.run.schema.classes or [])}
            codes = np.array([index.get(str(p), -1) for p in preds], dtype=np.float64)[:, None]
            return _summary(self._detect(base.outputs, codes, ("chi2",), seed))
        values = np.asarray(preds, dtype=np.float64).reshape(len(preds), -1)
        return _summary(self._detect(base.outputs, values, ("ks",), seed))

    def _measured(
        self, a: int, b: int, labels: dict[tuple[str, int], Any]
    ) -> tuple[int, float | None, float | None]:
        truth = labels_for(self.served, a, b, labels)
        pairs = [(p, t) for p, t in zip(self.served.prediction[a:b], truth) if t is not None]
        if not pairs:
            return 0, None, None
        if self.run.schema.task == "classification":
            return len(pairs), float(np.mean([str(p) == str(t) for p, t in pairs])), None
        if self.run.schema.task == "regression":
            p = np.asarray([np.ravel(p) for p, _ in pairs], dtype=np.float64)
            t = np.asarray([np.ravel(t) for _, t in pairs], dtype=np.float64)
            return len(pairs), None, float(np.sqrt(np.mean((p - t) ** 2)))
        return len(pairs), None, None

    # ------------------------------------------------------------ over windows

    def retrain_window(self) -> tuple[int, int] | None:
        """(first, last) window of the drift that persists up to the newest window, when the
        last `persist` windows all drifted; None otherwise."""
        run_len = 0
        for w in reversed(self.windows):
            if not w.drifted:
                break
            run_len += 1
        if run_len < self.settings.persist:
            return None
        return len(self.windows) - run_len, len(self.windows) - 1

    def _check_broken(self, new: list[WindowResult]) -> list[WindowResult]:
        """Raise "guarantee likely broken" once, the first time the labels' bound reaches
        alpha; it goes to the window whose look first counts the label that crossed."""
        answers, promise = self.answers, self.promise
        if self.broken is not None or answers is None or promise is None:
            return new
        t = answers.crossing
        if t is None:
            return new
        last = int(answers.index[:t].max())  # the latest instance among the labels counted
        judged = self.windows + [w for w in new if not w.complete]
        index = next((w.index for w in judged if w.start <= last < w.end), len(self.windows))
        look = answers.at(t)
        alert = broken_alert(promise, look, index)
        crossed = int(answers.index[t - 1])  # the instance whose label crossed
        self.broken = {
            **look,
            "window": index,
            "request_id": self.served.request_id[crossed],
            "row": self.served.row[crossed],
        }
        if index not in {w.index for w in new}:
            self._late.append(alert)
            return new
        out = [
            dataclasses.replace(w, alerts=(*w.alerts, alert)) if w.index == index else w
            for w in new
        ]
        self.windows = [next((o for o in out if o.index == w.index), w) for w in self.windows]
        return out


def _summary(report: DriftReport) -> dict[str, Any]:
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


def _most_drifted(report: DriftReport, names: list[str] | None, k: int = 5) -> list[str]:
    best: dict[int, float] = {}
    for r in report.results:
        if r.features is None:
            continue
        for col, eff, hit in zip(r.features.columns, r.features.effect, r.features.drifted):
            if hit:
                best[int(col)] = max(best.get(int(col), 0.0), float(eff))
    order = sorted(best, key=lambda c: -best[c])[:k]
    return [names[c] if names else f"feature {c}" for c in order]


def _drift_where(
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


def _with_alerts(w: WindowResult, base: Baseline | None, s: MonitorSettings) -> WindowResult:
    alerts: list[Alert] = []
    if w.drifted:
        void = ""
        if w.guarantee is not None:
            void = "; the certified error rate among answered instances does not hold on them"
        where = _drift_where(w.raw_drift, w.embed_drift, w.most_drifted)
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


def check_monitorable(run: Run) -> None:
    """Raise when a run cannot be monitored (diffusion, masked-LM pretraining)."""
    if run.schema.task == "lm":
        return
    try:
        run.check_predicts()
    except GradwiseError as exc:
        raise GradwiseError(f"{exc} It is not served, so there is nothing to monitor.") from None
