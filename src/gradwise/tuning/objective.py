"""One trial's score: `objective(cfg, trial, settings, out)` trains a config and returns its
searched metric, reporting to the trial's pruner on the way. It is a plain function of the
config and an Optuna-like trial (`report`, `should_prune`, `user_attrs`), so any search
loop can call it: the study's worker here, a Ray Tune backend elsewhere.

With `settings.folds` 0 the config trains once into `out` and the score is its validation
metric; the pruner sees the metric after each epoch. With k folds the config trains k times
over train+val refolded (`gradwise.tuning.crossval`) into out/fold-<i>, and the score is the
mean over folds; the pruner sees fold 1's epochs (steps 1, 2, ...), then the running mean
after each fold (steps FOLD_STEP x folds done), so a poor trial stops after its first fold,
or within it, as a poor trial without folds stops within its run.

A trial is not judged while its learning rate still rises in its warm-up
(train.schedule.warmup_steps > 0): a long warm-up at a large batch lasts many epochs, and a
pruner comparing its early epochs with trials already at full rate would prune every such
trial (benchmarks: 15 of 16 trials of a digits study, pruned at epoch 7 mid-warm-up).

A trial whose user attribute `default` is set (the config as given, trial 0) is never pruned:
the result compares the best against it, so it is measured whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradwise.config import Config
from gradwise.errors import ConfigError
from gradwise.training.loop import StopTraining
from gradwise.tuning.crossval import FoldScores, fold_datasets, fold_seed

if TYPE_CHECKING:
    from gradwise.tuning.study import SearchSettings

FOLD_STEP = 1_000_000  # the pruner's step for "k folds done": past any epoch of fold 1


@dataclass(frozen=True)
class TrialScore:
    """What one trial scored.

    Attributes:
        value: the searched metric (the mean over folds with cross-validation); with
            `pruned`, the last value the pruner saw.
        folds: each fold's metric (empty: scored on the validation split).
        epochs: epochs trained, all folds together.
        pruned: why the pruner stopped it; "" when it ran to the end.
    """

    value: float
    folds: tuple[float, ...]
    epochs: int
    pruned: str = ""

    @property
    def se(self) -> float | None:
        """Standard error over folds; None without folds."""
        return FoldScores(self.folds).se if len(self.folds) > 1 else None


class UnknownMetric(ConfigError):
    """The searched metric is not one the run logs (every trial would fail alike)."""


def objective(cfg: Config, trial: Any, settings: SearchSettings, out: Path) -> TrialScore:
    """Train `cfg` for `trial` (an optuna.Trial) into `out` and score it by
    `settings.metric`: on the validation split, or
    over `settings.folds` folds of train+val.

    Raises:
        UnknownMetric: the metric is not logged by the run.
        GradwiseError: the config cannot be trained (it diverged, or cannot be built).
    """
    prune_from = first_prunable_epoch(settings) if not trial.user_attrs.get("default") else None
    if not settings.folds:
        return _on_validation(cfg, trial, settings.metric, prune_from, out)
    return _over_folds(cfg, trial, settings.metric, settings.folds, prune_from, out)


def _on_validation(
    cfg: Config, trial: Any, metric: str, prune_from: float | None, out: Path
) -> TrialScore:
    from gradwise.pipeline import train_run

    reporter = Reporter(trial, metric, prune_from, cfg.train.schedule.warmup_steps > 0)
    run = train_run(cfg, out, overwrite=True, on_epoch_end=reporter)
    epochs = int(run.metrics["epochs"])
    if reporter.pruned:
        return TrialScore(reporter.last, (), epochs, reporter.pruned)
    split, _, name = metric.partition(".")
    return TrialScore(float(run.metrics[split][name]), (), epochs)


def _over_folds(
    cfg: Config, trial: Any, metric: str, k: int, prune_from: float | None, out: Path
) -> TrialScore:
    from gradwise.data.sources import load_dataset
    from gradwise.pipeline import train_run
    from gradwise.training.transfer import source_tokenizer

    data = load_dataset(cfg.data, cfg.seed, tokenizer=source_tokenizer(cfg))
    folds = fold_datasets(data, k, fold_seed(cfg.data.split.seed, cfg.seed))
    split, _, name = metric.partition(".")
    warms_up = cfg.train.schedule.warmup_steps > 0
    scores: list[float] = []
    epochs = 0
    for i, fold in enumerate(folds):
        reporter = Reporter(trial, metric, prune_from, warms_up) if i == 0 else None
        run = train_run(cfg, out / f"fold-{i}", overwrite=True, data=fold, on_epoch_end=reporter)
        epochs += int(run.metrics["epochs"])
        if reporter is not None and reporter.pruned:
            return TrialScore(reporter.last, (), epochs, f"fold 1: {reporter.pruned}")
        scores.append(float(run.metrics[split][name]))
        mean = FoldScores(tuple(scores)).mean
        trial.report(mean, FOLD_STEP * (i + 1))
        if prune_from is not None and i + 1 < len(folds) and trial.should_prune():
            why = f"pruned after fold {i + 1} of {len(folds)} ({metric} {mean:.4f} so far)"
            return TrialScore(mean, tuple(scores), epochs, why)
    return TrialScore(FoldScores(tuple(scores)).mean, tuple(scores), epochs)


def first_prunable_epoch(settings: SearchSettings) -> float:
    """The first epoch at which the pruner may stop a trial (asking it earlier costs a read of
    the whole study per epoch for nothing)."""
    match settings.pruner:
        case "median":
            return settings.prune_warmup + 1
        case "halving":
            return 1
    return float("inf")


class Reporter:
    """The epoch callback: reports the metric to the pruner and stops a pruned trial
    (`prune_from` None: it reports, and never prunes); with `warms_up`, not while the
    learning rate still rises (the first epoch included: nothing to compare it with)."""

    def __init__(
        self, trial: Any, metric: str, prune_from: float | None, warms_up: bool = False
    ) -> None:
        self.trial = trial
        self.metric = metric
        self.prune_from = float("inf") if prune_from is None else prune_from
        self.warms_up = warms_up
        self.lr: float | None = None
        self.pruned = ""
        self.last = float("nan")

    def __call__(self, record: dict[str, float]) -> None:
        if self.metric not in record:
            logged = ", ".join(k for k in record if k.startswith("val."))
            raise UnknownMetric(
                f"--metric {self.metric} is not logged by this run; it logs {logged}."
            )
        epoch, self.last = int(record["epoch"]), float(record[self.metric])
        self.trial.report(self.last, epoch)
        lr, before = record.get("lr"), self.lr
        self.lr = lr
        rising = self.warms_up and (lr is None or before is None or lr > before)
        if epoch >= self.prune_from and not rising and self.trial.should_prune():
            self.pruned = f"pruned after epoch {epoch} ({self.metric} {self.last:.4f})"
            raise StopTraining(self.pruned)
