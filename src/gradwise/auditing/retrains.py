"""How an audit runs its independent retrains (the learning curve's points, the data-quality
folds): one after another in this process, or all at once somewhere else.

A check hands its retrains over as a function and a list of small, picklable jobs (a config
and its overrides, a fold's positions) and gets the results back in the jobs' order. The
local way is a plain loop; `gradwise.backends.ray_audit` runs each job as a Ray task, so the
checks never import Ray. Each job's function builds what it needs itself, so its result
does not depend on where it ran.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from gradwise.auditing import progress

Job = TypeVar("Job")
Result = TypeVar("Result")


class RetrainMap(Protocol):
    """Calls `fn` on each job and returns the results in the jobs' order.

    Attributes:
        where: where the retrains run, as the checks' settings state it.
        batch: True when the jobs run as one batch (no retrain finishes before all are
            submitted, so the checks report one step, not a step per retrain).
    """

    @property
    def where(self) -> str: ...

    @property
    def batch(self) -> bool: ...

    def __call__(self, fn: Callable[[Job], Result], jobs: Sequence[Job]) -> list[Result]: ...


@dataclass(frozen=True)
class InProcess:
    """The retrains one after another in this process, in order (the default)."""

    where: str = "this process, one retrain after another"
    batch: bool = False

    def __call__(self, fn: Callable[[Job], Result], jobs: Sequence[Job]) -> list[Result]:
        return [fn(job) for job in jobs]


IN_PROCESS = InProcess()


def stepwise(
    fn: Callable[[Job], Result],
    check: str,
    planned: list[float],
    describe: Callable[[Job], str],
) -> Callable[[Job], Result]:
    """`fn`, reporting each job as a step of `check` (`describe(job)` and the time left,
    from the `planned` seconds of each job) before it starts: for retrains in this process.
    """
    done, started = 0, time.perf_counter()

    def step(job: Job) -> Result:
        nonlocal done
        left_s = progress.seconds_left(planned, done, time.perf_counter() - started)
        progress.report(progress.Step(check, done, len(planned), describe(job), left_s))
        found = fn(job)
        done += 1
        return found

    return step
