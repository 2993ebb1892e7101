"""Background jobs of the contacts context: imports, exports, scheduled segment refresh.

The job kernel (``tessera.core.jobs``) is resolved at import time when present; without it
imports and exports run after the request's commit in the same process, so the API works in
either case.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core import context
from tessera.core.db.base import utcnow
from tessera.core.db.session import after_commit, unit_of_work

log = logging.getLogger(__name__)

try:  # the job kernel may not be installed yet
    from tessera.core.jobs.registry import handler, periodic  # type: ignore[import-not-found]
    from tessera.core.jobs.service import enqueue  # type: ignore[import-not-found]

    HAVE_JOBS = True
except ModuleNotFoundError:
    HAVE_JOBS = False

_background: set[asyncio.Task[Any]] = set()


def _spawn(coro: Any) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


async def wait_background() -> None:
    """Wait for in-process fallbacks (tests, embedded mode without the job kernel)."""
    while _background:
        await asyncio.gather(*list(_background), return_exceptions=True)


async def _import_now(tenant_id: uuid.UUID, job_id: uuid.UUID) -> None:
    from tessera.contacts.service.imports import run_import

    try:
        await run_import(tenant_id, job_id)
    except Exception as exc:
        log.exception("contact import failed")
        with context.tenant_scope(tenant_id):
            async with unit_of_work() as s:
                from tessera.contacts.service.imports import get_job

                job = await get_job(s, job_id)
                job.status, job.error = "failed", str(exc)[:2000]


async def _export_now(tenant_id: uuid.UUID, job_id: uuid.UUID, principal: Any) -> None:
    from tessera.contacts.service.imports import run_export

    with context.tenant_scope(tenant_id, principal=principal):
        async with unit_of_work() as s:
            await run_export(s, job_id, principal)


async def enqueue_import(session: AsyncSession, job_id: uuid.UUID) -> None:
    tid = context.current_tenant_id()
    if HAVE_JOBS:
        await enqueue(
            session,
            "contacts.import",
            {"import_id": str(job_id)},
            queue="imports",
            idempotency_key=f"contacts.import:{job_id}",
        )
        return
    after_commit(session, lambda: _spawn(_import_now(tid, job_id)))


async def enqueue_export(session: AsyncSession, job_id: uuid.UUID) -> None:
    tid = context.current_tenant_id()
    principal = context.current_principal()
    if HAVE_JOBS:
        await enqueue(
            session,
            "contacts.export",
            {"export_id": str(job_id)},
            queue="imports",
            idempotency_key=f"contacts.export:{job_id}",
        )
        return
    after_commit(session, lambda: _spawn(_export_now(tid, job_id, principal)))


if HAVE_JOBS:

    @handler("contacts.import", queue="imports")
    async def import_job(payload: dict[str, Any], job: Any) -> None:
        await _import_now(job.tenant_id, uuid.UUID(payload["import_id"]))

    @handler("contacts.export", queue="imports")
    async def export_job(payload: dict[str, Any], job: Any) -> None:
        from tessera.contacts.service.imports import run_export

        await run_export(job.session, uuid.UUID(payload["export_id"]))

    @handler("contacts.segment_refresh", queue="default")
    async def segment_refresh_job(payload: dict[str, Any], job: Any) -> None:
        from tessera.contacts.service.segments import refresh_segment

        await refresh_segment(job.session, uuid.UUID(payload["segment_id"]))


# --- schedules: segments refreshed every 15 minutes, data quality daily, per active tenant ----

SEGMENTS_CRON = "*/15 * * * *"
QUALITY_CRON = "40 2 * * *"


async def fan_out(session: AsyncSession, job_name: str, slot: str) -> int:
    """Enqueue ``job_name`` once per active tenant (idempotent per tenant and schedule slot)."""
    from tessera.core.tenancy import service as tenancy

    n = 0
    for tenant in await tenancy.list_tenants(session):
        if tenant.status != "active":
            continue
        with context.tenant_scope(tenant.id):
            await enqueue(session, job_name, {}, idempotency_key=f"{job_name}:{tenant.id}:{slot}")
        n += 1
    return n


if HAVE_JOBS:
    periodic("contacts.schedule_segment_refresh", SEGMENTS_CRON, queue="maintenance")
    periodic("contacts.schedule_quality", QUALITY_CRON, queue="maintenance")

    @handler("contacts.schedule_segment_refresh", queue="maintenance")
    async def schedule_segment_refresh(payload: dict[str, Any], job: Any) -> None:
        now = utcnow()
        slot = now.replace(minute=now.minute - now.minute % 15).strftime("%Y%m%d%H%M")
        await fan_out(job.session, "contacts.refresh_segments", slot)

    @handler("contacts.schedule_quality", queue="maintenance")
    async def schedule_quality(payload: dict[str, Any], job: Any) -> None:
        await fan_out(job.session, "contacts.recompute_quality", utcnow().strftime("%Y%m%d"))

    @handler("contacts.refresh_segments", queue="default")
    async def refresh_segments_job(payload: dict[str, Any], job: Any) -> None:
        """Every dynamic segment of the tenant; rule tags follow their segments."""
        from tessera.contacts.service.segments import refresh_all_dynamic

        await refresh_all_dynamic(job.session)

    @handler("contacts.recompute_quality", queue="default")
    async def recompute_quality_job(payload: dict[str, Any], job: Any) -> None:
        from tessera.contacts.service.console_data import recompute_quality

        await recompute_quality(job.session)
