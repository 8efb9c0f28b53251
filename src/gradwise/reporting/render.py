"""The page: the sections in order, rendered through the Jinja2 template shipped with the
package (found through importlib.resources, so an installed wheel finds it too)."""

from __future__ import annotations

import datetime as dt
from importlib import resources
from typing import TYPE_CHECKING

from gradwise.reporting.blocks import Section
from gradwise.reporting.evidence import Evidence
from gradwise.reporting.sections import (
    data_section,
    explain_section,
    metrics_section,
    training_section,
)
from gradwise.reporting.sections_audit import audit_sections, check_section
from gradwise.reporting.sections_ops import cost_section, monitor_section, tune_section
from gradwise.reporting.ship import ShipDecision
from gradwise.reporting.summary import card

if TYPE_CHECKING:
    import jinja2

TEMPLATE = "report.html.j2"
TEMPLATE_FILES = ("report.html.j2", "style.css.j2", "blocks.html.j2")
NAV = {
    "data": "Data",
    "training": "Training",
    "metrics": "Metrics",
    "audit-baseline": "Baseline",
    "audit": "Audit",
    "explain": "Explanations",
    "cost": "Cost",
    "tune": "Tuning",
    "monitor": "Monitoring",
}


def sections(ev: Evidence, notes: list[str]) -> list[Section]:
    """Every section in page order; the audit's checks are subsections of one section."""
    checks = audit_sections(ev, notes)
    audit = Section("audit", "Audit: the evidence, check by check", subsections=checks)
    return [
        data_section(ev),
        training_section(ev),
        metrics_section(ev),
        check_section(ev, "baseline", notes),
        audit,
        explain_section(ev),
        cost_section(ev),
        tune_section(ev),
        monitor_section(ev),
    ]


def render_page(ev: Evidence) -> tuple[str, list[Section], ShipDecision, list[str]]:
    """The HTML page, its top-level sections and checks, the decision, and any notes."""
    from gradwise.version import __version__

    notes: list[str] = []
    page = sections(ev, notes)
    summary = card(ev)
    html = (
        environment()
        .get_template(TEMPLATE)
        .render(
            run=str(ev.path),
            card=summary,
            sections=page,
            nav=[(s.id, NAV.get(s.id, s.title)) for s in page],
            notes=notes,
            version=__version__,
            written=dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        )
    )
    listed = [s for top in page for s in (top, *top.subsections) if s.id != "audit"]
    return html, listed, summary.decision, notes


def environment() -> jinja2.Environment:
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FunctionLoader(_template_source),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )


def _template_source(name: str) -> str:
    return resources.files("gradwise.reporting").joinpath("templates", name).read_text("utf-8")
