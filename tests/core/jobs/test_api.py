from __future__ import annotations

import secrets
from typing import Any

import httpx

from tessera.core import context
from tessera.core.db.session import unit_of_work
from tessera.core.jobs import service
from tests.conftest import TenantWorld
from tests.helpers import assert_cross_tenant_refused


async def operator_headers() -> dict[str, str]:
    from tessera.core.identity.passwords import sha256_hex
    from tessera.core.tenancy.models import Operator, OperatorKey

    key_id, secret = secrets.token_hex(6), secrets.token_hex(16)
    async with unit_of_work(platform=True) as s:
        op = Operator(email=f"op-{key_id}@example.com", name="Op", password_hash="x")
        s.add(op)
        await s.flush()
        s.add(
            OperatorKey(
                operator_id=str(op.id), name=op.email, prefix=f"top_{key_id}", secret_hash=sha256_hex(secret)
            )
        )
    return {"Authorization": f"Bearer top_{key_id}_{secret}"}


async def _enqueue(world: TenantWorld | None, name: str = "test.record", **kw: Any) -> Any:
    with context.tenant_scope(world.tenant_id if world else None):
        async with unit_of_work(platform=world is None) as s:
            return await service.enqueue(s, name, {"n": 1}, **kw)


async def test_tenant_lists_only_its_own_jobs(
    client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    mine = await _enqueue(tenant)
    theirs = await _enqueue(other_tenant)
    await _enqueue(None)
    r = await client.get("/v1/jobs", headers=tenant.headers("admin"))
    assert r.status_code == 200, r.text
    assert [j["id"] for j in r.json()["items"]] == [str(mine)]
    assert "payload" not in r.json()["items"][0]
    r = await client.get(f"/v1/jobs/{mine}", headers=tenant.headers("manager"))
    assert r.status_code == 200 and r.json()["status"] == "queued"
    await assert_cross_tenant_refused(client, "GET", f"/v1/jobs/{theirs}", tenant)
    r = await client.get("/v1/jobs?status=done", headers=tenant.headers("admin"))
    assert r.json()["items"] == []
    r = await client.get("/v1/jobs?status__gte=x", headers=tenant.headers("admin"))
    assert r.status_code == 422 and r.json()["error"]["field"] == "status__gte"


async def test_jobs_read_permission_required(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    r = await client.get("/v1/jobs", headers=tenant.headers("member"))
    assert r.status_code == 403
    r = await client.get("/v1/jobs")
    assert r.status_code == 401


async def test_operator_lists_retries_and_cancels(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    op = await operator_headers()
    queued = await _enqueue(tenant, queue="ops")
    dead = await _enqueue(tenant, "test.fail", max_attempts=1)
    from tests.core.jobs.support import run_worker_until_idle

    await run_worker_until_idle(["test"])
    r = await client.get("/v1/operator/jobs?status=dead", headers=op)
    assert r.status_code == 200, r.text
    [item] = r.json()["items"]
    assert item["id"] == str(dead) and "RuntimeError" in item["last_error"]
    assert item["tenant_id"] == str(tenant.tenant_id)

    r = await client.get("/v1/operator/jobs/queues", headers=op)
    stats = {q["queue"]: q for q in r.json()}
    assert stats["ops"]["queued"] == 1 and stats["test"]["dead"] == 1
    assert stats["ops"]["oldest_due_age_s"] >= 0

    r = await client.post(f"/v1/operator/jobs/{dead}/retry", headers=op)
    assert r.status_code == 200 and r.json()["status"] == "queued" and r.json()["attempts"] == 0
    r = await client.post(f"/v1/operator/jobs/{queued}/cancel", headers=op)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = await client.post(f"/v1/operator/jobs/{queued}/cancel", headers=op)
    assert r.status_code == 409 and r.json()["error"]["code"] == "job.invalid_state"
    r = await client.post(f"/v1/operator/jobs/{tenant.tenant_id}/retry", headers=op)
    assert r.status_code == 404
    # Tenant keys are not operator keys.
    r = await client.get("/v1/operator/jobs", headers=tenant.headers("owner"))
    assert r.status_code == 401


async def test_metrics_expose_queue_depth(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    await _enqueue(tenant, queue="metered")
    r = await client.get("/metrics")
    assert 'tessera_job_queue_depth{queue="metered",status="queued"} 1.0' in r.text
    assert "tessera_job_oldest_due_age_seconds" in r.text
