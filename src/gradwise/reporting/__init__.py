"""The report: one self-contained HTML page telling a run's whole story, for the people who
decide whether the model ships.

    gradwise report RUN [--tune DIR] [--compare DIR] [--out FILE]
    gradwise.report(run, tune=None, out=None) -> Report   (settings: ReportSettings, `report:`)

It reads only the JSON and YAML the other capabilities wrote (see `evidence.py`), draws every
plot with matplotlib from those numbers and embeds it as a base64 PNG, and renders the Jinja2
template shipped in `reporting/templates/` (CSS inline; nothing is fetched to open it). The
decision at the top follows `ship.ship_rule`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from gradwise.config import ReportSettings
from gradwise.reporting.ship import Decision, Reason, ShipDecision, ship_rule

__all__ = ["Decision", "Reason", "Report", "ShipDecision", "ship_rule", "write_report"]

REPORT_FILE = "report.html"


@dataclass(frozen=True)
class Report:
    """What `report` wrote.

    Attributes:
        path: the HTML file.
        decision: ship / ship with care / do not ship, with the reasons.
        sections: (id, title, has data) per section, in page order.
        notes: what could not be drawn (a JSON this version does not read), if anything.
    """

    path: Path
    decision: ShipDecision
    sections: tuple[tuple[str, str, bool], ...]
    notes: tuple[str, ...] = ()

    @property
    def missing(self) -> tuple[str, ...]:
        """Ids of the sections without data yet."""
        return tuple(s for s, _, present in self.sections if not present)


def write_report(
    run_dir: str | Path,
    settings: ReportSettings = ReportSettings(),
    out: str | Path | None = None,
) -> Report:
    """Read the run's files and write its report (default RUN/report.html); the settings
    used are kept in a comment at the end of the page (the layer below `gradwise.report`).

    Raises:
        NotTrainedError: `run_dir` holds no finished run.
        ConfigError: `tune` / `compare` is not a study's folder.
        DataError: a file the report reads is damaged.
    """
    from gradwise.artifacts import atomic_write_text
    from gradwise.reporting.evidence import read_evidence
    from gradwise.reporting.render import render_page

    evidence = read_evidence(run_dir, settings.tune, settings.compare)
    html, sections, decision, notes = render_page(evidence)
    used = json.dumps(settings.model_dump(mode="json")).replace("--", "- -")
    html = f"{html.rstrip()}\n<!-- gradwise report settings: {used} -->\n"
    path = Path(out) if out is not None else Path(run_dir) / REPORT_FILE
    atomic_write_text(path, html)
    flat = tuple((s.id, s.title, s.missing is None) for s in sections)
    return Report(path, decision, flat, tuple(notes))
