"""`gradwise serve RUN --tune --p95-ms 20`: pick the batching setting from measurements.

For every (max_batch, max_wait_ms) of a grid the run is served on a free local port and
loaded with wrk (64 connections, a real instance from the run's request schema); the
recommendation is the setting with the highest throughput whose p95 latency stays within
the budget and which answered every request. Servers ship fixed defaults and leave users to
guess; this measures the user's own model on the user's own machine.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from gradwise.artifacts import write_json
from gradwise.config import ServeSettings
from gradwise.errors import GradwiseError
from gradwise.run import Run
from gradwise.serving.load import LoadResult, run_wrk, wrk_path
from gradwise.serving.runner import free_port

BATCHING_FILE = "serve/tune.json"


@dataclass(frozen=True)
class TuneTrial:
    max_batch: int
    max_wait_ms: float
    load: LoadResult


@dataclass(frozen=True)
class BatchingResult:
    """The sweep and its recommendation.

    Attributes:
        p95_ms: the latency budget.
        trials: every setting measured, in order.
        best: the fastest setting within the budget with no errors; None if none was.
        settings: how the sweep was run (connections, seconds per trial, threads).
    """

    p95_ms: float
    trials: tuple[TuneTrial, ...]
    best: TuneTrial | None
    settings: dict[str, Any]

    def fits(self, trial: TuneTrial) -> bool:
        return trial.load.errors == 0 and trial.load.p95_ms <= self.p95_ms

    def to_dict(self) -> dict[str, Any]:
        return {
            "p95_ms": self.p95_ms,
            "settings": self.settings,
            "best": None if self.best is None else _trial_dict(self.best),
            "trials": [{**_trial_dict(t), "within_budget": self.fits(t)} for t in self.trials],
        }


def _trial_dict(t: TuneTrial) -> dict[str, Any]:
    return {"max_batch": t.max_batch, "max_wait_ms": t.max_wait_ms, **t.load.to_dict()}


def tune_batching(
    run: Run | str | Path,
    settings: ServeSettings,
    on_trial: Callable[[TuneTrial], None] | None = None,
    connections: int = 64,
    threads: int = 2,
) -> BatchingResult:
    """Measure each batching setting of `settings.tune_batches` x `tune_waits` under load
    (`tune_seconds` each) and recommend the fastest within `p95_ms`; writes
    RUN/serve/tune.json (with the settings).

    The other settings apply to every server of the sweep, but the store is a temporary
    SQLite file (the sweep pays the logging cost without polluting the log) and no API key
    is asked for.

    Args:
        on_trial: called with each TuneTrial as it is measured.
        connections, threads: wrk's load.

    Raises:
        ConfigError: wrk is missing.
    """
    from gradwise.serving.runner import serving_process, tune_gc
    from gradwise.serving.server import create_app

    wrk_path()
    run = run if isinstance(run, Run) else Run.load(run)
    if run.schema.task == "lm":
        raise GradwiseError("--tune measures /v1/predict; a language model serves /v1/generate.")
    body = json.dumps({"instances": [request_example(run)]})
    p95_ms, seconds = settings.p95_ms, settings.tune_seconds
    trials = []
    # torch threads and garbage collection as the server would have them; a Python caller's
    # process gets its own back (serving_process, tune_gc: only `gradwise serve` keeps them)
    with serving_process(settings.threads), tempfile.TemporaryDirectory() as tmp:
        tune_gc()
        for max_batch in settings.tune_batches:
            for max_wait in settings.tune_waits:
                chosen = settings.model_copy(
                    update={
                        "max_batch": max_batch,
                        "max_wait_ms": max_wait,
                        "store": str(Path(tmp) / f"tune-{max_batch}-{max_wait}.sqlite"),
                        "api_key_env": None,
                    }
                )
                with background_server(create_app(run, chosen)) as url:
                    run_wrk(f"{url}/v1/predict", body, connections, 1.0, threads)  # warm-up
                    load = run_wrk(f"{url}/v1/predict", body, connections, seconds, threads)
                trial = TuneTrial(max_batch, float(max_wait), load)
                trials.append(trial)
                if on_trial is not None:
                    on_trial(trial)
    sweep = {
        "connections": connections,
        "seconds": seconds,
        "threads": threads,
        "serve": settings.model_dump(mode="json"),
    }
    result = BatchingResult(p95_ms, tuple(trials), None, sweep)
    fitting = [t for t in trials if result.fits(t)]
    best = max(fitting, key=lambda t: t.load.rps) if fitting else None
    result = replace(result, best=best)
    write_json(Path(run.path) / BATCHING_FILE, result.to_dict())
    return result


def request_example(run: Run) -> dict[str, Any]:
    """A real instance of the run's request schema: the first training sample when the data
    is at hand, else one made from the schema's statistics."""
    from gradwise.serving.schemas import example_instance, synthetic_instance

    try:
        found = example_instance(run.schema, run.split("train").raw)
    except GradwiseError:
        found = None
    return found if found is not None else synthetic_instance(run.schema)


@contextlib.contextmanager
def background_server(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve `app` with uvicorn in a thread of this process on a free port; yields its URL."""
    import uvicorn

    port = free_port(host)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="tune-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise GradwiseError(f"the server on {host}:{port} did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(60)
