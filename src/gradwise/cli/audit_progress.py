"""The audit's progress on a terminal: one line per check, its retrains as steps, the time
left.

    ⠋ [1/7] generalisation ━━━━━╸━━━━━━ 4/8 0:00:21 ~24 s left 0.3 of the data, seed 1

A check that retrains (the learning curve, the data-quality folds) reports each retrain as a
step with an estimate of the seconds left (`gradwise.auditing.progress`); the estimate counts
down between steps. The other checks show how long they have run.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

if TYPE_CHECKING:
    from gradwise.auditing.base import CheckResult
    from gradwise.auditing.progress import Step


class _TimeLeftColumn(ProgressColumn):
    """The check's estimate of the seconds left, counting down until its next step."""

    def render(self, task: Task) -> Text:
        deadline = task.fields.get("deadline")
        if deadline is None:
            return Text("")
        left = max(0.0, deadline - time.monotonic())
        return Text(f"~{_clock(left)} left", style="progress.remaining")


class _StepsColumn(ProgressColumn):
    """done/total retrains, when the check has steps."""

    def render(self, task: Task) -> Text:
        if not task.fields.get("steps"):
            return Text("")
        return Text(f"{int(task.completed)}/{int(task.total or 0)}", style="progress.download")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}:{secs:02d}" if minutes else f"{secs} s"


class CheckProgress:
    """A line per check on `console`: started as the previous check finishes (`done`),
    moved by the running check's steps (`step`)."""

    def __init__(self, names: list[str], console: Console) -> None:
        self.names = names
        self.bars = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(bar_width=12),
            _StepsColumn(),
            TimeElapsedColumn(),
            _TimeLeftColumn(),
            TextColumn("[dim]{task.fields[what]}"),
            console=console,
            transient=True,
            speed_estimate_period=3600.0,
        )
        self.index = 0
        self.task: TaskID | None = None

    def __enter__(self) -> CheckProgress:
        self.bars.start()
        self._start_next()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def _label(self) -> str:
        return f"[{self.index + 1}/{len(self.names)}] {self.names[self.index]}"

    def _start_next(self) -> None:
        if self.index < len(self.names):
            self.task = self.bars.add_task(self._label(), total=None, what="", deadline=None)

    def step(self, step: Step) -> None:
        """A retrain started or finished in the running check."""
        if self.task is None or self.index >= len(self.names):
            return
        if step.check != self.names[self.index]:
            return  # a step of a check run inside another: the outer line stays
        deadline = None if step.left_s is None else time.monotonic() + step.left_s
        self.bars.update(
            self.task,
            total=step.total,
            completed=step.done,
            what=step.what,
            deadline=deadline,
            steps=True,
        )

    def done(self, result: CheckResult) -> None:
        """The running check finished: its line says so, and the next one starts."""
        if self.task is not None:
            task = self.bars.tasks[self.task]
            total = task.total or 1
            what = f"{result.verdict} in {result.wall_s:.1f} s"
            self.bars.update(self.task, total=total, completed=total, what=what, deadline=None)
            self.bars.stop_task(self.task)
        self.index += 1
        self._start_next()
