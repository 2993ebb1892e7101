from __future__ import annotations

import httpx
import pytest
from sqlalchemy import func, select
from tests.conftest import TenantWorld
from tests.connect.messaging.conftest import phone, setup_sms, uid
from tests.helpers import api_snapshot, assert_cross_tenant_refused

from tessera.connect.models import DispatchItem, Message
from tessera.core import context
from tessera.core.db.session import unit_of_work


async def count_messages(world: TenantWorld) -> int:
    with context.tenant_scope(world.tenant_id):
        async with unit_of_work() as s:
            return int((await s.execute(select(func.count()).select_from(Message))).scalar_one())


async def approved_template(
    client: httpx.AsyncClient, world: TenantWorld, body: str, cls: str = "notification"
) -> str:
    h = world.headers("admin")
    r = await client.post(
        "/v1/templates", json={"name": "t", "class": cls, "bodies": {"sms": body}}, headers=h
    )
    assert r.status_code == 201, r.text
    tid = r.json()["id"]
    assert r.json()["variables"] == [v for v in ("name", "code") if "{{" + v + "}}" in body]
    assert (await client.post(f"/v1/templates/{tid}/submit", headers=h)).json()["status"] == "pending"
    assert (await client.post(f"/v1/templates/{tid}/approve", headers=h)).json()["status"] == "approved"
    return tid


async def test_send_one_and_read_back(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    await setup_sms(client, tenant, signature="Tessera")
    r = await client.post(
        "/v1/messages",
        json={
            "to": "13800138000",
            "body": "Your code is 1234",
            "class": "verification",
            "reference": "ref-1",
        },
        headers=tenant.headers("member"),
    )
    assert r.status_code == 202, r.text
    mid = r.json()["id"]
    assert r.json()["encoding"] == "UCS-2"  # the 【】 signature is not GSM-7
    r = await client.get(f"/v1/messages/{mid}", headers=tenant.headers("member"))
    assert r.status_code == 200, r.text
    m = r.json()
    assert m["status"] == "accepted" and m["body"] == "【Tessera】Your code is 1234"
    assert m["class"] == "verification" and m["to"] != "+8613800138000"  # masked for a member
    assert [e["status"] for e in m["events"]] == ["accepted"]
    r = await client.get("/v1/messages", params={"to": "+86 138 0013 8000"}, headers=tenant.headers("member"))
    assert [x["id"] for x in r.json()["items"]] == [mid]
    r = await client.get("/v1/messages", params={"to": "13900000000"}, headers=tenant.headers("member"))
    assert r.json()["items"] == []
    r = await client.get(
        "/v1/messages", params={"reference": "ref-1", "status": "accepted"}, headers=tenant.headers("member")
    )
    assert len(r.json()["items"]) == 1


async def test_batch_with_variables_and_pagination(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    await setup_sms(client, tenant)
    tid = await approved_template(client, tenant, "Hi {{name}}, sale today", "marketing")
    recipients = [{"to": phone(i), "variables": {"name": f"N{i}"}} for i in range(25)]
    r = await client.post(
        "/v1/messages/batch",
        json={"class": "marketing", "template_id": tid, "recipients": recipients},
        headers=tenant.headers("admin"),
    )
    assert r.status_code == 202, r.text
    assert r.json()["count"] == 25
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": "10", **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/messages", params=params, headers=tenant.headers("admin"))).json()
        seen += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(r.json()["ids"])
    one = (await client.get(f"/v1/messages/{r.json()['ids'][3]}", headers=tenant.headers("admin"))).json()
    assert one["body"] == "Hi N3, sale today" and one["to"] == phone(3)


@pytest.mark.parametrize(
    ("payload", "field", "rule"),
    [
        ({"to": "12345", "body": "x"}, "to", "invalid_phone"),
        ({"to": "13800138000", "body": "   "}, "body", "required"),
        (
            {"to": "13800138000", "body": "Hi {{name}}", "variables": {"nmae": "x"}},
            "variables.nmae",
            "unknown_variable",
        ),
        ({"to": "13800138000", "body": "Hi {{name}}"}, "variables.name", "missing_variable"),
        ({"to": "13800138000", "body": "x", "channel": "fax"}, "channel", "literal_error"),
        ({"to": "13800138000", "body": "x", "channel": "wechat"}, "channel", "unsupported_channel"),
    ],
)
async def test_bad_input_names_field_and_rule(
    client: httpx.AsyncClient, tenant: TenantWorld, payload: dict, field: str, rule: str
) -> None:
    await setup_sms(client, tenant)
    r = await client.post("/v1/messages", json=payload, headers=tenant.headers("admin"))
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["field"] == field and err["details"]["rule"] == rule, err
    assert await count_messages(tenant) == 0


async def test_unapproved_template_refused(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    await setup_sms(client, tenant)
    r = await client.post(
        "/v1/templates",
        json={"name": "t", "class": "marketing", "bodies": {"sms": "Sale!"}},
        headers=tenant.headers("admin"),
    )
    tid = r.json()["id"]
    r = await client.post(
        "/v1/messages",
        json={"to": "13800138000", "template_id": tid, "class": "marketing"},
        headers=tenant.headers("admin"),
    )
    assert r.status_code == 422 and r.json()["error"]["details"]["rule"] == "template_not_approved"
    r = await client.post(f"/v1/templates/{tid}/submit", headers=tenant.headers("admin"))
    r = await client.post(
        f"/v1/templates/{tid}/reject", json={"reason": "wording"}, headers=tenant.headers("admin")
    )
    assert r.json()["status"] == "rejected" and r.json()["reject_reason"] == "wording"
    r = await client.post(f"/v1/templates/{tid}/approve", headers=tenant.headers("admin"))
    assert r.status_code == 409
    assert await count_messages(tenant) == 0


async def test_batch_limits_and_all_or_nothing(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    await setup_sms(client, tenant)
    too_many = [{"to": "13800138000"}] * 10_001
    r = await client.post(
        "/v1/messages/batch", json={"body": "x", "recipients": too_many}, headers=tenant.headers("admin")
    )
    assert r.status_code == 422
    assert r.json()["error"]["field"] == "recipients" and r.json()["error"]["details"]["rule"] == "too_long"
    rec = [{"to": phone(i)} for i in range(50)] + [{"to": "bad"}]
    r = await client.post(
        "/v1/messages/batch", json={"body": "x", "recipients": rec}, headers=tenant.headers("admin")
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "recipients.50.to"
    assert await count_messages(tenant) == 0
    with context.tenant_scope(None):
        async with unit_of_work(platform=True) as s:
            assert (await s.execute(select(func.count()).select_from(DispatchItem))).scalar_one() == 0


async def test_preview(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    r = await client.post(
        "/v1/messages/preview", json={"body": "您好" * 40}, headers=tenant.headers("member")
    )
    assert r.status_code == 200
    assert r.json()["encoding"] == "UCS-2" and r.json()["segments"] == 2
    r = await client.post("/v1/messages/preview", json={"body": "hello"}, headers=tenant.headers("member"))
    assert r.json()["encoding"] == "GSM-7" and r.json()["segments"] == 1


async def test_permissions(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    r = await client.post("/v1/channels", json={"kind": "sms", "name": "x"}, headers=tenant.headers("member"))
    assert r.status_code == 403
    r = await client.post(
        "/v1/messages", json={"to": "13800138000", "body": "x"}, headers=tenant.headers("read-only")
    )
    assert r.status_code == 403


async def test_cross_tenant_refused(
    client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    ids = await setup_sms(client, tenant)
    ch, link = ids["channel_id"], ids["link_ids"][0]
    mid = (
        await client.post(
            "/v1/messages", json={"to": "13800138000", "body": "x"}, headers=tenant.headers("admin")
        )
    ).json()["id"]
    h = tenant.headers("admin")
    tid = (
        await client.post(
            "/v1/templates", json={"name": "t", "class": "marketing", "bodies": {"sms": "x"}}, headers=h
        )
    ).json()["id"]
    sid = (await client.post("/v1/signatures", json={"text": "Brand"}, headers=h)).json()["id"]
    route = (await client.get(f"/v1/channels/{ch}/routes", headers=h)).json()[0]["id"]
    await setup_sms(client, other_tenant)
    checks = [
        ("GET", f"/v1/messages/{mid}", None, f"/v1/messages/{mid}"),
        ("GET", f"/v1/templates/{tid}", None, f"/v1/templates/{tid}"),
        ("PATCH", f"/v1/templates/{tid}", {"name": "pwned"}, f"/v1/templates/{tid}"),
        ("POST", f"/v1/templates/{tid}/submit", None, f"/v1/templates/{tid}"),
        ("POST", f"/v1/templates/{tid}/approve", None, f"/v1/templates/{tid}"),
        ("POST", f"/v1/templates/{tid}/reject", {"reason": "x"}, f"/v1/templates/{tid}"),
        ("DELETE", f"/v1/templates/{tid}", None, f"/v1/templates/{tid}"),
        ("POST", f"/v1/signatures/{sid}/approve", None, "/v1/signatures"),
        ("POST", f"/v1/signatures/{sid}/reject", None, "/v1/signatures"),
        ("GET", f"/v1/channels/{ch}", None, f"/v1/channels/{ch}"),
        ("PATCH", f"/v1/channels/{ch}", {"name": "pwned"}, f"/v1/channels/{ch}"),
        ("GET", f"/v1/channels/{ch}/links", None, f"/v1/channels/{ch}/links"),
        (
            "POST",
            f"/v1/channels/{ch}/links",
            {"name": "x", "host": "h", "port": 1, "system_id": "s", "password": "p"},
            f"/v1/channels/{ch}/links",
        ),
        ("GET", f"/v1/links/{link}", None, f"/v1/links/{link}"),
        ("PATCH", f"/v1/links/{link}", {"window": 1}, f"/v1/links/{link}"),
        ("DELETE", f"/v1/links/{link}", None, f"/v1/links/{link}"),
        ("GET", f"/v1/channels/{ch}/routes", None, f"/v1/channels/{ch}/routes"),
        ("POST", f"/v1/channels/{ch}/routes", {"link_id": link}, f"/v1/channels/{ch}/routes"),
        ("DELETE", f"/v1/routes/{route}", None, f"/v1/channels/{ch}/routes"),
    ]
    for method, path, body, read in checks:
        snap = await api_snapshot(client, read, tenant)
        await assert_cross_tenant_refused(client, method, path, other_tenant, json=body, snapshot=snap)
    # the other tenant's lists do not show the victim's records; sending on a foreign channel is refused
    r = await client.get("/v1/messages", headers=other_tenant.headers("owner"))
    assert r.json()["items"] == []
    r = await client.post(
        "/v1/messages",
        json={"to": "13800138000", "body": "x", "channel_id": ch},
        headers=other_tenant.headers("owner"),
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "channel_id"
    assert uid()
