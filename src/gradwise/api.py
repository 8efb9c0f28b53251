"""The Python face of gradwise: thin functions over the packages below; the CLI calls these."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradwise.config import Config, load_config
from gradwise.run import Run

if TYPE_CHECKING:
    from gradwise.auditing import AuditReport
    from gradwise.deploy.cost import BenchReport
    from gradwise.deploy.tradeoff import TradeOff
    from gradwise.evaluate.compare import Comparison
    from gradwise.explaining import Explanation
    from gradwise.monitoring import MonitorReport
    from gradwise.reporting import Report
    from gradwise.training.loop import Parallel, ProgressFn
    from gradwise.training.lr_find import LRFindResult
    from gradwise.tuning import TuneResult

__all__ = [
    "audit",
    "bench",
    "compare",
    "explain",
    "load",
    "lr_find",
    "monitor",
    "optimize",
    "report",
    "serve",
    "train",
    "tune",
]

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
    from gradwise.pipeline import given_text, train_run
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
        given=given_text(config, overrides),
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
    verdict and one plain sentence (see `gradwise.auditing.CHECKS`).

    Args:
        run: a Run or its directory.
        checks: names to run (default: all); a check that cannot apply says why (n/a).
        against: other data for the shift check (KIND:PATH or a path).
    """
    from gradwise.auditing import run_checks

    return run_checks(run if isinstance(run, Run) else load(run), checks, against)


def explain(
    run: Run | str | Path,
    rows: list[int] | None = None,
    *,
    method: str = "ig",
    split: str = "test",
    seed: int | None = None,
) -> Explanation:
    """Why the run decides what it decides; writes RUN/explain/explain.json and its pictures.

    Args:
        run: a Run or its directory.
        rows: source row numbers (0-based) in `split` to explain; None: its first four.
        method: ig (integrated gradients), gradshap, kernelshap (tables) or saliency.
        split: train, val or test.
        seed: for the sampled parts; None: the run's seed.

    Returns:
        An Explanation: per-row attributions, global importance (tables), attention per
        layer and head (transformers), activation statistics per layer, the files written.
    """
    from gradwise.explaining import METHODS, explain_run

    if method not in METHODS:
        from gradwise.errors import ConfigError

        raise ConfigError(f"--method {method!r} is not one of {', '.join(METHODS)}.")
    return explain_run(
        run if isinstance(run, Run) else load(run),
        rows,
        method,  # type: ignore[arg-type]
        split,
        seed,
    )


def tune(
    config: ConfigSource,
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
    progress: Any = None,
    budget_s: float | None = None,
    **overrides: Any,
) -> TuneResult:
    """Search hyperparameters (Optuna TPE, pruning on the per-epoch validation metric), then
    retrain the best over seeds and measure which hyperparameters mattered and how
    sensitive the optimum is.

    The study lives in `out` (study.sqlite3), so a second call after a crash or `kill -9`
    continues it: finished trials are kept, trials left running are queued again.

    Args:
        config: the config to start from (a YAML path, a dict or a Config).
        out: output folder (default runs/<name>-tune): study, trials/<number>/ (one run
            directory per trial), best.yaml, best/, sensitivity/, plots and tune.json.
        trials: the study's budget of trials (a rerun continues up to it).
        timeout_s: start no trial after this many seconds.
        space: a space file (config keys to ranges; see `gradwise.tuning.space`); default:
            the architecture's usual space.
        metric: a validation metric (default: the task's primary one, e.g. val.accuracy).
        direction: max or min (default: from the metric).
        storage: an RDB URL shared by several machines (default: SQLite in `out`).
        nproc: worker processes on this machine sharing the study.
        seeds: retrain the best config over this many seeds (0: skip, and skip the
            sensitivity check).
        sampler_seed: seed of the TPE sampler.
        pruner: median, halving (successive halving) or none.
        prune_startup: trials that run to the end before the median pruner prunes.
        prune_warmup: the first epochs of every trial, which the median pruner never prunes
            (a trial still warming up is not judged); default: a tenth of train.epochs, at
            least 1.
        progress: called with (trials done, budget, best value so far) as trials finish.
        budget_s: bound the whole call (search, seeds, sensitivity) to about this many
            seconds; retrains that do not fit are skipped and `notes` says so.
        **overrides: dotted keys applied to `config` first, e.g. `**{"train.epochs": 20}`.

    Returns:
        A TuneResult (also written to out/tune.json).

    Raises:
        ConfigError, DataError: bad config, space, metric or data, before any trial runs.
        GradwiseError: no trial finished.
    """
    from gradwise.tuning import run_tune

    return run_tune(
        load_config(config, overrides),
        out,
        trials=trials,
        timeout_s=timeout_s,
        space=space,
        metric=metric,
        direction=direction,
        storage=storage,
        nproc=nproc,
        seeds=seeds,
        sampler_seed=sampler_seed,
        pruner=pruner,
        prune_startup=prune_startup,
        prune_warmup=prune_warmup,
        progress=progress,
        budget_s=budget_s,
    )


def bench(
    run: Run | str | Path,
    *,
    variants: str = "base",
    batches: tuple[int, ...] = (1, 8, 32, 128),
    price_per_core_hour: float = 0.05,
    seconds: float = 1.0,
) -> BenchReport:
    """Measure what the run costs to predict with: parameters, size on disk, FLOPs per
    sample, peak memory, p50/p95 latency and throughput per batch size, USD per million
    predictions (and, for language models, latency by sequence length and decode speed with
    and without the cache). Writes RUN/artifacts/bench.json and the latency-vs-throughput
    plot RUN/artifacts/bench.png.

    Args:
        variants: "base" (the run alone) or "all" (also every variant under RUN/artifacts/).
        price_per_core_hour: USD per CPU core-hour.
        seconds: measuring time per model and batch size.
    """
    from gradwise.artifacts import write_json
    from gradwise.deploy.cost import bench as measure
    from gradwise.deploy.cost import plot_latency_throughput
    from gradwise.deploy.variants import artifacts_folder, variant_folders, variant_name
    from gradwise.errors import ConfigError

    if variants not in ("base", "all"):
        raise ConfigError(f"variants must be base or all, not {variants!r}.")
    base = run if isinstance(run, Run) else load(run)
    runs = {variant_name(base): base}
    if variants == "all":
        runs.update({variant_name(v): v for v in map(load, variant_folders(base))})
    report = measure(runs, batches, price_per_core_hour, seconds)
    folder = artifacts_folder(base)
    write_json(folder / "bench.json", report.to_dict())
    plot_latency_throughput(report, folder / "bench.png")
    return report


def optimize(
    run: Run | str | Path,
    *,
    quantize: str | None = None,
    onnx: bool = False,
    openvino: bool = False,
    precision: str = "fp32",
    distill: str | Path | dict[str, Any] | None = None,
    temperature: float = 4.0,
    alpha: float = 0.7,
    auto: bool = False,
    budget_pt: float = 0.5,
    calibration_samples: int = 256,
    robust_samples: int | None = None,
    seconds: float = 1.0,
) -> TradeOff:
    """Make optimised variants of a run, each a run directory under RUN/artifacts/<variant>/,
    and measure the trade-off (written to RUN/artifacts/tradeoff.json).

    Args:
        quantize: "int8": torch dynamic int8 (Linear/LSTM) and, for CNNs and transformers,
            calibrated static int8 (ONNX Runtime); with onnx/openvino, through that engine.
        onnx: export to ONNX and run in ONNX Runtime (parity with torch is measured).
        openvino: run in OpenVINO; int8 through NNCF.
        precision: "bf16" only where the CPU multiplies bf16 natively.
        distill: a student config (its model: section, optionally train:) trained on the
            run's soft targets; the other levers then apply to the student too.
        temperature, alpha: distillation temperature and soft-target weight.
        auto: make every candidate this machine supports; recommend the fastest within
            `budget_pt`.
        budget_pt: accuracy points a variant may lose (RMSE or loss units for other tasks).

    Returns:
        The TradeOff: one row per variant, the recommendation and why the others lost.

    Raises:
        ConfigError: bad levers (bf16 without native support, OpenVINO missing, none given).
    """
    from gradwise.deploy.optimize import Levers
    from gradwise.deploy.optimize import optimize as run_levers
    from gradwise.errors import ConfigError

    if quantize not in (None, "int8") or precision not in ("fp32", "bf16"):
        raise ConfigError(
            f"quantize must be int8 (or None) and precision fp32 or bf16; got {quantize!r} "
            f"and {precision!r}."
        )
    levers = Levers(quantize, onnx, openvino, precision, distill, auto)  # type: ignore[arg-type]
    return run_levers(
        run if isinstance(run, Run) else load(run),
        levers,
        budget=budget_pt,
        temperature=temperature,
        alpha=alpha,
        calibration_samples=calibration_samples,
        robust_samples=robust_samples,
        seconds=seconds,
    )


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
    /readyz, /metrics; POST /v1/generate for language models). See `gradwise.serving.app` for
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
    from gradwise.serving.runner import serve_forever
    from gradwise.serving.server import ServeSettings

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
    from gradwise.monitoring import watch

    return watch(
        run if isinstance(run, Run) else load(run),
        store,
        window,
        webhook,
        follow=follow,
        poll_s=poll_s,
    )


def report(
    run: Run | str | Path,
    *,
    tune: str | Path | None = None,
    compare: str | Path | None = None,
    out: str | Path | None = None,
) -> Report:
    """Write the run's report: one self-contained HTML page (CSS inline, every plot a base64
    PNG drawn from the run's JSON) with a ship / ship with care / do not ship decision.

    Args:
        run: a Run or its directory.
        tune: a tuning study's folder; default: the study the run lies inside, if any.
        compare: a comparison's folder whose seeds give the noise; default: the one the run
            lies inside, if any.
        out: the HTML file (default RUN/report.html).

    Returns:
        A Report: the file, the decision with its reasons, the sections and which have data.

    Raises:
        NotTrainedError: no finished run there. ConfigError: `tune` / `compare` is not a
        study's folder. DataError: a file the report reads is damaged.
    """
    from gradwise.reporting import write_report

    return write_report(run.path if isinstance(run, Run) else run, tune, compare, out)
