"""Annex IV on the credit example (UCI German credit, fairness by personal_status): with the
example's context file at least 80% of the items are filled from evidence or the context,
and every filled item names a file that exists and holds the number quoted."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import gradwise
from gradwise.auditing import CHECKS
from gradwise.reporting.documents import write_document
from tests.reporting.conftest import FAST_AUDIT
from tests.reporting.document_page import assert_quote_matches_file
from tests.shared import need_shared

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "credit-german.yaml"
CONTEXT = ROOT / "examples" / "context" / "credit-german.yaml"


@pytest.fixture(scope="module")
def credit_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The credit example as shipped, a few epochs, every audit check at small settings."""
    cfg = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    cfg["data"]["source"] = f"csv:{need_shared('german_credit', 'german.csv')}"
    cfg["train"] = {**cfg["train"], "epochs": 4}
    fairness = {**cfg["audit"]["fairness"], "bootstrap": 200}
    cfg["audit"] = {**FAST_AUDIT, "fairness": fairness, "slices": {"bootstrap": 200}}
    run = gradwise.train(cfg, out=tmp_path_factory.mktemp("credit") / "run")
    gradwise.audit(run)
    return Path(run.path)


def test_annex_iv_on_the_credit_example_is_four_fifths_filled_and_traceable(credit_run, tmp_path):
    bare = write_document(credit_run, "annex-iv", out=tmp_path / "bare.html")
    doc = write_document(credit_run, "annex-iv", CONTEXT, out=tmp_path / "annex-iv.html")
    assert sorted(p.stem for p in (credit_run / "audit").glob("*.json")) == sorted(CHECKS)
    assert doc.filled_share >= 0.8, doc.counts
    assert doc.counts["evidence"] == bare.counts["evidence"]  # the context adds, never replaces
    assert doc.counts["context"] == bare.counts["person"] - doc.counts["person"]
    fairness = {e.id: e for e in doc.entries}["audit_fairness"]
    assert fairness.status == "evidence" and fairness.plot is not None
    assert "personal_status" in fairness.text
    for entry in doc.entries:
        if entry.status == "evidence":
            assert entry.source is not None and entry.number is not None
            assert_quote_matches_file(credit_run, entry.source, entry.number)
        elif entry.status == "context":
            assert entry.source == str(CONTEXT) and CONTEXT.is_file()
