"""Prometheus metrics of the kernel; other kernel modules add theirs to the same registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "tessera_http_requests_total",
    "HTTP requests by method, route template and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "tessera_http_request_duration_seconds",
    "HTTP request latency by method and route template.",
    ["method", "route", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)

# Callables run before each scrape to refresh gauges (job queue depth, …).
collectors: list = []  # type: ignore[type-arg]


async def render() -> bytes:
    for collect in collectors:
        await collect()
    return generate_latest(REGISTRY)
