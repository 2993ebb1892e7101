"""Compliance inside the send pipeline: every send (single and batch, every channel) is checked.

End to end through the API, the dispatcher and the SMSC simulator where a message must (or must
not) reach the carrier.
"""

# ruff: noqa: F811 - the gateway and smsc fixtures are imported from the messaging tests

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
import zoneinfo
from collections.abc import Iterator
from typing import Any

import httpx
from sqlalchemy import event, select
from tests.conftest import TenantWorld
from tests.connect.messaging.conftest import (  # noqa: F401
    gateway,
    phone,
    setup_sms,
    smsc,
    statuses,
    wait_final,
    wait_until,
)

from tessera.connect.adapters.wechat_fake import FakeWeChat
from tessera.connect.models import Channel, DispatchItem
from tessera.connect.smpp.server import SmscSimulator
from tessera.core import context
from tessera.core.db.session import get_database, unit_of_work

TO = "+8613912345678"


async def add_word(client: httpx.AsyncClient, world: TenantWorld, **body: Any) -> None:
    r = await client.post("/v1/compliance/words", json=body, headers=world.headers("admin"))
    assert r.status_code == 201, r.text


async def set_rules(client: httpx.AsyncClient, world: TenantWorld, **body: Any) -> None:
    r = await client.patch("/v1/compliance/settings", json=body, headers=world.headers("admin"))
    assert r.status_code == 200, r.text


async def opt_out(client: httpx.AsyncClient, world: TenantWorld, channel: str, address: str) -> None:
    r = await client.post(
        "/v1/compliance/opt-outs",
        json={"channel": channel, "address": address},
        headers=world.headers("admin"),
    )
    assert r.status_code == 201, r.text


async def messages(client: httpx.AsyncClient, world: TenantWorld) -> list[dict[str, Any]]:
    r = await client.get("/v1/messages?limit=100", headers=world.headers("admin"))
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


async def test_blocked_word_refused_naming_the_field(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    await setup_sms(client, tenant)
    await add_word(client, tenant, word="casino", category="gambling", action="block")
    h = tenant.headers("admin")
    r = await client.post("/v1/messages", json={"to": TO, "body": "Big C.A.S.I.N.O night"}, headers=h)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "message.blocked_word" and err["field"] == "body", err
    assert await messages(client, tenant) == []  # nothing stored
    # In a batch the word may come from one recipient's variables: only that one is refused.
    r = await client.post(
        "/v1/messages/batch",
        json={
            "body": "Hello {{name}}",
            "recipients": [
                {"to": phone(1), "variables": {"name": "Ann"}},
                {"to": phone(2), "variables": {"name": "casino king"}},
            ],
        },
        headers=h,
    )
    assert r.status_code == 202, r.text
    out = r.json()
    assert (out["count"], out["accepted"], out["rejected"]) == (2, 1, 1), out
    [res] = out["results"]
    assert res["index"] == 1 and res["status"] == "rejected" and res["code"] == "message.blocked_word"
    assert res["field"] == "body" and res["id"] == out["ids"][1]
    m = (await client.get(f"/v1/messages/{res['id']}", headers=h)).json()
    assert m["status"] == "rejected" and m["reason"] == "message.blocked_word" and m["cost_minor"] == 0
    async with _dispatch_rows() as ids:
        assert uuid.UUID(out["ids"][0]) in ids and uuid.UUID(res["id"]) not in ids


class _dispatch_rows:
    async def __aenter__(self) -> set[uuid.UUID]:
        with context.tenant_scope(None):
            async with unit_of_work(platform=True) as s:
                return set((await s.execute(select(DispatchItem.message_id))).scalars())

    async def __aexit__(self, *exc: object) -> None:
        return None


async def test_held_message_waits_for_review_then_goes_through_the_smsc(
    client: httpx.AsyncClient, tenant: TenantWorld, smsc: SmscSimulator, gateway: Any
) -> None:
    await setup_sms(client, tenant, smsc)
    await add_word(client, tenant, word="loan", category="finance", action="hold")
    await gateway()
    h = tenant.headers("admin")
    r = await client.post("/v1/messages", json={"to": TO, "body": "cheap loan today"}, headers=h)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "held" and r.json()["code"] == "message.held_for_review", r.json()
    mid = r.json()["id"]
    r2 = await client.post("/v1/messages", json={"to": phone(7), "body": "another loan"}, headers=h)
    other = r2.json()["id"]
    await asyncio.sleep(0.5)  # the gateway is running: a held message must not move
    assert smsc.stats_.submits == 0
    assert (await client.get(f"/v1/messages/{mid}", headers=h)).json()["status"] == "held"
    reviews = (await client.get("/v1/compliance/reviews", headers=h)).json()
    by_message = {rv["message_id"]: rv["id"] for rv in reviews}
    assert set(by_message) == {mid, other}, reviews
    r = await client.post(f"/v1/compliance/reviews/{by_message[mid]}/approve", json={"note": "ok"}, headers=h)
    assert r.status_code == 200 and r.json()["message_id"] == mid, r.text
    r = await client.post(f"/v1/compliance/reviews/{by_message[other]}/reject", headers=h)
    assert r.status_code == 200, r.text
    await wait_final(tenant, 2, timeout=15)
    m = (await client.get(f"/v1/messages/{mid}", headers=h)).json()
    assert m["status"] == "delivered", m
    assert [e["status"] for e in m["events"]] == ["held", "accepted", "queued", "submitted", "delivered"]
    assert smsc.count("10690001", TO.lstrip("+"), b"cheap loan today") == 1
    o = (await client.get(f"/v1/messages/{other}", headers=h)).json()
    assert o["status"] == "rejected" and o["reason"] == "compliance.review_rejected", o
    assert smsc.stats_.submits == 1


async def test_replaced_word_is_sent_with_its_replacement(
    client: httpx.AsyncClient, tenant: TenantWorld, smsc: SmscSimulator, gateway: Any
) -> None:
    await setup_sms(client, tenant, smsc)
    await add_word(client, tenant, word="cheap", category="spam", action="replace", replacement="good")
    await gateway()
    h = tenant.headers("admin")
    r = await client.post("/v1/messages", json={"to": TO, "body": "Cheap flights today"}, headers=h)
    assert r.status_code == 202 and r.json()["status"] == "accepted", r.text
    await wait_final(tenant, 1, timeout=10)
    m = (await client.get(f"/v1/messages/{r.json()['id']}", headers=h)).json()
    assert m["status"] == "delivered" and m["body"] == "good flights today", m
    assert smsc.count("10690001", TO.lstrip("+"), b"good flights today") == 1
    assert smsc.count("10690001", TO.lstrip("+"), b"Cheap flights today") == 0


async def _wechat_channel(client: httpx.AsyncClient, world: TenantWorld) -> tuple[str, str]:
    h = world.headers("admin")
    ch = (
        await client.post(
            "/v1/channels",
            json={
                "kind": "wechat",
                "name": "Official account",
                "settings": {"appid": "wx-test", "api_base": "http://wechat"},
                "secret": "s3cret",
            },
            headers=h,
        )
    ).json()["id"]
    tid = (
        await client.post(
            "/v1/templates",
            json={
                "name": "promo",
                "class": "marketing",
                "bodies": {"wechat": "Sale today"},
                "external_id": "TPL-1",
            },
            headers=h,
        )
    ).json()["id"]
    await client.post(f"/v1/templates/{tid}/submit", headers=h)
    await client.post(f"/v1/templates/{tid}/approve", headers=h)
    return ch, tid


async def _email_channel(world: TenantWorld) -> uuid.UUID:
    with context.tenant_scope(world.tenant_id):
        async with unit_of_work() as s:
            ch = Channel(kind="email", name="Mail", status="active", default_source="news@shop.example")
            s.add(ch)
            await s.flush()
            return ch.id


async def test_opted_out_recipient_refused_on_sms_email_and_wechat(
    client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld, gateway: Any
) -> None:
    await setup_sms(client, tenant)
    await setup_sms(client, other_tenant)
    wechat, template = await _wechat_channel(client, tenant)
    email = await _email_channel(tenant)
    await opt_out(client, tenant, "sms", TO)
    await opt_out(client, tenant, "wechat", "oOptedOut1")
    await opt_out(client, tenant, "email", "Jane@Example.com")
    h = tenant.headers("admin")

    def refused(r: httpx.Response, field: str = "to") -> None:
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["code"] == "message.recipient_opted_out" and err["field"] == field, err

    refused(await client.post("/v1/messages", json={"to": TO, "body": "hi", "class": "marketing"}, headers=h))
    refused(await client.post("/v1/messages", json={"to": "13912345678", "body": "order shipped"}, headers=h))
    refused(
        await client.post(
            "/v1/messages",
            json={
                "channel": "wechat",
                "channel_id": wechat,
                "to": "oOptedOut1",
                "template_id": template,
                "class": "marketing",
            },
            headers=h,
        )
    )
    refused(
        await client.post(
            "/v1/messages",
            json={
                "channel_id": str(email),
                "to": "jane@example.COM",
                "body": "News",
                "subject": "News",
                "class": "marketing",
            },
            headers=h,
        )
    )
    assert await messages(client, tenant) == []
    # a verification code is asked for by the recipient: not refused
    r = await client.post(
        "/v1/messages", json={"to": TO, "body": "code 1234", "class": "verification"}, headers=h
    )
    assert r.status_code == 202, r.text
    # other recipients, and the same number at another tenant, are not affected
    ok = [
        await client.post(
            "/v1/messages",
            json={
                "channel": "wechat",
                "channel_id": wechat,
                "to": "oOther2",
                "template_id": template,
                "class": "marketing",
            },
            headers=h,
        ),
        await client.post(
            "/v1/messages",
            json={"channel_id": str(email), "to": "joe@example.com", "body": "News", "subject": "Hi"},
            headers=h,
        ),
        await client.post(
            "/v1/messages", json={"to": TO, "body": "hi"}, headers=other_tenant.headers("admin")
        ),
    ]
    assert [x.status_code for x in ok] == [202, 202, 202], [x.text for x in ok]
    # the WeChat message of a not-opted-out user goes all the way to WeChat
    fake = FakeWeChat()
    await gateway(wechat_transport=httpx.ASGITransport(app=fake.app))

    async def sent() -> bool:
        return len(fake.sent) >= 1

    await wait_until(sent, timeout=10)
    assert [m["touser"] for m in fake.sent] == ["oOther2"]


def _window_around(now_local: dt.datetime) -> tuple[str, str, dt.datetime]:
    """Quiet hours from an hour before to an hour after ``now_local``; its end in UTC."""
    start = now_local - dt.timedelta(hours=1)
    end = (now_local + dt.timedelta(hours=1)).replace(second=0, microsecond=0)
    return f"{start:%H:%M}", f"{end:%H:%M}", end.astimezone(dt.UTC)


async def test_marketing_quiet_hours_and_frequency_cap_in_tenant_time_zone(
    client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    await setup_sms(client, tenant)
    h = tenant.headers("admin")
    shanghai = dt.datetime.now(zoneinfo.ZoneInfo("Asia/Shanghai"))  # the test tenant's zone
    start, end, end_utc = _window_around(shanghai)
    # The same window in UTC would not contain now (Shanghai is 8 hours ahead).
    await set_rules(client, tenant, quiet_start=start, quiet_end=end)
    r = await client.post("/v1/messages", json={"to": TO, "body": "Sale!", "class": "marketing"}, headers=h)
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["status"] == "accepted" and out["code"] == "message.quiet_hours", out
    assert dt.datetime.fromisoformat(out["scheduled_at"]) == end_utc
    with context.tenant_scope(None):
        async with unit_of_work(platform=True) as s:
            available = (
                await s.execute(
                    select(DispatchItem.available_at).where(DispatchItem.message_id == uuid.UUID(out["id"]))
                )
            ).scalar_one()
    assert (available if available.tzinfo else available.replace(tzinfo=dt.UTC)) == end_utc
    r = await client.post(
        "/v1/messages", json={"to": TO, "body": "Your order", "class": "notification"}, headers=h
    )
    assert r.json()["code"] is None and r.json()["scheduled_at"] is None  # notifications go now
    # A window around now in UTC (not in Shanghai) does not defer.
    utc_start, utc_end, _ = _window_around(dt.datetime.now(dt.UTC))
    await set_rules(client, tenant, quiet_start=utc_start, quiet_end=utc_end)
    r = await client.post(
        "/v1/messages", json={"to": phone(3), "body": "Sale!", "class": "marketing"}, headers=h
    )
    assert r.json()["code"] is None, r.json()

    # Frequency cap: 2 marketing messages per 24 h; TO has had 1 (deferred, still counted).
    await set_rules(client, tenant, quiet_start=None, quiet_end=None, cap_count=2, cap_window_hours=24)
    r = await client.post(
        "/v1/messages/batch",
        json={
            "class": "marketing",
            "body": "Sale!",
            "recipients": [{"to": TO}, {"to": TO}, {"to": phone(4)}],
        },
        headers=h,
    )
    assert r.status_code == 202, r.text
    out = r.json()
    assert (out["accepted"], out["rejected"]) == (2, 1), out
    [res] = out["results"]
    assert (
        res["index"] == 1 and res["code"] == "message.frequency_capped" and res["field"] == "recipients.1.to"
    )
    r = await client.post("/v1/messages", json={"to": TO, "body": "Sale!", "class": "marketing"}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["code"] == "message.frequency_capped", r.text
    assert r.json()["error"]["field"] == "to"
    r = await client.post(
        "/v1/messages", json={"to": TO, "body": "Receipt", "class": "notification"}, headers=h
    )
    assert r.status_code == 202  # caps are for marketing only


class _Statements:
    def __init__(self) -> None:
        self.sql: list[str] = []

    def __call__(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.sql.append(statement)

    def count(self, table: str, verb: str = "SELECT") -> int:
        return sum(1 for s in self.sql if s.lstrip().upper().startswith(verb) and table in s)


def _recording() -> Iterator[_Statements]:
    rec = _Statements()
    engine = get_database().engine.sync_engine
    event.listen(engine, "before_cursor_execute", rec)
    try:
        yield rec
    finally:
        event.remove(engine, "before_cursor_execute", rec)


async def test_10000_recipient_batch_with_opted_out_recipients(
    client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    await setup_sms(client, tenant)
    h = tenant.headers("admin")
    out_of = [17, 4242, 9999]
    for i in out_of:
        await opt_out(client, tenant, "sms", phone(i))
    r = await client.post("/v1/compliance/lists/block", json={"value": phone(5000)}, headers=h)
    assert r.status_code == 201, r.text
    await add_word(client, tenant, word="casino", action="block")
    await set_rules(client, tenant, cap_count=5)
    recipients = [{"to": phone(i), "variables": {"n": str(i)}} for i in range(10_000)]
    gen = _recording()
    rec = next(gen)
    try:
        r = await client.post(
            "/v1/messages/batch",
            json={"class": "marketing", "body": "Offer {{n}} for you", "recipients": recipients},
            headers=h,
        )
    finally:
        gen.close()
    assert r.status_code == 202, r.text
    out = r.json()
    assert out["count"] == 10_000 and len(out["ids"]) == 10_000
    assert (out["accepted"], out["rejected"], out["held"]) == (9_996, 4, 0), out["results"]
    codes = {x["index"]: x["code"] for x in out["results"]}
    assert codes == {
        17: "message.recipient_opted_out",
        4242: "message.recipient_opted_out",
        9999: "message.recipient_opted_out",
        5000: "message.recipient_blocked",
    }
    assert all(x["field"] == f"recipients.{x['index']}.to" for x in out["results"])
    # batched: one lookup per kind whatever the number of recipients
    assert rec.count("compliance_opt_outs") == 1
    assert rec.count("compliance_list_entries") == 1
    assert rec.count("compliance_global_entries") == 1
    assert rec.count("connect_messages") == 1  # the frequency-cap counts, grouped
    st = await statuses(tenant)
    assert st == {"accepted": 9_996, "rejected": 4}, st
    async with _dispatch_rows() as ids:
        assert len(ids) == 9_996
