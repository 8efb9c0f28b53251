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
    - uncertainty fails (its sets or intervals miss their coverage: do not rely on them),
      selective fails (its certified error rate did not hold on the test split) or the shift
      check's power measurement fails (a drift would go unnoticed);
    - a check has not run yet: missing evidence is itself a reason for care;
    - the monitor raised alerts on served traffic.
ship, otherwise. A check that cannot apply to the run (n/a) is no reason either way; its
section says why.

with a person for the share it abstains on: the rule never judges how accurate is accurate
enough, but the selective check's alpha is exactly that: the error rate the answers may
have. When answering every test case would be wrong more often than alpha, yet the selective
check passed (a threshold certified on validation) and on test the answered cases were wrong
at most alpha of the time, the model is fit to ship only as a selective model: "ship" or
"ship with care" then reads "... with a person for the 12% it abstains on" (the share of test
cases it handed over). Never after a blocking reason: a person for the unsure cases mends
neither a leak nor dishonest labels, and the promise holds only on data like the validation
split.
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
class Abstention:
    """A certified abstention threshold that held on the test split, where answering every
    case would not: the model ships answering only where it is sure.

    Attributes:
        alpha, delta: the promise: at most alpha errors among answered, confidence 1 - delta.
        n_val: validation rows it was certified on; n_test: test rows it was measured on.
        answered: the share of test cases answered; abstained = 1 - answered.
        error: the error rate among the answered test cases, with its exact 95% interval.
        overall: the test error rate when every case is answered (above alpha).
    """

    alpha: float
    delta: float
    n_val: int
    n_test: int
    answered: float
    error: float
    interval: tuple[float, float]
    overall: float

    @property
    def abstained(self) -> float:
        return 1.0 - self.answered

    @property
    def text(self) -> str:
        lo, hi = self.interval
        return (
            f"answering every test case it would be wrong {self.overall:.1%} of the time, more "
            f"than the {self.alpha:.1%} the selective check promises not to exceed; under the "
            f"threshold certified on {self.n_val:,} validation rows it answered "
            f"{_percent(self.answered)} of the "
            f"{self.n_test:,} test cases, {self.error:.1%} of them wrong (95% interval "
            f"{lo:.1%}-{hi:.1%}; at most {self.alpha:.1%} promised with {1 - self.delta:.0%} "
            f"confidence), and handed {_percent(self.abstained)} to a person"
        )


def _percent(share: float) -> str:
    """A share in whole percent that never rounds a few cases away to 0% or up to 100%."""
    if 0 < share < 0.005:
        return "<1%"
    if 0.995 <= share < 1:
        return ">99%"
    return f"{share:.0%}"


@dataclass(frozen=True)
class ShipDecision:
    """The decision and its reasons, the blocking ones first.

    Attributes:
        abstention: set when the decision holds only with a person for the cases the model
            abstains on (see the module's docstring); `label` then says so.
    """

    decision: Decision
    reasons: tuple[Reason, ...]
    abstention: Abstention | None = None

    @property
    def label(self) -> str:
        """The decision as the page heads it: "ship with a person for the 12% it abstains
        on" where it holds only so."""
        if self.abstention is None:
            return self.decision
        glue = " " if self.decision == "ship" else ", "
        share = _percent(self.abstention.abstained)
        return f"{self.decision}{glue}with a person for the {share} it abstains on"

    @property
    def sentence(self) -> str:
        """The decision and what drove it: the checks and their numbers (the blocking
        reasons when there are any, else every reason for care)."""
        person = f"; {self.abstention.text}" if self.abstention else ""
        if not self.reasons:
            if self.abstention:
                return f"{self.label}: every audit check passed or does not apply{person}."
            return "ship: every audit check passed or does not apply to this run."
        drivers = [r for r in self.reasons if r.severity == "block"] or list(self.reasons)
        return f"{self.label}, driven by " + "; ".join(r.text for r in drivers) + person + "."


def check_anchor(check: str) -> str:
    """The report section id of an audit check."""
    return f"audit-{check.replace('_', '-')}"


def ship_rule(
    checks: Mapping[str, CheckResult],
    monitor_alerts: int = 0,
    split_leak: str | None = None,
    not_asked: frozenset[str] = frozenset(),
) -> ShipDecision:
    """Decide from the audit checks found (by name) and the monitor's alert count.

    Args:
        checks: the run's audit results by check name; a check absent here has not run.
        monitor_alerts: alerts the monitor raised on served traffic (0 when not monitored).
        split_leak: the sentence saying the run's split leaks (`leak_warning`), if it does:
            no held-out number can then be trusted, so it blocks.
        not_asked: checks the config gives nothing to measure (fairness with no groups
            named): their absence is no missing evidence.
    """
    block: list[Reason] = []
    care: list[Reason] = []
    if split_leak:
        block.append(Reason(split_leak, "data", "block"))
    for name in CHECKS:
        anchor = check_anchor(name)
        result = checks.get(name)
        if result is None and name in not_asked:
            continue
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
    person = None if block else abstention(checks.get("selective"))
    return ShipDecision(decision, tuple(block + care), person)


def abstention(result: CheckResult | None) -> Abstention | None:
    """The abstention a decision may rest on: the selective check passed, its first promise
    is certified and held on test (the answered test cases were wrong at most alpha of the
    time), and answering every test case would not have held it; else None."""
    if result is None or result.verdict != "pass":
        return None
    m = result.metrics
    try:
        c = m["certificates"][0]
        test, overall = c["test"], float(m["test_error"])
        if not c["certified"] or not test["answered"] or test["error"] > c["alpha"]:
            return None
        if overall <= c["alpha"]:
            return None  # answering everything kept the promise: no person needed for it
        return Abstention(
            alpha=float(c["alpha"]),
            delta=float(c["delta"]),
            n_val=int(c["n"]),
            n_test=int(m["n_test"]),
            answered=float(test["coverage"]),
            error=float(test["error"]),
            interval=(float(test["error_interval"][0]), float(test["error_interval"][1])),
            overall=overall,
        )
    except (KeyError, IndexError, TypeError, ValueError):
        return None  # a selective.json this version does not read claims nothing


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
        case "selective":
            return " (its promise did not hold on the test split: do not rely on its abstentions)"
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
