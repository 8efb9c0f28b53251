"""The report's slices and fairness sections: plots redrawn from slices.json and
fairness.json (never the checks' own PNGs), and key numbers equal to those files."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

import gradwise
from gradwise.auditing import read_audit
from gradwise.auditing.base import CheckResult
from gradwise.reporting import write_report
from gradwise.reporting.blocks import num
from gradwise.reporting.plots_audit_data import plot_fairness, plot_slices
from tests.auditing.test_fairness import _unfair_table
from tests.conftest import tiny_config
from tests.reporting.page import Page, png_of, read_page


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, CheckResult]]:
    """A table run (labels noisier in group b of `grp`, a column the model does not read)
    audited for slices and fairness by `grp`."""
    tmp = tmp_path_factory.mktemp("slices_fairness")
    data = {"source": f"csv:{_unfair_table(tmp / 't.csv')}", "target": "y", "drop": ["grp"]}
    run = gradwise.train(
        tiny_config(data=data, train={"epochs": 8, "batch_size": 64}), out=tmp / "run"
    )
    gradwise.audit(
        run,
        checks=["slices", "fairness"],
        slices={"bootstrap": 200},
        fairness={"groups": ["grp"], "bootstrap": 200},
    )
    return Path(run.path), read_audit(run.path)


def _section(html: str, anchor: str, tmp: Path) -> Page:
    """The page's part from `anchor`'s section to the next section, read as a page."""
    start = html.index(f'data-section="{anchor}"')
    end = html.find("data-section=", start + 1)
    part = tmp / f"{anchor}.html"
    part.write_text(html[start : end if end > 0 else None], encoding="utf-8")
    return read_page(part)


@pytest.fixture(scope="module")
def sections(
    audited: tuple[Path, dict[str, CheckResult]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Page]:
    run, _ = audited
    tmp = tmp_path_factory.mktemp("page")
    html = write_report(run, out=tmp / "r.html").path.read_text(encoding="utf-8")
    return {a: _section(html, a, tmp) for a in ("audit-slices", "audit-fairness")}


def _fact(page: Page, label: str, value: str) -> None:
    assert f"{label} {value}" in page.text, (label, value)


def test_each_section_draws_its_plot_from_the_json_not_the_checks_png(audited, sections):
    run, _ = audited
    own = {p.name: p.read_bytes() for p in (run / "audit").glob("*.png")}
    assert {"slices.png", "fairness.png"} <= set(own)
    for anchor in ("audit-slices", "audit-fairness"):
        (img,) = sections[anchor].images
        assert png_of(img["src"]).size[0] >= 400
        assert base64.b64decode(img["src"].partition(",")[2]) not in own.values()


def test_slices_key_numbers_equal_the_json(audited, sections):
    _, results = audited
    m, page = results["slices"].metrics, sections["audit-slices"]
    assert m["listed"], "the noisier group should be a reported slice"
    worst = next(s for s in m["slices"] if s["rule"] == m["listed"][0])
    lo, hi = worst["gap_interval"]
    _fact(page, "candidates tested", num(m["n_candidates"]))
    _fact(page, "slices reported", num(m["n_weak"]))
    _fact(page, "worst slice", worst["rule"])
    _fact(page, "its error vs the rest", f"{num(worst['error'])} vs {num(worst['rest_error'])}")
    _fact(page, "gap (95% interval)", f"{num(worst['gap'])} ({num(lo)} to {num(hi)})")
    _fact(page, "n (confirmation half)", num(worst["n"]))
    assert worst["error"] - worst["rest_error"] == pytest.approx(worst["gap"])


def test_fairness_key_numbers_equal_the_json(audited, sections):
    _, results = audited
    m, page = results["fairness"].metrics, sections["audit-fairness"]
    (grouping,) = m["groupings"]
    for key, name in (
        ("accuracy_gap", "accuracy gap"),
        ("demographic_parity_difference", "demographic-parity difference"),
        ("equalized_odds_difference", "equalised-odds difference"),
    ):
        d = grouping["between"][key]
        shown = f"{num(d['value'])} (95% interval {num(d['low'])} to {num(d['high'])})"
        _fact(page, f"{name} by grp", shown)
    written = m["mitigation"]["variant"]
    (proposal,) = m["mitigation"]["proposals"]
    parity = "demographic_parity_difference"
    _fact(page, "variant with group thresholds by grp", written["path"])
    _fact(
        page,
        "its demographic-parity difference on test (the run's)",
        f"{num(proposal['test'][parity])} ({num(proposal['original'][parity])})",
    )
    assert proposal["original"][parity] == grouping["between"][parity]["value"]


def test_nothing_to_draw_gives_no_plot(audited):
    _, results = audited
    slices, fairness = results["slices"], results["fairness"]
    assert plot_slices(slices.metrics, slices.settings) is not None
    assert plot_slices({**slices.metrics, "listed": []}, slices.settings) is None
    assert plot_fairness(fairness.metrics) is not None
    assert plot_fairness({**fairness.metrics, "graded": []}) is None


def test_long_rules_are_cut_and_at_most_max_listed_are_drawn(audited):
    _, results = audited
    m = results["slices"].metrics
    worst = next(s for s in m["slices"] if s["rule"] == m["listed"][0])
    long = [{**worst, "rule": f"{worst['rule']} and x{i} = {'v' * 60}"} for i in range(4)]
    fig = plot_slices({"slices": long, "listed": [s["rule"] for s in long]}, {"max_listed": 3})
    assert fig is not None
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == 3 and all(len(t) == 50 and t.endswith("…") for t in labels)
    assert not re.search(r"v{60}", " ".join(labels))
