"""Prometheus metrics of one server process (GET /metrics).

Each app has its own registry, so several apps in one process (tests) do not collide. With
`--workers N` every worker process keeps its own numbers; a scrape reaches one of them, so
scrape each replica on its own port (or sum over replicas) for totals.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServerMetrics:
    """Requests, errors, latency, batch sizes, queue depth and the store's backlog."""

    def __init__(self, routes: set[str]) -> None:
        self.registry = CollectorRegistry()
        self.routes = routes
        self.requests = Counter(
            "gradwise_requests",
            "HTTP requests answered, by route and status code",
            ["route", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "gradwise_request_errors",
            "requests answered with a 4xx or 5xx status, by route and status code",
            ["route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "gradwise_request_latency_seconds",
            "time from the request's arrival to the end of its answer",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "gradwise_batch_size",
            "rows per forward pass of the dynamic batcher",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Counter(
            "gradwise_predictions", "instances predicted", registry=self.registry
        )
        self.input_warnings = Counter(
            "gradwise_input_warnings",
            "instances answered with a warning, by kind: unseen_category (a category training "
            "never saw, read as <other>), number_for_category, ignored_columns",
            ["kind"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "gradwise_queue_depth", "rows waiting for a batch", registry=self.registry
        )
        self.store_pending = Gauge(
            "gradwise_store_pending",
            "prediction records not yet written to the store",
            registry=self.registry,
        )

    def count_warnings(self, warnings: Sequence[Any]) -> None:
        """Count an instance's warnings (objects with a `kind`) in gradwise_input_warnings."""
        for warning in warnings:
            self.input_warnings.labels(warning.kind).inc()

    def track(self, queue_depth: Callable[[], float], store_pending: Callable[[], float]) -> None:
        self.queue_depth.set_function(queue_depth)
        self.store_pending.set_function(store_pending)

    def observe(self, path: str, status: int, started: float) -> None:
        route = path if path in self.routes else "other"
        code = str(status)
        self.requests.labels(route, code).inc()
        if status >= 400:
            self.errors.labels(route, code).inc()
        self.latency.labels(route).observe(time.perf_counter() - started)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


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
