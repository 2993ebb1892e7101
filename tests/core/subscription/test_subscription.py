from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI

from tessera.core import context
from tessera.core.access.principal import Principal
from tessera.core.db.session import unit_of_work
from tessera.core.http.deps import DbSession
from tessera.core.subscription import service
from tessera.core.subscription.api import require_module
from tessera.core.subscription.errors import QuotaExceeded
from tessera.settings import Settings
from tests.conftest import TenantWorld


async def _set_plan(world: TenantWorld, key: str) -> None:
    with context.tenant_scope(world.tenant_id):
        async with unit_of_work() as s:
            await service.assign_plan(s, await service.latest_plan(s, key))


async def _add_quota(world: TenantWorld, meter: str, amount: int) -> None:
    with context.tenant_scope(world.tenant_id):
        async with unit_of_work() as s:
            await service.add_addon(s, module=None, meter=meter, amount=amount)


async def test_new_tenant_gets_default_plan(tenant: TenantWorld) -> None:
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            ent = await service.effective_entitlements(s)
    assert ent.plan_key == "professional"
    assert "marketing" in ent.modules and "ads" not in ent.modules
    assert ent.seats == 25 and ent.limit("messages.sms") == 50_000
    assert ent.period_start <= dt.datetime.now(dt.UTC) < ent.period_end


def test_period_bounds_clamps_month_end() -> None:
    anchor = dt.datetime(2026, 1, 31, tzinfo=dt.UTC)
    start, end = service.period_bounds(anchor, dt.datetime(2026, 2, 28, 12, tzinfo=dt.UTC))
    assert start == dt.datetime(2026, 2, 28, tzinfo=dt.UTC) and end == dt.datetime(2026, 3, 31, tzinfo=dt.UTC)
    start, _ = service.period_bounds(anchor, dt.datetime(2026, 3, 5, tzinfo=dt.UTC), -1)
    assert start == dt.datetime(2026, 1, 31, tzinfo=dt.UTC)


async def test_concurrent_consumers_cannot_overspend(tenant: TenantWorld) -> None:
    await _set_plan(tenant, "starter")  # ai.articles: 20 per period
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            await service.consume(s, "ai.articles", 13, ref="seed")

    async def one(i: int) -> bool:
        with context.tenant_scope(tenant.tenant_id):
            try:
                async with unit_of_work() as s:
                    await service.consume(s, "ai.articles", 1, ref=f"req-{i}")
                return True
            except QuotaExceeded:
                return False

    results = await asyncio.gather(*(one(i) for i in range(20)))
    assert sum(results) == 7
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            ent = await service.effective_entitlements(s)
            totals = {t["meter"]: t for t in await service.current_totals(s, ent)}
    assert totals["ai.articles"]["used"] == 20 and totals["ai.articles"]["remaining"] == 0


async def test_same_ref_counts_once_and_rollback_uncounts(tenant: TenantWorld) -> None:
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            u1 = await service.consume(s, "messages.sms", 3, ref="job-1")
        async with unit_of_work() as s:
            u2 = await service.consume(s, "messages.sms", 3, ref="job-1")
        assert u1.counted and not u2.counted and u2.used == 3
        with pytest.raises(RuntimeError):
            async with unit_of_work() as s:
                await service.consume(s, "messages.sms", 5, ref="job-2")
                raise RuntimeError("the send failed")
        async with unit_of_work() as s:
            u3 = await service.consume(s, "messages.sms", 5, ref="job-2")
        assert u3.counted and u3.used == 8


async def test_quota_error_details_and_addon(tenant: TenantWorld) -> None:
    await _set_plan(tenant, "starter")
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            await service.consume(s, "messages.voice", 100, ref="a")
        with pytest.raises(QuotaExceeded) as exc:
            async with unit_of_work() as s:
                await service.consume(s, "messages.voice", 1, ref="b")
    assert exc.value.status == 402 and exc.value.details["remaining"] == 0
    assert exc.value.details["reset_at"]
    await _add_quota(tenant, "messages.voice", 10)
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            u = await service.consume(s, "messages.voice", 10, ref="b")
    assert u.used == 110 and u.limit == 110 and u.remaining == 0


async def test_stock_meter_gives_back(tenant: TenantWorld) -> None:
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            await service.consume(s, "contacts", 10, ref="import-1")
            u = await service.consume(s, "contacts", -4, ref="delete-1")
    assert u.used == 6 and u.reset_at is None


@pytest.fixture
async def probe_client(app: FastAPI, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A fresh app with two probe endpoints guarded by the enforcement helpers (the shared app,
    whose OpenAPI document other tests read, stays untouched)."""
    from tessera.app import create_app

    probe = create_app(settings)
    router = APIRouter()

    @router.post("/v1/_probe/ads")
    async def ads(principal: Annotated[Principal, Depends(require_module("ads"))]) -> dict[str, str]:
        return {"ok": "yes"}

    @router.post("/v1/_probe/send")
    async def send(
        principal: Annotated[Principal, Depends(require_module("connect", "messages:send"))],
        session: DbSession,
    ) -> dict[str, int]:
        u = await service.consume(
            session, "messages.voice", 60, ref=context.current_request().request_id or "x"
        )
        return {"used": u.used}

    probe.include_router(router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=probe), base_url="http://testserver") as c:
        yield c


async def test_module_and_quota_errors_render(probe_client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    client = probe_client
    await _set_plan(tenant, "starter")
    r = await client.post("/v1/_probe/ads", headers=tenant.headers("member"))
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "subscription.module_not_included"
    r = await client.post("/v1/_probe/send", headers=tenant.headers("member"))
    assert r.status_code == 200, r.text
    r = await client.post("/v1/_probe/send", headers=tenant.headers("member"))
    assert r.status_code == 402, r.text
    err = r.json()["error"]
    assert err["code"] == "subscription.quota_exceeded"
    assert err["details"]["remaining"] == 40 and err["details"]["reset_at"]
    r = await client.post("/v1/_probe/send", headers=tenant.headers("read-only"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "auth.forbidden"
    await _set_plan(tenant, "enterprise")
    r = await client.post("/v1/_probe/ads", headers=tenant.headers("member"))
    assert r.status_code == 200


async def test_seat_limit_on_user_creation(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    await _set_plan(tenant, "starter")  # 5 seats, the world already has 5 users
    body = {
        "email": "new@example.com",
        "name": "New",
        "role_id": str(tenant.roles["member"]),
        "password": "a-long-password-1",
    }
    r = await client.post("/v1/users", json=body, headers=tenant.headers("admin"))
    assert r.status_code == 402, r.text
    assert r.json()["error"]["code"] == "subscription.quota_exceeded"
    assert r.json()["error"]["details"]["meter"] == "seats"
    await _add_quota(tenant, "seats", 1)
    r = await client.post("/v1/users", json=body, headers=tenant.headers("admin"))
    assert r.status_code == 201, r.text


async def test_subscription_and_usage_api(
    client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            await service.consume(s, "messages.email", 7, ref="e1")
            await service.consume(s, "messages.email", 2, ref="e2")
    r = await client.get("/v1/subscription", headers=tenant.headers("admin"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["plan"]["key"] == "professional"
    meters = {m["meter"]: m for m in body["entitlements"]}
    assert meters["messages.email"]["used"] == 9 and meters["seats"]["used"] == 5
    r = await client.get("/v1/usage?meter=messages.email", headers=tenant.headers("admin"))
    assert r.status_code == 200, r.text
    days = r.json()["days"]
    assert len(days) == 1 and days[0]["amount"] == 9 and days[0]["events"] == 2
    r = await client.get("/v1/usage?period=previous", headers=tenant.headers("admin"))
    assert r.status_code == 200 and r.json()["days"] == []
    # the other tenant sees none of it
    r = await client.get("/v1/usage", headers=other_tenant.headers("admin"))
    assert r.json()["days"] == []
    r = await client.get("/v1/usage?meter=bogus", headers=tenant.headers("admin"))
    assert r.status_code == 422 and r.json()["error"]["field"] == "meter"
    r = await client.get("/v1/usage?period=lastyear", headers=tenant.headers("admin"))
    assert r.status_code == 422 and r.json()["error"]["field"] == "period"
    r = await client.get("/v1/subscription", headers=tenant.headers("member"))
    assert r.status_code == 403


async def test_operator_plans_and_assignment(
    client: httpx.AsyncClient,
    tenant: TenantWorld,
    other_tenant: TenantWorld,
    operator_headers: dict[str, str],
) -> None:
    r = await client.post(
        "/v1/operator/plans",
        headers=operator_headers,
        json={
            "key": "starter",
            "name": "Starter 2027",
            "modules": ["contacts"],
            "seats": 3,
            "quotas": {"messages.sms": 10},
        },
    )
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 2
    r = await client.post(
        "/v1/operator/plans",
        headers=operator_headers,
        json={"key": "xx", "name": "X", "quotas": {"messages.fax": 1}},
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "quotas.messages.fax"
    r = await client.put(
        f"/v1/operator/tenants/{tenant.tenant_id}/subscription",
        headers=operator_headers,
        json={"plan_key": "starter", "version": 1},
    )
    assert r.status_code == 200, r.text
    assert r.json()["plan"]["version"] == 1 and r.json()["seats"] == 5
    r = await client.post(
        f"/v1/operator/tenants/{tenant.tenant_id}/addons", headers=operator_headers, json={"module": "ads"}
    )
    assert r.status_code == 201, r.text
    addon_id = r.json()["id"]
    r = await client.get(f"/v1/operator/tenants/{tenant.tenant_id}/subscription", headers=operator_headers)
    assert "ads" in r.json()["modules"]
    plans = (await client.get("/v1/operator/plans?key=starter", headers=operator_headers)).json()
    v1 = next(p for p in plans if p["version"] == 1)
    r = await client.delete(f"/v1/operator/plans/{v1['id']}", headers=operator_headers)
    assert r.status_code == 409
    # add-on ids of one tenant are invisible through another tenant's path
    r = await client.delete(
        f"/v1/operator/tenants/{other_tenant.tenant_id}/addons/{addon_id}", headers=operator_headers
    )
    assert r.status_code == 404
    r = await client.delete(
        f"/v1/operator/tenants/{tenant.tenant_id}/addons/{addon_id}", headers=operator_headers
    )
    assert r.status_code == 204
    r = await client.get("/v1/operator/plans", headers=tenant.headers("owner"))
    assert r.status_code == 401


async def test_refused_consumption_leaves_no_record(tenant: TenantWorld) -> None:
    await _set_plan(tenant, "starter")
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            await service.consume(s, "messages.voice", 100, ref="fill")
            with pytest.raises(QuotaExceeded):
                await service.consume(s, "messages.voice", 5, ref="late")
            # the caller handled the error and goes on in the same transaction
            await service.add_addon(s, module=None, meter="messages.voice", amount=5)
            u = await service.consume(s, "messages.voice", 5, ref="late")
    assert u.counted and u.used == 105
