"""What the monitor writes: RUN/monitor/report.json, windows.json, timeline.png, and the
inputs of a persistently drifted stretch to retrain on."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gradwise.artifacts import atomic_path, atomic_write_text, new_figure, write_json, write_png
from gradwise.config import Config, DataConfig, SplitConfig, dump_config
from gradwise.monitoring.alerts import Alert
from gradwise.monitoring.baseline import Trust
from gradwise.monitoring.groups import groups_line
from gradwise.monitoring.results import WindowResult
from gradwise.monitoring.selective import GuaranteeReport
from gradwise.monitoring.stream import labels_for
from gradwise.monitoring.watch import Monitor
from gradwise.run import Run

FOLDER = "monitor"
REPORT, WINDOWS, TIMELINE = "report.json", "windows.json", "timeline.png"
RETRAIN_CONFIG = "retrain.yaml"


@dataclass(frozen=True)
class Retrain:
    """The stretch of served traffic to retrain on: windows first..last, written to `file`
    (with the labels that arrived; `n_labelled` of `n` instances have one); `command` trains
    on it from the served weights (RUN/monitor/retrain.yaml); `note` says what to do first
    or what the retrained run differs in."""

    first: int
    last: int
    start_time: float
    end_time: float
    n: int
    n_labelled: int
    file: str
    command: str
    note: str | None = None


@dataclass(frozen=True)
class MonitorReport:
    """The whole watch: every window, the alerts, where traffic came from, what to do.

    Attributes:
        served: instances read; replicas / versions: instances per replica id and per model
            version; val_confidence / val_accuracy: the validation figures windows are held
            against; trust: the calibration error behind the label-free estimate;
            guarantee: the certified abstention guarantee watched (None: a language model).
            groups: with groups named, each group's accuracy over the whole watch against its
            audited accuracy, and what is not tracked (`monitoring.groups.groups_section`).
    """

    run: str
    store: str
    settings: dict[str, Any]
    served: int
    replicas: dict[str, int]
    versions: dict[str, int]
    val_confidence: float | None
    val_accuracy: float | None
    trust: Trust | None
    guarantee: GuaranteeReport | None
    windows: tuple[WindowResult, ...]
    alerts: tuple[Alert, ...]
    retrain: Retrain | None
    files: tuple[str, ...]
    groups: dict[str, Any] | None = None

    @property
    def alerted(self) -> bool:
        return bool(self.alerts)

    def groups_line(self) -> str | None:
        """One line for people: "groups: sex: Female 91% (n=120), Male 80% (n=230)" (n:
        labelled instances); None when no groups are named."""
        return groups_line(self.groups)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "store": self.store,
            "settings": self.settings,
            "served": self.served,
            "replicas": self.replicas,
            "versions": self.versions,
            "val_confidence": self.val_confidence,
            "val_accuracy": self.val_accuracy,
            "trust": None
            if self.trust is None
            else {
                "ece": self.trust.ece,
                "source": self.trust.source,
                "means": self.trust.sentence(),
            },
            "guarantee": None if self.guarantee is None else self.guarantee.to_dict(),
            "groups": self.groups,
            "n_windows": len(self.windows),
            "alerts": [a.to_dict() for a in self.alerts],
            "retrain": None if self.retrain is None else self.retrain.__dict__,
            "files": list(self.files),
        }


def build_report(
    monitor: Monitor,
    shown: str,
    alerts: list[Alert],
    final: bool,
    extra: list[WindowResult] | None = None,
) -> MonitorReport:
    """The report of the watch so far (writing RUN/monitor/retrain.* when drift persists).

    Args:
        shown: where the traffic came from, as the report names it (the store, redacted).
        alerts: every alert fired so far.
        final: the watch ends here: include the open window evaluated last (in `extra`).
    """
    tally = monitor.tally
    windows = list(monitor.windows)
    if final and extra:  # the open window, evaluated at the end of a one-shot watch
        windows += [w for w in extra if not w.complete]
    retrain: Retrain | None = None
    found = monitor.retrain_window()
    files = [str(Path(monitor.run.path) / FOLDER / n) for n in (REPORT, WINDOWS, TIMELINE)]
    if found is not None and monitor.codec is not None:
        retrain = write_retrain(monitor, *found, monitor.labels)
        files.append(retrain.file)
    base = monitor.baseline
    return MonitorReport(
        run=str(monitor.run.path),
        store=shown,
        settings={**monitor.settings.model_dump(mode="json"), "window": str(monitor.window)},
        served=tally.n,
        replicas=dict(sorted(tally.replicas.items())),
        versions=dict(sorted(tally.versions.items())),
        val_confidence=None if base is None else base.val_confidence,
        val_accuracy=None if base is None else base.val_accuracy,
        trust=None if base is None else base.trust,
        guarantee=monitor.guarantee(windows),
        windows=tuple(windows),
        alerts=tuple(alerts),
        retrain=retrain,
        files=tuple(files),
        groups=monitor.group_summary(),
    )


def write_retrain(
    monitor: Monitor, first: int, last: int, labels: dict[tuple[str, int], Any]
) -> Retrain:
    """The inputs of windows first..last in a file the run's config can train on: the
    labelled ones with their labels (retrain.csv / retrain.npz X, y), the others apart
    (retrain-unlabelled.csv / X_unlabelled) for labelling."""
    w0, w1 = monitor.windows[first], monitor.windows[last]
    a, b = w0.start, w1.end
    served, run, codec = monitor.rows(a, b), monitor.run, monitor.codec
    assert codec is not None
    truth = labels_for(served, 0, len(served), labels)
    raw = codec.to_raw(served.instances)
    folder = Path(run.path) / FOLDER
    target = run.schema.target.name or "target"
    known = [i for i, t in enumerate(truth) if t is not None]
    unknown = [i for i, t in enumerate(truth) if t is None]
    if isinstance(raw, pd.DataFrame):
        path = folder / "retrain.csv"
        frame = raw.iloc[known].copy()
        frame[target] = [truth[i] for i in known]
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
        with atomic_path(folder / "retrain-unlabelled.csv") as tmp:
            raw.iloc[unknown].to_csv(tmp, index=False)
        source = f"csv:{path}"
    else:
        path = folder / "retrain.npz"
        x = np.asarray(raw)
        arrays = {
            "X": x[known],
            "y": np.asarray([truth[i] for i in known]),
            "X_unlabelled": x[unknown],
        }
        with atomic_path(path) as tmp, tmp.open("wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
        source = f"npz:{path}"
    n_labelled = sum(t is not None for t in truth)
    config = folder / RETRAIN_CONFIG
    atomic_write_text(config, dump_config(retrain_config(run, source, target)))
    note = None
    if n_labelled == 0:
        note = (
            f"no labels have arrived for these instances yet: label "
            f"{folder / ('retrain-unlabelled.csv' if source.startswith('csv') else 'retrain.npz')}"
            f" (column {target!r}, or X_unlabelled -> X, y), add them to {path.name}, then "
            "train; until then the command stops with 'no rows'."
        )
    elif run.schema.series is not None:
        note = (
            "a series' served windows are kept as the model reads them (preprocessed), so the "
            "retrained run takes such windows; to keep raw rows as inputs, append the recent "
            f"rows to the series file and train on it with --set model.init_from={run.path}."
        )
    command = f"gradwise train {config}"
    return Retrain(
        first, last, w0.start_time, w1.end_time, b - a, n_labelled, str(path), command, note
    )


def retrain_config(run: Run, source: str, target: str) -> Config:
    """The run's config, retargeted at the retrain file and starting from the run's weights.

    What described the original file (columns read, separator, dropped columns, limits, how
    it was split by column or time, a series' window) does not apply to the file the monitor
    wrote: a CSV keeps the table's settings and the target; an npz (images, unnamed features,
    a series' preprocessed windows) keeps only the task and the split fractions.
    """
    cfg = run.config
    data = cfg.data
    split = SplitConfig(val=data.split.val, test=data.split.test, seed=data.split.seed)
    if source.startswith("csv:"):
        fresh = DataConfig().model_dump()
        kept = {key: value for key, value in data.model_dump().items() if key in _CSV_KEEPS}
        new_data = DataConfig.model_validate(
            {**fresh, **kept, "source": source, "target": target, "split": split.model_dump()}
        )
    else:
        new_data = DataConfig(source=source, task=data.task, split=split)
    model = cfg.model.model_copy(update={"init_from": str(Path(run.path).resolve())})
    return cfg.model_copy(update={"name": f"{cfg.name}-retrain", "data": new_data, "model": model})


# what a CSV the monitor wrote keeps of the original data settings (the rest described the
# original file: its columns, separator, dropped columns, split columns)
_CSV_KEEPS = frozenset(
    {"task", "categorical", "augment", "tokenizer", "vocab_size", "block_size", "text_column",
     "target_block_size"}
)  # fmt: skip


def write_outputs(report: MonitorReport, run_dir: Path) -> None:
    folder = Path(run_dir) / FOLDER
    write_json(folder / REPORT, report.to_dict())
    write_json(folder / WINDOWS, [w.to_dict() for w in report.windows])
    if report.windows:
        write_png(folder / TIMELINE, timeline(report))


def timeline(report: MonitorReport) -> Any:
    """Per window: the inputs' drift effect against its threshold, and the confidence
    (label-free accuracy estimate) with the measured accuracy; alerts marked. Served with
    --abstain, a third panel: the abstention rate against validation's, and the error rate's
    lower confidence bound (at each window's end) against the certified alpha."""
    windows = report.windows
    x = np.arange(len(windows))
    watched = report.guarantee is not None and report.guarantee.state == "watched"
    fig = new_figure(8, 7 if watched else 5)
    axes = fig.subplots(3 if watched else 2, 1, sharex=True)
    top, bottom = axes[0], axes[1]
    for name, key in (("raw features", "raw_drift"), ("embeddings", "embed_drift")):
        effects = [_top_effect(getattr(w, key)) for w in windows]
        if any(e is not None for e in effects):
            top.plot(x, [np.nan if e is None else e for e in effects], marker="o", label=name)
    top.set_ylabel("drift effect / threshold")
    top.axhline(1.0, color="grey", lw=0.8, ls="--")
    for w in windows:
        if any(a.kind == "drift" for a in w.alerts):
            top.axvspan(w.index - 0.5, w.index + 0.5, color="red", alpha=0.12, lw=0)
    if top.get_legend_handles_labels()[0]:
        top.legend(loc="upper left", fontsize=8)
    else:  # nothing compared (a language model): say so on the panel
        top.text(0.5, 0.5, "inputs not compared", ha="center", va="center", transform=top.transAxes)
    top.set_title(
        f"served traffic of {Path(report.run).name}: {report.settings['window']} per window"
    )
    conf = [np.nan if w.mean_confidence is None else w.mean_confidence for w in windows]
    acc = [np.nan if w.accuracy is None else w.accuracy for w in windows]
    bottom.plot(x, conf, marker="o", label="estimated accuracy (mean confidence)")
    if not np.all(np.isnan(acc)):
        bottom.plot(x, acc, marker="s", label="measured accuracy (feedback)")
    if report.val_accuracy is not None:
        bottom.axhline(
            report.val_accuracy, color="grey", lw=0.8, ls="--", label="validation accuracy"
        )
    bottom.set_ylabel("accuracy")
    bottom.legend(loc="lower left", fontsize=8)
    if watched:
        _guarantee_panel(axes[2], report)
    axes[-1].set_xlabel("window")
    return fig


def _guarantee_panel(ax: Any, report: MonitorReport) -> None:
    """Abstention rate per window against validation's; the error rate's lower bound at each
    window's end against alpha; windows where the guarantee is void or broken shaded."""
    g = report.guarantee
    assert g is not None and g.promise is not None
    windows = report.windows
    x = np.arange(len(windows))
    parts = [w.guarantee or {} for w in windows]
    ax.plot(x, [p.get("abstention_rate", np.nan) for p in parts], marker="o", label="abstained")
    ax.axhline(1 - g.promise.coverage, color="grey", lw=0.8, ls=":", label="abstained (validation)")
    bound = [p["look"]["lower_bound"] if p else np.nan for p in parts]
    ax.plot(x, bound, marker="s", color="tab:red", label="error among answered: lower bound")
    ax.axhline(g.promise.alpha, color="tab:red", lw=0.8, ls="--", label="alpha (certified)")
    for w, p in zip(windows, parts):
        if p.get("status") in ("void", "broken"):
            ax.axvspan(w.index - 0.5, w.index + 0.5, color="red", alpha=0.12, lw=0)
    ax.set_ylabel("rate")
    ax.set_ylim(0, 1.05)
    ax.legend(loc="upper left", fontsize=8, ncol=2)  # above the rates in most windows


def _top_effect(drift: dict[str, Any] | None) -> float | None:
    """The largest effect over a representation's detectors, in units of its threshold."""
    if drift is None:
        return None
    ratios = [d["effect"] / d["threshold"] for d in drift["detectors"].values() if d["threshold"]]
    return max(ratios) if ratios else None


def when(t: float) -> str:
    return dt.datetime.fromtimestamp(t).strftime("%Y-%m-%d %H:%M:%S")
