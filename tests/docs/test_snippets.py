"""The docs cannot rot: every code block that shows a command or a Python call either runs here
or says it is illustrative.

Markers, on the line before a fenced block:
- `<!-- run -->`: the block runs, on the page's own temporary folder (with a copy of
  examples/*.yaml), in page order; bash blocks with `gradwise` on the PATH, python blocks in
  one namespace per page.
- `<!-- illustrative -->`: shown, not run (needs data or a server the tests do not have, or
  takes minutes).
A block of captured output carries the info string `console` (a `$ command` and what it
printed) or `text`; `yaml` and `json` blocks are data.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
RUNS = {"bash", "python"}
DATA = {"console", "text", "yaml", "json", "csv"}
_FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
_MARKER = re.compile(r"^\s*<!--\s*(run|illustrative)\b.*-->\s*$")


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    marker: str  # "run", "illustrative" or ""
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, lang = match.groups()
        end = i + 1
        while end < len(lines) and lines[end].strip() != "```":
            end += 1
        previous = lines[i - 1] if i else ""
        marker = _MARKER.match(previous)
        code = "\n".join(line.removeprefix(indent) for line in lines[i + 1 : end])
        found.append(Block(page, i + 1, lang, marker.group(1) if marker else "", code))
        i = end + 1
    return found


def pages() -> list[Path]:
    return [ROOT / "README.md"] + sorted(
        p for p in DOCS.rglob("*.md") if "hooks" not in p.relative_to(DOCS).parts
    )


ALL = [b for page in pages() for b in blocks(page)]


def test_the_docs_have_code_blocks_to_check() -> None:
    assert len(ALL) > 50
    assert any(b.marker == "run" for b in ALL)


@pytest.mark.parametrize("block", [b for b in ALL if b.lang in RUNS], ids=lambda b: b.where)
def test_each_command_or_python_block_runs_or_says_it_is_illustrative(block: Block) -> None:
    assert block.marker, (
        f"{block.where}: a ```{block.lang} block needs <!-- run --> (the test runs it) or "
        "<!-- illustrative --> on the line before it"
    )


def _readme_setup(block: Block) -> bool:
    """The README opens with the two set-up commands in a bare block, as it always has."""
    return block.page.name == "README.md" and block.line == 3


@pytest.mark.parametrize(
    "block",
    [b for b in ALL if b.lang not in RUNS and not _readme_setup(b)],
    ids=lambda b: b.where,
)
def test_other_blocks_are_output_or_data(block: Block) -> None:
    assert block.lang in DATA, (
        f"{block.where}: give the block an info string: console (a $ command and its "
        f"output), text (other output), yaml or json; or bash / python with a marker"
    )
    if block.lang != "console":
        assert not any(line.startswith("$ ") for line in block.code.splitlines()), (
            f"{block.where}: a block that shows `$ command` is ```console"
        )
    assert block.marker != "run", f"{block.where}: only bash and python blocks run"


def test_the_getting_started_page_runs_its_commands_and_python() -> None:
    page = [b for b in ALL if b.page == DOCS / "getting-started.md"]
    ran = [b for b in page if b.marker == "run"]
    assert {b.lang for b in ran} == {"bash", "python"}
    assert all(b.marker for b in page if b.lang in RUNS)


def test_the_readme_opens_with_the_set_up_commands_of_getting_started() -> None:
    first = blocks(ROOT / "README.md")[0]
    assert _readme_setup(first)
    assert first.code.splitlines()[0].startswith("make demo")
    assert first.code.splitlines()[1].startswith("make test")
    setup = blocks(DOCS / "getting-started.md")[0]
    assert (setup.marker, setup.code) == ("illustrative", first.code)


def test_the_readme_examples_are_ones_the_getting_started_page_runs() -> None:
    ran = "\n".join(b.code for b in ALL if b.page.name == "getting-started.md" and b.marker)
    readme = [b for b in ALL if b.page.name == "README.md" and b.lang in RUNS]
    assert len(readme) >= 2
    for block in readme:
        for line in block.code.splitlines():
            code = line.split("#")[0].strip()
            assert not code or code in ran, (
                f"{block.where}: {code!r} is not in docs/getting-started.md, whose blocks run"
            )


def _pages_that_run() -> list[Path]:
    return sorted({b.page for b in ALL if b.marker == "run"})


@pytest.mark.parametrize("page", _pages_that_run(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_blocks_marked_run_run(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "examples").mkdir()
    for config in (ROOT / "examples").glob("*.yaml"):
        shutil.copy(config, tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for block in (b for b in blocks(page) if b.marker == "run"):
        if block.lang == "bash":
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block.code],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
            )
            assert done.returncode == 0, f"{block.where} failed:\n{done.stdout}\n{done.stderr}"
        else:
            exec(compile(block.code, block.where, "exec"), namespace)  # noqa: S102
