from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import pytest
from tests.conftest import TenantWorld
from tests.connect.messaging.conftest import setup_sms
from tests.helpers import api_snapshot, assert_cross_tenant_refused

from tessera.connect.compliance import service
from tessera.connect.schemas import MessageIn
from tessera.connect.service.send import send_message
from tessera.core import context
from tessera.core.db.session import unit_of_work

TO = "+8613912345678"


async def check(
    client: httpx.AsyncClient,
    world: TenantWorld,
    body: str,
    *,
    to: str = TO,
    cls: str = "notification",
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    payload: dict[str, Any] = {"to": to, "body": body, "class": cls}
    if now is not None:
        payload["now"] = now.isoformat()
    r = await client.post("/v1/compliance/check", json=payload, headers=world.headers("admin"))
    assert r.status_code == 200, r.text
    return r.json()


async def add_word(client: httpx.AsyncClient, world: TenantWorld, **body: Any) -> dict[str, Any]:
    r = await client.post("/v1/compliance/words", json=body, headers=world.headers("admin"))
    assert r.status_code == 201, r.text
    return r.json()


@pytest.mark.parametrize(
    ("word", "text"),
    [
        ("加微信", "详情请加-微-信咨询"),  # separators between characters
        ("加微信", "详情请加 微 信咨询"),  # spaces
        ("赌博", "线上賭博平台"),  # traditional to simplified
        ("wechat", "add me on ＷＥＣＨＡＴ now"),  # full width and case folding
        ("wechat", "add me on W.e.C.h.A.t now"),  # punctuation inside
        ("wechat", "add me on we\u200bchat now"),  # zero-width space
        ("wechat", "add me on wéchat now"),  # combining marks dropped after NFKD
        ("wechat", "add me on we😀chat now"),  # emoji inside
    ],
)
async def test_blocked_word_after_normalisation(
    client: httpx.AsyncClient, tenant: TenantWorld, word: str, text: str
) -> None:
    await add_word(client, tenant, word=word, category="fraud", action="block")
    d = await check(client, tenant, text)
    assert d["verdict"] == "block" and d["code"] == "message.blocked_word", d
    assert d["hits"][0]["category"] == "fraud"
    ok = await check(client, tenant, "an ordinary message")
    assert ok["verdict"] == "allow" and ok["code"] is None


async def test_replace_and_whole_word(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    await add_word(client, tenant, word="cheap", category="spam", action="replace", replacement="good")
    await add_word(client, tenant, word="ass", category="rude", action="replace", whole_word=True)
    d = await check(client, tenant, "Cheap class, you ass")
    assert d["verdict"] == "allow"
    assert d["replaced_body"] == "good class, you ***"


async def test_word_validation_and_duplicates(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    h = tenant.headers("admin")
    r = await client.post("/v1/compliance/words", json={"word": "!!!", "action": "block"}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["field"] == "word", r.text
    r = await client.post(
        "/v1/compliance/words", json={"word": "x", "action": "block", "replacement": "y"}, headers=h
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "replacement", r.text
    r = await client.post("/v1/compliance/words", json={"word": "x", "action": "nuke"}, headers=h)
    assert r.status_code == 422, r.text
    await add_word(client, tenant, word="spam", action="block")
    r = await client.post("/v1/compliance/words", json={"word": "spam", "action": "hold"}, headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "compliance.duplicate_word"
    r = await client.get("/v1/compliance/words", headers=tenant.headers("member"))
    assert r.status_code == 403


async def test_matcher_rebuilt_only_on_change(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    w = await add_word(client, tenant, word="casino", action="block")
    assert (await check(client, tenant, "casino night"))["verdict"] == "block"
    builds = service.matcher_builds()
    for _ in range(3):
        assert (await check(client, tenant, "casino night"))["verdict"] == "block"
    assert service.matcher_builds() == builds
    r = await client.delete(f"/v1/compliance/words/{w['id']}", headers=tenant.headers("admin"))
    assert r.status_code == 204
    assert (await check(client, tenant, "casino night"))["verdict"] == "allow"
    assert service.matcher_builds() == builds + 1


async def test_tenant_words_do_not_leak(
    client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    await add_word(client, tenant, word="lottery", action="block")
    assert (await check(client, tenant, "win the lottery"))["verdict"] == "block"
    assert (await check(client, other_tenant, "win the lottery"))["verdict"] == "allow"


async def test_global_lists_apply_to_every_tenant(
    client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    with context.tenant_scope(None):
        async with unit_of_work(platform=True) as s:
            await service.add_global_word(s, word="枪支", category="illegal", action="block")
            await service.add_global_entry(s, list_kind="block", value="+8613900000001")
    for world in (tenant, other_tenant):
        assert (await check(client, world, "出售槍支"))["verdict"] == "block"
        d = await check(client, world, "hello", to="+8613900000001")
        assert d["verdict"] == "reject" and d["code"] == "message.recipient_blocked"
    # a tenant can neither weaken a global word nor escape it, but its allow list overrides the global block list
    await add_word(client, tenant, word="枪支", action="replace", replacement="x")
    assert (await check(client, tenant, "出售枪支"))["verdict"] == "block"
    r = await client.post(
        "/v1/compliance/lists/allow", json={"value": "+86 139 0000 0001"}, headers=tenant.headers("admin")
    )
    assert r.status_code == 201, r.text
    assert (await check(client, tenant, "hello", to="+8613900000001"))["verdict"] == "allow"
    assert (await check(client, other_tenant, "hello", to="+8613900000001"))["verdict"] == "reject"


async def test_block_allow_empty_lists(
    client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    h = tenant.headers("admin")
    r = await client.post("/v1/compliance/lists/block", json={"value": "13912345678"}, headers=h)
    assert r.status_code == 201, r.text
    entry = r.json()
    assert entry["kind"] == "phone" and entry["phone"] == TO
    r = await client.post("/v1/compliance/lists/block", json={"value": TO}, headers=h)
    assert r.status_code == 409
    d = await check(client, tenant, "hi", cls="verification")
    assert d["verdict"] == "reject" and d["code"] == "message.recipient_blocked"
    assert (await check(client, other_tenant, "hi"))["verdict"] == "allow"
    await client.post("/v1/compliance/lists/empty", json={"value": "+8613800000002"}, headers=h)
    d = await check(client, tenant, "hi", to="+8613800000002")
    assert d["code"] == "message.recipient_empty_number"
    await client.post("/v1/compliance/lists/block", json={"value": "Bad@Example.com"}, headers=h)
    d = await check(client, tenant, "hi", to="bad@example.COM")
    assert d["code"] == "message.recipient_blocked"
    r = await client.post("/v1/compliance/lists/block", json={"value": "12ab"}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["field"] == "value", r.text
    r = await client.get("/v1/compliance/lists/block", headers=h)
    assert len(r.json()) == 2
    r = await client.get("/v1/compliance/lists/nope", headers=h)
    assert r.status_code == 422
    # masking for a role without pii:view is covered by the kernel; here: deletion
    r = await client.delete(f"/v1/compliance/list-entries/{entry['id']}", headers=h)
    assert r.status_code == 204
    assert (await check(client, tenant, "hi"))["verdict"] == "allow"


async def test_opt_out_per_channel_and_class(
    client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    h = tenant.headers("admin")
    r = await client.post("/v1/compliance/opt-outs", json={"channel": "sms", "address": TO}, headers=h)
    assert r.status_code == 201, r.text
    oid = r.json()["id"]
    for cls in ("marketing", "notification"):
        d = await check(client, tenant, "hello", cls=cls)
        assert d["verdict"] == "reject" and d["code"] == "message.recipient_opted_out"
    assert (await check(client, tenant, "your code", cls="verification"))["verdict"] == "allow"
    assert (await check(client, other_tenant, "hello", cls="marketing"))["verdict"] == "allow"
    r = await client.post(
        "/v1/compliance/opt-outs", json={"channel": "sms", "address": "13912345678"}, headers=h
    )
    assert r.status_code == 201 and r.json()["id"] == oid  # idempotent
    r = await client.get("/v1/compliance/opt-outs", headers=h)
    assert [o["id"] for o in r.json()] == [oid]
    r = await client.delete(f"/v1/compliance/opt-outs/{oid}", headers=h)
    assert r.status_code == 204
    assert (await check(client, tenant, "hello", cls="marketing"))["verdict"] == "allow"


async def test_quiet_hours_in_tenant_time_zone(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    # the test tenant is in Asia/Shanghai (UTC+8)
    r = await client.patch(
        "/v1/compliance/settings",
        json={"quiet_start": "21:00", "quiet_end": "08:00"},
        headers=tenant.headers("admin"),
    )
    assert r.status_code == 200, r.text
    assert r.json()["quiet_start"] == "21:00"
    late = dt.datetime(2026, 1, 1, 14, 0, tzinfo=dt.UTC)  # 22:00 in Shanghai
    d = await check(client, tenant, "sale!", cls="marketing", now=late)
    assert d["verdict"] == "hold" and d["code"] == "message.quiet_hours"
    assert dt.datetime.fromisoformat(d["not_before"]) == dt.datetime(2026, 1, 2, 0, 0, tzinfo=dt.UTC)
    early = dt.datetime(2026, 1, 1, 23, 30, tzinfo=dt.UTC)  # 07:30 next day in Shanghai
    d = await check(client, tenant, "sale!", cls="marketing", now=early)
    assert dt.datetime.fromisoformat(d["not_before"]) == dt.datetime(2026, 1, 2, 0, 0, tzinfo=dt.UTC)
    noon = dt.datetime(2026, 1, 1, 4, 0, tzinfo=dt.UTC)  # 12:00 in Shanghai (22:00 would be UTC-based)
    assert (await check(client, tenant, "sale!", cls="marketing", now=noon))["verdict"] == "allow"
    assert (await check(client, tenant, "your order shipped", cls="notification", now=late))[
        "verdict"
    ] == "allow"
    r = await client.patch(
        "/v1/compliance/settings", json={"quiet_start": "25:00"}, headers=tenant.headers("admin")
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "quiet_start", r.text
    r = await client.patch(
        "/v1/compliance/settings", json={"quiet_start": None}, headers=tenant.headers("admin")
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "quiet_hours", r.text


def test_quiet_window_not_wrapping() -> None:
    tz = "America/New_York"
    inside = dt.datetime(2026, 7, 1, 17, 0, tzinfo=dt.UTC)  # 13:00 EDT
    assert service.quiet_until(inside, tz, 12 * 60, 14 * 60) == dt.datetime(2026, 7, 1, 18, 0, tzinfo=dt.UTC)
    assert service.quiet_until(inside, tz, 14 * 60, 16 * 60) is None
    assert service.quiet_until(inside, tz, 600, 600) is None


async def test_frequency_cap(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    await setup_sms(client, tenant)
    r = await client.patch(
        "/v1/compliance/settings",
        json={"cap_count": 2, "cap_window_hours": 24},
        headers=tenant.headers("admin"),
    )
    assert r.status_code == 200, r.text
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            for _ in range(2):
                await send_message(s, MessageIn(to=TO, body="promo", **{"class": "marketing"}))
            await send_message(s, MessageIn(to="+8613912340000", body="promo", **{"class": "marketing"}))
    d = await check(client, tenant, "promo", cls="marketing")
    assert d["verdict"] == "reject" and d["code"] == "message.frequency_capped", d
    assert (await check(client, tenant, "promo", cls="marketing", to="+8613912340000"))["verdict"] == "allow"
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=25)
    assert (await check(client, tenant, "promo", cls="marketing", now=later))["verdict"] == "allow"
    assert (await check(client, tenant, "order", cls="notification"))["verdict"] == "allow"
    await client.post("/v1/compliance/lists/allow", json={"value": TO}, headers=tenant.headers("admin"))
    assert (await check(client, tenant, "promo", cls="marketing"))["verdict"] == "allow"


async def _hold(world: TenantWorld, body: str) -> uuid.UUID:
    with context.tenant_scope(world.tenant_id):
        async with unit_of_work() as s:
            d = await service.check_outbound(
                s, channel="sms", message_class="notification", to_e164_or_email=TO, body=body
            )
            assert d.verdict == "hold" and d.code == "message.held_for_review"
            payload = MessageIn(to=TO, body=body).model_dump(mode="json", by_alias=True, exclude_none=True)
            review = await service.hold_for_review(
                s, channel="sms", message_class="notification", to=TO, body=body, decision=d, payload=payload
            )
            return review.id


async def test_review_queue_approve_releases_message(
    client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    await setup_sms(client, tenant)
    await add_word(client, tenant, word="loan", category="finance", action="hold")
    h = tenant.headers("admin")
    rid = await _hold(tenant, "cheap loan today")
    r = await client.get("/v1/compliance/reviews", headers=h)
    assert [x["id"] for x in r.json()] == [str(rid)]
    assert r.json()[0]["hits"][0]["word"] == "loan"
    snap = await api_snapshot(client, f"/v1/compliance/reviews/{rid}", tenant)
    for method, path in (
        ("GET", f"/v1/compliance/reviews/{rid}"),
        ("POST", f"/v1/compliance/reviews/{rid}/approve"),
        ("POST", f"/v1/compliance/reviews/{rid}/reject"),
    ):
        await assert_cross_tenant_refused(client, method, path, other_tenant, snapshot=snap)
    r = await client.post(f"/v1/compliance/reviews/{rid}/approve", json={"note": "ok"}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved" and r.json()["message_id"]
    r2 = await client.get(f"/v1/messages/{r.json()['message_id']}", headers=h)
    assert r2.status_code == 200 and r2.json()["status"] == "accepted", r2.text
    r = await client.post(f"/v1/compliance/reviews/{rid}/reject", headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "compliance.review_decided"
    rid2 = await _hold(tenant, "another loan")
    r = await client.post(f"/v1/compliance/reviews/{rid2}/reject", headers=h)
    assert r.status_code == 200 and r.json()["status"] == "rejected" and r.json()["message_id"] is None


async def test_cross_tenant_refused_on_every_endpoint(
    client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    h = tenant.headers("admin")
    w = await add_word(client, tenant, word="secret", action="block")
    e = (await client.post("/v1/compliance/lists/block", json={"value": TO}, headers=h)).json()
    o = (await client.post("/v1/compliance/opt-outs", json={"address": TO}, headers=h)).json()
    words = await api_snapshot(client, "/v1/compliance/words", tenant)
    await assert_cross_tenant_refused(
        client, "DELETE", f"/v1/compliance/words/{w['id']}", other_tenant, snapshot=words
    )
    lists = await api_snapshot(client, "/v1/compliance/lists/block", tenant)
    await assert_cross_tenant_refused(
        client, "DELETE", f"/v1/compliance/list-entries/{e['id']}", other_tenant, snapshot=lists
    )
    opts = await api_snapshot(client, "/v1/compliance/opt-outs", tenant)
    await assert_cross_tenant_refused(
        client, "DELETE", f"/v1/compliance/opt-outs/{o['id']}", other_tenant, snapshot=opts
    )
    r = await client.get("/v1/compliance/words", headers=other_tenant.headers("admin"))
    assert r.json() == []


async def test_null_settings_reset_to_defaults(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    h = tenant.headers("admin")
    r = await client.patch(
        "/v1/compliance/settings",
        json={"opt_out_reply": "Bye", "cap_window_hours": 48, "opt_out_keywords": ["QUIT"]},
        headers=h,
    )
    assert r.status_code == 200, r.text
    r = await client.patch(
        "/v1/compliance/settings",
        json={"opt_out_reply": None, "cap_window_hours": None, "opt_out_keywords": None},
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["opt_out_reply"], r.json()["cap_window_hours"], r.json()["opt_out_keywords"]) == (
        "",
        24,
        [],
    )
