"""The monitor: windows of served traffic compared with training and validation.

For each window it tests the inputs for drift (the shift audit's detectors, on the raw
features and on the model's embeddings), the predictions against the validation split's,
estimates accuracy from the served confidences before labels arrive (the mean top
probability, as NannyML's CBPE does from calibrated scores), and measures it where
feedback has arrived. Served with `--abstain`, it also watches the certified error rate among
answered instances (`monitoring/selective.py`); with groups named (`monitor.groups`), each
group's accuracy against its audited test accuracy (`monitoring/groups.py`). Crossed
thresholds are alerts (`monitoring/results.py`). What the monitor holds between passes is
bounded by the window, not by the history (see `Monitor`).
"""

from __future__ import annotations

import dataclasses
import logging
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
    group_numbers,
    groups_section,
    watch_groups,
)
from gradwise.monitoring.results import (
    WindowResult,
    drift_summary,
    drift_where,
    most_drifted,
    with_alerts,
)
from gradwise.monitoring.selective import (
    Answers,
    GuaranteeReport,
    broken_alert,
    guarantee_report,
    labelled_answers,
    load_promise,
    window_guarantee,
)
from gradwise.monitoring.stream import (
    Ledger,
    Served,
    Tally,
    counts,
    labels_for,
    read_feedback,
    read_served,
)
from gradwise.monitoring.windows import parse_window, window_bounds
from gradwise.run import Run
from gradwise.serving.schemas import InstanceCodec, instance_codec
from gradwise.serving.store import open_store

log = logging.getLogger(LOG)


# The most windows a persistent drift is retrained on (the newest ones): their rows are held
# while the drift lasts, so that RUN/monitor/retrain.* can be written; the cap keeps memory
# bounded however long it lasts (a larger `persist` raises it).
RETRAIN_WINDOWS = 10


class Monitor:
    """Watches one run's served traffic: `update` reads the prediction store and evaluates the
    windows completed since the last call; `feed` takes traffic read elsewhere (a replayed
    table, `monitoring.replay`).

    Its state is bounded by the window, not by the history:

    - rows (inputs and answers): those of the open window, and while drift persists those of
      the newest drifted windows, at most `retrain_windows` of them (the stretch to retrain
      on); `held_rows` counts them;
    - per complete window, its result (fixed-size numbers); running totals in `tally`;
    - a ledger of label keys (request id, row, prediction, decision: no inputs), kept only
      where a label arriving late still counts for every past instance: the groups' accuracy
      over the whole watch (groups named) and the guarantee's confidence sequence (answered
      instances of a run served with --abstain); `ledger_rows` counts them.

    Args:
        run: the served run (its training data must be at hand for the reference).
        store: the store's SQLAlchemy URL; None: traffic comes through `feed` only.
    """

    def __init__(
        self, run: Run, store: str | None, settings: MonitorSettings = MonitorSettings()
    ) -> None:
        self.run = run
        self.settings = settings
        self.window = parse_window(settings.window)
        self.engine = None if store is None else open_store(store)
        self.is_lm = run.schema.task == "lm"
        self.codec: InstanceCodec | None = None if self.is_lm else instance_codec(run.schema)
        self.baseline: Baseline | None = (
            None if self.is_lm else build_baseline(run, settings.reference_rows, run.config.seed)
        )
        self.raw = raw_features(run, self.codec) if self.codec else None
        self.recent = Served()  # the rows held: instances offset, offset + 1, ...
        self.offset = 0
        self.origin: float | None = None  # when the first instance was served (time windows)
        self.tally = Tally()
        self.ledger = Ledger()
        self.retrain_windows = max(settings.persist, RETRAIN_WINDOWS)
        self.windows: list[WindowResult] = []
        self._next_start = 0
        self.promise, self.no_promise = load_promise(run, settings.guarantee_delta)
        self.answers: Answers | None = None
        self.broken: dict[str, Any] | None = None  # where the error bound first reached alpha
        self._late: list[Alert] = []  # alerts about windows evaluated in an earlier pass
        self.groups: GroupWatch | None = watch_groups(run, settings)
        # per tracked column, each served instance's group (with the ledger, which then
        # holds every instance)
        self.group_of: dict[str, list[str | None]] = {
            c: [] for c in (self.groups.columns if self.groups else ())
        }
        self.labels: dict[tuple[str, int], Any] = {}  # the labels that can still count

    @property
    def held_rows(self) -> int:
        """Instances whose inputs and answers the monitor holds now."""
        return len(self.recent)

    @property
    def ledger_rows(self) -> int:
        """Instances whose label key the monitor holds (0 without groups or abstention)."""
        return len(self.ledger)

    def update(self, final: bool = False) -> list[WindowResult]:
        """Read new traffic and the feedback from the store and evaluate the windows they
        complete (see `feed`)."""
        assert self.engine is not None, "a Monitor made without a store takes traffic by feed"
        fresh = read_served(self.engine, self.codec, self.recent.last_id)
        return self.feed(fresh, read_feedback(self.engine), final)

    def feed(
        self, fresh: Served, labels: dict[tuple[str, int], Any], final: bool = False
    ) -> list[WindowResult]:
        """Take instances served after those seen and evaluate the windows they complete.

        Args:
            fresh: the new instances, in arrival order.
            labels: labels by (request id, row), the newest for each; they join those read
                before (a key keeps the place where its first label arrived).
            final: also evaluate the newest, still open window (if it holds at least a
                tenth of a count window, or 10 instances).
        """
        if self.origin is None and len(fresh):
            self.origin = fresh.time[0]
        self._enter(fresh)
        self.labels.update(labels)
        if self.promise is not None:
            self.answers = labelled_answers(self.ledger, self.labels, self.promise)
        spec = self.window
        open_min = max(10, (spec.size or 0) // 10) if final else None
        first = self._next_start - self.offset
        new = []
        for a, b, complete in window_bounds(self.recent.time, spec, first, open_min, self.origin):
            a, b = a + self.offset, b + self.offset
            result = self._evaluate(len(self.windows), a, b, complete)
            if complete:
                self._next_start = b
                self.windows.append(result)
            new.append(result)
        out = self._check_broken(new)
        self._forget()
        return out

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
            self.tally,
            self.answers,
            [(w.index, w.guarantee) for w in windows],
            self.broken,
        )

    def rows(self, start: int, end: int) -> Served:
        """The held instances start..end (indices over the whole watch)."""
        assert start >= self.offset, f"instances before {self.offset} are no longer held"
        return self.recent.between(start - self.offset, end - self.offset)

    # ------------------------------------------------------------ state

    def _enter(self, fresh: Served) -> None:
        """Hold the new rows, count them, and enter the label keys that can still count."""
        start = self.tally.n
        self.recent.extend(fresh)
        self.tally.add(fresh)
        if self.groups is not None:
            for column, groups in self.groups.labels(fresh.instances).items():
                self.group_of[column].extend(groups)
            keep = [True] * len(fresh)
        else:
            answered = self.promise is not None
            keep = [answered and d == "answer" for d in fresh.decision]
        self.ledger.add(fresh, start, keep)

    def _forget(self) -> None:
        """Drop the rows no look-back needs (all but the open window and the newest drifted
        windows, up to `retrain_windows`), and the labels of no held row or ledger entry."""
        held = 0
        for w in reversed(self.windows[-self.retrain_windows :]):
            if not w.drifted:
                break
            held += 1
        keep_from = self.windows[-held].start if held else self._next_start
        self.recent.drop_first(keep_from - self.offset)
        self.offset = keep_from
        keys = set(zip(self.recent.request_id, self.recent.row))
        keys.update(zip(self.ledger.request_id, self.ledger.row))
        self.labels = {k: v for k, v in self.labels.items() if k in keys}

    # ------------------------------------------------------------ one window

    def _evaluate(self, index: int, a: int, b: int, complete: bool) -> WindowResult:
        rows, base = self.rows(a, b), self.baseline
        raw_drift = embed_drift = output_drift = None
        most: list[str] = []
        if base is not None and self.codec is not None:
            seed = self.run.config.seed + index
            if base.raw is not None and self.raw is not None:
                report = self._detect(
                    base.raw, self.raw(rows.instances), self.settings.raw_detectors, seed
                )
                raw_drift, most = drift_summary(report), most_drifted(report, base.raw_names)
            x = model_inputs(self.run, self.codec, rows.instances)
            emb = self.run.embed(x).double().numpy()
            if base.embed is not None:
                embed_drift = drift_summary(
                    self._detect(base.embed, emb, self.settings.embed_detectors, seed)
                )
            output_drift = self._output_drift(base, rows.prediction, seed)
        compared = [d["drifted"] for d in (raw_drift, embed_drift) if d is not None]
        drifted = bool(compared) and (all(compared) if self.settings.agree else any(compared))
        guarantee = None
        if self.promise is not None and self.answers is not None:
            where = drift_where(raw_drift, embed_drift, most) if drifted else None
            guarantee = window_guarantee(
                self.promise, self.answers, rows.decision, (a, b), where, self.settings.alpha
            )
        conf = np.asarray(rows.confidence, dtype=np.float64)
        mean_conf = float(conf.mean()) if np.isfinite(conf).any() else None
        truth = labels_for(rows, 0, len(rows), self.labels)
        n_labelled, accuracy, rmse = self._measured(rows.prediction, truth)
        result = WindowResult(
            index=index,
            start=a,
            end=b,
            complete=complete,
            start_time=rows.time[0],
            end_time=rows.time[-1],
            replicas=counts(rows.replica_id),
            versions=counts(rows.model_version),
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
            groups=self._window_groups(a, b, rows.prediction, truth),
            alerts=(),
        )
        return with_alerts(result, base, self.settings)

    def _window_groups(
        self, a: int, b: int, predictions: list[Any], truth: list[Any]
    ) -> dict[str, Any] | None:
        """Each group's numbers over instances a..b, tested as a window is."""
        if self.groups is None:
            return None
        of = {column: groups[a:b] for column, groups in self.group_of.items()}
        correct = correct_answers(predictions, truth)
        return group_numbers(self.groups, of, correct, self.settings)

    def group_summary(self) -> dict[str, Any] | None:
        """report.json's `groups`: every served instance with the labels read so far, and
        what is not tracked; None when no groups are named."""
        if self.groups is None:
            return None
        ledger = self.ledger  # with groups it holds every instance, in served order
        truth = [self.labels.get(key) for key in zip(ledger.request_id, ledger.row)]
        correct = correct_answers(ledger.prediction, truth)
        numbers = group_numbers(self.groups, self.group_of, correct, None)
        return groups_section(self.groups, numbers, self.tally.n)

    def _detect(
        self, reference: Any, current: np.ndarray, detectors: tuple[str, ...], seed: int
    ) -> DriftReport:
        settings = DriftSettings(alpha=self.settings.alpha, detectors=detectors)  # type: ignore[arg-type]
        return detect(reference, current, settings, seed=seed)

    def _output_drift(self, base: Baseline, preds: list[Any], seed: int) -> dict[str, Any] | None:
        if base.outputs is None:
            return None
        if base.outputs_categorical:
            index = {str(c): i for i, c in enumerate(self.run.schema.classes or [])}
            codes = np.array([index.get(str(p), -1) for p in preds], dtype=np.float64)[:, None]
            return drift_summary(self._detect(base.outputs, codes, ("chi2",), seed))
        values = np.asarray(preds, dtype=np.float64).reshape(len(preds), -1)
        return drift_summary(self._detect(base.outputs, values, ("ks",), seed))

    def _measured(
        self, predictions: list[Any], truth: list[Any]
    ) -> tuple[int, float | None, float | None]:
        pairs = [(p, t) for p, t in zip(predictions, truth) if t is not None]
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
        """(first, last) window of the drift that persists up to the newest window (its
        newest `retrain_windows` at most), when the last `persist` windows all drifted; None
        otherwise."""
        run_len = 0
        for w in reversed(self.windows):
            if not w.drifted:
                break
            run_len += 1
        if run_len < self.settings.persist:
            return None
        n = len(self.windows)
        return n - min(run_len, self.retrain_windows), n - 1

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
            "request_id": self.ledger.key_of(crossed)[0],
            "row": self.ledger.key_of(crossed)[1],
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


def check_monitorable(run: Run) -> None:
    """Raise when a run cannot be monitored (diffusion, masked-LM pretraining)."""
    if run.schema.task == "lm":
        return
    try:
        run.check_predicts()
    except GradwiseError as exc:
        raise GradwiseError(f"{exc} It is not served, so there is nothing to monitor.") from None
