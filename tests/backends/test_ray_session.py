"""Joining a Ray cluster: an address nothing listens at fails at once, with the fix."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

# no cluster is started (a fresh process probes a dead address), so this runs in make test
pytest.importorskip("ray", reason="the Ray extra is not installed (gradwise[ray])")

# in a fresh process: this session's other tests keep a local cluster up, which ray_session
# would use instead of the address
PROBE = """
import sys
from gradwise.backends.ray_session import ray_session
from gradwise.errors import GradwiseError
try:
    with ray_session(sys.argv[1]):
        pass
except GradwiseError as exc:
    print(exc)
"""


def test_an_address_nothing_listens_at_is_refused_with_the_fix() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"127.0.0.1:{port}"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, address], capture_output=True, text=True, timeout=120
    )
    assert f"--address {address}: cannot connect" in done.stdout, done.stderr
    assert "ray start --head" in done.stdout
