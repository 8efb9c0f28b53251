"""Data-parallel training on Ray Train (`gradwise train CONFIG --backend ray`).

Ray Train's TorchTrainer starts the workers and the torch process group (gloo on CPUs,
NCCL on GPUs); each worker then runs the pipeline's own DDP path, exactly what
`gradwise train --nproc N` runs under torchrun: every rank builds the same data and model
from the same seed, DDP averages the gradients, and rank 0 writes the run directory. So the
run directory is the same as a local or a torchrun run's, and `gradwise.load` reads it.
The pipeline wraps the model in DDP itself, so `ray.train.torch.prepare_model` is not used.

On a cluster of several machines, --out (and Ray's storage_path) must be on a filesystem
every machine mounts: rank 0 writes the run there, and the other ranks read a resume's
checkpoint from it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from gradwise.backends.ray_session import LOCAL_CPUS, ray_session
from gradwise.config import Config, load_config
from gradwise.errors import GradwiseError
from gradwise.pipeline import given_text, resolve_out, train_run
from gradwise.run import Run
from gradwise.training.loop import Parallel

WORKERS = 2


def train_ray(
    config: str | Path | dict[str, Any] | Config,
    out: str | Path | None = None,
    *,
    overrides: dict[str, Any] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    workers: int = WORKERS,
    use_gpu: bool = False,
    address: str | None = None,
    storage_path: str | None = None,
) -> Run:
    """Train `config` on `workers` Ray Train workers (one process each) and load the run.

    Args:
        overrides: dotted `key: value` changes to the config, as `gradwise.train` takes.
        use_gpu: one GPU per worker (NCCL) instead of CPUs (gloo).
        address: the Ray cluster (see `ray_session`); None starts a local one with a CPU
            per worker.
        storage_path: where Ray Train keeps its own records (default ~/ray_results); on a
            cluster, a path every machine shares.

    Raises:
        ConfigError: the config is invalid, or --out holds a run (without resume/overwrite).
        GradwiseError: Ray is missing, or a worker failed (its message is repeated).
    """
    overrides = overrides or {}
    cfg = load_config(config, overrides)
    run_dir = resolve_out(out, cfg, resume, overwrite).resolve()
    setup = {
        "config": cfg,
        "out": str(run_dir),
        "resume": resume,
        "given": given_text(config, overrides),
        "threads": max(1, (os.cpu_count() or 1) // workers),
    }
    with ray_session(address, num_cpus=max(LOCAL_CPUS, workers)):
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer

        trainer = TorchTrainer(
            _train_worker,
            train_loop_config=setup,
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=use_gpu),
            run_config=RunConfig(name=f"gradwise-{cfg.name}", storage_path=storage_path),
        )
        try:
            trainer.fit()
        except Exception as exc:  # Ray wraps the worker's error in its own kinds
            raise GradwiseError(f"training on Ray failed: {_worker_error(exc)}") from None
    return Run.load(run_dir)


def _train_worker(setup: dict[str, Any]) -> None:
    """One Ray Train worker: the pipeline's DDP rank, in the process group Ray set up."""
    import ray.train

    context = ray.train.get_context()
    torch.set_num_threads(setup["threads"])
    train_run(
        setup["config"],
        setup["out"],
        resume=setup["resume"],
        overwrite=not setup["resume"],  # the driver checked --out; rank 0 starts it afresh
        quiet=True,
        parallel=Parallel(context.get_world_rank(), context.get_world_size()),
        given=setup["given"],
    )


def _worker_error(exc: BaseException) -> str:
    """The first worker's own error (a GradwiseError's message), else Ray's first line."""
    failures = getattr(exc, "worker_failures", None) or {}
    for failure in failures.values():
        cause: BaseException | None = failure
        while cause is not None:
            if isinstance(cause, GradwiseError):
                return str(cause)
            cause = cause.__cause__
        return str(failure).strip().splitlines()[-1]
    return str(exc).strip().splitlines()[0]
