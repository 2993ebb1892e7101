"""The operator console: its own sign-in, jobs of every tenant with retry/cancel/run-now,
tenants with suspend/resume, alert rules and incidents."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from tessera.core import context
from tessera.core.db.base import utcnow
from tessera.core.db.session import unit_of_work
from tessera.core.jobs import service as jobs
from tessera.core.jobs.models import Job
from tessera.core.tenancy.models import Operator
from tests.conftest import TenantWorld

PASSWORD = "operator-pass-123"


async def _operator(email: str = "ops@example.com", status: str = "active") -> None:
    from tessera.cli import ensure_operator

    await ensure_operator(email, "Ops", PASSWORD)
    if status != "active":
        async with unit_of_work(platform=True) as s:
            await s.execute(update(Operator).where(Operator.email == email).values(status=status))


class OpBrowser:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.csrf = ""

    async def login(self, email: str = "ops@example.com", password: str = PASSWORD) -> httpx.Response:
        r = await self.client.post("/console/operator/login", data={"email": email, "password": password})
        if r.status_code == 303:
            page = await self.client.get("/console/operator/jobs")
            m = re.search(r'name="csrf-token" content="([^"]+)"', page.text)
            self.csrf = m.group(1) if m else ""
        return r

    async def post(self, url: str, data: dict[str, Any] | None = None, csrf: bool = True) -> httpx.Response:
        body = dict(data or {})
        if csrf:
            body["csrf_token"] = self.csrf
        return await self.client.post(url, data=body)


@pytest.fixture
async def op(app: Any) -> Any:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield OpBrowser(c)


async def _job(tenant: TenantWorld | None, name: str = "webhooks.deliver", status: str = "dead") -> Any:
    with context.tenant_scope(tenant.tenant_id if tenant else None):
        async with unit_of_work(platform=tenant is None) as s:
            job_id = await jobs.enqueue(s, name, {"n": 1}, queue="default")
            await s.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(status=status, last_error="boom", finished_at=utcnow() if status == "dead" else None)
            )
    return job_id


async def _status(job_id: Any) -> str:
    async with unit_of_work(platform=True) as s:
        return str((await s.execute(select(Job.status).where(Job.id == job_id))).scalar_one())


async def test_operator_pages_need_an_operator_sign_in(op: OpBrowser, app: Any, tenant: TenantWorld) -> None:
    await _operator()
    r = await op.client.get("/console/operator/jobs")
    assert r.status_code == 303 and r.headers["location"] == "/console/operator/login"
    bad = await op.login(password="wrong-password")
    assert bad.status_code == 401 and "Wrong email or password." in bad.text
    assert "tessera_operator" not in op.client.cookies
    # A workspace user's session is not an operator session.
    r = await op.client.post(
        "/console/login",
        data={"workspace": tenant.slug, "email": tenant.emails["owner"], "password": tenant.password},
    )
    assert r.status_code == 303
    assert (await op.client.get("/console/operator/jobs")).status_code == 303
    ok = await op.login()
    assert ok.status_code == 303 and ok.headers["location"] == "/console/operator/jobs"
    page = await op.client.get("/console/operator/jobs")
    assert page.status_code == 200 and "Operator console" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]


async def test_tampered_expired_and_disabled_sessions_are_refused(op: OpBrowser, app: Any) -> None:
    from tessera.console.pages import operator as opmod

    await _operator()
    await op.login()
    raw = op.client.cookies["tessera_operator"]
    body, sig = raw.split(".")
    op.client.cookies.set("tessera_operator", body + "." + sig[::-1], path="/console/operator")
    assert (await op.client.get("/console/operator/jobs")).status_code == 303
    found = opmod.read_cookie(raw)
    assert found is not None
    stale = opmod.issue_cookie(found[0], found[1], found[2], now=int(time.time()) - 3 * 3600)
    assert opmod.read_cookie(stale) is None  # idle for longer than the idle timeout
    op.client.cookies.set("tessera_operator", raw, path="/console/operator")
    assert (await op.client.get("/console/operator/jobs")).status_code == 200
    async with unit_of_work(platform=True) as s:
        await s.execute(update(Operator).values(status="disabled"))
    assert (await op.client.get("/console/operator/jobs")).status_code == 303


async def test_jobs_monitor_retry_cancel_and_csrf(op: OpBrowser, app: Any, tenant: TenantWorld) -> None:
    await _operator()
    await op.login()
    dead = await _job(tenant, status="dead")
    queued = await _job(None, name="monitoring.evaluate", status="queued")
    page = await op.client.get("/console/operator/jobs?status=dead")
    assert page.status_code == 200 and str(dead) in page.text and str(queued) not in page.text
    detail = await op.client.get(f"/console/operator/jobs/{dead}")
    assert detail.status_code == 200 and "boom" in detail.text and tenant.slug in detail.text
    assert (await op.post(f"/console/operator/jobs/{dead}/retry", csrf=False)).status_code == 403
    assert await _status(dead) == "dead"
    r = await op.post(f"/console/operator/jobs/{dead}/retry")
    assert r.status_code == 303 and await _status(dead) == "queued"
    r = await op.post(f"/console/operator/jobs/{queued}/cancel")
    assert r.status_code == 303 and await _status(queued) == "cancelled"
    again = await op.post(f"/console/operator/jobs/{queued}/cancel")
    assert again.status_code == 409
    assert (await op.client.get("/console/operator/jobs/not-a-uuid")).status_code == 404


async def test_suspend_and_resume_a_tenant(op: OpBrowser, app: Any, tenant: TenantWorld) -> None:
    await _operator()
    await op.login()
    lst = await op.client.get("/console/operator/tenants")
    assert lst.status_code == 200 and tenant.slug in lst.text
    r = await op.post(f"/console/operator/tenants/{tenant.tenant_id}/suspend")
    assert r.status_code == 303
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as api:
        refused = await api.get("/v1/me", headers=tenant.headers())
        assert refused.status_code == 403
        await op.post(f"/console/operator/tenants/{tenant.tenant_id}/resume")
        assert (await api.get("/v1/me", headers=tenant.headers())).status_code == 200


async def test_alert_rules_and_incidents(op: OpBrowser, app: Any) -> None:
    await _operator()
    await op.login()
    bad = await op.post(
        "/console/operator/alert-rules",
        {"name": "x", "metric": "no.such_metric", "condition": ">", "threshold": "1", "window_minutes": "5"},
    )
    assert bad.status_code == 422 and 'id="f-metric-err"' in bad.text
    r = await op.post(
        "/console/operator/alert-rules",
        {
            "name": "Dead jobs",
            "metric": "jobs.dead",
            "condition": ">",
            "threshold": "0",
            "window_minutes": "5",
            "severity": "critical",
        },
    )
    assert r.status_code == 303, r.text
    rules = await op.client.get("/console/operator/alert-rules")
    assert "Dead jobs" in rules.text
    await _job(None, status="dead")
    r = await op.post("/console/operator/incidents/evaluate")
    assert r.status_code == 303
    inc = await op.client.get("/console/operator/incidents?status=open")
    assert inc.status_code == 200 and "Dead jobs" in inc.text and "critical" in inc.text
