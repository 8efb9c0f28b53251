"""The Python face of gradwise: thin functions over the packages below; the CLI calls these."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradwise.config import Config, load_config
from gradwise.run import Run

if TYPE_CHECKING:
    from gradwise.audit import AuditReport
    from gradwise.evaluate.compare import Comparison
    from gradwise.explain import Explanation
    from gradwise.training.loop import Parallel, ProgressFn
    from gradwise.training.lr_find import LRFindResult
    from gradwise.tune import TuneResult

__all__ = ["audit", "compare", "explain", "load", "lr_find", "train", "tune"]

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
    verdict and one plain sentence (see `gradwise.audit.CHECKS`).

    Args:
        run: a Run or its directory.
        checks: names to run (default: all); a check that cannot apply says why (n/a).
        against: other data for the shift check (KIND:PATH or a path).
    """
    from gradwise.audit import run_checks

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
    from gradwise.explain import METHODS, explain_run

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
        space: a space file (config keys to ranges; see `gradwise.tune.space`); default:
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
        **overrides: dotted keys applied to `config` first, e.g. `**{"train.epochs": 20}`.

    Returns:
        A TuneResult (also written to out/tune.json).

    Raises:
        ConfigError, DataError: bad config, space, metric or data, before any trial runs.
        GradwiseError: no trial finished.
    """
    from gradwise.tune import run_tune

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
    )
