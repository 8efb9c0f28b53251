"""The audit's retrains as Ray tasks (`gradwise audit RUN --backend ray`).

The learning curve's retrains (fractions x seeds) and the data-quality check's out-of-fold
retrains are independent, so each becomes one Ray task: the task gets a small job (a config
and its overrides, or a run's directory and a fold's positions; `gradwise.auditing.
retrain_jobs`), trains in its own process and returns only what the check needs (the
retrain's metrics, the held-out probabilities). The driver submits a check's planned
retrains as one batch and gathers the results in the jobs' order; everything else in the
audit runs in the driver as it does without Ray. A task trains exactly as the local loop
does (same config, seed, data and preprocessing), so the audit's numbers are the local ones.

On a cluster of several machines the run directory and the config's data source must be on
a filesystem every machine mounts, as for `gradwise train --backend ray`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TypeVar

from gradwise.backends.ray_session import ray_session

Job = TypeVar("Job")
Result = TypeVar("Result")


@dataclass(frozen=True)
class RayRetrains:
    """A `RetrainMap` that runs each job as one Ray task (one CPU each), all submitted at
    once; each retrain picks its torch threads as a local one does (`train.threads`)."""

    ray: ModuleType
    where: str = "Ray, one task per retrain"
    batch: bool = True

    def __call__(self, fn: Callable[[Job], Result], jobs: Sequence[Job]) -> list[Result]:
        task = self.ray.remote(num_cpus=1)(fn)
        refs = [task.remote(job) for job in jobs]
        return list(self.ray.get(refs))  # in the jobs' order, whichever finished first


@contextlib.contextmanager
def ray_retrains(address: str | None = None) -> Iterator[RayRetrains]:
    """Ray retrains for the body of the `with` (a cluster joined at `address`, or a local
    one started and stopped; see `ray_session`).

    Raises:
        GradwiseError: Ray is missing, or the cluster at `address` cannot be reached.
    """
    with ray_session(address) as ray:
        yield RayRetrains(ray)
