"""Each regulated document as a person sees it: headless Chromium opens it from disk (no
network), every section renders with a height, no plot is broken, every item that needs a
person is listed in the summary, and the numbers read back from the rendered page equal the
files they name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from gradwise.reporting.document_templates import TEMPLATES
from gradwise.reporting.documents import Document, write_document
from tests.reporting.conftest import add_monitor
from tests.reporting.document_page import assert_quote_matches_file, read_document
from tests.reporting.test_chromium import browse, chromium

NAMES = sorted(TEMPLATES)
GIVEN = ("intended_purpose", "users", "limitations")  # answered; the rest still need a person


@pytest.fixture(scope="module")
def documents(audited_run: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Document]:
    """The three documents of the audited run with monitoring added, from a context file
    that answers three items."""
    tmp = tmp_path_factory.mktemp("documents")
    run = Path(shutil.copytree(audited_run, tmp / "run"))
    add_monitor(run)
    context = tmp / "context.yaml"
    context.write_text(yaml.safe_dump({i: f"The answer to {i}." for i in GIVEN}))
    return {name: write_document(run, name, context) for name in NAMES}


@pytest.mark.parametrize("template", NAMES)
def test_the_document_renders_in_chromium_whole_and_its_numbers_equal_the_files(
    documents, template
):
    binary = chromium()
    doc = documents[template]
    assert doc.path is not None
    dom = browse(binary, doc.path.resolve().as_uri(), "--dump-dom", "--virtual-time-budget=10000")
    page = read_document(dom.stdout)

    n_plots = sum(e.plot is not None for e in doc.entries)
    assert n_plots >= 6  # training, the audited checks, explanations, the monitor's timeline
    assert page.body.get("data-images") == f"{n_plots} loaded, 0 broken"
    sections = TEMPLATES[template].sections
    assert list(page.heights) == ["coverage"] + [str(i + 1) for i in range(len(sections))]
    assert all(h > 20 for h in page.heights.values()), page.heights
    refs = [p.ref for _, points in sections for p in points if p.ref]
    assert page.points == refs

    assert page.items == {e.id: e.status for e in doc.entries}
    assert page.needs == [i for i, s in page.items.items() if s == "person"] and page.needs
    assert all(page.items[i] == "context" for i in GIVEN if i in page.items)
    run = Path(doc.run)
    evidence = [i for i, s in page.items.items() if s == "evidence"]
    assert sorted(page.numbers) == sorted(evidence) and len(evidence) >= 12
    for item in evidence:
        assert_quote_matches_file(run, page.sources[item], page.numbers[item])
    for item, status in page.items.items():
        if status == "context":
            assert page.sources[item] == doc.context and Path(page.sources[item]).is_file()
