"""The Python API the CLI is a thin layer over: train and load."""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gradwise.config import Config, DiffusionConfig, dump_config, load_config
from gradwise.data.dataset import Dataset
from gradwise.data.sources import load_dataset
from gradwise.errors import ConfigError
from gradwise.evaluate.compare import Comparison
from gradwise.models import build_model
from gradwise.run import Run, input_spec, write_config
from gradwise.train.checkpoint import atomic_write_text
from gradwise.train.denoising import denoising_loss_name
from gradwise.train.loop import Parallel, ProgressFn, TrainResult, fit
from gradwise.train.losses import resolve_loss_name
from gradwise.train.transfer import freeze, init_from, source_tokenizer

log = logging.getLogger("gradwise")

TRAIN_METRICS_CAP = 20_000  # train metrics are measured on at most this many samples


def load(path: str | Path) -> Run:
    """Rebuild a trained run from its directory (model.json + model.safetensors)."""
    return Run.load(path)


def train(
    config: str | Path | dict[str, Any] | Config,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = True,
    on_epoch_end: Callable[[dict[str, float]], None] | None = None,
    progress: ProgressFn | None = None,
    parallel: Parallel = Parallel(),
    **overrides: Any,
) -> Run:
    """Train a model from a config and write its run directory.

    Args:
        config: a YAML path, a dict, or a Config.
        out: run directory; default runs/<name> (a free name is picked if that exists).
        resume: continue the interrupted run in `out` from its last checkpoint.
        overwrite: replace an existing run in `out`.
        quiet: no log lines on stderr (the run's train.log is always written).
        on_epoch_end: called with each epoch's record.
        **overrides: dotted keys, e.g. `**{"train.epochs": 5}`.

    Returns:
        The trained Run.

    Raises:
        ConfigError, DataError: bad config or data, before any training starts.
        TrainingDiverged: the loss became NaN or the gradients exploded.
    """
    cfg = load_config(config, overrides)
    run_dir = resolve_out(out, cfg, resume, overwrite, parallel.is_main)
    if resume:
        cfg = _resume_config(run_dir, cfg)
    with _logging(run_dir / "train.log" if parallel.is_main else None, quiet):
        log.info("run directory %s", run_dir)
        return _train(cfg, run_dir, resume, parallel, on_epoch_end, progress)


def _train(
    cfg: Config,
    run_dir: Path,
    resume: bool,
    parallel: Parallel,
    on_epoch_end: Callable[[dict[str, float]], None] | None,
    progress: ProgressFn | None,
) -> Run:
    # Seeds live in a fork of the global RNG: the caller's random state is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        data, loss_name, model = prepare(cfg)
        run = Run(run_dir, cfg, data.schema, model, loss_name)
        objective = run.objective(data.train.y)
        if parallel.is_main:
            write_config(run_dir, cfg)
            if not resume:
                run.save_model()  # model.json first: a killed run can be inspected and resumed
        log.info(
            "%s on %s: %d train / %d val / %d test samples, %s parameters",
            cfg.model.arch,
            cfg.data.source,
            len(data.train),
            len(data.val),
            len(data.test),
            f"{sum(p.numel() for p in model.parameters()):,}",
        )
        result = fit(model, data, cfg, objective, run_dir, resume, parallel, on_epoch_end, progress)
        model.cpu()
        if parallel.is_main:
            run.save_model()
            summary = summarise(run, data, result)
            atomic_write_text(run_dir / "metrics.json", json.dumps(summary, indent=2))
            _log_summary(summary)
    return Run(run_dir, cfg, data.schema, model.eval(), loss_name)


def prepare(cfg: Config) -> tuple[Dataset, str, nn.Module]:
    """The data, the loss name and a freshly initialised model for a config (seed set by caller).

    Raises:
        ConfigError, DataError: before any training starts.
    """
    # diffusion brings its own loss: refuse any other before reading the data
    own_loss = (
        denoising_loss_name(cfg.train.loss) if isinstance(cfg.model, DiffusionConfig) else None
    )
    data = load_dataset(cfg.data, cfg.seed, tokenizer=source_tokenizer(cfg))
    for note in data.notes:
        log.info(note)
    n_classes = data.schema.n_outputs if data.schema.task == "classification" else 0
    loss_name = own_loss or resolve_loss_name(cfg.train.loss, data.schema.task, n_classes)
    model = build_model(cfg.model, input_spec(data.schema, loss_name))
    if cfg.model.init_from is not None:
        report = init_from(model, cfg.model.init_from)
        log.info(report.summary())
    frozen = freeze(model, cfg.train.freeze)
    if frozen:
        until = f" until epoch {cfg.train.unfreeze_epoch}" if cfg.train.unfreeze_epoch else ""
        log.info("froze %s parameters (%s)%s", f"{frozen:,}", ", ".join(cfg.train.freeze), until)
    return data, loss_name, model


def summarise(run: Run, data: Dataset, result: TrainResult) -> dict[str, Any]:
    """metrics.json: train/val/test metrics of the final model and how training went."""
    train_part = data.train
    if len(train_part) > TRAIN_METRICS_CAP:
        idx = torch.linspace(0, len(train_part) - 1, TRAIN_METRICS_CAP).long()
        train_part = type(train_part)(train_part.x[idx], train_part.y[idx])
    parts = {"train": train_part, "val": data.val, "test": data.test}
    objective = run.objective(data.train.y)
    summary: dict[str, Any] = {
        name: objective.metrics(run.model, part, run._eval) for name, part in parts.items()
    }
    summary.update(
        task=run.schema.task,
        best_epoch=result.best_epoch,
        epochs=result.epochs,
        stopped_early=result.stopped_early,
        restored_best=result.restored_best,
        wall_s=round(result.wall_s, 3),
        n_params=sum(p.numel() for p in run.model.parameters()),
        n_train=len(data.train),
        n_val=len(data.val),
        n_test=len(data.test),
    )
    return summary


def _log_summary(summary: dict[str, Any]) -> None:
    test = summary["test"]
    shown = "  ".join(f"{k} {v:.4f}" for k, v in test.items())
    log.info(
        "test: %s  (best epoch %d of %d, %.1f s)",
        shown,
        summary["best_epoch"],
        summary["epochs"],
        summary["wall_s"],
    )


def resolve_out(
    out: str | Path | None, cfg: Config, resume: bool, overwrite: bool, is_main: bool = True
) -> Path:
    """Where the run goes; never silently replaces an existing run."""
    if out is None:
        base = Path("runs") / cfg.name
        run_dir = base
        if not resume:
            n = 2
            while _holds_run(run_dir):
                run_dir = base.with_name(f"{base.name}-{n}")
                n += 1
    else:
        run_dir = Path(out)
    if resume:
        if not (run_dir / "config.yaml").is_file():
            raise ConfigError(
                f"--resume: {run_dir} holds no run to continue; check --out, or drop --resume."
            )
        return run_dir
    if _holds_run(run_dir):
        if not overwrite:
            raise ConfigError(
                f"{run_dir} already holds a run; pass --resume to continue it, --overwrite to "
                "replace it, or choose another --out."
            )
        if is_main:
            shutil.rmtree(run_dir)
    elif run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"--out {run_dir} is a file; give a directory.")
    if is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _holds_run(path: Path) -> bool:
    return (path / "config.yaml").is_file() or (path / "model.json").is_file()


def _resume_config(run_dir: Path, given: Config) -> Config:
    """The saved config; the given one may only differ in train.epochs (to train longer) and
    train.checkpoint_every_s (how often to save, which does not change the results)."""
    saved = load_config(run_dir / "config.yaml")
    differ = _diff(saved.model_dump(mode="json"), given.model_dump(mode="json"))
    differ.pop("train.epochs", None)
    differ.pop("train.checkpoint_every_s", None)
    if differ:
        keys = ", ".join(sorted(differ))
        raise ConfigError(
            f"--resume: the config differs from the one {run_dir} was trained with ({keys}). "
            "Resume with the same config, or start a new run with another --out."
        )
    if given.train.epochs != saved.train.epochs:
        log.info("training extended from %d to %d epochs", saved.train.epochs, given.train.epochs)
    return given


def _diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> dict[str, tuple[Any, Any]]:
    out: dict[str, tuple[Any, Any]] = {}
    for key in a.keys() | b.keys():
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out.update(_diff(va, vb, f"{prefix}{key}."))
        elif va != vb:
            out[f"{prefix}{key}"] = (va, vb)
    return out


@contextlib.contextmanager
def _logging(path: Path | None, quiet: bool) -> Iterator[None]:
    """Log to the run's train.log (and to stderr unless quiet) for the length of a run."""
    handlers: list[logging.Handler] = []
    if path is not None:
        handlers.append(logging.FileHandler(path, encoding="utf-8"))
        handlers[-1].setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    if not quiet and not _has_console_handler():
        handlers.append(logging.StreamHandler(sys.stderr))
        handlers[-1].setFormatter(logging.Formatter("%(message)s"))
    previous = log.level
    log.setLevel(logging.INFO)
    for h in handlers:
        log.addHandler(h)
    try:
        yield
    finally:
        for h in handlers:
            log.removeHandler(h)
            h.close()
        log.setLevel(previous)


def _has_console_handler() -> bool:
    return any(getattr(h, "gradwise_console", False) for h in log.handlers)


__all__ = ["compare", "load", "lr_find", "train", "dump_config"]


def lr_find(
    config: str | Path | dict[str, Any] | Config,
    out: str | Path | None = None,
    *,
    steps: int = 200,
    **overrides: Any,
) -> Any:
    """Run the learning-rate range test; writes lr_find.png and lr_find.json to `out`.

    Returns:
        An LRFindResult with the sweep, the suggested LR and the LR of the lowest loss.
    """
    from gradwise.train.lr_find import lr_find as sweep
    from gradwise.train.lr_find import plot_lr_find

    cfg = load_config(config, overrides)
    out_dir = Path(out) if out is not None else Path("runs") / f"{cfg.name}-lr-find"
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        data, loss_name, model = prepare(cfg)
        objective = Run(out_dir, cfg, data.schema, model, loss_name).objective(data.train.y)
        result = sweep(model, data, cfg, objective, steps=steps)
    plot_lr_find(result, str(out_dir / "lr_find.png"))
    atomic_write_text(
        out_dir / "lr_find.json",
        json.dumps(
            {
                "suggestion": result.suggestion,
                "min_loss_lr": result.min_loss_lr,
                "lrs": result.lrs,
                "losses": result.losses,
            },
            indent=1,
        ),
    )
    return result


def compare(
    config_a: str | Path | dict[str, Any] | Config,
    config_b: str | Path | dict[str, Any] | Config,
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

    a, b = load_config(config_a), load_config(config_b)
    folder = Path(out) if out is not None else Path("runs") / f"compare-{a.name}-vs-{b.name}"
    with _logging(None, quiet=True):
        return run_compare(
            a,
            b,
            lambda cfg, run_dir: train(cfg, run_dir, overwrite=True).metrics,
            folder,
            seeds=seeds,
            fractions=fractions,
            metric=metric,
        )
