"""Hyperparameter search and which hyperparameters mattered, with evidence (Optuna).

    gradwise tune CONFIG [--trials N] [--timeout 10m] [--space SPACE.yaml] [--out DIR]
    gradwise.tune(config, trials=30, ...) -> TuneResult

DIR holds the study (study.sqlite3: `kill -9` and a rerun continue it), one run directory
per trial (trials/<number>/), the best config ready for `gradwise train` (best.yaml), the
best config over seeds (best/seed-<k>/), the sensitivity runs (sensitivity/), the plots
(importance.png, slices.png) and everything in tune.json.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gradwise.config import Config, apply_overrides, dump_config, load_config
from gradwise.errors import ConfigError, GradwiseError

log = logging.getLogger("gradwise.tuning")

__all__ = ["TuneResult", "run_tune"]

TUNE_FILE = "tune.json"
SENSITIVITY_RULE = (
    "each important hyperparameter (fANOVA share of variance >= 5%, at most 3) is moved one "
    "step either side of its best value: x2 and /2 on log scales, a tenth of the range for "
    "linear floats, +-1 for integers (a tenth of the range when that is more), the "
    "neighbouring entries for choices; each neighbour trains over the best config's seeds, "
    "and a change of the mean within 2 * noise * sqrt(2 / seeds) (two standard errors of a "
    "difference of means; noise: the seed std pooled over the best config and its "
    "neighbours) is within noise"
)
BUDGET_SEARCH_SHARE = 2 / 3  # of --budget for the search; the rest for seeds and sensitivity
ProgressFn = Callable[[int, int, float | None], None]  # trials done, budget, best value


@dataclass(frozen=True)
class TrialSummary:
    number: int
    state: str  # complete | pruned | failed | interrupted | running | waiting
    value: float | None
    params: dict[str, Any]
    epochs: int | None
    wall_s: float | None
    note: str = ""  # why it was pruned or failed


@dataclass(frozen=True)
class TuneResult:
    """What a search found and how much of it to trust (also DIR/tune.json).

    Attributes:
        out: the output folder.
        best_config: DIR/best.yaml, ready for `gradwise train`.
        seeds: the best config over seeds (mean ± spread of the searched metric on val and
            the same metric on test); None with seeds=0.
        importance: fANOVA and PED-ANOVA importances; None below
            `gradwise.tuning.importance.MIN_TRIALS` (10) finished trials (`notes` says so).
        sensitivity: each important parameter one step either side of its best value.
        search_wall_s: this call's wall time searching; trial_wall_s: every trial's
            training time added up (all workers, earlier calls included).
    """

    out: str
    study: str
    storage: str
    metric: str
    direction: str
    settings: dict[str, Any]
    n_trials: int
    n_complete: int
    n_pruned: int
    n_failed: int
    n_interrupted: int
    n_running: int  # trials other workers still ran when this one finished (--timeout)
    best_trial: int
    best_value: float
    best_params: dict[str, Any]
    best_config: str
    seeds: Any  # SeedRuns | None
    importance: Any  # Importance | None
    sensitivity: tuple[Any, ...]  # Step
    trials: tuple[TrialSummary, ...]
    search_wall_s: float
    trial_wall_s: float
    wall_s: float
    plots: dict[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()  # what was not measured or cut, and why

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        out["trials"] = [asdict(t) for t in self.trials]
        out["seeds"] = self.seeds.to_dict() if self.seeds is not None else None
        out["importance"] = self.importance.to_dict() if self.importance is not None else None
        out["sensitivity"] = [s.to_dict() for s in self.sensitivity]
        out["sensitivity_rule"] = SENSITIVITY_RULE
        return out


def run_tune(
    config: str | Path | dict[str, Any] | Config,
    out: str | Path | None = None,
    *,
    trials: int = 30,
    timeout_s: float | None = None,
    space: str | Path | None = None,
    metric: str | None = None,
    direction: str | None = None,
    storage: str | None = None,
    nproc: int = 1,
    seeds: int = 3,
    sampler_seed: int = 0,
    pruner: str = "median",
    prune_startup: int = 5,
    prune_warmup: int | None = None,
    progress: ProgressFn | None = None,
    budget_s: float | None = None,
) -> TuneResult:
    """Search, then retrain the best over seeds, measure importance and sensitivity; see
    `gradwise.tuning` for the arguments.

    budget_s bounds the whole call: the search starts no trial after BUDGET_SEARCH_SHARE of
    it (all of it with seeds=0), and the retrains after it run only as many as fit in the
    rest (`finish`)."""
    from gradwise.tuning.space import default_space, load_space
    from gradwise.tuning.study import SearchSettings

    started = time.perf_counter()
    base = load_config(config)
    folder = Path(out) if out is not None else Path("runs") / f"{base.name}-tune"
    searched = load_space(space, base) if space is not None else default_space(base)
    if space is None:
        searched.check(base, "the default search space")
    metric = metric or _default_metric(base)
    settings = SearchSettings(
        trials=_at_least(trials, 1, "--trials"),
        metric=_check_metric(metric),
        direction=_direction(direction, metric),
        pruner=_pruner(pruner),
        prune_startup=_at_least(prune_startup, 0, "prune_startup"),
        prune_warmup=_at_least(
            max(1, base.train.epochs // 10) if prune_warmup is None else prune_warmup,
            0,
            "prune_warmup",
        ),
        sampler_seed=sampler_seed,
    )
    _at_least(nproc, 1, "--nproc")
    _at_least(seeds, 0, "--seeds")
    if budget_s is not None and budget_s <= 0:
        raise ConfigError(f"--budget must be above 0 minutes, got {budget_s / 60:g}.")
    from gradwise.tuning.finish import finish

    with _optuna_quiet():
        study, url = _open(folder, storage, base, searched, settings)
        search_started = time.perf_counter()
        deadline = time.time() + timeout_s if timeout_s is not None else None
        end = time.time() + budget_s if budget_s is not None else None
        if end is not None:
            share = BUDGET_SEARCH_SHARE if seeds else 1.0
            search_end = time.time() + share * (budget_s or 0.0)
            deadline = search_end if deadline is None else min(deadline, search_end)
        if nproc == 1:
            _search_here(study, base, searched, settings, folder, deadline, progress)
        else:
            _search_with_workers(study, folder, url, nproc, deadline, progress, settings)
        search_wall_s = time.perf_counter() - search_started
        return finish(
            study, base, searched, settings, folder, url, seeds, search_wall_s, started, end
        )


@contextlib.contextmanager
def _optuna_quiet() -> Iterator[None]:
    """Optuna's own log lines off while searching (gradwise logs each trial itself)."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)


# ------------------------------------------------------------------ set-up


def _default_metric(base: Config) -> str:
    """The task's primary metric on the validation split (accuracy, rmse, loss, ...)."""
    from gradwise.data.sources import load_dataset
    from gradwise.evaluate.compare import PRIMARY
    from gradwise.training.transfer import source_tokenizer

    data = load_dataset(base.data, base.seed, tokenizer=source_tokenizer(base))
    return f"val.{PRIMARY[data.schema.task]}"


def _check_metric(metric: str) -> str:
    split, dot, name = metric.partition(".")
    if split == "test":
        raise ConfigError(
            f"--metric {metric}: searching on the test split would pick the config that fits "
            f"the test data; search val.{name} and read the test metric of the result."
        )
    if split != "val" or not dot or not name:
        raise ConfigError(f"--metric {metric!r} must be a validation metric like val.accuracy.")
    return metric


def _direction(direction: str | None, metric: str) -> Any:
    from gradwise.evaluate.metrics import lower_is_better

    if direction is None:
        return "minimize" if lower_is_better(metric) else "maximize"
    aliases = {"max": "maximize", "min": "minimize", "maximize": "maximize", "minimize": "minimize"}
    if direction not in aliases:
        raise ConfigError(f"--direction {direction!r} must be max or min.")
    return aliases[direction]


def _pruner(pruner: str) -> Any:
    if pruner not in ("median", "halving", "none"):
        raise ConfigError(f"--pruner {pruner!r} must be median, halving or none.")
    return pruner


def _at_least(value: int, low: int, name: str) -> int:
    if value < low:
        raise ConfigError(f"{name} must be at least {low}, got {value}.")
    return value


def _open(folder: Path, storage: str | None, base: Config, space: Any, settings: Any) -> Any:
    """Create or load the study (recording the config, space and settings in it), and
    write DIR/config.yaml and DIR/space.yaml for the reader."""
    import optuna
    import yaml

    from gradwise.artifacts import atomic_write_text
    from gradwise.tuning.study import (
        load_study,
        open_storage,
        storage_url,
        store_setup,
        study_lock,
        worker_seed,
    )

    folder.mkdir(parents=True, exist_ok=True)
    url = storage_url(folder, storage)
    name = base.name
    with study_lock(folder):  # two processes creating one SQLite file's tables would clash
        rdb = open_storage(url)
        existing = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(rdb)}
        seed = worker_seed(settings.sampler_seed, 0, existing.get(name, 0))
        study = load_study(rdb, name, settings, seed)
        store_setup(study, base, space, settings)
    atomic_write_text(folder / "config.yaml", dump_config(base))
    space_yaml = yaml.safe_dump(space.to_dict(), sort_keys=False, default_flow_style=None)
    atomic_write_text(folder / "space.yaml", space_yaml)
    if existing.get(name):
        log.info("continuing study %r: %d trials so far", name, existing[name])
    return study, url


# ------------------------------------------------------------------ searching


def _search_here(
    study: Any,
    base: Config,
    space: Any,
    settings: Any,
    folder: Path,
    deadline: float | None,
    progress: ProgressFn | None,
) -> None:
    from gradwise.tuning.study import Worker

    def on_trial(_: Any) -> None:
        _report(study, settings, progress)

    _report(study, settings, progress)
    Worker(study, base, space, settings, folder).search(deadline, on_trial)
    _wait_for_others(study, folder, deadline)


def _wait_for_others(study: Any, folder: Path, deadline: float | None) -> None:
    """Once the budget is used, wait for the trials other workers (processes or machines
    sharing the study) still run, so the results count them; a worker that died is found
    and its trial failed meanwhile."""
    from optuna.trial import TrialState

    from gradwise.tuning.study import fail_stale, study_lock

    waiting = False
    while deadline is None or time.time() < deadline:
        with study_lock(folder):
            fail_stale(study)
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running:
            return
        if not waiting:
            log.info("waiting for %d trial(s) other workers are running", len(running))
            waiting = True
        time.sleep(2.0)


def _search_with_workers(
    study: Any,
    folder: Path,
    url: str,
    nproc: int,
    deadline: float | None,
    progress: ProgressFn | None,
    settings: Any,
) -> None:
    """Start `nproc` worker processes on the study and follow them until all exit."""
    logs = folder / "workers"
    logs.mkdir(exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // nproc)
    package_root = str(Path(__file__).resolve().parents[2])  # workers import this gradwise
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": path}
    procs = []
    for i in range(nproc):
        cmd = [sys.executable, "-m", "gradwise.tuning.worker", str(folder), "--storage", url]
        cmd += ["--study", study.study_name, "--index", str(i)]
        if deadline is not None:
            cmd += ["--deadline", repr(deadline)]
        with (logs / f"worker-{i}.log").open("w") as fh:
            procs.append(subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT))
    seen: set[int] = set()
    try:
        while any(p.poll() is None for p in procs):
            time.sleep(1.0)
            _log_new(study, settings, seen)
            _report(study, settings, progress)
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait()
    _log_new(study, settings, seen)
    _report(study, settings, progress)
    for i, p in enumerate(procs):
        if p.returncode != 0:
            lines = (logs / f"worker-{i}.log").read_text().strip().splitlines()
            last = lines[-1] if lines else f"exit code {p.returncode}"
            raise GradwiseError(f"tune worker {i} stopped: {last.removeprefix('error: ')}")


def _report(study: Any, settings: Any, progress: ProgressFn | None) -> None:
    if progress is None:
        return
    from optuna.trial import TrialState

    from gradwise.tuning.study import counted

    trials = study.get_trials(deepcopy=False)
    done = counted([t for t in trials if t.state != TrialState.RUNNING])
    best = None
    complete = [t.value for t in trials if t.state == TrialState.COMPLETE]
    if complete:
        best = max(complete) if settings.direction == "maximize" else min(complete)
    progress(done, settings.trials, best)


def _log_new(study: Any, settings: Any, seen: set[int]) -> None:
    """Log each trial the workers finished since the last look."""
    for t in study.get_trials(deepcopy=False):
        if t.state.is_finished() and t.number not in seen:
            seen.add(t.number)
            value = "" if t.value is None else f" {settings.metric} {t.value:.4f}"
            log.info("trial %d: %s%s", t.number, t.state.name.lower(), value)


def best_config(base: Config, space: Any, params: dict[str, Any]) -> Config:
    """The base config with the best trial's values, named NAME-tuned."""
    cfg = apply_overrides(base, space.overrides(space.values(params)), "the best trial")
    return cfg.model_copy(update={"name": f"{base.name}-tuned"})
