from __future__ import annotations

from typing import Any

import httpx
from tests.conftest import TenantWorld
from tests.connect.messaging.conftest import wait_final

from tessera.connect.adapters.wechat import WeChatClient, WeChatError
from tessera.connect.adapters.wechat_fake import FakeWeChat


async def test_wechat_client_official_shapes_and_token_refresh() -> None:
    fake = FakeWeChat()
    c = WeChatClient(
        "wx-test", "s3cret", api_base="http://wechat", transport=httpx.ASGITransport(app=fake.app)
    )
    msgid = await c.send_template("openid-1", "TPL-1", {"code": "1234"})
    assert fake.sent[0]["touser"] == "openid-1" and fake.sent[0]["data"] == {"code": {"value": "1234"}}
    assert fake.sent[0]["msgid"] == int(msgid)
    fake.expire_tokens()
    await c.send_template("openid-2", "TPL-1", {"code": "5678"})
    assert fake.token_requests == 2 and len(fake.sent) == 2
    try:
        await c.send_template("openid-3", "NOPE", {})
        raise AssertionError("unknown template accepted")
    except WeChatError as exc:
        assert exc.errcode == 40037
    bad = WeChatClient(
        "wx-test", "wrong", api_base="http://wechat", transport=httpx.ASGITransport(app=fake.app)
    )
    try:
        await bad.token()
        raise AssertionError("bad secret accepted")
    except WeChatError as exc:
        assert exc.errcode == 40125
    await c.close()
    await bad.close()


async def test_wechat_template_message_through_pipeline(
    client: httpx.AsyncClient, tenant: TenantWorld, gateway: Any
) -> None:
    fake = FakeWeChat()
    h = tenant.headers("admin")
    r = await client.post(
        "/v1/channels",
        json={
            "kind": "wechat",
            "name": "Official account",
            "settings": {"appid": "wx-test", "api_base": "http://wechat"},
            "secret": "s3cret",
        },
        headers=h,
    )
    ch = r.json()["id"]
    assert "secret" not in r.json()
    r = await client.post(
        "/v1/templates",
        json={
            "name": "order",
            "class": "notification",
            "bodies": {"wechat": "Order {{order}} shipped"},
            "external_id": "TPL-1",
        },
        headers=h,
    )
    tid = r.json()["id"]
    await client.post(f"/v1/templates/{tid}/submit", headers=h)
    await client.post(f"/v1/templates/{tid}/approve", headers=h)
    r = await client.post(
        "/v1/messages",
        json={
            "channel": "wechat",
            "channel_id": ch,
            "to": "oAbC123",
            "template_id": tid,
            "variables": {"order": "A-1"},
        },
        headers=h,
    )
    assert r.status_code == 202, r.text
    mid = r.json()["id"]
    r = await client.post(
        "/v1/messages",
        json={"channel": "wechat", "channel_id": ch, "to": "oAbC123", "body": "free text"},
        headers=h,
    )
    assert r.status_code == 422 and r.json()["error"]["details"]["rule"] == "required"
    d = await gateway(wechat_transport=httpx.ASGITransport(app=fake.app))

    async def submitted() -> bool:
        m = (await client.get(f"/v1/messages/{mid}", headers=h)).json()
        return m["status"] == "submitted"

    from tests.connect.messaging.conftest import wait_until

    await wait_until(submitted, timeout=10)
    assert fake.sent[0]["touser"] == "oAbC123" and fake.sent[0]["template_id"] == "TPL-1"
    assert fake.sent[0]["data"] == {"order": {"value": "A-1"}}
    import uuid

    await d.wechat_event(uuid.UUID(ch), str(fake.sent[0]["msgid"]), "success")
    await wait_final(tenant, 1, timeout=10)
    m = (await client.get(f"/v1/messages/{mid}", headers=h)).json()
    assert m["status"] == "delivered" and m["carrier_ids"] == [str(fake.sent[0]["msgid"])]
