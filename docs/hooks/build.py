"""mkdocs hooks (mkdocs.yml `hooks:`): the pages generated at build time, and repository links.

- `reference/configuration.md` is generated from the pydantic models (config_reference.py).
- `benchmarks.md` is benchmarks/RESULTS.md as it stands in the repository.
- A link from a page to a repository file outside docs/ (`../examples/digits-mlp.yaml`) works
  on GitHub; the site holds only docs/, so there it becomes the file's path in code. A link to
  a repository file that does not exist fails the build.
"""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

sys.path.insert(0, str(Path(__file__).parent))

import config_reference  # noqa: E402

log = logging.getLogger("mkdocs.hooks.gradwise")

DOCS = Path(__file__).resolve().parents[1]
ROOT = DOCS.parent
_LINK = re.compile(r"(?<!!)\[([^\]]+)\]\(([^)\s#]+)(#[^)\s]*)?\)")


def on_files(files: Files, config: Any) -> Files:
    files.append(
        File.generated(config, "reference/configuration.md", content=config_reference.render())
    )
    results = (ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    files.append(File.generated(config, "benchmarks.md", content=results))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    source = page.file.abs_src_path
    if source is None:  # a generated page
        return markdown
    folder = Path(source).parent

    def outside_docs(match: re.Match[str]) -> str:
        text, target = match.group(1), match.group(2)
        if "://" in target or target.startswith("mailto:"):
            return match.group(0)
        path = (folder / target).resolve()
        if path.is_relative_to(DOCS):
            return match.group(0)
        if not path.exists():
            log.warning("%s links to %s, which does not exist", page.file.src_path, target)
            return match.group(0)
        shown = path.relative_to(ROOT).as_posix()
        return text if text.strip("`") == shown else f"{text} (`{shown}`)"

    return _LINK.sub(outside_docs, markdown)
