"""Prometheus metrics at ``/metrics``.

Request latencies are measured in this process. Everything about the market's state —
learnwares per status, jobs per kind and state, how long finished jobs took, queue depths —
is read from the catalog and the broker when Prometheus scrapes, so every API replica reports
the same figures and no worker process needs an exporter of its own.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from wharf.market.catalog import repo
from wharf.workers.app import QUEUES

from .deps import Services

JOB_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, float("inf"))
JOB_WINDOW = timedelta(hours=1)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class MarketCollector:
    """Scrape-time figures from the catalog and the broker."""

    def __init__(self, services: Services):
        self.services = services

    def collect(self):
        with self.services.catalog.session(read_only=True) as s:
            learnwares = repo.learnware_counts(s)
            jobs = repo.job_counts(s)
            durations = repo.recent_job_durations(s, datetime.now(UTC) - JOB_WINDOW)
        g = GaugeMetricFamily("wharf_learnwares", "Learnwares by status", labels=["status"])
        for status in ("pending", "checking", "accepted", "rejected"):
            g.add_metric([status], learnwares.get(status, 0))
        yield g
        g = GaugeMetricFamily("wharf_jobs", "Jobs by kind and state", labels=["kind", "state"])
        for (kind, state), n in sorted(jobs.items()):
            g.add_metric([kind, state], n)
        yield g
        h = HistogramMetricFamily(
            "wharf_job_duration_seconds",
            "Submission to finish of the jobs finished in the last hour, queueing included",
            labels=["kind"],
        )
        for kind in sorted({k for k, _ in durations}):
            values = [d for k, d in durations if k == kind]
            buckets = [(_le(b), sum(v <= b for v in values)) for b in JOB_BUCKETS]
            h.add_metric([kind], buckets, sum_value=sum(values))
        yield h
        g = GaugeMetricFamily("wharf_queue_depth", "Messages waiting per queue", labels=["queue"])
        for queue, depth in queue_depths(self.services).items():
            g.add_metric([queue], depth)
        yield g


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(float(bound))


def queue_depths(services: Services) -> dict[str, int]:
    """Waiting messages per queue: Redis list lengths, or message files of the embedded broker."""
    settings = services.settings
    if settings.broker.startswith("filesystem"):
        folder = Path(settings.broker_folder) / "queue"
        names = [p.name for p in folder.iterdir()] if folder.is_dir() else []
        return {q: sum(n.endswith(f".{q}.msg") for n in names) for q in QUEUES}
    with services.celery.connection_for_read() as conn:
        client = conn.default_channel.client  # redis.Redis of kombu's Redis transport
        return {q: int(client.llen(q)) for q in QUEUES}


class RequestTimer:
    """Times every HTTP request by method, route template and status."""

    def __init__(self, app: ASGIApp, histogram: Histogram):
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            # Labels come from a closed set, so odd requests cannot blow up the series count.
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            self.histogram.labels(method, path, str(status)).observe(time.perf_counter() - start)


def install(app, services: Services) -> CollectorRegistry:
    """Time requests, serve ``/metrics``; returns the registry, for other metrics of the API."""
    registry = CollectorRegistry()
    registry.register(MarketCollector(services))
    requests = Histogram(
        "wharf_http_request_duration_seconds",
        "API request latency",
        ["method", "route", "status"],
        registry=registry,
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    )
    app.add_middleware(RequestTimer, histogram=requests)
    router = APIRouter(tags=["health"])

    @router.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(router)
    return registry
