"""Progress of the audit's long checks, step by step, for whoever listens (the CLI's bars).

A check that retrains (the learning curve, the data-quality folds) reports each retrain as a
step with its estimate of the seconds left; `listening(fn)` routes the steps to `fn` for the
duration of a `with` block. Nobody listening (the Python API, tests): the steps go nowhere.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """Where a check stands.

    Attributes:
        check: the check's name (generalisation, data_quality).
        done: steps finished; total: steps planned (done == 0: about to start).
        what: the step that comes next, or the one just finished when done == total.
        left_s: estimated seconds left for the remaining steps (None: no estimate).
    """

    check: str
    done: int
    total: int
    what: str
    left_s: float | None = None


Listener = Callable[[Step], None]
_listener: ContextVar[Listener | None] = ContextVar("gradwise_audit_progress", default=None)


@contextmanager
def listening(fn: Listener) -> Iterator[None]:
    """Send the steps reported inside the block to `fn`."""
    token = _listener.set(fn)
    try:
        yield
    finally:
        _listener.reset(token)


def report(step: Step) -> None:
    """Tell the listener, if any, where a check stands."""
    fn = _listener.get()
    if fn is not None:
        fn(step)


def seconds_left(planned: list[float], done: int, spent_s: float) -> float | None:
    """The planned seconds of the steps not done, scaled by how the steps done so far
    compared with their plan (so a machine slower than the run's pace shows it); with no
    plan, the mean time of the steps done; None before the first step without a plan.

    Args:
        planned: estimated seconds of each step; done: steps finished; spent_s: their time.
    """
    planned_done = sum(planned[:done])
    if done and planned_done > 0:
        return sum(planned[done:]) * spent_s / planned_done
    if done:
        return spent_s / done * (len(planned) - done)
    return sum(planned) or None
