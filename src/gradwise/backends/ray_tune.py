"""Hyperparameter search on Ray Tune (`gradwise tune CONFIG --backend ray`).

The study is the one `gradwise tune` keeps (DIR/study.sqlite3, or --storage): Ray Tune's
OptunaSearch asks it for each trial with the same TPE sampler, seeded as the local search
seeds it, and the same search space; each Ray trial runs the local search's own
`Worker.run_trial`, which trains DIR/trials/<number>/, reports every epoch to the study and
stops when the study's pruner says so, then tells the study the result. So with the same
sampler seed and trial count, and trials run one at a time (`max_concurrent_trials=1`, the
default here), the search proposes the same trials and finds the same best trial as the
local one; with more at once, as with `--nproc`, the sampler sees fewer finished trials
when it proposes and the trials differ. Afterwards the same `finish` retrains the best over
seeds and writes tune.json.

On a cluster of several machines, DIR must be on a filesystem every machine mounts, and
--storage a database they all reach (PostgreSQL): SQLite in DIR is for one machine.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from gradwise.backends.ray_session import ray_session
from gradwise.config import Config, TuneSettings
from gradwise.errors import GradwiseError
from gradwise.tuning import _dataset, _default_metric, _open, _optuna_quiet
from gradwise.tuning.result import TuneResult

VALUE = "value"  # the key each Ray trial reports its final metric under


def tune_ray(
    base: Config,
    out: str | Path | None,
    settings: TuneSettings,
    *,
    address: str | None = None,
    concurrent: int = 1,
) -> TuneResult:
    """Search on Ray Tune, then finish as the local search does (see `run_tune`, whose set-up
    this follows step for step: the space, the folds, the study with trial 0 queued).

    Args:
        address: the Ray cluster (see `ray_session`); None starts a local one.
        concurrent: trials run at once (the CLI's --nproc); 1 reproduces the local search
            trial for trial.

    Raises:
        GradwiseError: Ray is missing, or a trial failed in a way that stops the search.
    """
    from gradwise.tuning.crossval import cv_plan
    from gradwise.tuning.finish import finish
    from gradwise.tuning.space import default_space, load_space
    from gradwise.tuning.study import counted, search_settings

    started = time.perf_counter()
    folder = (Path(out) if out is not None else Path("runs") / f"{base.name}-tune").resolve()
    searched = load_space(settings.space, base) if settings.space else default_space(base)
    if settings.space is None:
        searched.check(base, "the default search space")
    data = _dataset(base)
    cv = cv_plan(settings.cv, settings.cv_below, data)
    metric = settings.metric or _default_metric(data)
    search = search_settings(settings, metric, base, cv.folds, cv.rule)
    end = time.time() + settings.budget_s if settings.budget_s is not None else None
    with _optuna_quiet():
        study, url = _open(folder, settings.storage, base, searched, search, settings)
        left = settings.trials - counted(study.get_trials(deepcopy=False))
        search_started = time.perf_counter()
        if left > 0:
            _search(study, url, searched, search, folder, left, concurrent, address, settings)
        search_wall_s = time.perf_counter() - search_started
        return finish(
            study, base, searched, search, folder, url, settings.seeds, search_wall_s, started, end
        )


def _search(
    study: Any,
    url: str,
    space: Any,
    search: Any,
    folder: Path,
    n_trials: int,
    concurrent: int,
    address: str | None,
    settings: TuneSettings,
) -> None:
    """Run `n_trials` trials of the study as Ray Tune trials."""
    from gradwise.tuning.study import open_storage

    with ray_session(address) as ray:
        from ray import tune

        searcher = _study_search_class()(
            space=space.suggest,  # define-by-run: the local search's own suggestions
            metric=VALUE,
            mode="max" if search.direction == "maximize" else "min",
            sampler=study.sampler,  # seeded as the local search's first worker
            study_name=study.study_name,
            storage=open_storage(url),
        )
        setup = {"url": url, "study": study.study_name, "out": str(folder)}
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(_trial, setup=setup), {"cpu": 1}),
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                num_samples=n_trials,
                max_concurrent_trials=concurrent,
                time_budget_s=settings.timeout_s,
            ),
            run_config=tune.RunConfig(name=f"gradwise-tune-{study.study_name}", verbose=0),
        )
        results = tuner.fit()
        del ray  # connected for the length of the search
    if results.errors:
        first = str(results.errors[0]).strip().splitlines()
        raise GradwiseError(f"a trial on Ray stopped the search: {first[-1] if first else ''}")


def _trial(config: dict[str, Any], setup: dict[str, Any]) -> None:
    """One Ray Tune trial: the local search's `Worker.run_trial` on the trial the searcher
    asked for (its parameters are already set; suggesting them again returns them)."""
    import optuna
    from ray import tune

    from gradwise.tuning.space import parse_space
    from gradwise.tuning.study import Worker, load_study, open_storage, stored_setup

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = open_storage(setup["url"])
    plain = optuna.load_study(study_name=setup["study"], storage=storage)
    base, space_dict, settings = stored_setup(plain)
    study = load_study(storage, setup["study"], settings, settings.sampler_seed)  # its pruner
    trial = optuna.Trial(study, config["_trial_id"])
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())
    trial.set_user_attr("heartbeat", time.time())
    worker = Worker(study, base, parse_space(space_dict, "the study"), settings, Path(setup["out"]))
    frozen = worker.run_trial(trial)
    value = frozen.value if frozen.value is not None else float("nan")
    tune.report({VALUE: value, "state": frozen.state.name})


def _study_search_class() -> type:
    """Ray Tune's OptunaSearch, with the study told by the trials themselves (as the local
    workers tell it) rather than by Ray's results; built inside a function so that Ray is
    imported only when used."""
    from optuna.trial import TrialState
    from ray.tune.search.optuna import OptunaSearch

    class StudySearch(OptunaSearch):  # type: ignore[misc]
        def suggest(self, trial_id: str) -> dict[str, Any] | None:
            params = super().suggest(trial_id)
            if params is None:
                return None
            # the storage's id of the Optuna trial, for the Ray trial to report to it
            return {**params, "_trial_id": self._ot_trials[trial_id]._trial_id}

        def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
            """Nothing: the trial reports its epochs to the study itself."""

        def on_trial_complete(
            self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
        ) -> None:
            """A trial that ended without telling the study (it crashed) is marked failed."""
            study, trial = self._ot_study, self._ot_trials[trial_id]
            assert study is not None  # set up in __init__: the space is given
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if any(t.number == trial.number for t in running):
                study.tell(trial, state=TrialState.FAIL)
            self._completed_trials.add(trial_id)

    return StudySearch
