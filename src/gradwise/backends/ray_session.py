"""Connecting to Ray: an existing cluster by address, or a local one started (and stopped)
for the length of one verb."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from types import ModuleType

from gradwise.errors import GradwiseError

LOCAL_CPUS = 2  # a local cluster's size when none is given: small, so it shares the machine
INSTALL = "pip install 'gradwise[ray]'"


def import_ray() -> ModuleType:
    """The `ray` module.

    Raises:
        GradwiseError: Ray is not installed (it is an optional extra).
    """
    try:
        import ray
    except ImportError:
        raise GradwiseError(
            f"--backend ray needs Ray, which is not installed; install it with {INSTALL}, "
            "or drop --backend ray to run on this machine."
        ) from None
    return ray


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[ModuleType]:
    """Ray, connected for the body of the `with`.

    Order: a Ray already initialised in this process is used as it is (a notebook or a test
    that set it up); else `address` (or the RAY_ADDRESS environment variable) names the
    cluster to join (`auto` joins the one `ray start --head` began on this machine); else a
    local cluster of `num_cpus` CPUs (LOCAL_CPUS) is started, without the dashboard, and
    shut down at the end. Only what this function started is torn down.

    Raises:
        GradwiseError: Ray is missing, or the cluster at `address` cannot be reached.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    try:
        if address is not None:
            _check_reachable(address)
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus or LOCAL_CPUS, include_dashboard=False, log_to_driver=False)
    except (OSError, ValueError, RuntimeError) as exc:  # ConnectionError is an OSError
        raise GradwiseError(
            f"--address {address}: cannot connect to a Ray cluster ({str(exc).splitlines()[0]}). "
            "Start one with `ray start --head` and pass the address it prints (or `auto` on "
            "its head machine), or leave --address out to start a local one."
        ) from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _check_reachable(address: str) -> None:
    """Fail in seconds on a HOST:PORT nothing listens at (Ray's own connection retries take
    minutes); `auto` and ray:// addresses are left to Ray.

    Raises:
        OSError: nothing answers at the address within 5 seconds.
    """
    host, sep, port = address.rpartition(":")
    if address == "auto" or "://" in address or not sep or not port.isdigit():
        return
    socket.create_connection((host, int(port)), timeout=5).close()
