"""Prometheus metrics of the server (GET /metrics).

One process (`--workers 1`, an app in tests): each app has its own registry, so several apps
in one process do not collide.

Several worker processes (`--workers N`): a scrape reaches whichever worker accepts it, so
numbers kept per process would show a random worker's share of the traffic. The runner names
a fresh folder in $PROMETHEUS_MULTIPROC_DIR for each server start, before the workers start
(prometheus_client reads it when first imported); every worker then writes its values to
files there, and /metrics adds up all the files (`MultiProcessCollector`), so any scrape shows
the totals of every worker. Counters and histograms keep what exited workers counted; the
gauges (queue depth, store backlog) are the sum over live workers: a worker that stops marks
itself dead, and one that was killed is dropped at the next scrape.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own name for the folder
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
REFRESH_S = 1.0  # with several workers, how stale a worker's gauges may be at a scrape


class ServerMetrics:
    """Requests, errors, latency, batch sizes, decisions, queue depth and the store's backlog.

    Args:
        routes: the routes counted by name (others are counted as "other").
        multiprocess_dir: the folder every worker writes its values to (the process's
            $PROMETHEUS_MULTIPROC_DIR, set before prometheus_client was imported); None:
            this process's numbers alone.
    """

    def __init__(self, routes: set[str], multiprocess_dir: str | None = None) -> None:
        own = CollectorRegistry()  # in multiprocess mode the values go to files instead
        self.routes = routes
        self.multiprocess_dir = multiprocess_dir
        self.registry = own if multiprocess_dir is None else _files_registry(multiprocess_dir)
        self.requests = Counter(
            "gradwise_requests",
            "HTTP requests answered, by route and status code",
            ["route", "status"],
            registry=own,
        )
        self.errors = Counter(
            "gradwise_request_errors",
            "requests answered with a 4xx or 5xx status, by route and status code",
            ["route", "status"],
            registry=own,
        )
        self.latency = Histogram(
            "gradwise_request_latency_seconds",
            "time from the request's arrival to the end of its answer",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=own,
        )
        self.batch_size = Histogram(
            "gradwise_batch_size",
            "rows per forward pass of the dynamic batcher",
            buckets=BATCH_BUCKETS,
            registry=own,
        )
        self.predictions = Counter("gradwise_predictions", "instances predicted", registry=own)
        self.input_warnings = Counter(
            "gradwise_input_warnings",
            "instances answered with a warning, by kind: unseen_category (a category training "
            "never saw, read as <other>), number_for_category, ignored_columns",
            ["kind"],
            registry=own,
        )
        self.decisions = Counter(
            "gradwise_decisions",
            "instances answered or handed to a person (abstain) under the run's certified "
            "abstention threshold (serve --abstain), by model version and decision",
            ["model_version", "decision"],
            registry=own,
        )
        self.queue_depth = Gauge(
            "gradwise_queue_depth",
            "rows waiting for a batch",
            registry=own,
            multiprocess_mode="livesum",
        )
        self.store_pending = Gauge(
            "gradwise_store_pending",
            "prediction records not yet written to the store",
            registry=own,
            multiprocess_mode="livesum",
        )
        self._gauges: list[tuple[Gauge, Callable[[], float]]] = []

    def count_warnings(self, warnings: Sequence[Any]) -> None:
        """Count an instance's warnings (objects with a `kind`) in gradwise_input_warnings."""
        for warning in warnings:
            self.input_warnings.labels(warning.kind).inc()

    def count_decisions(self, model_version: str, answered: int, abstained: int) -> None:
        """Count instances answered and abstained in gradwise_decisions."""
        self.decisions.labels(model_version, "answer").inc(answered)
        self.decisions.labels(model_version, "abstain").inc(abstained)

    def track(self, queue_depth: Callable[[], float], store_pending: Callable[[], float]) -> None:
        """Read the gauges from these functions at every scrape (and, with several workers,
        every `REFRESH_S` in `refresh_forever`, so a worker not scraped is not stale)."""
        self._gauges = [(self.queue_depth, queue_depth), (self.store_pending, store_pending)]

    def refresh(self) -> None:
        """Set the tracked gauges to their functions' values now."""
        for gauge, read in self._gauges:
            gauge.set(read())

    async def refresh_forever(self) -> None:
        """Refresh the gauges every `REFRESH_S` until cancelled (a task of a worker)."""
        while True:
            self.refresh()
            await asyncio.sleep(REFRESH_S)

    def observe(self, path: str, status: int, started: float) -> None:
        route = path if path in self.routes else "other"
        code = str(status)
        self.requests.labels(route, code).inc()
        if status >= 400:
            self.errors.labels(route, code).inc()
        self.latency.labels(route).observe(time.perf_counter() - started)

    def exposition(self) -> tuple[bytes, str]:
        """The Prometheus text of every metric (of every worker, with several)."""
        self.refresh()
        if self.multiprocess_dir is not None:
            forget_dead_workers(self.multiprocess_dir)
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """This process stops serving: its gauges leave the workers' sums (counters and
        histograms keep what it counted)."""
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)


def _files_registry(folder: str) -> CollectorRegistry:
    """A registry that reads every worker's values from `folder` at each scrape."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=folder)
    return registry


def forget_dead_workers(folder: str) -> None:
    """Drop from the live-gauge sums every process that left files in `folder` and no longer
    runs (a worker killed without the chance to mark itself dead)."""
    for file in Path(folder).glob("gauge_live*_*.db"):
        pid = int(file.stem.rsplit("_", 1)[1])
        if not _is_running(pid):
            multiprocess.mark_process_dead(pid, folder)


def _is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: nothing is sent; only whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        pass
    return True


class MetricsMiddleware:
    """Pure ASGI middleware: counts and times every HTTP request."""

    def __init__(self, app: Any, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.metrics.observe(scope["path"], status, started)
