"""Where the shared real data sets are: `GRADWISE_SHARED_DATA`, else `../shared/data` beside
the checkout. A user's clone has neither: tests that need them skip, saying why."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = "GRADWISE_SHARED_DATA"


def shared_data_dir() -> Path | None:
    """The folder of the shared data sets, or None where this checkout has none."""
    given = os.environ.get(ENV)
    folder = Path(given) if given else ROOT.parent / "shared" / "data"
    return folder if folder.is_dir() else None


def need_shared(*parts: str) -> Path:
    """The path `parts` inside the shared data folder; skips the test when it is absent."""
    folder = shared_data_dir()
    if folder is None:
        given = os.environ.get(ENV)
        where = (
            f"{ENV}={given} is not a folder"
            if given
            else f"no {ENV}, no ../shared/data beside the checkout"
        )
        pytest.skip(
            f"the shared data sets are not here ({where}): this test reads "
            f"{'/'.join(parts) or 'a real data set'}"
        )
    path = folder.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not in the shared data folder")
    return path
