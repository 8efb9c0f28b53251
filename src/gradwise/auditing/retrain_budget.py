"""How many retrains a check can afford: the learning curve's fractions x seeds and the data
quality's folds, chosen from the data size and the run's own training time.

Only what the user left at null (auto) adapts; a value set in the config or with --set is
used as given. The estimate of one retrain is the run's own pace (seconds per sample and
epoch, from metrics.json) times the samples and epochs the retrain will see, so it grows
with the data and with the model's cost alike. Each plan says what it reduced and why, in
a sentence the check puts in its summary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gradwise.config import DataQualityAudit, GeneralisationAudit
    from gradwise.run import Run

FULL_FRACTIONS = (0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
# the learning curve's plans, richest first; the last is the least that still has a band:
# four sizes for the power law's three parameters (three points fit it exactly, and every
# bootstrap refit with them), the run's own point reused
CURVE_PLANS: tuple[tuple[tuple[float, ...], int], ...] = (
    (FULL_FRACTIONS, 2),
    (FULL_FRACTIONS, 1),
    ((0.1, 0.25, 0.5, 1.0), 1),
)
FOLD_PLANS = (5, 4, 3)  # data-quality folds, most first; epochs per fold shrink below 3
SKIP_FACTOR = 10  # no curve at all when even the least plan would take this many budgets
# seconds a retrain spends besides its epochs (reading and preparing the data, building the
# model, evaluating the splits): about 2 s on the adult table (32k rows), 2 cores
RETRAIN_OVERHEAD_S = 2.0


@dataclass(frozen=True)
class Pace:
    """The run's training time, as the estimates read it.

    Attributes:
        sample_epoch_s: seconds per training sample per epoch (wall_s / (epochs * n_train)).
        n_train: samples the run trained on; own_fraction: its data.split.train_fraction.
        epochs: the config's train.epochs; best_epoch: where validation was best;
        patience: early stopping's patience (None: off); stopped_early: whether it stopped.
        wall_s: the run's training time.
    """

    sample_epoch_s: float
    n_train: int
    own_fraction: float
    epochs: int
    best_epoch: int
    patience: int | None
    stopped_early: bool
    wall_s: float


def run_pace(run: Run) -> Pace:
    """The pace of `run`, from its metrics.json and config."""
    m: dict[str, Any] = run.metrics
    cfg = run.config
    n_train = max(1, int(m.get("n_train") or 1))
    ran = max(1, int(m.get("epochs") or cfg.train.epochs or 1))
    wall_s = float(m.get("wall_s") or 0.0)
    return Pace(
        sample_epoch_s=wall_s / (ran * n_train),
        n_train=n_train,
        own_fraction=cfg.data.split.train_fraction,
        epochs=cfg.train.epochs or ran,
        best_epoch=max(1, int(m.get("best_epoch") or ran)),
        patience=cfg.train.early_stopping.patience,
        stopped_early=bool(m.get("stopped_early")),
        wall_s=wall_s,
    )


# ---------------------------------------------------------------- the learning curve


@dataclass(frozen=True)
class Retrain:
    """One point of the learning curve: a retrain, or the run itself (reused)."""

    fraction: float
    seed_offset: int
    reused: bool
    estimate_s: float


@dataclass(frozen=True)
class CurvePlan:
    """The learning curve's points and why there are that many.

    Attributes:
        fractions, seeds: what runs (seeds apply to fractions below 0.5).
        points: every point in order, with its estimated seconds (0 for the run itself).
        reduced: what was cut from the defaults and why; None when nothing was.
        skipped: why no curve is drawn at all (too slow even at its least); None otherwise.
    """

    fractions: tuple[float, ...]
    seeds: int
    points: tuple[Retrain, ...]
    reduced: str | None = None
    skipped: str | None = None

    @property
    def n_retrains(self) -> int:
        return sum(not p.reused for p in self.points)

    @property
    def estimate_s(self) -> float:
        return sum(p.estimate_s for p in self.points)


def retrain_epochs(
    run_epochs: int, own_fraction: float, fraction: float, settings: GeneralisationAudit
) -> int:
    """Epochs of a retrain on `fraction` of the training split: settings.epochs (default the
    run's), times own_fraction / fraction with settings.scale_epochs, so a retrain on less
    data takes about as many optimiser steps as the run did (early stopping still ends it
    when validation stops improving); without scaling, small fractions stop undertrained and
    bend the curve down."""
    epochs = settings.epochs or run_epochs
    if settings.scale_epochs:
        epochs = math.ceil(epochs * own_fraction / fraction)
    return max(1, epochs)


def retrain_seconds(pace: Pace, fraction: float, settings: GeneralisationAudit) -> float:
    """Estimated seconds of one retrain on `fraction` of the training split: its samples
    times the epochs it will likely run (early stopping ends it about `patience` epochs after
    its best, which comes after as many optimiser steps as the run's did), at the run's pace,
    plus RETRAIN_OVERHEAD_S."""
    n = pace.n_train * fraction / pace.own_fraction
    cap = retrain_epochs(pace.epochs, pace.own_fraction, fraction, settings)
    epochs = float(cap)
    if pace.stopped_early and pace.patience is not None:
        scale = pace.own_fraction / fraction if settings.scale_epochs else 1.0
        epochs = min(cap, math.ceil(pace.best_epoch * scale) + pace.patience)
    return RETRAIN_OVERHEAD_S + n * epochs * pace.sample_epoch_s


def curve_points(
    pace: Pace, fractions: tuple[float, ...], seeds: int, settings: GeneralisationAudit
) -> tuple[Retrain, ...]:
    """Every point of a curve over `fractions` with `seeds` seeds below 0.5, in order."""
    points = []
    for fraction in sorted(set(fractions)):
        for k in range(seeds if fraction < 0.5 else 1):
            reused = (
                k == 0 and math.isclose(fraction, pace.own_fraction) and settings.epochs is None
            )
            cost = 0.0 if reused else retrain_seconds(pace, fraction, settings)
            points.append(Retrain(fraction, k, reused, cost))
    return tuple(points)


def plan_curve(pace: Pace, settings: GeneralisationAudit) -> CurvePlan:
    """The richest learning curve whose retrains fit settings.budget_s; fractions or seeds
    set by the user are kept as given (only what is null adapts)."""
    user_fractions = tuple(settings.fractions) if settings.fractions is not None else None
    candidates = []
    for fractions, seeds in CURVE_PLANS:
        plan = (fractions if user_fractions is None else user_fractions, settings.seeds or seeds)
        if plan not in candidates:
            candidates.append(plan)
    plans = [CurvePlan(f, s, curve_points(pace, f, s, settings)) for f, s in candidates]
    chosen = next((p for p in plans if p.estimate_s <= settings.budget_s), plans[-1])
    full = plans[0]
    if chosen is full:
        return chosen
    why = (
        f"the run trained for {_duration(pace.wall_s)} on {pace.n_train:,} samples, so "
        f"{_shape(full)} would take about {_duration(full.estimate_s)} (audit.generalisation."
        f"budget_s is {_duration(settings.budget_s)})"
    )
    if user_fractions is None and chosen.estimate_s > SKIP_FACTOR * settings.budget_s:
        skipped = (
            f"even {_shape(chosen)} would take about "
            f"{_duration(chosen.estimate_s)}, as {why.partition(', so ')[0]}; set "
            "audit.generalisation.fractions (and seeds) to run one"
        )
        return CurvePlan(chosen.fractions, chosen.seeds, (), skipped=skipped)
    reduced = (
        f"{_shape(chosen)} instead of {_shape(full)}: {why}; audit.generalisation.fractions "
        "and seeds set them"
    )
    return CurvePlan(chosen.fractions, chosen.seeds, chosen.points, reduced=reduced)


def _shape(plan: CurvePlan) -> str:
    seeds = f"{plan.seeds} seed{'s' if plan.seeds > 1 else ''}"
    return f"{len(plan.fractions)} fractions x {seeds} ({plan.n_retrains} retrains)"


# ---------------------------------------------------------------- the data-quality folds


@dataclass(frozen=True)
class FoldPlan:
    """The data-quality check's out-of-fold retrains.

    Attributes:
        folds: retrains, each without one fold; epochs: per retrain.
        fold_s: estimated seconds of one retrain.
        reduced: what was cut from the defaults and why; None when nothing was.
    """

    folds: int
    epochs: int
    fold_s: float
    reduced: str | None = None


def fold_seconds(pace: Pace, folds: int, epochs: int) -> float:
    """Estimated seconds of one fold's retrain: (folds - 1) / folds of the training samples
    for `epochs` epochs at the run's pace, plus RETRAIN_OVERHEAD_S."""
    return RETRAIN_OVERHEAD_S + pace.n_train * (folds - 1) / folds * epochs * pace.sample_epoch_s


def plan_folds(pace: Pace, settings: DataQualityAudit) -> FoldPlan:
    """The most folds (5, 4, 3) whose retrains fit settings.budget_s, then fewer epochs per
    fold (at least 1) when even 3 do not; folds or epochs set by the user are kept."""
    epochs = settings.epochs or pace.best_epoch
    folds = settings.folds or next(
        (k for k in FOLD_PLANS if k * fold_seconds(pace, k, epochs) <= settings.budget_s),
        FOLD_PLANS[-1],
    )
    cut = epochs
    if settings.epochs is None:  # one epoch of every fold's retrain, and how many fit
        per_epoch_s = folds * (fold_seconds(pace, folds, 1) - RETRAIN_OVERHEAD_S)
        room_s = settings.budget_s - folds * RETRAIN_OVERHEAD_S
        cut = min(epochs, max(1, math.floor(room_s / max(per_epoch_s, 1e-9))))
    fewer_folds = settings.folds is None and folds != FOLD_PLANS[0]
    if not fewer_folds and cut == epochs:
        return FoldPlan(folds, epochs, fold_seconds(pace, folds, epochs))
    what = [f"{folds} folds instead of {FOLD_PLANS[0]}"] if fewer_folds else []
    if cut != epochs:
        what.append(
            f"{cut} epoch{'s' if cut > 1 else ''} per fold instead of {epochs} (the "
            "run's best epoch)"
        )
    asked = settings.folds or FOLD_PLANS[0]
    full_s = asked * fold_seconds(pace, asked, epochs)
    reduced = (
        f"{' and '.join(what)}: the run trained for {_duration(pace.wall_s)} on "
        f"{pace.n_train:,} samples, so {asked} folds of {epochs} epochs would take "
        f"about {_duration(full_s)} (audit.data_quality.budget_s is "
        f"{_duration(settings.budget_s)}); audit.data_quality.folds and epochs set them"
    )
    return FoldPlan(folds, cut, fold_seconds(pace, folds, cut), reduced)


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
