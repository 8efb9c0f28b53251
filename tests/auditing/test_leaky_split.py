"""Checks on a split known to leak do not pass, and say why; the data-quality check reports
overlapping windows across splits with counts and row numbers; the report shows it in red."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gradwise
from gradwise.run import Run
from tests.data.test_leakage import machine_windows


def _windows_run(tmp: Path, name: str, split: dict[str, Any], groups: bool = False) -> Run:
    x, y, g = machine_windows(n_machines=10)
    arrays = {"X": x, "y": y} | ({"groups": g} if groups else {})
    np.savez(tmp / f"{name}.npz", **arrays)
    config = {
        "name": name,
        "seed": 0,
        "data": {"source": f"npz:{tmp / name}.npz", "split": split},
        "model": {"arch": "lstm", "hidden": 8},
        "train": {"epochs": 1, "batch_size": 64},
    }
    return gradwise.train(config, out=tmp / name)


@pytest.fixture(scope="module")
def leaky(tmp_path_factory: pytest.TempPathFactory) -> Run:
    tmp = tmp_path_factory.mktemp("leaky")
    return _windows_run(tmp, "leaky", {"order": "random", "allow_overlap": True})


def test_a_leaky_run_records_its_split_and_warns_in_train_log(leaky: Run):
    rule = leaky.split_rule
    assert rule["method"] == "random" and rule["leaky"] and rule["allow_overlap"]
    log = (leaky.path / "train.log").read_text()
    assert "the split leaks (data.split.allow_overlap: true)" in log


def test_held_out_checks_do_not_pass_on_a_leaky_split(leaky: Run):
    report = gradwise.audit(leaky, checks=["generalisation", "uncertainty"])
    for name in ("generalisation", "uncertainty"):
        result = report[name]
        assert result.verdict in ("warn", "fail")
        assert result.summary.startswith("Not a pass: the split leaks")
        assert "overlapping windows" in result.summary
        assert result.metrics["leaky_split"]["share"] > 0.5


def test_data_quality_counts_overlapping_windows_with_row_numbers(leaky: Run):
    result = gradwise.audit(leaky, checks=["data_quality"])["data_quality"]
    overlap = result.metrics["window_overlap"]
    assert overlap["n"] > 0.5 * overlap["n_val"] + 0.5 * overlap["n_test"]
    example = overlap["examples"][0]
    assert abs(example["row"] - example["train_row"]) < 10  # neighbours in the source
    assert result.verdict == "fail"
    assert result.headline.endswith("of val/test windows overlap training")
    assert "val/test windows" in result.summary and "data.split.by" in result.summary


def test_a_grouped_run_passes_the_overlap_scan(tmp_path: Path):
    run = _windows_run(tmp_path, "grouped", {}, groups=True)
    assert run.split_rule["method"] == "group" and not run.split_rule["leaky"]
    result = gradwise.audit(run, checks=["data_quality", "generalisation"])
    assert result["data_quality"].metrics["window_overlap"]["n"] == 0
    assert not result["generalisation"].summary.startswith("Not a pass")


def test_the_report_shows_a_leaky_split_in_red(leaky: Run):
    from gradwise.reporting.evidence import read_evidence
    from gradwise.reporting.sections import data_section

    section = data_section(read_evidence(leaky.path))
    assert section.verdict == "fail"
    verdict = section.blocks[0]
    assert verdict.kind == "verdict" and verdict.verdict == "fail"
    assert "optimistic" in verdict.summary
    facts = dict(section.blocks[1].rows)  # type: ignore[union-attr]
    assert facts["split rule"].startswith("shuffled")


def test_a_leaky_split_blocks_shipping_and_says_why(leaky: Run):
    from gradwise.reporting.evidence import read_evidence
    from gradwise.reporting.summary import card

    decision = card(read_evidence(leaky.path)).decision
    assert decision.decision == "do not ship"
    assert decision.reasons[0].anchor == "data"
    assert "the split leaks" in decision.reasons[0].text
