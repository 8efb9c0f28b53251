"""The Python face of gradwise: thin functions over the packages below; the CLI calls these."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradwise.config import Config, load_config
from gradwise.run import Run

if TYPE_CHECKING:
    from gradwise.audit import AuditReport
    from gradwise.evaluate.compare import Comparison
    from gradwise.monitor import MonitorReport
    from gradwise.training.loop import Parallel, ProgressFn
    from gradwise.training.lr_find import LRFindResult

__all__ = ["audit", "compare", "load", "lr_find", "monitor", "serve", "train"]

ConfigSource = str | Path | dict[str, Any] | Config


def load(path: str | Path) -> Run:
    """Rebuild a trained run from its directory (model.json + model.safetensors)."""
    return Run.load(path)


def train(
    config: ConfigSource,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = True,
    on_epoch_end: Any = None,
    progress: ProgressFn | None = None,
    parallel: Parallel | None = None,
    **overrides: Any,
) -> Run:
    """Train a model from a config and write its run directory.

    Args:
        config: a YAML path, a dict, or a Config. Relative data paths in a YAML file are
            read from the file's folder.
        out: run directory; default runs/<name> (a free name is picked if that exists).
        resume: continue the interrupted run in `out` from its last checkpoint.
        overwrite: replace an existing run in `out`.
        quiet: no log lines on stderr (the run's train.log is always written).
        on_epoch_end: called with each epoch's record (a dict of floats).
        **overrides: dotted keys, e.g. `**{"train.epochs": 5}`.

    Returns:
        The trained Run.

    Raises:
        ConfigError, DataError: bad config or data, before any training starts.
        TrainingDiverged: the loss became NaN or the gradients exploded.
    """
    from gradwise.pipeline import train_run
    from gradwise.training.loop import Parallel

    cfg = load_config(config, overrides)
    return train_run(
        cfg,
        out,
        resume=resume,
        overwrite=overwrite,
        quiet=quiet,
        on_epoch_end=on_epoch_end,
        progress=progress,
        parallel=parallel or Parallel(),
    )


def lr_find(
    config: ConfigSource,
    out: str | Path | None = None,
    *,
    steps: int = 200,
    **overrides: Any,
) -> LRFindResult:
    """Run the learning-rate range test; writes lr_find.png and lr_find.json to `out`
    (default runs/<name>-lr-find), replacing an earlier result there.

    Returns:
        An LRFindResult with the sweep, the suggested LR and the LR of the lowest loss.
    """
    import torch

    from gradwise.artifacts import write_json
    from gradwise.pipeline import prepare
    from gradwise.training.lr_find import lr_find as sweep
    from gradwise.training.lr_find import plot_lr_find

    cfg = load_config(config, overrides)
    out_dir = Path(out) if out is not None else lr_find_folder(cfg)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        data, loss_name, model, _ = prepare(cfg)
        objective = Run(out_dir, cfg, data.schema, model, loss_name).objective(data.train.y)
        result = sweep(model, data, cfg, objective, steps=steps)
    plot_lr_find(result, out_dir / "lr_find.png")
    write_json(
        out_dir / "lr_find.json",
        {
            "suggestion": result.suggestion,
            "min_loss_lr": result.min_loss_lr,
            "lrs": result.lrs,
            "losses": result.losses,
        },
    )
    return result


def lr_find_folder(cfg: Config) -> Path:
    return Path("runs") / f"{cfg.name}-lr-find"


def compare(
    config_a: ConfigSource,
    config_b: ConfigSource,
    *,
    seeds: int = 3,
    fractions: tuple[float, ...] = (1.0,),
    metric: str | None = None,
    out: str | Path | None = None,
) -> Comparison:
    """Train two configs over `seeds` seeds (and data `fractions`) on the same splits.

    Returns:
        A Comparison: each arm's metric values, and per fraction a verdict that names a
        winner only when the difference is larger than the seed-to-seed noise.
    """
    from gradwise.evaluate.compare import compare as run_compare
    from gradwise.pipeline import run_logging, train_run

    a, b = load_config(config_a), load_config(config_b)
    folder = Path(out) if out is not None else Path("runs") / f"compare-{a.name}-vs-{b.name}"
    with run_logging(None, quiet=True):
        return run_compare(
            a,
            b,
            lambda cfg, run_dir: train_run(cfg, run_dir, overwrite=True).metrics,
            folder,
            seeds=seeds,
            fractions=fractions,
            metric=metric,
        )


def audit(
    run: Run | str | Path,
    checks: list[str] | None = None,
    *,
    against: str | None = None,
) -> AuditReport:
    """Measure the run: each check writes RUN/audit/<check>.json with its numbers, settings,
    verdict and one plain sentence (see `gradwise.audit.CHECKS`).

    Args:
        run: a Run or its directory.
        checks: names to run (default: all); a check that cannot apply says why (n/a).
        against: other data for the shift check (KIND:PATH or a path).
    """
    from gradwise.audit import run_checks

    return run_checks(run if isinstance(run, Run) else load(run), checks, against)


def serve(
    run: Run | str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    store: str | None = None,
    max_batch: int = 32,
    max_wait_ms: float = 2.0,
    workers: int = 1,
    api_key_env: str | None = None,
    max_body_kb: int = 1024,
    flush_interval_s: float = 0.5,
    threads: int | None = None,
) -> None:
    """Serve a run over HTTP until interrupted (POST /v1/predict, /v1/feedback, /healthz,
    /readyz, /metrics; POST /v1/generate for language models). See `gradwise.serve.app` for
    the ASGI app alone.

    Args:
        run: a Run or its directory (an optimised variant's directory too).
        store: prediction log: None (RUN/monitor/predictions.sqlite), a SQLite path, a
            SQLAlchemy URL (postgresql+psycopg://...), or "off".
        max_batch, max_wait_ms: dynamic batching (rows per forward pass, longest wait).
        workers: processes sharing the port, each with its own batcher and store writer.
        api_key_env: environment variable holding the key every route but /healthz and
            /readyz requires.
        max_body_kb: larger request bodies are refused with 413.
        flush_interval_s: the store commits at least this often (what a kill -9 can lose).
        threads: torch threads per process (None: torch's default).
    """
    from gradwise.serve.runner import serve_forever
    from gradwise.serve.server import ServeSettings

    settings = ServeSettings(
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        store=store,
        api_key_env=api_key_env,
        max_body_kb=max_body_kb,
        flush_interval_s=flush_interval_s,
    )
    run_dir = run.path if isinstance(run, Run) else Path(run)
    serve_forever(run_dir, settings, host=host, port=port, workers=workers, threads=threads)


def monitor(
    run: Run | str | Path,
    *,
    store: str | None = None,
    window: str | int = 1000,
    webhook: str | None = None,
    follow: bool = False,
    poll_s: float = 10.0,
) -> MonitorReport:
    """Watch what a run served: per window of traffic, input drift against the training
    split (raw features and embeddings), predictions and confidence against validation, a
    label-free accuracy estimate and, where feedback arrived, the measured accuracy. Writes
    RUN/monitor/report.json, windows.json and timeline.png; alerts are logged (and POSTed
    to `webhook`).

    Args:
        store: the prediction store the server wrote (default RUN/monitor/predictions.sqlite;
            a SQLite path or postgresql+psycopg://...).
        window: instances per window, or a duration such as "30m", "1h", "1d".
        follow: keep watching, polling every `poll_s` seconds, until interrupted.

    Returns:
        A MonitorReport (`.alerted` is True when a threshold was crossed).
    """
    from gradwise.monitor import watch

    return watch(
        run if isinstance(run, Run) else load(run),
        store,
        window,
        webhook,
        follow=follow,
        poll_s=poll_s,
    )
