"""`make demo`'s lines on the audited run: the certified abstention in the selective check's
own sentence, and the decision with the share handed to a person."""

from __future__ import annotations

import json
from pathlib import Path

import gradwise
from gradwise.demo import _abstention_line, _decision_line
from tests.conftest import tiny_config


def test_the_demo_prints_the_abstention_sentence_and_the_share_for_a_person(tmp_path: Path):
    run = gradwise.train(tiny_config(train={"epochs": 10}), out=tmp_path / "run")
    audit = gradwise.audit(run, checks=["calibration", "selective"], selective={"alpha": 0.05})
    saved = json.loads((run.path / "audit" / "selective.json").read_text())
    c = saved["metrics"]["certificates"][0]
    assert c["certified"]
    sentence = (
        f"Answers {c['coverage']:.0%} of cases with at most 5.0% errors (90% confidence); "
        f"{1 - c['coverage']:.0%} go to a person."
    )
    line = _abstention_line(audit)
    assert line.startswith(f"abstention (gradwise predict {run.path} --abstain applies it): ")
    assert sentence in line and saved["summary"] in line
    report = gradwise.report(run)
    share = 1 - c["test"]["coverage"]
    decision = _decision_line(report)
    assert decision.startswith(
        f"decision: ship with care, with a person for the {share:.0%} it abstains on ("
    )
    assert f"handed {share:.0%} to a person" in decision


def test_without_the_selective_check_the_demo_says_so(tmp_path: Path):
    run = gradwise.train(tiny_config(), out=tmp_path / "run")
    audit = gradwise.audit(run, checks=["calibration"])
    assert _abstention_line(audit) == "abstention: the selective check did not run."
