"""The webhook delivery job."""

from __future__ import annotations

import uuid
from typing import Any

from tessera.core.jobs.registry import JobContext, handler
from tessera.core.webhooks import service


@handler(service.DELIVER_JOB, queue=service.QUEUE, max_attempts=1000)
async def deliver(payload: dict[str, Any], job: JobContext) -> None:
    """One attempt; retries are rescheduled here (keeping the attempt log), not raised."""
    outcome = await service.attempt_delivery(job.session, uuid.UUID(payload["delivery_id"]))
    if outcome.retry_in is not None:
        job.reschedule(outcome.retry_in, count_attempt=outcome.count_attempt)
