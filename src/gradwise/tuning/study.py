"""The study: Optuna storage (SQLite in the output folder, or any RDB URL), the trial budget
shared by every worker, trials left running by a killed worker, and one worker's loop.

Each trial is scored by `gradwise.tuning.objective.objective`: a normal run directory,
DIR/trials/<number>/ (with cross-validation, one per fold: DIR/trials/<number>/fold-<k>/),
trained by the pipeline; the metric goes to Optuna's pruner through the loop's epoch callback
(and after each fold), and a pruned trial stops like an early stop (`StopTraining`), so its
run directory is complete.

A worker (a `gradwise tune` process, or one of its `--nproc` workers) asks for a trial only
while the study holds fewer than `trials` counted ones (finished, pruned, failed with an
error, or running); locally the count and the ask happen under a file lock, so several
workers on one SQLite study never overshoot. A trial whose worker was killed (its process
is gone, or, on another machine, its heartbeat is older than STALE_S) is marked failed and
its parameters queued again; it does not count against the budget.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from gradwise.config import VERB_SECTIONS, Config, TuneSettings, apply_overrides
from gradwise.errors import ConfigError, GradwiseError
from gradwise.tuning.objective import UnknownMetric, objective
from gradwise.tuning.space import Space

log = logging.getLogger("gradwise.tuning")

STUDY_FILE = "study.sqlite3"
LOCK_FILE = ".study.lock"
TRIALS_FOLDER = "trials"
HEARTBEAT_S = 30.0  # a running trial records that it is alive this often
STALE_S = 300.0  # a trial of another machine silent this long is taken as killed
ATTR = "gradwise"  # the study's user attribute holding config, space and settings

Direction = Literal["maximize", "minimize"]
Pruner = Literal["median", "halving", "none"]


@dataclass(frozen=True)
class SearchSettings:
    """What every worker of a study shares (stored in the study, so workers agree).

    Attributes:
        trials: the budget: trials the study ends with (finished, pruned or failed).
        metric: the per-epoch validation metric searched, e.g. val.accuracy.
        pruner: median (stop a trial below the median of earlier trials at the same epoch),
            halving (successive halving) or none.
        prune_startup: trials that run to the end before pruning starts.
        prune_warmup: the first epochs of every trial, never pruned (a trial in its
            learning-rate warm-up is not judged yet).
        sampler_seed: seed of the TPE sampler (each worker derives its own from it).
        folds: score each trial over this many folds of train+val (0: the validation
            split alone); `cv_rule` says which setting chose it and why.
        keep_given: recommend the config as given when the best cannot be told apart from it.
    """

    trials: int
    metric: str
    direction: Direction
    pruner: Pruner = "median"
    prune_startup: int = 5
    prune_warmup: int = 1
    sampler_seed: int = 0
    folds: int = 0
    cv_rule: str = ""
    keep_given: bool = True


def search_settings(
    settings: TuneSettings, metric: str, base: Config, folds: int = 0, cv_rule: str = ""
) -> SearchSettings:
    """What the study's workers share, from the tune settings: the metric (`metric`, the
    settings' or the task's primary one), the direction and the pruner's warm-up resolved,
    and the folds `cv_plan` chose."""
    from gradwise.evaluate.metrics import lower_is_better

    direction: Direction
    if settings.direction is None:
        direction = "minimize" if lower_is_better(metric) else "maximize"
    else:
        direction = "maximize" if settings.direction.startswith("max") else "minimize"
    warmup = settings.prune_warmup
    return SearchSettings(
        trials=settings.trials,
        metric=metric,
        direction=direction,
        pruner=settings.pruner,
        prune_startup=settings.prune_startup,
        prune_warmup=max(1, (base.train.epochs or 0) // 10) if warmup is None else warmup,
        sampler_seed=settings.sampler_seed,
        folds=folds,
        cv_rule=cv_rule,
        keep_given=settings.keep_given,
    )


# ------------------------------------------------------------------ storage and study


def storage_url(out: Path, storage: str | None) -> str:
    """The RDB URL of the study: `storage`, or SQLite in `out`."""
    return storage or f"sqlite:///{(out / STUDY_FILE).resolve()}"


def shown_url(url: str) -> str:
    """The URL without its password, for logs and tune.json."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL: sqlalchemy raised already when opening
        return url.split("@")[-1]


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage; SQLite waits up to a minute for a lock held by another worker.

    Raises:
        ConfigError: the URL is malformed or the database cannot be reached.
    """
    is_sqlite = url.startswith("sqlite")
    kwargs: dict[str, Any] = {"connect_args": {"timeout": 60}} if is_sqlite else {}
    if not is_sqlite:
        kwargs["pool_pre_ping"] = True
    try:
        storage = optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as exc:  # sqlalchemy raises many kinds; each means "cannot open"
        raise ConfigError(
            f"--storage {shown_url(url)}: cannot open the study database ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0]}). Check the URL (postgresql+psycopg://USER:PASS@HOST/DB) "
            "and that the server is reachable."
        ) from None
    if is_sqlite:
        _write_ahead(storage)
    return storage


def _write_ahead(storage: optuna.storages.RDBStorage) -> None:
    """SQLite in write-ahead-log mode, synced at checkpoints rather than at every commit.

    A trial reports its metric every epoch; with SQLite's default (an fsync per commit) that
    costs more than a small model's epoch. In WAL mode with synchronous=NORMAL a commit
    survives the process being killed (kill -9), though not a power cut, and readers no
    longer block the workers' writes.
    """
    from sqlalchemy import event

    def on_connect(dbapi_connection: Any, _: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # connections opened while creating the tables: reopened with it


def load_study(
    storage: optuna.storages.RDBStorage, name: str, settings: SearchSettings, seed: int
) -> optuna.Study:
    """Create the study or load it (load_if_exists), with a TPE sampler seeded by `seed`."""
    # multivariate: learning rate, batch size and warm-up act together; constant liar: a
    # running trial counts as a poor one, so parallel workers spread out
    sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
    return optuna.create_study(
        storage=storage,
        study_name=name,
        direction=settings.direction,
        sampler=sampler,
        pruner=make_pruner(settings),
        load_if_exists=True,
    )


def make_pruner(settings: SearchSettings) -> optuna.pruners.BasePruner:
    match settings.pruner:
        case "median":
            return optuna.pruners.MedianPruner(
                n_startup_trials=settings.prune_startup,
                n_warmup_steps=settings.prune_warmup + 1,  # steps are epochs, from 1
            )
        case "halving":
            return optuna.pruners.SuccessiveHalvingPruner()
        case "none":
            return optuna.pruners.NopPruner()
    raise AssertionError(settings.pruner)


def worker_seed(sampler_seed: int, worker: int, n_existing: int) -> int:
    """A sampler seed per worker and start: workers sharing a study, or a study resumed
    after a kill, would otherwise draw the same random start-up trials again."""
    seq = np.random.SeedSequence([sampler_seed, worker, n_existing])
    return int(seq.generate_state(1)[0])


def store_setup(study: optuna.Study, base: Config, space: Space, settings: SearchSettings) -> None:
    """Record the config, space and settings in the study; a study made for another config,
    space, metric or direction is refused rather than mixed.

    Raises:
        ConfigError: the study exists with other contents.
    """
    from gradwise.config import load_config

    setup = {"config": base.model_dump(mode="json"), "space": space.to_dict()}
    stored = study.user_attrs.get(ATTR)
    if stored is not None:
        # read through today's Config: keys added since the study began take their defaults
        then = {**stored, "config": load_config(stored["config"]).model_dump(mode="json")}
        pairs = (
            ("config", _trained(then["config"]), _trained(setup["config"])),
            ("search space", then["space"], setup["space"]),
        )
        for what, was, now in pairs:
            if was != now:
                raise ConfigError(
                    f"study {study.study_name!r} was started with another {what}; continue it "
                    "with the same config and --space, or choose another --out (or study)."
                )
        old = stored["settings"]
        for key in ("metric", "direction"):
            if old[key] != getattr(settings, key):
                raise ConfigError(
                    f"study {study.study_name!r} searches {old['metric']} ({old['direction']}); "
                    f"it cannot switch to {settings.metric} ({settings.direction}). Use the "
                    "same --metric/--direction, or another --out."
                )
        if old.get("folds", 0) != settings.folds:
            raise ConfigError(
                f"study {study.study_name!r} scores trials over {old.get('folds', 0)} folds "
                f"(0: the validation split); it cannot switch to {settings.folds}. Use the same "
                "tune.cv, or another --out."
            )
    study.set_user_attr(ATTR, {**setup, "settings": asdict(settings)})


def _trained(setup: dict[str, Any]) -> dict[str, Any]:
    """What trials train from: the config without the verbs' settings (a rerun may change
    tune.trials, say, and continue the study)."""
    return {k: v for k, v in setup.items() if k not in VERB_SECTIONS}


def stored_setup(study: optuna.Study) -> tuple[Config, dict[str, Any], SearchSettings]:
    """The config, space mapping and settings a study was started with."""
    from gradwise.config import load_config

    stored = study.user_attrs.get(ATTR)
    if stored is None:
        raise ConfigError(
            f"study {study.study_name!r} holds no gradwise search; start it with gradwise tune."
        )
    return load_config(stored["config"]), stored["space"], SearchSettings(**stored["settings"])


# ------------------------------------------------------------------ the budget


def is_interrupted(t: FrozenTrial) -> bool:
    """A trial failed because its worker was killed (not because of its own error)."""
    return t.state == TrialState.FAIL and "error" not in t.user_attrs


def counted(trials: list[FrozenTrial]) -> int:
    """Trials that use up the budget: finished, pruned, failed with an error, or running."""
    live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    return sum(
        t.state in live or (t.state == TrialState.FAIL and not is_interrupted(t)) for t in trials
    )


@contextlib.contextmanager
def study_lock(out: Path) -> Iterator[None]:
    """An exclusive lock between the workers of this machine (count-then-ask is atomic)."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / LOCK_FILE).open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def fail_stale(study: optuna.Study) -> list[int]:
    """Mark trials left RUNNING by a killed worker as failed and queue their parameters
    again; returns their numbers.

    Optuna's own heartbeat (RDBStorage(heartbeat_interval=...)) only works inside
    `study.optimize`; the workers here ask and tell, so they keep their own: each trial
    records its host and process id, and a heartbeat time every HEARTBEAT_S.
    """
    host, now = socket.gethostname(), time.time()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = t.user_attrs
        if attrs.get("host") == host and "pid" in attrs:
            stale = not _alive(int(attrs["pid"]))
        else:
            start = t.datetime_start.timestamp() if t.datetime_start else now
            stale = now - float(attrs.get("heartbeat", start)) > STALE_S
        if not stale:
            continue
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            study.tell(t.number, state=TrialState.FAIL)
            if t.params:
                study.enqueue_trial(dict(t.params), user_attrs=retry_attrs(t.number, t.user_attrs))
            failed.append(t.number)
            log.info("trial %d was left running by a stopped worker: queued again", t.number)
    return failed


def retry_attrs(number: int, attrs: dict[str, Any]) -> dict[str, Any]:
    """The user attributes of trial `number`'s retry: which trial it retries, and whether it
    is the default config (which the result compares against)."""
    return {"retry_of": number, **({"default": True} if attrs.get("default") else {})}


def _alive(pid: int) -> bool:
    """Whether process `pid` of this machine runs (a zombie, killed but not reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


# ------------------------------------------------------------------ one worker


@dataclass(frozen=True)
class Worker:
    """One process searching a study."""

    study: optuna.Study
    base: Config
    space: Space
    settings: SearchSettings
    out: Path

    def next_trial(self) -> optuna.Trial | None:
        """A new trial (or a queued retry), or None once the budget is used."""
        with study_lock(self.out):
            fail_stale(self.study)
            if counted(self.study.get_trials(deepcopy=False)) >= self.settings.trials:
                return None
            trial = self.study.ask()
            trial.set_user_attr("host", socket.gethostname())
            trial.set_user_attr("pid", os.getpid())
            trial.set_user_attr("heartbeat", time.time())
            return trial

    def search(
        self,
        deadline: float | None = None,
        on_trial: Callable[[FrozenTrial], None] | None = None,
        keep_going: Callable[[], bool] = lambda: True,
    ) -> int:
        """Run trials until the budget is used or the wall clock passes `deadline` (a
        time.time() value); returns how many this worker ran."""
        n = 0
        while (deadline is None or time.time() < deadline) and keep_going():
            trial = self.next_trial()
            if trial is None:
                break
            frozen = self.run_trial(trial)
            n += 1
            if on_trial is not None:
                on_trial(frozen)
        return n

    def run_trial(self, trial: optuna.Trial) -> FrozenTrial:
        """Train one trial's config into DIR/trials/<number> (`objective`) and tell the study
        how it went.

        Raises:
            ConfigError: the metric is not among the ones the run logs (every trial would
                fail the same way, so the search stops).
        """
        started = time.perf_counter()
        values = self.space.suggest(trial)
        with _heartbeat(trial):
            try:
                cfg = apply_overrides(self.base, self.space.overrides(values), "the search space")
                cfg = cfg.model_copy(update={"name": f"{self.base.name}-trial-{trial.number}"})
                run_dir = self.out / TRIALS_FOLDER / str(trial.number)
                score = objective(cfg, trial, self.settings, run_dir)
            except UnknownMetric as exc:
                self._fail(trial, str(exc))
                raise ConfigError(str(exc)) from None
            except GradwiseError as exc:  # this config diverged or cannot be built
                self._fail(trial, str(exc))
                return self._finished(trial, started, f"failed: {str(exc).splitlines()[0]}")
            except BaseException:  # stopped from outside: the trial is queued again
                self.study.tell(trial, state=TrialState.FAIL)
                attrs = retry_attrs(trial.number, trial.user_attrs)
                self.study.enqueue_trial(dict(trial.params), user_attrs=attrs)
                raise
        trial.set_user_attr("epochs", score.epochs)
        if score.folds:
            trial.set_user_attr("folds", list(score.folds))
        if score.pruned:
            trial.set_user_attr("pruned", score.pruned)
            self.study.tell(trial, state=TrialState.PRUNED)
            return self._finished(trial, started, score.pruned)
        self.study.tell(trial, score.value)
        return self._finished(trial, started, "")

    def _fail(self, trial: optuna.Trial, error: str) -> None:
        trial.set_user_attr("error", error)
        self.study.tell(trial, state=TrialState.FAIL)

    def _finished(self, trial: optuna.Trial, started: float, note: str) -> FrozenTrial:
        frozen = next(t for t in self.study.get_trials(deepcopy=False) if t.number == trial.number)
        shown = frozen.value is not None and frozen.state == TrialState.COMPLETE
        value = f"{self.settings.metric} {frozen.value:.4f}" if shown else ""
        what = " ".join(part for part in (value, note) if part)
        log.info("trial %d: %s (%.1f s)", trial.number, what, time.perf_counter() - started)
        return frozen


@contextlib.contextmanager
def _heartbeat(trial: optuna.Trial) -> Iterator[None]:
    """Record the trial's heartbeat every HEARTBEAT_S while it trains."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(Exception):  # a missed beat is retried next time
                trial.set_user_attr("heartbeat", time.time())

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
