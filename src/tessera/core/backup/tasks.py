"""Background jobs: the daily backup with retention, tenant exports and due tenant deletions."""

from __future__ import annotations

import uuid
from typing import Any

from tessera.core.backup import service
from tessera.settings import get_settings


async def daily_backup(payload: dict[str, Any], job: Any) -> None:
    import asyncio

    settings = get_settings()
    await asyncio.to_thread(service.create_backup, settings)
    await asyncio.to_thread(service.prune_backups, settings)


async def tenant_export(payload: dict[str, Any], job: Any) -> None:
    await service.run_export(job.session, get_settings(), uuid.UUID(payload["export_id"]))


async def tenant_deletion_sweep(payload: dict[str, Any], job: Any) -> None:
    await service.run_due_deletions(job.session, get_settings())


try:
    from tessera.core.jobs.registry import handler, periodic
except ModuleNotFoundError:  # the job queue is not installed: the API runs exports inline
    JOBS = False
else:
    JOBS = True
    handler("backup.daily", queue="maintenance", max_attempts=3)(daily_backup)
    handler("tenant.export", queue="default", max_attempts=3)(tenant_export)
    handler("tenant.deletion_sweep", queue="maintenance", max_attempts=3)(tenant_deletion_sweep)
    periodic("backup.daily", "0 3 * * *", queue="maintenance")
    periodic("tenant.deletion_sweep", "30 3 * * *", queue="maintenance")
