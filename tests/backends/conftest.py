"""One local Ray cluster for the Ray backend's tests: 2 CPUs, no dashboard, token
authentication off (a throwaway cluster on this machine), shut down after the last test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    ray = pytest.importorskip("ray", reason="the Ray extra is not installed (gradwise[ray])")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
