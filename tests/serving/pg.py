"""A throwaway PostgreSQL cluster for tests: initdb + pg_ctl in a temporary folder.

initdb refuses to run as root, so as root the cluster belongs to the `postgres` user (or
`nobody`) and every server command runs as that user through setpriv.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gradwise.serving.runner import free_port


def binaries() -> Path | None:
    """The folder holding initdb and pg_ctl (Debian's /usr/lib/postgresql/N/bin), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path and shutil.which("pg_ctl") else None


def _version(path: str) -> float:
    try:
        return float(Path(path).parents[1].name)
    except ValueError:
        return 0.0


def _as_user() -> tuple[list[str], pwd.struct_passwd | None]:
    if os.geteuid() != 0:
        return [], None
    for name in ("postgres", "nobody"):
        try:
            user = pwd.getpwnam(name)
        except KeyError:
            continue
        prefix = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
        return prefix, user
    raise RuntimeError("running as root with neither a postgres nor a nobody user")


@contextmanager
def cluster() -> Iterator[str]:
    """Start a cluster on 127.0.0.1 and a free port; yields its SQLAlchemy URL."""
    bin_dir = binaries()
    assert bin_dir is not None
    prefix, user = _as_user()
    folder = Path(tempfile.mkdtemp(prefix="gradwise-pg-"))
    data = folder / "data"
    port = free_port()
    if user is not None:
        os.chown(folder, user.pw_uid, user.pw_gid)

    def run(*cmd: str) -> None:
        proc = subprocess.run(
            [*prefix, *cmd], capture_output=True, text=True, timeout=120, cwd=folder
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed: {proc.stdout}{proc.stderr}")

    run(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
    run(
        str(bin_dir / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(folder / "log"),
        "-w",
        "start",
    )
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(folder, ignore_errors=True)
