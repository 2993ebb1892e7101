"""Prometheus metrics of webhook deliveries."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from tessera.core import metrics

WEBHOOK_DELIVERIES = Counter(
    "tessera_webhook_delivery_attempts_total",
    "Webhook delivery attempts by outcome (succeeded, retry, gave_up, endpoint_disabled).",
    ["outcome"],
    registry=metrics.REGISTRY,
)
WEBHOOK_LATENCY = Histogram(
    "tessera_webhook_delivery_seconds",
    "Latency of webhook HTTP attempts.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=metrics.REGISTRY,
)
