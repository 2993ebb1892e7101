from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from tests.conftest import TenantWorld
from tests.connect.messaging.conftest import setup_sms
from tests.helpers import api_snapshot, assert_cross_tenant_refused

from tessera.connect.compliance import service as compliance
from tessera.connect.inbound import service
from tessera.connect.models import Message
from tessera.core import context
from tessera.core.db.session import unit_of_work
from tessera.core.events.registry import SUBSCRIBERS
from tessera.core.jobs.models import Job

FROM = "+8613912345678"


@pytest.fixture
def inbound_subscriber() -> Iterator[str]:
    name = "tests.inbound_probe"
    SUBSCRIBERS.setdefault("message.inbound", []).append(name)
    yield name
    SUBSCRIBERS["message.inbound"].remove(name)


async def mo(client: httpx.AsyncClient, world: TenantWorld, text: str, source: str = FROM) -> dict[str, Any]:
    r = await client.post(
        "/v1/inbound/messages",
        json={"source": source, "destination": "10690001", "text": text},
        headers=world.headers("admin"),
    )
    assert r.status_code == 201, r.text
    return r.json()


async def sent(world: TenantWorld) -> list[Message]:
    with context.tenant_scope(world.tenant_id):
        async with unit_of_work() as s:
            return list((await s.execute(select(Message).order_by(Message.created_at))).scalars())


async def test_stop_opts_out_and_confirms_once(
    client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld, inbound_subscriber: str
) -> None:
    await setup_sms(client, tenant)
    m = await mo(client, tenant, " Stop! ")
    assert m["opt_out"] is True and m["reply_message_id"] and m["from"] == FROM
    [reply] = await sent(tenant)
    assert reply.to == FROM and "unsubscribed" in reply.body
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            d = await compliance.check_outbound(
                s, channel="sms", message_class="marketing", to_e164_or_email=FROM, body="sale"
            )
            assert d.code == "message.recipient_opted_out"
    with context.tenant_scope(other_tenant.tenant_id):
        async with unit_of_work() as s:
            assert not await compliance.is_opted_out(s, channel="sms", address=FROM)
    m2 = await mo(client, tenant, "STOP")
    assert m2["opt_out"] is True and m2["reply_message_id"] is None
    assert len(await sent(tenant)) == 1
    with context.tenant_scope(None):
        async with unit_of_work(platform=True) as s:
            jobs = list((await s.execute(select(Job).where(Job.name == inbound_subscriber))).scalars())
    assert len(jobs) == 2
    data = jobs[0].payload["data"]
    assert data["from"] == FROM and data["opt_out"] is True and data["body"] in (" Stop! ", "STOP")
    assert {j.tenant_id for j in jobs} == {tenant.tenant_id}


async def test_chinese_keywords_and_custom_list(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    await setup_sms(client, tenant)
    m = await mo(client, tenant, "退訂")  # traditional form of 退订
    assert m["opt_out"] is True
    [reply] = await sent(tenant)
    assert "退订" in reply.body
    r = await client.patch(
        "/v1/compliance/settings",
        json={"opt_out_keywords": ["QUIT"], "opt_out_reply": "Bye"},
        headers=tenant.headers("admin"),
    )
    assert r.status_code == 200, r.text
    assert (await mo(client, tenant, "stop", source="+8613900000009"))["opt_out"] is False
    m = await mo(client, tenant, "quit", source="+8613900000009")
    assert m["opt_out"] is True
    assert (await sent(tenant))[-1].body.endswith("Bye")


async def test_auto_reply_rules(
    client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    await setup_sms(client, tenant)
    h = tenant.headers("admin")
    r = await client.post("/v1/inbound/rules", json={"keyword": "HELP", "reply": "Call 400-800"}, headers=h)
    assert r.status_code == 201, r.text
    r = await client.post(
        "/v1/inbound/rules",
        json={"keyword": "价格", "match": "contains", "reply": "见官网", "priority": 5},
        headers=h,
    )
    rule_id = r.json()["id"]
    r = await client.post("/v1/inbound/rules", json={"keyword": " HELP ", "reply": "x"}, headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "inbound.duplicate_rule", r.text
    r = await client.post("/v1/inbound/rules", json={"keyword": "!!", "reply": "x"}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["field"] == "keyword"
    m = await mo(client, tenant, "Help.")
    assert m["rule_id"] and m["opt_out"] is False
    assert (await sent(tenant))[-1].body.endswith("Call 400-800")
    m = await mo(client, tenant, "请问价格多少")
    assert m["rule_id"] == rule_id
    m = await mo(client, tenant, "hello there")
    assert m["rule_id"] is None and m["reply_message_id"] is None
    assert (await mo(client, other_tenant, "HELP"))["rule_id"] is None
    snap = await api_snapshot(client, "/v1/inbound/rules", tenant)
    await assert_cross_tenant_refused(
        client, "DELETE", f"/v1/inbound/rules/{rule_id}", other_tenant, snapshot=snap
    )
    r = await client.delete(f"/v1/inbound/rules/{rule_id}", headers=h)
    assert r.status_code == 204


async def test_linked_to_contact_and_consent(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    h = tenant.headers("admin")
    r = await client.post("/v1/contacts", json={"name": "Li Si", "phones": ["13912345678"]}, headers=h)
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    m = await mo(client, tenant, "TD")  # no SMS channel: stored and opted out, no reply
    assert m["contact_id"] == cid and m["opt_out"] is True and m["reply_message_id"] is None
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            from tessera.contacts.service import consent_status

            assert await consent_status(s, uuid.UUID(cid), "sms") == "opted_out"


async def test_receive_mo_gateway_entry_and_cross_tenant(
    client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    mid = await service.receive_mo(tenant.tenant_id, "8613912345678", "10690001", "hi")
    r = await client.get(f"/v1/inbound/messages/{mid}", headers=tenant.headers("member"))
    assert r.status_code == 200, r.text
    assert r.json()["body"] == "hi" and r.json()["to"] == "10690001"
    assert r.json()["from"] != FROM  # masked for a role without pii:view
    r = await client.get("/v1/inbound/messages", headers=tenant.headers("admin"))
    assert [x["id"] for x in r.json()] == [str(mid)] and r.json()[0]["from"] == FROM
    snap = await api_snapshot(client, f"/v1/inbound/messages/{mid}", tenant)
    await assert_cross_tenant_refused(
        client, "GET", f"/v1/inbound/messages/{mid}", other_tenant, snapshot=snap
    )
    r = await client.get("/v1/inbound/messages", headers=other_tenant.headers("admin"))
    assert r.json() == []
    r = await client.post(
        "/v1/inbound/messages", json={"source": "1", "text": "x"}, headers=tenant.headers("admin")
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "source"
