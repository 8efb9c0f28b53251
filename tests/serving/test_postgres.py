"""Two server replicas writing one real PostgreSQL store, and the monitor reading it."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import httpx
import pytest
from sklearn.datasets import load_digits
from typer.testing import CliRunner

from gradwise.cli import app
from gradwise.run import Run
from tests.serving import pg
from tests.serving.conftest import copy_run

IMAGES = load_digits().images


@pytest.fixture(scope="module")
def postgres():
    if pg.binaries() is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl) not found; install Debian's postgresql "
            "package (.ci/run does) to run the real two-replica test"
        )
    with pg.cluster() as url:
        yield url


async def _send(url: str, n: int) -> list[str]:
    async with httpx.AsyncClient(timeout=30) as http:
        ids = []
        for i in range(n):
            body = {
                "instances": [{"pixels": IMAGES[i].tolist()}, {"pixels": IMAGES[i + 1].tolist()}]
            }
            r = await http.post(f"{url}/v1/predict", json=body)
            assert r.status_code == 200, r.text
            ids.append(r.json()["request_id"])
        fed = await http.post(f"{url}/v1/feedback", json={"request_id": ids[0], "labels": [0, 1]})
        assert fed.status_code == 202
        return ids


def test_two_replicas_write_one_postgres_store_and_the_monitor_sees_both(
    digits_run: Run, postgres: str, server_factory, tmp_path: Path
):
    run = copy_run(digits_run, tmp_path / "run")
    replicas = [server_factory(run.path, "--store", postgres) for _ in range(2)]
    for server in replicas:
        server.wait_ready()

    async def both() -> list[list[str]]:
        return await asyncio.gather(*(_send(s.url, 30) for s in replicas))

    sent = asyncio.run(both())
    for server in replicas:  # a graceful stop writes everything queued
        server.proc.send_signal(signal.SIGTERM)
        server.proc.wait(60)
    result = CliRunner().invoke(
        app, ["monitor", str(run.path), "--store", postgres, "--window", "40"]
    )
    assert result.exit_code in (0, 3), result.output  # 3 if the tiny model's windows alert
    assert "120 instances served by 2 replica(s)" in result.output
    report = json.loads((run.path / "monitor" / "report.json").read_text())
    assert sorted(report["replicas"].values()) == [60, 60]
    assert len({rid for ids in sent for rid in ids}) == 60
    windows = json.loads((run.path / "monitor" / "windows.json").read_text())
    labelled = sum(w["n_labelled"] for w in windows)
    assert labelled == 4  # two requests' feedback, two instances each, joined by request id
