"""What every audit check returns and how its verdict is graded.

A check is a function `check(run, settings, ctx) -> CheckResult` in its own module
(`audit/calibration.py`, ...). It measures, states every setting it used, and says in one
sentence what the numbers mean; `run_checks` times it and writes RUN/audit/<check>.json.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gradwise.auditing.retrains import IN_PROCESS, RetrainMap
from gradwise.errors import GradwiseError

Verdict = Literal["pass", "warn", "fail", "n/a"]


class NotApplicable(GradwiseError):
    """The check cannot apply to this run (the message says why); it is reported as n/a."""


@dataclass(frozen=True)
class AuditContext:
    """What the caller gives every check besides the run and its settings.

    Attributes:
        out: RUN/audit, where checks write their JSON and plots.
        against: other data to compare with (`--against`): a KIND:PATH or path, or None.
        seed: seed for everything random in the checks.
        quiet: no progress output.
        retrains: how the checks run their independent retrains (in this process, or as
            Ray tasks with `--backend ray`).
    """

    out: Path
    against: str | None = None
    seed: int = 0
    quiet: bool = True
    retrains: RetrainMap = IN_PROCESS


@dataclass(frozen=True)
class CheckResult:
    """One check's evidence.

    Attributes:
        check: the check's name (calibration, robustness, ...).
        verdict: pass / warn / fail against the thresholds in `settings`, or n/a.
        headline: the number that matters, with its name ("ECE 0.083").
        summary: one plain sentence a manager can read.
        metrics: every number measured (JSON-able).
        settings: every setting used, defaults included.
        wall_s: seconds the check took.
        plots: PNG files it wrote, relative to RUN/audit.
    """

    check: str
    verdict: Verdict
    headline: str
    summary: str
    metrics: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    plots: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> CheckResult:
        return CheckResult(**{**d, "plots": tuple(d.get("plots", ()))})


@dataclass(frozen=True)
class AuditReport:
    """The checks of one `audit` call, in the order they ran."""

    run: str
    checks: tuple[CheckResult, ...]

    def __getitem__(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.check == name:
                return c
        raise KeyError(name)

    @property
    def worst(self) -> Verdict:
        order = {"fail": 0, "warn": 1, "pass": 2, "n/a": 3}
        return min((c.verdict for c in self.checks), key=order.__getitem__, default="n/a")


def grade(value: float, warn: float, fail: float, higher_is_worse: bool = True) -> Verdict:
    """pass / warn / fail of `value` against two thresholds."""
    if higher_is_worse:
        return "fail" if value >= fail else "warn" if value >= warn else "pass"
    return "fail" if value <= fail else "warn" if value <= warn else "pass"


TASK_NAMES = {
    "classification": "a classifier",
    "regression": "a regression",
    "lm": "a language model",
    "seq2seq": "a sequence-to-sequence model",
    "mlm": "masked-token pretraining",
}


def task_name(task: str) -> str:
    """The task as a sentence names it: "a language model" for lm."""
    return TASK_NAMES.get(task, task)
