from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from tests.conftest import TenantWorld
from tests.connect.messaging.conftest import setup_sms
from tests.helpers import api_snapshot, assert_cross_tenant_refused

from tessera.connect.models import Message
from tessera.connect.verify import service
from tessera.connect.verify.models import Verification
from tessera.connect.voice.gateway import CallStatus, SimulatedVoiceGateway
from tessera.core import context
from tessera.core.db.base import utcnow
from tessera.core.db.session import unit_of_work
from tessera.core.jobs.models import Job
from tessera.core.jobs.worker import Worker

TO = "+8613912345678"


@pytest.fixture
def voice(tmp_path: Path) -> Iterator[SimulatedVoiceGateway]:
    gw = SimulatedVoiceGateway(tmp_path / "voice")
    service.set_voice_gateway(gw)
    yield gw
    service.set_voice_gateway(None)


async def start(client: httpx.AsyncClient, world: TenantWorld, **body: Any) -> dict[str, Any]:
    body.setdefault("to", TO)
    r = await client.post("/v1/verify", json=body, headers=world.headers("admin"))
    assert r.status_code == 201, r.text
    return r.json()


async def sent_code(world: TenantWorld, message_id: str) -> str:
    with context.tenant_scope(world.tenant_id):
        async with unit_of_work() as s:
            m = (await s.execute(select(Message).where(Message.id == uuid.UUID(message_id)))).scalar_one()
            assert m.message_class == "verification"
            found = re.search(r"\d{4,8}", m.body)
            assert found
            return found.group(0)


async def row(world: TenantWorld, vid: str) -> Verification:
    with context.tenant_scope(world.tenant_id):
        async with unit_of_work() as s:
            return (
                await s.execute(select(Verification).where(Verification.id == uuid.UUID(vid)))
            ).scalar_one()


async def run_verify_jobs() -> None:
    with context.tenant_scope(None):
        async with unit_of_work(platform=True) as s:
            await s.execute(
                update(Job).where(Job.queue == "verify", Job.status == "queued").values(run_at=utcnow())
            )
    await Worker(["verify"], cron=False, poll_seconds=0.05).run(stop_when_idle=True)


async def test_sms_code_check_and_hash_only(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    await setup_sms(client, tenant)
    v = await start(client, tenant, code_length=8, template="login")
    assert v["status"] == "pending" and v["message_id"] and v["channel"] == "sms"
    code = await sent_code(tenant, v["message_id"])
    assert len(code) == 8
    stored = await row(tenant, v["id"])
    assert code not in stored.code_hash and len(stored.code_salt) == 32
    wrong = "0" * 8 if code != "0" * 8 else "1" * 8
    h = tenant.headers("admin")
    r = await client.post(f"/v1/verify/{v['id']}/check", json={"code": wrong}, headers=h)
    assert r.status_code == 200 and r.json() == {"id": v["id"], "status": "denied", "checks_left": 4}
    r = await client.post(f"/v1/verify/{v['id']}/check", json={"code": code}, headers=h)
    assert r.json()["status"] == "approved"
    assert (await row(tenant, v["id"])).code_sealed is None
    r = await client.post(f"/v1/verify/{v['id']}/check", json={"code": code}, headers=h)
    assert r.json()["status"] == "denied"  # a code is used once
    r = await client.post(f"/v1/verify/{v['id']}/check", json={"code": "12ab"}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["field"] == "code"


async def test_at_most_five_checks(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    await setup_sms(client, tenant)
    v = await start(client, tenant, code_length=4)
    code = await sent_code(tenant, v["message_id"])
    wrong = "9999" if code != "9999" else "8888"
    h = tenant.headers("admin")
    for left in (4, 3, 2, 1, 0):
        r = await client.post(f"/v1/verify/{v['id']}/check", json={"code": wrong}, headers=h)
        assert r.json()["checks_left"] == left
    r = await client.post(f"/v1/verify/{v['id']}/check", json={"code": code}, headers=h)
    assert r.status_code == 429 and r.json()["error"]["code"] == "verify.rate_limited", r.text
    assert r.json()["error"]["details"]["rule"] == "max_checks"
    assert (await row(tenant, v["id"])).status == "refused"


async def test_resend_cooldown_and_new_code(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    await setup_sms(client, tenant)
    v = await start(client, tenant)
    first = await sent_code(tenant, v["message_id"])
    h = tenant.headers("admin")
    r = await client.post(f"/v1/verify/{v['id']}/resend", headers=h)
    assert r.status_code == 429 and r.json()["error"]["details"]["rule"] == "resend_cooldown", r.text
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            await s.execute(update(Verification).values(last_sent_at=utcnow() - dt.timedelta(seconds=31)))
    r = await client.post(f"/v1/verify/{v['id']}/resend", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["sends"] == 2 and r.json()["message_id"] != v["message_id"]
    second = await sent_code(tenant, r.json()["message_id"])
    if second != first:
        r = await client.post(f"/v1/verify/{v['id']}/check", json={"code": first}, headers=h)
        assert r.json()["status"] == "denied"
    r = await client.post(f"/v1/verify/{v['id']}/check", json={"code": second}, headers=h)
    assert r.json()["status"] == "approved"


async def test_limits_per_number_and_tenant(
    client: httpx.AsyncClient, tenant: TenantWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    await setup_sms(client, tenant)
    monkeypatch.setattr(service, "PER_NUMBER", (2, 600))
    monkeypatch.setattr(service, "PER_TENANT", (3, 60))
    for _ in range(2):
        await start(client, tenant)
    r = await client.post("/v1/verify", json={"to": TO}, headers=tenant.headers("admin"))
    assert r.status_code == 429 and r.json()["error"]["field"] == "to", r.text
    assert r.json()["error"]["details"]["rule"] == "per_number"
    await start(client, tenant, to="+8613912340000")
    r = await client.post("/v1/verify", json={"to": "+8613912340001"}, headers=tenant.headers("admin"))
    assert r.status_code == 429 and r.json()["error"]["details"]["rule"] == "per_tenant", r.text


async def test_limit_per_end_user_ip(
    client: httpx.AsyncClient, tenant: TenantWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    await setup_sms(client, tenant)
    monkeypatch.setattr(service, "PER_IP", (2, 600))
    for i in range(2):
        await start(client, tenant, to=f"+86139123400{i:02d}", client_ip="203.0.113.7")
    r = await client.post(
        "/v1/verify",
        json={"to": "+8613912340099", "client_ip": "203.0.113.7"},
        headers=tenant.headers("admin"),
    )
    assert r.status_code == 429 and r.json()["error"]["details"]["rule"] == "per_ip", r.text
    await start(client, tenant, to="+8613912340099", client_ip="203.0.113.8")
    r = await client.post(
        "/v1/verify", json={"to": TO, "client_ip": "not-an-ip"}, headers=tenant.headers("admin")
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "client_ip", r.text


async def test_validation(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    await setup_sms(client, tenant)
    h = tenant.headers("admin")
    for body, field in (
        ({"to": TO, "code_length": 9}, "code_length"),
        ({"to": TO, "code_length": 3}, "code_length"),
        ({"to": TO, "ttl_seconds": 10}, "ttl_seconds"),
        ({"to": "abc"}, "to"),
        ({"to": TO, "channel": "email"}, "channel"),
        ({"to": TO, "channel": "fax"}, "channel"),
    ):
        r = await client.post("/v1/verify", json=body, headers=h)
        assert r.status_code == 422, r.text
        assert field in (r.json()["error"]["field"] or ""), r.text
    await client.post("/v1/compliance/lists/block", json={"value": TO}, headers=h)
    r = await client.post("/v1/verify", json={"to": TO}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["details"]["rule"] == "message.recipient_blocked", (
        r.text
    )
    # an opt-out from marketing does not stop a code the user asked for
    await client.post("/v1/compliance/opt-outs", json={"address": "+8613912340000"}, headers=h)
    await start(client, tenant, to="+8613912340000")


async def test_voice_fallback_when_sms_not_delivered(
    client: httpx.AsyncClient, tenant: TenantWorld, voice: SimulatedVoiceGateway
) -> None:
    await setup_sms(client, tenant)
    v = await start(client, tenant, locale="zh-CN", fallback_after_seconds=5, template="signup")
    code = await sent_code(tenant, v["message_id"])
    assert (await row(tenant, v["id"])).code_sealed == code
    await run_verify_jobs()
    assert len(voice.calls) == 1
    call = voice.calls[0]
    assert call.to == TO and call.reference == f"verify:{v['id']}" and call.audio_path.exists()
    assert call.result.status is CallStatus.ANSWERED and call.result.duration_ms > 1000
    stored = await row(tenant, v["id"])
    assert stored.voice_used and stored.voice_status == "answered" and stored.code_sealed is None
    r = await client.get(f"/v1/verify/{v['id']}", headers=tenant.headers("admin"))
    assert r.json()["voice_used"] is True
    r = await client.post(f"/v1/verify/{v['id']}/check", json={"code": code}, headers=tenant.headers("admin"))
    assert r.json()["status"] == "approved"


async def test_no_fallback_when_delivered_and_stats(
    client: httpx.AsyncClient, tenant: TenantWorld, voice: SimulatedVoiceGateway
) -> None:
    await setup_sms(client, tenant)
    v = await start(client, tenant, template="login")
    v2 = await start(client, tenant, template="login", to="+8613912340000")
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            await s.execute(
                update(Message)
                .where(Message.id == uuid.UUID(v["message_id"]))
                .values(status="delivered", done_at=utcnow() + dt.timedelta(seconds=2))
            )
    await run_verify_jobs()
    assert [c.to for c in voice.calls] == ["+8613912340000"]
    assert (await row(tenant, v["id"])).delivered_at is not None
    code = await sent_code(tenant, v["message_id"])
    await client.post(f"/v1/verify/{v['id']}/check", json={"code": code}, headers=tenant.headers("admin"))
    r = await client.get("/v1/verify/stats", headers=tenant.headers("admin"))
    assert r.status_code == 200, r.text
    [s] = r.json()
    assert s["template"] == "login" and s["sent"] == 2 and s["delivered"] == 2 and s["approved"] == 1
    assert s["voice_fallbacks"] == 1 and s["conversion_rate"] == 0.5
    assert s["avg_seconds_to_delivery"] is not None and s["avg_seconds_to_delivery"] >= 0
    assert v2["id"]


async def test_voice_channel(
    client: httpx.AsyncClient, tenant: TenantWorld, voice: SimulatedVoiceGateway
) -> None:
    v = await start(client, tenant, channel="voice", code_length=4)
    assert v["message_id"] is None
    await run_verify_jobs()
    assert len(voice.calls) == 1 and voice.calls[0].to == TO


async def test_cross_tenant(
    client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    await setup_sms(client, tenant)
    v = await start(client, tenant)
    snap = await api_snapshot(client, f"/v1/verify/{v['id']}", tenant)
    await assert_cross_tenant_refused(client, "GET", f"/v1/verify/{v['id']}", other_tenant, snapshot=snap)
    await assert_cross_tenant_refused(
        client, "POST", f"/v1/verify/{v['id']}/check", other_tenant, json={"code": "123456"}, snapshot=snap
    )
    await assert_cross_tenant_refused(
        client, "POST", f"/v1/verify/{v['id']}/resend", other_tenant, snapshot=snap
    )
    r = await client.get("/v1/verify/stats", headers=other_tenant.headers("admin"))
    assert r.json() == []


async def test_over_quota_code_stores_nothing(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    """The verification row and its fallback job are written before the send, whose quota
    refusal comes last: the 402 rolls all of them back."""
    from tests.connect.messaging.test_quota import fill_sms_allowance, stored

    await setup_sms(client, tenant)
    await fill_sms_allowance(tenant)
    r = await client.post(
        "/v1/verify", json={"to": TO, "fallback_after_seconds": 30}, headers=tenant.headers("admin")
    )
    assert r.status_code == 402, r.text
    assert r.json()["error"]["code"] == "subscription.quota_exceeded"
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            assert (await s.execute(select(Verification.id))).first() is None
            assert (await s.execute(select(Job.id).where(Job.queue == "verify"))).first() is None
    after = await stored(tenant)
    assert (after["messages"], after["events"], after["dispatch"], after["sms_used"]) == (0, 0, 0, 1_000)


async def test_refused_codes_leave_no_row(
    client: httpx.AsyncClient, tenant: TenantWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the verification row goes in with the limits' counts: a refusal (a limit,
    a blocked number) rolls it back, so only the codes sent have rows."""
    await setup_sms(client, tenant)
    monkeypatch.setattr(service, "PER_NUMBER", (1, 600))
    sent = await start(client, tenant)
    r = await client.post("/v1/verify", json={"to": TO}, headers=tenant.headers("admin"))
    assert r.status_code == 429 and r.json()["error"]["details"]["rule"] == "per_number", r.text
    blocked = "+8613912340077"
    r = await client.post(
        "/v1/compliance/lists/block", json={"value": blocked}, headers=tenant.headers("admin")
    )
    assert r.status_code == 201, r.text
    r = await client.post("/v1/verify", json={"to": blocked}, headers=tenant.headers("admin"))
    assert r.status_code == 422, r.text
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            ids = list((await s.execute(select(Verification.id))).scalars())
            messages = list((await s.execute(select(Message.id))).scalars())
    assert ids == [uuid.UUID(sent["id"])]
    assert messages == [uuid.UUID(sent["message_id"])]
    v = await row(tenant, sent["id"])
    # sealed for the voice fallback (on by default), like a row the ORM wrote
    assert (v.status, v.sends, v.checks, v.fallback_after) == ("pending", 1, 0, 30)
    assert v.code_sealed == await sent_code(tenant, sent["message_id"])
    assert v.updated_at is not None and v.tenant_id == tenant.tenant_id


async def test_a_code_costs_five_statements_on_postgres(
    client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    """POST /v1/verify (no voice fallback: its job is two statements more) on PostgreSQL: BEGIN
    with the tenant; the row with the limits' counts and the compliance lookups (lists, word
    versions); the channel with its send context; the message insert (events, dispatch row,
    NOTIFY); the quota; then
    the commit."""
    from sqlalchemy import event

    from tessera.core.db.session import get_database

    await setup_sms(client, tenant)
    await start(client, tenant, to="+8613912340001")  # warm caches (matcher, API key)
    engine = get_database().engine.sync_engine
    sql: list[str] = []

    def rec(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sql.append(statement)

    event.listen(engine, "before_cursor_execute", rec)
    try:
        await start(client, tenant, to="+8613912340002", fallback_after_seconds=None)
    finally:
        event.remove(engine, "before_cursor_execute", rec)
    if engine.dialect.name == "postgresql":
        assert len(sql) <= 5, [s[:150] for s in sql]
    else:
        assert len(sql) <= 13, sql
