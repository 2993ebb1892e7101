"""Tenant operations pages: a webhook delivery's detail with replay, and a job's detail with
retry/cancel for holders of ``jobs:manage``; another tenant's ids are 404 pages."""

from __future__ import annotations

import re
import uuid
from typing import Any

from sqlalchemy import func, select, update

from tessera.core import context
from tessera.core.db.session import unit_of_work
from tessera.core.jobs import service as jobs
from tessera.core.jobs.models import Job
from tessera.core.webhooks import service as webhooks
from tessera.core.webhooks.models import WebhookDelivery
from tessera.core.webhooks.schemas import EndpointCreate
from tests.conftest import TenantWorld, make_tenant
from tests.console.conftest import Browser


async def _delivery(world: TenantWorld) -> tuple[uuid.UUID, uuid.UUID]:
    with context.tenant_scope(world.tenant_id):
        async with unit_of_work() as s:
            ep, _secret = await webhooks.create_endpoint(
                s, EndpointCreate(url="https://hooks.example.com/in", event_types=["*"])
            )
            env = {
                "event": "contact.created",
                "event_id": uuid.uuid4().hex,
                "occurred_at": "2026-11-21T00:00:00Z",
                "data": {"id": "x"},
            }
            (d,) = await webhooks.fan_out(s, env)
            await s.execute(
                update(WebhookDelivery).where(WebhookDelivery.id == d.id).values(status="failed", attempts=3)
            )
            return ep.id, d.id


async def test_delivery_detail_and_replay(browser: Browser, tenant: TenantWorld) -> None:
    ep_id, d_id = await _delivery(tenant)
    await browser.login(tenant, "admin")
    listing = await browser.get(f"/console/admin/webhooks/{ep_id}")
    assert f"/console/admin/webhooks/{ep_id}/deliveries/{d_id}" in listing.text
    detail = await browser.get(f"/console/admin/webhooks/{ep_id}/deliveries/{d_id}")
    assert detail.status_code == 200 and "contact.created" in detail.text and "Replay" in detail.text
    r = await browser.post(f"/console/admin/webhooks/{ep_id}/deliveries/{d_id}/replay")
    assert r.status_code == 303
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            replayed = (
                await s.execute(select(WebhookDelivery).where(WebhookDelivery.replay_of == d_id))
            ).scalar_one()
    assert r.headers["location"].startswith(f"/console/admin/webhooks/{ep_id}/deliveries/{replayed.id}")
    other = await make_tenant()
    await browser.login(other, "admin")
    assert (await browser.get(f"/console/admin/webhooks/{ep_id}/deliveries/{d_id}")).status_code == 404
    assert (
        await browser.post(f"/console/admin/webhooks/{ep_id}/deliveries/{d_id}/replay")
    ).status_code == 404
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            n = (
                await s.execute(
                    select(func.count()).select_from(WebhookDelivery).where(WebhookDelivery.replay_of == d_id)
                )
            ).scalar_one()
    assert n == 1


async def _dead_job(world: TenantWorld) -> uuid.UUID:
    with context.tenant_scope(world.tenant_id):
        async with unit_of_work() as s:
            job_id = await jobs.enqueue(s, "webhooks.deliver", {"delivery_id": "x"})
            await s.execute(update(Job).where(Job.id == job_id).values(status="dead", last_error="boom"))
    return job_id


async def _status(job_id: uuid.UUID) -> str:
    async with unit_of_work(platform=True) as s:
        return str((await s.execute(select(Job.status).where(Job.id == job_id))).scalar_one())


async def test_job_detail_retry_needs_jobs_manage(browser: Browser, app: Any, tenant: TenantWorld) -> None:
    job_id = await _dead_job(tenant)
    await browser.login(tenant, "manager")
    detail = await browser.get(f"/console/admin/jobs/{job_id}")
    if detail.status_code == 200:  # managers may read jobs but not retry them
        assert f"/console/admin/jobs/{job_id}/retry" not in detail.text
    assert (await browser.post(f"/console/admin/jobs/{job_id}/retry")).status_code == 403
    assert await _status(job_id) == "dead"
    await browser.login(tenant, "admin")
    detail = await browser.get(f"/console/admin/jobs/{job_id}")
    assert (
        detail.status_code == 200
        and "boom" in detail.text
        and f"/console/admin/jobs/{job_id}/retry" in detail.text
    )
    r = await browser.post(f"/console/admin/jobs/{job_id}/retry")
    assert r.status_code == 303 and await _status(job_id) == "queued"
    again = await browser.post(f"/console/admin/jobs/{job_id}/cancel")
    assert again.status_code == 303 and await _status(job_id) == "cancelled"
    other = await make_tenant()
    await browser.login(other, "admin")
    assert (await browser.get(f"/console/admin/jobs/{job_id}")).status_code == 404
    assert (await browser.post(f"/console/admin/jobs/{job_id}/retry")).status_code == 404
    assert await _status(job_id) == "cancelled"


async def test_home_activity_chart_counts_entries_per_day_in_the_tenant_time_zone(
    app: Any, tenant: TenantWorld, database_urls: dict[str, str]
) -> None:
    import datetime as dt
    import zoneinfo

    from tessera.console import i18n
    from tessera.console.pages.home import activity_chart
    from tessera.core.audit.models import AuditEvent

    tz = zoneinfo.ZoneInfo("Asia/Shanghai")
    today = dt.datetime.now(tz).replace(hour=0, minute=30, second=0, microsecond=0)
    i18n.activate("en", "Asia/Shanghai")
    from sqlalchemy.ext.asyncio import create_async_engine

    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            before = await activity_chart(s)
    # The audit log is append-only for the application; move one entry as the owner. 00:30 today
    # in Shanghai is 16:30 yesterday in UTC: it belongs to today's bar.
    owner = create_async_engine(database_urls["owner"])
    async with owner.begin() as conn:
        t = AuditEvent.__table__
        newest = select(func.max(t.c.seq)).where(t.c.tenant_id == tenant.tenant_id).scalar_subquery()
        await conn.execute(
            update(t)
            .where(t.c.tenant_id == tenant.tenant_id, t.c.seq == newest)
            .values(created_at=today.astimezone(dt.UTC))
        )
    await owner.dispose()
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            after = await activity_chart(s)
    assert after.labels[-1] == today.strftime("%m-%d")
    total_before = sum(before.datasets[0]["data"])
    assert sum(after.datasets[0]["data"]) == total_before
    assert after.datasets[0]["data"][-1] >= 1


async def test_the_nav_marks_only_the_most_specific_entry_current(
    browser: Browser, tenant: TenantWorld
) -> None:
    await browser.login(tenant, "admin")
    from tessera.contacts.views.accounts import BASE as accounts

    page = await browser.get(accounts)
    assert page.status_code == 200
    current = re.findall(r'<a href="([^"]+)" data-nav="[^"]+" aria-current="page">', page.text)
    assert current == [accounts]  # not also "Contacts", whose address is a prefix of it
