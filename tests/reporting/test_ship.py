"""The ship rule: which verdicts block, which ask for care, and that missing evidence counts."""

from __future__ import annotations

import pytest

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


def selective(
    verdict: str = "pass",
    certified: bool = True,
    answered: int = 264,
    errors: int = 3,
    overall: float = 0.07,
) -> CheckResult:
    """A selective check's result in the format it writes: the first promise (at most 2%
    errors, 90% confidence) certified on 270 validation rows and measured on 300 test rows."""
    from gradwise.auditing.risk_control import clopper_pearson

    test: dict[str, object] = {
        "coverage": answered / 300 if certified else 0.0,
        "answered": answered if certified else 0,
    }
    if certified:
        test |= {
            "errors": errors,
            "error": errors / answered,
            "error_interval": list(clopper_pearson(errors, answered)),
        }
    certificate = {"alpha": 0.02, "delta": 0.1, "n": 270, "certified": certified, "test": test}
    test["oracle_coverage"] = 0.9
    metrics = {"certificates": [certificate], "test_error": overall, "n_test": 300}
    return CheckResult("selective", verdict, "answers 88%", "sentence", metrics=metrics)  # type: ignore[arg-type]


def test_a_promise_kept_on_test_where_answering_everything_is_not_ships_with_a_person():
    found = checks()
    found["selective"] = selective()
    decision = ship_rule(found)
    assert decision.decision == "ship"
    assert decision.label == "ship with a person for the 12% it abstains on"
    assert decision.abstention is not None
    assert decision.abstention.abstained == pytest.approx(1 - 264 / 300)
    assert decision.sentence.startswith(decision.label + ": every audit check passed")
    # the numbers it rests on: overall error, the promise, what test showed, the handover
    for said in ("wrong 7.0% of the time", "at most 2.0% promised with 90% confidence",
                 "answered 88% of the 300 test cases, 1.1% of them wrong",
                 "certified on 270 validation rows", "handed 12% to a person"):  # fmt: skip
        assert said in decision.sentence, said


def test_a_person_for_the_rest_comes_after_care_and_never_after_a_block():
    found = checks(robustness="warn")
    found["selective"] = selective()
    care = ship_rule(found)
    assert care.label == "ship with care, with a person for the 12% it abstains on"
    assert care.sentence.startswith(care.label + ", driven by robustness warn")
    found = checks(data_quality="fail")
    found["selective"] = selective()
    blocked = ship_rule(found)
    assert blocked.decision == "do not ship" and blocked.abstention is None
    assert blocked.label == "do not ship" and "person" not in blocked.sentence


def test_no_person_wording_without_a_certified_promise_that_held_on_test():
    cases = {
        "not certified": selective(verdict="warn", certified=False),
        "broken on test": selective(verdict="fail", errors=20),
        "above alpha on test, within its interval": selective(errors=8),
        "everything answered keeps alpha": selective(overall=0.015),
    }
    for case, result in cases.items():
        found = checks()
        found["selective"] = result
        decision = ship_rule(found)
        assert decision.abstention is None, case
        assert decision.label == decision.decision and "person" not in decision.sentence, case
    found = checks()
    found["selective"] = selective(verdict="fail", errors=20)
    (reason,) = ship_rule(found).reasons
    assert reason.severity == "care" and "did not hold on the test split" in reason.text


def test_a_fairness_audit_is_missing_evidence_only_where_the_config_names_groups():
    passed = {n: CheckResult(n, "pass", "ok", "fine") for n in CHECKS if n != "fairness"}
    asked = ship_rule(passed)
    assert asked.decision == "ship with care"
    assert [r.text for r in asked.reasons] == ["no fairness audit yet: missing evidence"]
    assert ship_rule(passed, not_asked=frozenset({"fairness"})).decision == "ship"
