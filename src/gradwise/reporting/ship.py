"""The ship rule: ship / ship with care / do not ship, from the audit's verdicts.

do not ship, when any of:
    - the split leaks (data.split.allow_overlap: validation or test samples overlap training
      ones), so every held-out number is optimistic;
    - generalisation, calibration, robustness or data_quality fails;
    - the baseline check fails: the network loses to a classical method by more than twice
      the noise;
    - the shift check fails against new data (`gradwise audit RUN --against DATA`): the data
      it will meet is not the data it learned from.
ship with care, when none of those but any of:
    - a check warns;
    - uncertainty fails (its sets or intervals miss their coverage: do not rely on them) or
      the shift check's power measurement fails (a drift would go unnoticed);
    - a check has not run yet: missing evidence is itself a reason for care;
    - the monitor raised alerts on served traffic.
ship, otherwise. A check that cannot apply to the run (n/a) is no reason either way; its
section says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from gradwise.auditing import CHECKS
from gradwise.auditing.base import CheckResult

Decision = Literal["ship", "ship with care", "do not ship"]
Severity = Literal["block", "care"]

BLOCKING = ("generalisation", "baseline", "calibration", "robustness", "data_quality")
"""Checks whose fail means do not ship; a fail of the others asks for care."""


@dataclass(frozen=True)
class Reason:
    """One reason behind the decision.

    Attributes:
        text: what was found, in one line.
        anchor: the id of the report section that holds the evidence.
        severity: block (do not ship) or care (ship with care).
    """

    text: str
    anchor: str
    severity: Severity


@dataclass(frozen=True)
class ShipDecision:
    """The decision and its reasons, the blocking ones first."""

    decision: Decision
    reasons: tuple[Reason, ...]

    @property
    def sentence(self) -> str:
        """The decision and what drove it: the checks and their numbers (the blocking
        reasons when there are any, else every reason for care)."""
        if not self.reasons:
            return "ship: every audit check passed or does not apply to this run."
        drivers = [r for r in self.reasons if r.severity == "block"] or list(self.reasons)
        return f"{self.decision}, driven by " + "; ".join(r.text for r in drivers) + "."


def check_anchor(check: str) -> str:
    """The report section id of an audit check."""
    return f"audit-{check.replace('_', '-')}"


def ship_rule(
    checks: Mapping[str, CheckResult], monitor_alerts: int = 0, split_leak: str | None = None
) -> ShipDecision:
    """Decide from the audit checks found (by name) and the monitor's alert count.

    Args:
        checks: the run's audit results by check name; a check absent here has not run.
        monitor_alerts: alerts the monitor raised on served traffic (0 when not monitored).
        split_leak: the sentence saying the run's split leaks (`leak_warning`), if it does:
            no held-out number can then be trusted, so it blocks.
    """
    block: list[Reason] = []
    care: list[Reason] = []
    if split_leak:
        block.append(Reason(split_leak, "data", "block"))
    for name in CHECKS:
        anchor = check_anchor(name)
        result = checks.get(name)
        if result is None:
            care.append(Reason(f"no {name} audit yet: missing evidence", anchor, "care"))
            continue
        said = f"{name} {result.verdict}: {result.headline}"
        if result.verdict == "fail":
            if _blocks(result):
                block.append(Reason(said + _why(result), anchor, "block"))
            else:
                care.append(Reason(said + _why(result), anchor, "care"))
        elif result.verdict == "warn":
            care.append(Reason(said, anchor, "care"))
    if monitor_alerts:
        plural = "s" if monitor_alerts != 1 else ""
        care.append(
            Reason(
                f"the monitor raised {monitor_alerts} alert{plural} on served traffic",
                "monitor",
                "care",
            )
        )
    decision: Decision = "do not ship" if block else "ship with care" if care else "ship"
    return ShipDecision(decision, tuple(block + care))


def _blocks(result: CheckResult) -> bool:
    if result.check in BLOCKING:
        return True
    return result.check == "shift" and "against" in result.metrics


def _why(result: CheckResult) -> str:
    match result.check:
        case "baseline":
            return " (loses to a classical baseline)"
        case "uncertainty":
            return " (its sets or intervals miss their coverage: do not rely on them)"
        case "robustness":
            driver = result.metrics.get("verdict_from") or {}
            if driver.get("kind") == "attack":
                return " (a gradient attack; audit.robustness.attacks sets the threat model)"
            if driver.get("kind") == "corruption":
                return " (corrupted or noisy inputs)"
        case "shift":
            if "against" in result.metrics:
                return " (the new data differs from the training data)"
            return " (a drift could go unnoticed)"
    return ""
