"""The operator console in Chromium: sign in, retry a dead job, add an alert rule; every page
passes axe (no serious or critical violations) and fits a phone."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select, update

from tessera.core import context as ctxvars
from tessera.core.db.base import utcnow
from tessera.core.db.session import unit_of_work
from tessera.core.jobs import service as jobs
from tessera.core.jobs.models import Job
from tests.conftest import TenantWorld
from tests.e2e.conftest import axe_violations

pytestmark = pytest.mark.e2e

EMAIL, PASSWORD = "ops@example.com", "operator-pass-123"


async def _setup(tenant: TenantWorld) -> Any:
    from tessera.cli import ensure_operator

    await ensure_operator(EMAIL, "Ops", PASSWORD)
    with ctxvars.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            job_id = await jobs.enqueue(s, "webhooks.deliver", {"delivery_id": "x"})
            await s.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(status="dead", last_error="boom", finished_at=utcnow())
            )
    return job_id


async def _sign_in(page: Any, base: str) -> None:
    await page.goto(f"{base}/console/operator/jobs")
    assert page.url.endswith("/console/operator/login")
    await page.fill("#f-email", EMAIL)
    await page.fill("#f-password", PASSWORD)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{base}/console/operator/jobs")


async def test_operator_console_journey(live_server: str, context: Any, tenant: TenantWorld) -> None:
    job_id = await _setup(tenant)
    page = await context.new_page()
    await _sign_in(page, live_server)
    await page.click(f"a[href='/console/operator/jobs/{job_id}']")
    await page.wait_for_url(f"**/console/operator/jobs/{job_id}")
    await page.click("button:has-text('Retry')")
    await page.wait_for_load_state()
    async with unit_of_work(platform=True) as s:
        assert (await s.execute(select(Job.status).where(Job.id == job_id))).scalar_one() == "queued"
    await page.goto(f"{live_server}/console/operator/alert-rules")
    await page.fill("#f-name", "Queue too deep")
    await page.select_option("#f-metric", "jobs.queue_depth")
    await page.select_option("#f-condition", ">")
    await page.fill("#f-threshold", "1000")
    await page.click("button:has-text('Create rule')")
    await page.wait_for_load_state()
    assert await page.locator("text=Queue too deep").count() >= 1
    found = {}
    for path in (
        "/console/operator/jobs",
        "/console/operator/incidents",
        "/console/operator/alert-rules",
        "/console/operator/tenants",
        f"/console/operator/tenants/{tenant.tenant_id}",
        f"/console/operator/jobs/{job_id}",
    ):
        await page.goto(live_server + path)
        v = await axe_violations(page, live_server)
        if v:
            found[path] = v
    assert found == {}, json.dumps(found)
    await page.goto(f"{live_server}/console/operator/login")
    assert await axe_violations(page, live_server) == []


async def test_operator_pages_fit_a_phone(live_server: str, chromium: Any, tenant: TenantWorld) -> None:
    await _setup(tenant)
    ctx = await chromium.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    try:
        page = await ctx.new_page()
        await _sign_in(page, live_server)
        for path in (
            "/console/operator/jobs",
            "/console/operator/incidents",
            "/console/operator/alert-rules",
        ):
            await page.goto(live_server + path)
            overflow = await page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
            assert overflow <= 0, (path, overflow)
    finally:
        await ctx.close()
