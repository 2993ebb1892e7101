"""Kernel job handlers: housekeeping of the queue itself."""

from __future__ import annotations

import datetime as dt
from typing import Any

from tessera.core import lifecycle
from tessera.core.jobs import service, worker
from tessera.core.jobs.registry import JobContext, handler, periodic


@handler("jobs.purge_finished", queue="maintenance", max_attempts=3)
async def purge_finished(payload: dict[str, Any], job: JobContext) -> None:
    """Delete done and cancelled jobs older than ``days`` (default 7); dead jobs are kept."""
    days = int(payload.get("days", 7))
    await service.purge_finished(job.session, older_than=dt.timedelta(days=days))


periodic("jobs.purge_finished", "17 3 * * *", queue="maintenance")


# Embedded mode: the ``tessera`` process runs a worker itself (no-op unless
# settings.embedded_workers is true).
lifecycle.startup(worker.start_embedded)
lifecycle.shutdown(worker.stop_embedded)
