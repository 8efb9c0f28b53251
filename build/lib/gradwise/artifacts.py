"""Atomic writes for everything a run directory holds: JSON, text, PNG, tensors.

Each file is written to a temporary file beside its destination, flushed to disk (fsync),
given the permissions the user's umask allows (as a plain `open` would), and renamed into
place; the folder is synced too, so after a crash a file is either the old one or the new
one, never a truncated mix. Audits write to RUN/audit/, optimised variants to
RUN/artifacts/, the monitor to RUN/monitor/.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "write_json",
    "write_png",
    "new_figure",
    "read_json",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path to write `path` through; on success it is synced and renamed into
    place, on failure removed.

    Args:
        path: the destination; its folder is created if missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a plain open respects the umask
        os.replace(tmp, path)
        _sync_folder(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, value: Any) -> None:
    """`value` as indented JSON; numpy scalars and arrays become plain numbers and lists."""
    atomic_write_text(path, json.dumps(value, indent=2, default=_plain) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def new_figure(width: float = 6.0, height: float = 4.0) -> Figure:
    """A matplotlib Figure that needs no pyplot and no backend: drawing it leaves the
    caller's matplotlib set-up (backend, open figures) untouched."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def write_png(path: Path, figure: Figure, dpi: int = 110) -> None:
    """A matplotlib figure (see `new_figure`) as PNG."""
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=dpi)
    atomic_write_bytes(path, buf.getvalue())


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
