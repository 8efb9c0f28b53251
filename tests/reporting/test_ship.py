"""The ship rule: which verdicts block, which ask for care, and that missing evidence counts."""

from __future__ import annotations

from gradwise.auditing import CHECKS
from gradwise.auditing.base import CheckResult
from gradwise.reporting.ship import BLOCKING, check_anchor, ship_rule


def checks(**verdicts: str) -> dict[str, CheckResult]:
    """Every check passing, except those named; "missing" leaves a check out."""
    out = {}
    for name in CHECKS:
        verdict = verdicts.get(name, "pass")
        if verdict != "missing":
            out[name] = CheckResult(name, verdict, f"{name} headline", "sentence")  # type: ignore[arg-type]
    return out


def test_every_check_passing_ships_with_no_reason():
    decision = ship_rule(checks())
    assert decision.decision == "ship" and decision.reasons == ()


def test_a_check_that_cannot_apply_is_no_reason_either_way():
    assert ship_rule(checks(calibration="n/a", shift="n/a")).decision == "ship"


def test_a_fail_in_a_blocking_check_means_do_not_ship_and_links_its_section():
    for name in BLOCKING:
        decision = ship_rule(checks(**{name: "fail"}))
        assert decision.decision == "do not ship", name
        (reason,) = decision.reasons
        assert reason.severity == "block" and reason.anchor == check_anchor(name)
        assert f"{name} fail" in reason.text


def test_losing_to_the_baseline_says_so():
    (reason,) = ship_rule(checks(baseline="fail")).reasons
    assert "loses to a classical baseline" in reason.text


def test_any_warning_means_ship_with_care():
    for name in CHECKS:
        decision = ship_rule(checks(**{name: "warn"}))
        assert decision.decision == "ship with care", name
        assert [r.anchor for r in decision.reasons] == [check_anchor(name)]


def test_uncertainty_and_shift_power_fails_ask_for_care_not_a_block():
    decision = ship_rule(checks(uncertainty="fail", shift="fail"))
    assert decision.decision == "ship with care"
    assert {r.severity for r in decision.reasons} == {"care"}


def test_a_shift_fail_against_new_data_blocks():
    found = checks()
    found["shift"] = CheckResult("shift", "fail", "PSI 0.4", "drifted", metrics={"against": {}})
    decision = ship_rule(found)
    assert decision.decision == "do not ship"
    assert "new data differs" in decision.reasons[0].text


def test_missing_evidence_is_a_reason_for_care_naming_the_check():
    decision = ship_rule(checks(robustness="missing"))
    assert decision.decision == "ship with care"
    (reason,) = decision.reasons
    assert reason.text.startswith("no robustness audit yet")
    assert reason.anchor == "audit-robustness"


def test_no_audit_at_all_is_care_with_one_reason_per_check():
    decision = ship_rule({})
    assert decision.decision == "ship with care" and len(decision.reasons) == len(CHECKS)


def test_monitor_alerts_ask_for_care_and_link_the_monitor():
    decision = ship_rule(checks(), monitor_alerts=2)
    assert decision.decision == "ship with care"
    assert decision.reasons[0].anchor == "monitor" and "2 alerts" in decision.reasons[0].text


def test_blocking_reasons_come_first():
    decision = ship_rule(checks(generalisation="warn", robustness="fail", shift="missing"))
    assert decision.decision == "do not ship"
    assert [r.severity for r in decision.reasons] == ["block", "care", "care"]
