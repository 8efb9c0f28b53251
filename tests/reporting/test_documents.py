"""Documents for regulated use: every item filled from the run (its number equal to the file's),
from the user's context, or listed as needing a person; byte-identical rebuilds; --json gives
the same items as the page."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import gradwise
from gradwise.auditing import CHECKS
from gradwise.cli import app
from gradwise.errors import ConfigError
from gradwise.reporting.document_templates import TEMPLATES, item_ids, items_table
from gradwise.reporting.documents import CHROMIUMS, Document, write_document
from tests.reporting.conftest import AUDITED, add_monitor
from tests.reporting.document_page import assert_quote_matches_file, read_document
from tests.reporting.page import png_of, read_page

runner = CliRunner()
NAMES = sorted(TEMPLATES)
DOCS = Path(__file__).parents[2] / "docs" / "guides" / "documents"


def _items(html: str) -> dict[str, str]:
    """item id -> its status, as the page marks it."""
    return read_document(html).items


def _numbers(html: str) -> dict[str, str]:
    return read_document(html).numbers


@pytest.fixture(scope="module")
def bare(audited_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Document]:
    """Each template of the audited run without a context file, written once for the module
    (drawing a document's plots is most of its cost)."""
    out = tmp_path_factory.mktemp("bare") / "sub"
    return {name: write_document(audited_run, name, out=out / f"{name}.html") for name in NAMES}


@pytest.mark.parametrize("template", NAMES)
def test_each_template_renders_every_section_and_lists_what_needs_a_person(bare, template):
    doc = bare[template]
    assert doc.path is not None
    html = doc.path.read_text(encoding="utf-8")
    page = read_page(doc.path)
    sections = TEMPLATES[template].sections
    assert page.sections == ["coverage"] + [str(i + 1) for i in range(len(sections))]
    assert all(title in page.text for title, _ in sections)
    assert page.external == [link for link in page.links if not link.startswith("#")]
    read = read_document(html)
    plotted = [e.id for e in doc.entries if e.plot is not None]
    assert read.plots == plotted and len(plotted) >= 5  # training and the audited checks
    assert all(png_of(image["src"]).width > 100 for image in page.images)
    assert len(page.images) == len(plotted)
    assert list(read.items) == [e.id for e in doc.entries]
    assert read.needs == [i for i, s in read.items.items() if s == "person"] and read.needs
    counts = dict(re.findall(r'data-count="(\w+)">(\d+)<', html))
    assert {k: int(v) for k, v in counts.items()} == doc.counts
    assert sum(doc.counts.values()) == len(read.items)
    never = re.findall(r'data-never-run="([^"]+)"', html)
    assert never[: len(CHECKS) - len(AUDITED)] == [c for c in CHECKS if c not in AUDITED]
    assert "explain" not in never  # the fixture explained the run


def test_annex_iv_follows_the_annex_numbered_points_in_order():
    refs = [p.ref for _, points in TEMPLATES["annex-iv"].sections for p in points]
    letters = [f"{n}({c})" for n in (1, 2) for c in "abcdefgh"]
    assert refs == letters + [str(n) for n in range(3, 10)]
    titles = [t for t, _ in TEMPLATES["annex-iv"].sections]
    assert [t.split(".")[0] for t in titles] == [str(n) for n in range(1, 10)]


def test_numbers_on_the_page_equal_the_files_they_link(audited_run, bare):
    doc = bare["annex-iv"]
    assert doc.path is not None
    out = doc.path
    read = read_document(out.read_text(encoding="utf-8"))
    filled = [e for e in doc.entries if e.status == "evidence"]
    assert set(read.numbers) == {e.id for e in filled} and len(filled) >= 15
    for entry in filled:
        assert entry.source is not None
        assert_quote_matches_file(audited_run, entry.source, read.numbers[entry.id])
    metrics = json.loads((audited_run / "metrics.json").read_text())
    key, value = read.numbers["test_metrics"].split(" = ")
    assert key == "test.accuracy"
    assert float(value) == pytest.approx(metrics["test"]["accuracy"], rel=1e-3)
    for link in read_page(out).links:
        if not link.startswith("#"):
            assert (out.parent / link).exists(), link  # every file link resolves from the page


def test_the_docs_tables_are_the_templates_item_lists():
    for name in NAMES:
        page = DOCS / f"{name}.md"
        assert items_table(name) in page.read_text(encoding="utf-8"), (
            f"{page} drifted from the code: paste items_table({name!r}) into it"
        )


def test_the_context_fills_items_shown_as_given_by_the_user(audited_run, bare, tmp_path):
    context = tmp_path / "context.yaml"
    answers = {"intended_purpose": "Reading handwritten digits on forms.", "users": "Clerks."}
    context.write_text(yaml.safe_dump(answers))
    given = write_document(audited_run, "sr11-7", context, out=tmp_path / "b.html")
    assert given.counts["context"] == bare["sr11-7"].counts["context"] + 2
    assert given.counts["person"] == bare["sr11-7"].counts["person"] - 2
    html = given.path.read_text(encoding="utf-8")
    assert _items(html)["intended_purpose"] == "context"
    for text in answers.values():
        assert f'<span class="tag">given by the user:</span> {text}' in html
    assert 'data-needs="intended_purpose"' not in html


def test_an_unknown_context_id_is_an_error_listing_the_valid_ids(audited_run, tmp_path):
    context = tmp_path / "context.yaml"
    context.write_text("intended_purpose: x\npurpose_of_life: 42\n")
    with pytest.raises(ConfigError, match="unknown item id\\(s\\) purpose_of_life") as raised:
        write_document(audited_run, "annex-iv", context, out=tmp_path / "a.html")
    assert all(i in str(raised.value) for i in item_ids())


def test_a_rebuild_is_byte_identical(run_copy, tmp_path):
    """On Annex IV, the template that draws every plot the run holds (the others share its
    items and its code)."""
    context = tmp_path / "context.yaml"
    context.write_text("limitations: Only scanned 8x8 digits.\n")
    first = write_document(run_copy, "annex-iv", context).path.read_bytes()
    again = write_document(run_copy, "annex-iv", context).path.read_bytes()
    assert first == again and first.count(b'<img src="data:image/png;base64,') >= 5


def test_annex_iv_is_four_fifths_filled_by_evidence_and_context_each_traceable(run_copy, tmp_path):
    add_monitor(run_copy)
    person_only = {i.id: f"answer {i.id}" for i in TEMPLATES["annex-iv"].items if not i.fill}
    context = tmp_path / "context.yaml"
    context.write_text(yaml.safe_dump(person_only))
    doc = write_document(run_copy, "annex-iv", context)
    counts = doc.counts
    filled = counts["evidence"] + counts["context"]
    assert filled / sum(counts.values()) >= 0.8, counts
    assert all(e.source and e.number for e in doc.entries if e.status == "evidence")
    assert all(e.source == str(context) for e in doc.entries if e.status == "context")


def test_cli_writes_the_document_and_json_gives_the_same_items(audited_run, tmp_path):
    out = tmp_path / "annex.html"
    args = ["report", str(audited_run), "--template", "annex-iv", "--out", str(out)]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "need a person" in done.output
    html = out.read_text(encoding="utf-8")
    as_json = runner.invoke(app, [*args, "--json"])
    assert as_json.exit_code == 0, as_json.output
    data = json.loads(as_json.output)
    items = [i for s in data["sections"] for p in s["points"] for i in p["items"]]
    assert {i["id"]: i["status"] for i in items} == _items(html)
    assert {i["id"]: i["number"] for i in items if i["number"]} == _numbers(html)
    assert [i["id"] for i in items if i["plot"]] == read_document(html).plots
    assert data["counts"] == {
        k: len([i for i in items if i["status"] == k]) for k in data["counts"]
    }
    api = gradwise.report(audited_run, template="annex-iv", out=tmp_path / "api.html")
    assert api.path is not None and api.path.read_text(encoding="utf-8") == html


def test_cli_bad_input_exits_2(audited_run, tmp_path):
    context = tmp_path / "context.yaml"
    context.write_text("nonsense: 1\n")
    run = str(audited_run)
    unknown = runner.invoke(
        app, ["report", run, "--template", "model-card", "--context", str(context)]
    )
    assert unknown.exit_code == 2 and "valid ids" in unknown.output
    page = runner.invoke(app, ["report", run, "--context", str(context)])
    assert page.exit_code == 2 and "--template" in page.output
    wrong = runner.invoke(app, ["report", run, "--template", "iso-42001"])
    assert wrong.exit_code == 2


def test_pdf_prints_through_chromium_or_names_how_to_install_it(run_copy):
    args = ["report", str(run_copy), "--template", "model-card", "--pdf"]
    done = runner.invoke(app, args)
    if not any(shutil.which(name) for name in CHROMIUMS):
        assert done.exit_code == 2 and "apt-get install chromium" in done.output
        pytest.skip("chromium is not installed here: checked only the message naming the fix")
    if done.exit_code == 2 and "Chromium could not print" in done.output:
        pytest.skip(f"chromium could not start here: {done.output[-300:]}")  # as test_chromium
    assert done.exit_code == 0, done.output
    assert (Path(run_copy) / "model-card.pdf").read_bytes()[:5] == b"%PDF-"
