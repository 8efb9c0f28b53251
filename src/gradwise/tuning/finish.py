"""After the search: best.yaml, the best config over seeds, importance and its plots, the
sensitivity at the optimum, and DIR/tune.json with all of it."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from gradwise.artifacts import atomic_write_text, write_json
from gradwise.config import Config, dump_config
from gradwise.errors import GradwiseError
from gradwise.tuning.comparison import TOP_FILE, compare, kept_note, recommended, standing
from gradwise.tuning.confirm import confirm
from gradwise.tuning.crossval import FoldScores
from gradwise.tuning.importance import MIN_TRIALS, importance, plot_importance, plot_slices
from gradwise.tuning.result import TUNE_FILE, TrialSummary, TuneResult
from gradwise.tuning.sensitivity import sensitivity, train_seeds
from gradwise.tuning.space import Space, best_config
from gradwise.tuning.stability import top_agreement
from gradwise.tuning.study import TRIALS_FOLDER, SearchSettings, is_interrupted, shown_url

log = logging.getLogger("gradwise.tuning")

MAX_SENSITIVE = 3  # parameters moved in the sensitivity check (the most important ones)
# retrains after the search (seeds, sensitivity) are at most this many times the finished
# trials: a 4-trial study is not followed by 21 retrains
RETRAINS_PER_TRIAL = 1.0


def finish(
    study: optuna.Study,
    base: Config,
    space: Space,
    settings: SearchSettings,
    folder: Path,
    url: str,
    n_seeds: int,
    search_wall_s: float,
    started: float,
    deadline: float | None = None,
) -> TuneResult:
    """Write what the study found into `folder` and return it.

    The retrains after the search are bounded: at most RETRAINS_PER_TRIAL x the finished
    trials, and with a `deadline` (time.time(), from --budget) only as many as fit before it
    at the finished trials' mean training time; what is cut is said in `notes`.

    Raises:
        GradwiseError: no trial finished (all pruned, failed or still running).
    """
    from gradwise.pipeline import train_run

    trials = study.get_trials(deepcopy=False)
    summaries = tuple(_summary(t, space) for t in trials)
    states = ("complete", "pruned", "failed", "running")
    counts = {s: sum(t.state == s for t in summaries) for s in states}
    if not counts["complete"]:
        errors = [t.note for t in summaries if t.state == "failed" and t.note]
        why = f"; the first error: {errors[0]}" if errors else ""
        raise GradwiseError(
            f"no trial of study {study.study_name!r} finished ({counts['pruned']} pruned, "
            f"{counts['failed']} failed{why}). See {folder / TRIALS_FOLDER}/<number>/train.log."
        )
    comparison = compare(trials, settings.metric, settings.direction == "maximize", settings.folds)
    top = next(t for t in trials if t.number == comparison.best.trial)  # ties: the earliest
    log.info(comparison.sentence)
    best, kept = recommended(trials, top, comparison, settings.keep_given)
    confirmation = None
    lead = comparison.vs_default
    if settings.keep_given and settings.folds and lead is not None and lead.apart:
        # the top led beyond the noise of the folds it was picked on: measure it again
        confirmation = confirm(
            base,
            best_config(base, space, top.params),
            top.number,
            settings.metric,
            settings.direction == "maximize",
            settings.folds,
            folder / "confirm",
        )
        log.info(confirmation.sentence)
        if not confirmation.apart:
            best, kept = next(t for t in trials if t.number == lead.other.trial), True
    cfg = base if kept else best_config(base, space, best.params)
    header = f"# the best of {len(trials)} trials (trial {best.number}, {settings.metric} "
    if kept:
        header = f"# the config as given (trial {best.number}, {settings.metric} "
        atomic_write_text(
            folder / TOP_FILE,
            f"# the best of {len(trials)} trials (trial {top.number}, {settings.metric} "
            f"{top.value:.4f}), within the noise of the config as given (best.yaml)\n"
            + dump_config(best_config(base, space, top.params)),
        )
    atomic_write_text(
        folder / "best.yaml",
        f"{header}{best.value:.4f}); train it with: gradwise train {folder / 'best.yaml'}\n"
        + dump_config(cfg),
    )
    log.info(
        "best trial %d: %s %.4f -> %s",
        best.number,
        settings.metric,
        best.value,
        folder / "best.yaml",
    )

    def train(c: Config, run_dir: Path) -> dict[str, Any]:
        # RUN/config.given.yaml keeps the config asked for: a rerun finds the run and reuses it
        return train_run(c, run_dir, overwrite=True, given=dump_config(c)).metrics

    plan = RetrainPlan.of(summaries, deadline)
    notes: list[str] = [kept_note(comparison, folder)] if kept and confirmation is None else []
    if confirmation is not None:
        notes.append(confirmation.sentence)
    seeds = None
    n_seeds = plan.seeds(n_seeds, notes)
    if n_seeds:
        seeds = train_seeds(cfg, n_seeds, folder / "best", settings.metric, train)
        plan.spent(n_seeds)
        log.info(
            "best config over %d seeds: %s %.4f ± %.4f, test %.4f ± %.4f",
            n_seeds,
            settings.metric,
            seeds.val_mean,
            seeds.val_std,
            seeds.test_mean,
            seeds.test_std,
        )
    imp = importance(study, settings.metric, seed=settings.sampler_seed)
    plots: dict[str, str] = {}
    steps: list[Any] = []
    agreement = None
    if imp is not None:
        log.info(imp.sentence)
        agreement = top_agreement(study, imp.params[0].name, seed=settings.sampler_seed)
        log.info(agreement.sentence)
        plot_importance(imp, folder / "importance.png")
        important = [p.name for p in imp.important][:MAX_SENSITIVE]
        if seeds is not None:
            important = important[: plan.params(len(important), len(seeds.seeds), notes)]
        plot_slices(
            study, space, [p.name for p in imp.params[:4]], settings.metric, folder / "slices.png"
        )
        plots = {"importance": "importance.png", "slices": "slices.png"}
        if seeds is not None and important:
            steps = sensitivity(
                base.model_copy(update={"name": f"{base.name}-sensitivity"}),
                space.values(best.params),
                seeds,
                space,
                important,
                folder / "sensitivity",
                settings.metric,
                settings.direction == "maximize",
                train,
            )
    else:
        notes.append(
            f"importance: not measured: it needs at least {MIN_TRIALS} finished trials and "
            f"this study has {counts['complete']} (continue it with --trials {MIN_TRIALS}); "
            "without it there is no sensitivity check"
        )
    for note in notes:
        log.info(note)
    result = TuneResult(
        out=str(folder),
        study=study.study_name,
        storage=shown_url(url),
        metric=settings.metric,
        direction=settings.direction,
        settings={k: getattr(settings, k) for k in settings.__dataclass_fields__},
        n_trials=len(summaries),
        n_complete=counts["complete"],
        n_pruned=counts["pruned"],
        n_failed=counts["failed"],
        n_interrupted=sum(t.state == "interrupted" for t in summaries),
        n_running=counts["running"],
        best_trial=best.number,
        best_value=float(best.value),  # type: ignore[arg-type]
        best_params=space.values(best.params),
        best_config=str(folder / "best.yaml"),
        seeds=seeds,
        importance=imp,
        sensitivity=tuple(steps),
        trials=summaries,
        search_wall_s=round(search_wall_s, 3),
        trial_wall_s=round(sum(t.wall_s or 0.0 for t in summaries), 3),
        wall_s=round(time.perf_counter() - started, 3),
        plots=plots,
        notes=tuple(notes),
        folds=settings.folds,
        cv_rule=settings.cv_rule,
        best_se=standing(best).se,
        kept_given=kept,
        confirmation=confirmation,
        comparison=comparison,
        top_agreement=agreement,
    )
    write_json(folder / TUNE_FILE, result.to_dict())
    return result


def _summary(t: FrozenTrial, space: Space) -> TrialSummary:
    state = {
        TrialState.COMPLETE: "complete",
        TrialState.PRUNED: "pruned",
        TrialState.FAIL: "interrupted" if is_interrupted(t) else "failed",
        TrialState.RUNNING: "running",
        TrialState.WAITING: "waiting",
    }[t.state]
    wall = None
    if t.datetime_start is not None and t.datetime_complete is not None:
        wall = round((t.datetime_complete - t.datetime_start).total_seconds(), 3)
    note = str(t.user_attrs.get("error") or t.user_attrs.get("pruned") or "").split("\n")[0]
    if "retry_of" in t.user_attrs:
        note = (note + "; " if note else "") + f"retry of trial {t.user_attrs['retry_of']}"
    folds = tuple(float(v) for v in t.user_attrs.get("folds", ()))
    return TrialSummary(
        number=t.number,
        state=state,
        value=t.value,
        params=space.values(t.params),
        epochs=t.user_attrs.get("epochs"),
        wall_s=wall,
        note=note,
        folds=folds,
        se=FoldScores(folds).se if len(folds) > 1 else None,
        default=bool(t.user_attrs.get("default")),
    )


class RetrainPlan:
    """How many retrains the finish may still run: by the trial count, and by the time left
    before the deadline at the finished trials' mean training time."""

    def __init__(self, allowed: int, each_s: float, deadline: float | None) -> None:
        self.allowed = allowed
        self.each_s = each_s
        self.deadline = deadline

    @classmethod
    def of(cls, trials: tuple[TrialSummary, ...], deadline: float | None) -> RetrainPlan:
        done = [t.wall_s for t in trials if t.state == "complete" and t.wall_s is not None]
        allowed = int(RETRAINS_PER_TRIAL * sum(t.state == "complete" for t in trials))
        each_s = sum(done) / len(done) if done else 0.0
        return cls(allowed, each_s, deadline)

    def left(self) -> int:
        """Retrains that still fit."""
        n = self.allowed
        if self.deadline is not None and self.each_s > 0:
            n = min(n, int(max(0.0, self.deadline - time.time()) // self.each_s))
        return max(0, n)

    def why(self) -> str:
        by_time = self.deadline is not None and self.left() < self.allowed
        if by_time:
            left_min = max(0.0, (self.deadline or 0.0) - time.time()) / 60
            return (
                f"--budget: {left_min:.1f} min left at about {self.each_s:.0f} s per training run"
            )
        return (
            f"at most {RETRAINS_PER_TRIAL:g} retrain per finished trial after the search; "
            "more --trials allow more"
        )

    def spent(self, n: int) -> None:
        self.allowed -= n

    def seeds(self, wanted: int, notes: list[str]) -> int:
        """Seeds for the best config: all wanted, fewer, or none (below 2, no noise estimate)."""
        if not wanted:
            return 0
        n = min(wanted, self.left())
        if n == wanted:
            return n
        if n < min(2, wanted):
            notes.append(f"seeds: the best config was not retrained over seeds ({self.why()})")
            return 0
        notes.append(f"seeds: {n} of the {wanted} asked ({self.why()})")
        return n

    def params(self, wanted: int, n_seeds: int, notes: list[str]) -> int:
        """Parameters the sensitivity check moves: each costs two neighbours x n_seeds."""
        n = min(wanted, self.left() // (2 * n_seeds))
        if n < wanted:
            shown = "skipped" if n == 0 else f"{n} of the {wanted} important parameters moved"
            notes.append(f"sensitivity: {shown} ({self.why()})")
        self.spent(2 * n_seeds * n)
        return n
