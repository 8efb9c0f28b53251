"""Runs the serving tests share: trained once per session, each in a second or two."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gradwise
from gradwise.run import Run
from tests.conftest import tiny_config


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """An image classifier on 8x8 digits (values 0-16)."""
    out = tmp_path_factory.mktemp("serve") / "digits"
    return gradwise.train(tiny_config(model={"hidden": [64]}, train={"epochs": 6}), out=out)


@pytest.fixture(scope="session")
def certified_run(digits_run: Run, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """`digits_run` with an abstention threshold certified at alpha 0.05 (serve --abstain)."""
    run = copy_run(digits_run, tmp_path_factory.mktemp("serve-certified") / "digits")
    gradwise.audit(run, checks=["calibration", "selective"], selective={"alpha": 0.05})
    return Run.load(run.path)


def churn_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    """A table with named numeric and categorical columns, some values missing."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(18, 80, n)
    income = rng.normal(50, 15, n)
    income[rng.random(n) < 0.1] = np.nan
    city = rng.choice(["Lyon", "Paris", "Nice"], n)
    churn = np.where(age + rng.normal(0, 10, n) > 50, "yes", "no")
    return pd.DataFrame({"age": age, "monthly income": income, "city": city, "churn": churn})


@pytest.fixture(scope="session")
def table_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A classifier on a CSV with named columns, one of them with a space in its name."""
    folder = tmp_path_factory.mktemp("serve-table")
    churn_frame().to_csv(folder / "churn.csv", index=False)
    cfg = tiny_config(data={"source": f"csv:{folder / 'churn.csv'}", "target": "churn"})
    return gradwise.train(cfg, out=folder / "run")


@pytest.fixture(scope="session")
def regression_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    out = tmp_path_factory.mktemp("serve-reg") / "run"
    cfg = tiny_config(data={"source": "builtin:diabetes", "target": "target"})
    return gradwise.train(cfg, out=out)


@pytest.fixture(scope="session")
def lm_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    folder = tmp_path_factory.mktemp("serve-lm")
    (folder / "c.txt").write_text("abcabcabd " * 300)
    cfg = tiny_config(
        data={"source": f"text:{folder / 'c.txt'}", "block_size": 16},
        model={"arch": "gpt", "n_layer": 1, "n_head": 2, "d_model": 32},
        train={"epochs": 3, "optimizer": {"lr": 1e-2}, "batch_size": 16},
    )
    return gradwise.train(cfg, out=folder / "lm")


def copy_run(run: Run, dest: Path) -> Run:
    """A copy of a run's directory (tests that change calibration or write a store)."""
    import shutil

    shutil.copytree(run.path, dest)
    return Run.load(dest)


class Server:
    """A real `gradwise serve` process on 127.0.0.1 and a free port."""

    def __init__(self, run_dir: Path, *args: str, port: int | None = None) -> None:
        import os
        import subprocess
        import sys

        from gradwise.serving.runner import free_port

        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        src = str(Path(gradwise.__file__).resolve().parents[1])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
        cmd = [sys.executable, "-m", "gradwise", "serve", str(run_dir), "--port", str(self.port)]
        self.proc = subprocess.Popen(  # its own group: stop() ends its workers too
            [*cmd, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def wait_ready(self, timeout_s: float = 120.0) -> Server:
        import time

        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.proc.stdout.read()}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become ready")

    def stop(self) -> None:
        import contextlib
        import os
        import signal

        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # the server and any worker left
        self.proc.wait(30)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def server_factory():
    """Start servers; every one still running is killed at the end of the test."""
    started: list[Server] = []

    def start(run_dir: Path, *args: str) -> Server:
        server = Server(run_dir, *args)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
