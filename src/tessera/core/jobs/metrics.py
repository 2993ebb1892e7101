"""Prometheus metrics of the job queue (registered in :data:`tessera.core.metrics.REGISTRY`)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from tessera.core import metrics

QUEUE_DEPTH = Gauge(
    "tessera_job_queue_depth",
    "Jobs by queue and status.",
    ["queue", "status"],
    registry=metrics.REGISTRY,
)
OLDEST_AGE = Gauge(
    "tessera_job_oldest_due_age_seconds",
    "Age of the oldest due job per queue.",
    ["queue"],
    registry=metrics.REGISTRY,
)
JOB_RUNTIME = Histogram(
    "tessera_job_run_seconds",
    "Job run time by queue, handler and outcome.",
    ["queue", "name", "outcome"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=metrics.REGISTRY,
)
JOB_WAIT = Histogram(
    "tessera_job_start_delay_seconds",
    "Delay between a job's run_at and its start, by queue.",
    ["queue"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 120, 600),
    registry=metrics.REGISTRY,
)
JOB_FAILURES = Counter(
    "tessera_job_failures_total",
    "Failed job attempts by queue, handler and outcome.",
    ["queue", "name", "outcome"],
    registry=metrics.REGISTRY,
)


async def collect_queue_gauges() -> None:
    from tessera.core.db.session import unit_of_work
    from tessera.core.jobs import service

    async with unit_of_work(platform=True) as s:
        stats = await service.queue_stats(s)
    QUEUE_DEPTH.clear()
    OLDEST_AGE.clear()
    for st in stats:
        QUEUE_DEPTH.labels(st.queue, "queued").set(st.queued)
        QUEUE_DEPTH.labels(st.queue, "due").set(st.due)
        QUEUE_DEPTH.labels(st.queue, "running").set(st.running)
        QUEUE_DEPTH.labels(st.queue, "dead").set(st.dead)
        OLDEST_AGE.labels(st.queue).set(st.oldest_due_age_s)


if collect_queue_gauges not in metrics.collectors:
    metrics.collectors.append(collect_queue_gauges)
