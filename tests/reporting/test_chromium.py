"""The report as a person sees it: headless Chromium opens the page from disk (no network),
every section renders with a height, no image is broken, and a screenshot shows the page."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile

import pytest
from PIL import Image

from gradwise.reporting import write_report
from tests.reporting.conftest import add_monitor
from tests.reporting.page import read_page

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,4000",
]
DECISION_RGB = {
    "ship": (0x1E, 0x7E, 0x34),
    "ship with care": (0xA8, 0x6B, 0x00),
    "do not ship": (0xB3, 0x26, 0x1E),
}


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does it)")
    return found


def browse(binary: str, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """One headless Chromium call in a fresh profile; skipped when it cannot start."""
    with tempfile.TemporaryDirectory() as profile:
        try:
            done = subprocess.run(
                [binary, *FLAGS, f"--user-data-dir={profile}", *extra, url],
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"chromium could not run here: {exc}")
    if done.returncode != 0:
        pytest.skip(f"chromium could not start (exit {done.returncode}): {done.stderr[-400:]}")
    return done


def test_the_page_renders_in_chromium_with_every_section_and_no_broken_image(run_copy, tmp_path):
    binary = chromium()
    add_monitor(run_copy)
    report = write_report(run_copy)
    url = report.path.resolve().as_uri()
    dom = browse(binary, url, "--dump-dom", "--virtual-time-budget=10000").stdout
    n_images = len(read_page(report.path).images)
    assert n_images >= 8
    assert f'data-images="{n_images} loaded, 0 broken"' in dom
    assert 'data-broken="1"' not in dom
    heights = dict(re.findall(r'data-section="([^"]+)"[^>]*data-height="(\d+)"', dom))
    expected = ["summary"] + [s for s, _, _ in report.sections]
    assert set(heights) == set(expected) | {"audit"}
    assert all(int(h) > 20 for h in heights.values()), heights

    shot = tmp_path / "page.png"
    browse(binary, url, f"--screenshot={shot}")
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 4000)
    colours = {rgb for _, rgb in image.getcolors(maxcolors=1 << 20) or []}
    assert DECISION_RGB[report.decision.decision] in colours  # the summary card's banner
    assert len(colours) > 100  # text and plots, not a blank page
