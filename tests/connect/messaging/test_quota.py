"""A send the tenant's allowance cannot cover is refused whole: 402 and nothing stored.

The quota is the last statement of the send's transaction (its counter row stays locked until
commit), so by the time it refuses, the messages, their events and dispatch rows have been
written; the refusal must roll all of it back."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select
from tests.conftest import TenantWorld
from tests.connect.messaging.conftest import phone, setup_sms

from tessera.connect.models import DispatchItem, Message, MessageEvent
from tessera.core import context
from tessera.core.db.session import unit_of_work
from tessera.core.subscription import service as subscription
from tessera.core.subscription.models import UsageRecord


async def fill_sms_allowance(world: TenantWorld, leave: int = 0) -> None:
    """Put the tenant on the starter plan (1,000 SMS) and spend all but ``leave`` of it."""
    with context.tenant_scope(world.tenant_id):
        async with unit_of_work() as s:
            await subscription.assign_plan(s, await subscription.latest_plan(s, "starter"))
        async with unit_of_work() as s:
            await subscription.consume(s, "messages.sms", 1_000 - leave, ref="fill")


async def stored(world: TenantWorld) -> dict[str, int]:
    out = {}
    with context.tenant_scope(world.tenant_id):
        async with unit_of_work() as s:
            for name, model in (
                ("messages", Message),
                ("events", MessageEvent),
                ("dispatch", DispatchItem),
                ("usage_records", UsageRecord),
            ):
                out[name] = int((await s.execute(select(func.count()).select_from(model))).scalar_one())
            ent = await subscription.effective_entitlements(s)
            used = {t["meter"]: t["used"] for t in await subscription.current_totals(s, ent)}
    out["sms_used"] = used["messages.sms"]
    return out


async def test_over_quota_single_send_stores_nothing(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    await setup_sms(client, tenant)
    await fill_sms_allowance(tenant)
    before = await stored(tenant)
    r = await client.post(
        "/v1/messages",
        json={"to": phone(1), "body": "Your code is 1234", "class": "verification"},
        headers=tenant.headers("admin"),
    )
    assert r.status_code == 402, r.text
    err = r.json()["error"]
    assert err["code"] == "subscription.quota_exceeded"
    assert (
        await stored(tenant)
        == before
        == {
            "messages": 0,
            "events": 0,
            "dispatch": 0,
            "usage_records": 1,
            "sms_used": 1_000,
        }
    )


async def test_over_quota_batch_stores_nothing_and_room_left_is_spent(
    client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    await setup_sms(client, tenant)
    await fill_sms_allowance(tenant, leave=3)
    body = {"class": "notification", "body": "Your parcel is on its way"}
    r = await client.post(
        "/v1/messages/batch",
        json={**body, "recipients": [{"to": phone(i)} for i in range(4)]},
        headers=tenant.headers("admin"),
    )
    assert r.status_code == 402, r.text
    assert r.json()["error"]["code"] == "subscription.quota_exceeded"
    after = await stored(tenant)
    assert (after["messages"], after["events"], after["dispatch"]) == (0, 0, 0)
    assert (after["usage_records"], after["sms_used"]) == (1, 997)
    # what fits is accepted, and counted once
    r = await client.post(
        "/v1/messages/batch",
        json={**body, "recipients": [{"to": phone(i)} for i in range(3)]},
        headers=tenant.headers("admin"),
    )
    assert r.status_code == 202, r.text
    after = await stored(tenant)
    assert (after["messages"], after["dispatch"], after["sms_used"]) == (3, 3, 1_000)
