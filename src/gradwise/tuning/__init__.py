"""Hyperparameter search and which hyperparameters mattered, with evidence (Optuna).

    gradwise tune CONFIG [--trials N] [--timeout 10m] [--space SPACE.yaml] [--out DIR]
    gradwise.tune(config, trials=30, ...) -> TuneResult   (settings: TuneSettings, `tune:`)

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
from pathlib import Path
from typing import Any

from gradwise.config import Config, TuneSettings, dump_config
from gradwise.errors import GradwiseError
from gradwise.tuning.result import TuneResult

log = logging.getLogger("gradwise.tuning")

__all__ = ["TuneResult", "run_tune"]

BUDGET_SEARCH_SHARE = 2 / 3  # of --budget for the search; the rest for seeds and sensitivity
ProgressFn = Callable[[int, int, float | None], None]  # trials done, budget, best value


def run_tune(
    base: Config,
    out: str | Path | None,
    settings: TuneSettings,
    progress: ProgressFn | None = None,
) -> TuneResult:
    """Search, then retrain the best over seeds, measure importance and sensitivity (the
    layer below `gradwise.tune`, which documents the settings).

    budget_s bounds the whole call: the search starts no trial after BUDGET_SEARCH_SHARE of
    it (all of it with seeds=0), and the retrains after it run only as many as fit in the
    rest (`finish`). DIR/config.yaml records the config with the tune settings used."""
    from gradwise.tuning.crossval import cv_plan
    from gradwise.tuning.finish import finish
    from gradwise.tuning.space import default_space, load_space
    from gradwise.tuning.study import search_settings

    started = time.perf_counter()
    folder = Path(out) if out is not None else Path("runs") / f"{base.name}-tune"
    searched = load_space(settings.space, base) if settings.space else default_space(base)
    if settings.space is None:
        searched.check(base, "the default search space")
    data = _dataset(base)
    cv = cv_plan(settings.cv, settings.cv_below, data)
    metric = settings.metric or _default_metric(data)
    search = search_settings(settings, metric, base, cv.folds, cv.rule)
    log.info(cv.rule)
    budget_s, seeds = settings.budget_s, settings.seeds
    with _optuna_quiet():
        study, url = _open(folder, settings.storage, base, searched, search, settings)
        search_started = time.perf_counter()
        deadline = time.time() + settings.timeout_s if settings.timeout_s is not None else None
        end = time.time() + budget_s if budget_s is not None else None
        if budget_s is not None:
            share = BUDGET_SEARCH_SHARE if seeds else 1.0
            search_end = time.time() + share * budget_s
            deadline = search_end if deadline is None else min(deadline, search_end)
        if settings.nproc == 1:
            _search_here(study, base, searched, search, folder, deadline, progress)
        else:
            _search_with_workers(study, folder, url, settings.nproc, deadline, progress, search)
        search_wall_s = time.perf_counter() - search_started
        return finish(
            study, base, searched, search, folder, url, seeds, search_wall_s, started, end
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


def _dataset(base: Config) -> Any:
    """The base config's data, as its runs read it."""
    from gradwise.data.sources import load_dataset
    from gradwise.training.transfer import source_tokenizer

    return load_dataset(base.data, base.seed, tokenizer=source_tokenizer(base))


def _default_metric(data: Any) -> str:
    """The task's primary metric on the validation split (accuracy, rmse, loss, ...)."""
    from gradwise.evaluate.compare import PRIMARY

    return f"val.{PRIMARY[data.schema.task]}"


def _open(
    folder: Path,
    storage: str | None,
    base: Config,
    space: Any,
    settings: Any,
    used: TuneSettings,
) -> Any:
    """Create or load the study (recording the config, space and settings in it), and
    write DIR/config.yaml (with the tune settings `used`) and DIR/space.yaml for the
    reader. A new study gets the base config's own values queued first (trial 0), so the
    result measures the best against the config as given."""
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
        if not existing.get(name):
            _queue_default(study, base, space)
    atomic_write_text(folder / "config.yaml", dump_config(base.model_copy(update={"tune": used})))
    space_yaml = yaml.safe_dump(space.to_dict(), sort_keys=False, default_flow_style=None)
    atomic_write_text(folder / "space.yaml", space_yaml)
    if existing.get(name):
        log.info("continuing study %r: %d trials so far", name, existing[name])
    return study, url


def _queue_default(study: Any, base: Config, space: Any) -> None:
    from gradwise.tuning.space import default_params

    params, why = default_params(base, space)
    if params is None:
        log.info("the config as given is not trial 0: %s", why)
        return
    study.enqueue_trial(params, user_attrs={"default": True})


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
