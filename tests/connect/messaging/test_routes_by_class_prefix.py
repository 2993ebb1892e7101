"""Routes keyed by message class and number prefix, route reload on a miss, link and channel
editing (secrets write-only, the gateway rebinds an edited link), source address rules, and the
approval permission of templates and signatures."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
from tests.conftest import TenantWorld
from tests.connect.messaging.conftest import setup_sms, wait_final, wait_until

from tessera.connect import routing
from tessera.connect.dispatcher import Dispatcher, TenantRoutes
from tessera.connect.routing import RouteRow
from tessera.connect.smpp.server import SmscSimulator

A, B, C, D, E = (uuid.uuid4() for _ in range(5))
CH = uuid.uuid4()


def table(rows: list[RouteRow]) -> TenantRoutes:
    return TenantRoutes(time.monotonic(), {}, {CH: rows})


# --- matching (pure) ------------------------------------------------------------------------


def test_class_specific_routes_come_before_any_class_routes() -> None:
    r = table(
        [
            RouteRow(0, "*", A, 100),
            RouteRow(0, "*", B, 100, None, "verification"),
            RouteRow(0, "China Mobile", C, 100),
        ]
    )
    # verification: its own catch-all first, then the any-class carrier route, then the default
    assert Dispatcher._candidates(r, CH, "China Mobile", "+8613800000000", "verification") == [B, C, A]
    assert Dispatcher._candidates(r, CH, "China Mobile", "+8613800000000", "marketing") == [C, A]
    assert Dispatcher._candidates(r, CH, "China Unicom", "+8613000000000", "notification") == [A]


def test_carrier_then_longest_prefix_before_the_default() -> None:
    rows = [
        RouteRow(0, "*", A, 100),
        RouteRow(0, "*", B, 100, "+86"),
        RouteRow(0, "*", C, 100, "+86138"),
        RouteRow(0, "China Mobile", D, 100),
        RouteRow(0, "*", E, 100, "+1"),
    ]
    r = table(rows)
    assert Dispatcher._candidates(r, CH, "China Mobile", "+8613800000000", "notification") == [D, C, B, A]
    assert Dispatcher._candidates(r, CH, "China Unicom", "+8613800000000", "notification") == [C, B, A]
    assert Dispatcher._candidates(r, CH, "China Unicom", "+8613000000000", "notification") == [B, A]
    assert Dispatcher._candidates(r, CH, "", "+14155550100", "marketing") == [E, A]
    assert Dispatcher._candidates(r, CH, "", "+447700900000", "marketing") == [A]
    # what decided is recorded on the message
    top = routing.order(routing.ranked(rows, "China Unicom", "+8613800000000", "notification"))[0]
    assert routing.describe(top) == {"class": None, "carrier": "*", "prefix": "+86138"}


def test_priorities_and_weights_still_apply_within_the_chosen_group() -> None:
    r = table(
        [
            RouteRow(0, "*", A, 300, "+86", "marketing"),
            RouteRow(0, "*", B, 100, "+86", "marketing"),
            RouteRow(1, "*", C, 100, "+86", "marketing"),
            RouteRow(0, "*", D, 100),
        ]
    )
    firsts = [Dispatcher._candidates(r, CH, "x", "+8613800000000", "marketing") for _ in range(2000)]
    share = sum(1 for f in firsts if f[0] == A) / 2000
    assert 0.68 < share < 0.82
    assert all(f[2:] == [C, D] for f in firsts)  # next priority, then the default as last failover


def test_source_rules() -> None:
    assert routing.source_allowed({}, "anything")
    assert routing.source_allowed({"allowed": []}, "x")
    rules = {"allowed": ["10690001", "1068*"]}
    assert routing.source_allowed(rules, "10690001") and routing.source_allowed(rules, "106812")
    assert not routing.source_allowed(rules, "10690002") and not routing.source_allowed(rules, "")


# --- REST: routes ---------------------------------------------------------------------------


async def test_route_fields_create_update_list_and_validation(
    client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    ids = await setup_sms(client, tenant, links=2)
    h = tenant.headers("admin")
    ch, (l0, l1) = ids["channel_id"], ids["link_ids"]
    r = await client.post(
        f"/v1/channels/{ch}/routes",
        json={"class": "verification", "prefix": "+8613", "link_id": l1, "weight": 50},
        headers=h,
    )
    assert r.status_code == 201, r.text
    route = r.json()
    assert route["class"] == "verification" and route["prefix"] == "+8613" and route["carrier"] == "*"
    listed = (await client.get(f"/v1/channels/{ch}/routes", headers=h)).json()
    assert {(x["class"], x["prefix"]) for x in listed} == {(None, None), ("verification", "+8613")}

    for body, field in (
        ({"prefix": "8613", "link_id": l0}, "prefix"),
        ({"prefix": "+86 13", "link_id": l0}, "prefix"),
        ({"prefix": "+0", "link_id": l0}, "prefix"),
        ({"class": "urgent", "link_id": l0}, "class"),
        ({"link_id": str(uuid.uuid4())}, "link_id"),
    ):
        r = await client.post(f"/v1/channels/{ch}/routes", json=body, headers=h)
        assert r.status_code == 422, body
        assert r.json()["error"]["field"] == field, r.text
    assert len((await client.get(f"/v1/channels/{ch}/routes", headers=h)).json()) == 3  # nothing written

    r = await client.patch(f"/v1/routes/{route['id']}", json={"prefix": "+86", "class": None}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["prefix"] == "+86" and r.json()["class"] is None and r.json()["weight"] == 50
    r = await client.patch(f"/v1/routes/{route['id']}", json={"prefix": "x"}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["field"] == "prefix"
    assert (await client.get(f"/v1/routes/{route['id']}", headers=h)).json()["prefix"] == "+86"

    # another tenant neither sees nor changes it, and cannot point it at its own link
    oh = other_tenant.headers("admin")
    assert (await client.get(f"/v1/routes/{route['id']}", headers=oh)).status_code == 404
    r = await client.patch(f"/v1/routes/{route['id']}", json={"weight": 1}, headers=oh)
    assert r.status_code == 404
    other = await setup_sms(client, other_tenant, links=1)
    r = await client.patch(f"/v1/routes/{route['id']}", json={"link_id": other["link_ids"][0]}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["field"] == "link_id"


# --- end to end -----------------------------------------------------------------------------


async def test_messages_take_the_route_of_their_class_and_prefix(
    client: httpx.AsyncClient, tenant: TenantWorld, smsc: SmscSimulator, gateway: Any
) -> None:
    ids = await setup_sms(client, tenant, smsc, links=2)
    h = tenant.headers("admin")
    ch, (l0, l1) = ids["channel_id"], ids["link_ids"]
    r = await client.post(
        f"/v1/channels/{ch}/routes",
        json={"class": "verification", "prefix": "+86139", "link_id": l1, "priority": 0},
        headers=h,
    )
    assert r.status_code == 201, r.text
    await gateway()
    sent = {}
    for key, to, cls in (
        ("code", "13900000001", "verification"),
        ("code_other_prefix", "13800000001", "verification"),
        ("note", "13900000002", "notification"),
    ):
        r = await client.post("/v1/messages", json={"to": to, "body": key, "class": cls}, headers=h)
        assert r.status_code == 202, r.text
        sent[key] = r.json()["id"]
    await wait_final(tenant, 3, timeout=15)
    got = {k: (await client.get(f"/v1/messages/{v}", headers=h)).json() for k, v in sent.items()}
    assert got["code"]["link_id"] == l1 and got["code"]["status"] == "delivered"
    assert got["code"]["route"]["rule"] == {"class": "verification", "carrier": "*", "prefix": "+86139"}
    assert got["code_other_prefix"]["link_id"] == l0
    assert got["note"]["link_id"] == l0
    assert got["note"]["route"]["rule"] == {"class": None, "carrier": "*", "prefix": None}


async def test_a_route_created_after_the_table_was_cached_is_used(
    client: httpx.AsyncClient, tenant: TenantWorld, smsc: SmscSimulator, gateway: Any
) -> None:
    h = tenant.headers("admin")
    ch = (await client.post("/v1/channels", json={"kind": "sms", "name": "S"}, headers=h)).json()["id"]
    body = {"name": "l", "host": "127.0.0.1", "port": smsc.port, "system_id": "acct0", "password": "pw"}
    link = (await client.post(f"/v1/channels/{ch}/links", json=body, headers=h)).json()["id"]
    d = await gateway()  # loads (and caches) the tenant's table: no route yet
    assert d.routes[tenant.tenant_id].routes.get(uuid.UUID(ch)) in (None, [])
    r = await client.post(f"/v1/channels/{ch}/routes", json={"link_id": link}, headers=h)
    assert r.status_code == 201
    mid = (await client.post("/v1/messages", json={"to": "13800000009", "body": "hi"}, headers=h)).json()[
        "id"
    ]
    await wait_final(tenant, 1, timeout=10)
    m = (await client.get(f"/v1/messages/{mid}", headers=h)).json()
    assert m["status"] == "delivered" and m["link_id"] == link, m


async def test_a_real_miss_is_rejected_and_reloads_are_bounded(
    client: httpx.AsyncClient, tenant: TenantWorld, smsc: SmscSimulator, gateway: Any
) -> None:
    ids = await setup_sms(client, tenant, smsc, links=1)
    h = tenant.headers("admin")
    ch = ids["channel_id"]
    # the only route is for marketing: notifications have none
    route = (await client.get(f"/v1/channels/{ch}/routes", headers=h)).json()[0]
    await client.patch(f"/v1/routes/{route['id']}", json={"class": "marketing"}, headers=h)
    d = await gateway()
    await asyncio.sleep(1.1)  # the cached table is older than the reload bound
    started = time.monotonic()
    for i in range(30):
        r = await client.post("/v1/messages", json={"to": f"138000000{i:02d}", "body": "x"}, headers=h)
        assert r.status_code == 202
    st = await wait_final(tenant, 30, timeout=15)
    elapsed = time.monotonic() - started
    assert st.get("rejected") == 30
    msgs = (await client.get("/v1/messages", headers=h)).json()["items"]
    assert {m["reason"] for m in msgs} == {"route.none"}
    # at least one reload, then at most one per second, not one per message
    assert 1 <= d.stats["route_reloads"] <= int(elapsed / d.route_reload_min) + 1 < 30, (d.stats, elapsed)


# --- links and channels ---------------------------------------------------------------------


async def test_link_patch_validates_and_keeps_the_password_write_only(
    client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    ids = await setup_sms(client, tenant, links=1)
    h = tenant.headers("admin")
    link = ids["link_ids"][0]
    patch = {
        "host": "10.0.0.5",
        "port": 2776,
        "system_id": "acct9",
        "password": "secret1",
        "system_type": "VMA",
        "window": 20,
        "tps": 150,
        "source_rules": {"allowed": ["10690001", "1068*"]},
    }
    r = await client.patch(f"/v1/links/{link}", json=patch, headers=h)
    assert r.status_code == 200, r.text
    out = r.json()
    assert "password" not in out and "secret1" not in r.text
    assert {k: out[k] for k in patch if k != "password"} == {
        k: v for k, v in patch.items() if k != "password"
    }
    r = await client.patch(f"/v1/links/{link}", json={"tps": None}, headers=h)
    assert r.status_code == 200 and r.json()["tps"] is None and r.json()["window"] == 20
    for body, field in (
        ({"port": 0}, "port"),
        ({"system_id": "x" * 16}, "system_id"),
        ({"password": "123456789"}, "password"),
        ({"window": 0}, "window"),
        ({"tps": -1}, "tps"),
        ({"source_rules": {"allowed": ["bad source!"]}}, "source_rules.allowed.0"),
        ({"source_rules": {"deny": []}}, "source_rules.deny"),
    ):
        r = await client.patch(f"/v1/links/{link}", json=body, headers=h)
        assert r.status_code == 422, body
        assert r.json()["error"]["field"] == field, r.text
    assert (await client.get(f"/v1/links/{link}", headers=h)).json()["port"] == 2776
    r = await client.patch(f"/v1/links/{link}", json={"port": 1}, headers=other_tenant.headers("admin"))
    assert r.status_code == 404


async def test_source_address_rules_are_enforced_at_send_time(
    client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    ids = await setup_sms(client, tenant, links=1)  # channel default sender 10690001
    h = tenant.headers("admin")
    link = ids["link_ids"][0]
    r = await client.patch(f"/v1/links/{link}", json={"source_rules": {"allowed": ["1068*"]}}, headers=h)
    assert r.status_code == 200
    r = await client.post("/v1/messages", json={"to": "13800000001", "body": "x"}, headers=h)
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["field"] == "source" and "source_not_allowed" in err["code"] + str(err), err
    r = await client.post(
        "/v1/messages", json={"to": "13800000001", "body": "x", "source": "10690002"}, headers=h
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "source"
    r = await client.post(
        "/v1/messages/batch",
        json={"body": "x", "source": "10690002", "recipients": [{"to": "13800000001"}]},
        headers=h,
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "source"
    assert (await client.get("/v1/messages", headers=h)).json()["items"] == []  # nothing stored
    r = await client.post(
        "/v1/messages", json={"to": "13800000001", "body": "x", "source": "106812"}, headers=h
    )
    assert r.status_code == 202, r.text
    # a disabled link's rules do not count; a second link without rules allows any source
    await client.patch(f"/v1/links/{link}", json={"status": "disabled"}, headers=h)
    r = await client.post("/v1/messages", json={"to": "13800000001", "body": "y"}, headers=h)
    assert r.status_code == 202, r.text


async def test_channel_settings_and_secret_can_be_changed(
    client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    h = tenant.headers("admin")
    wx = await client.post(
        "/v1/channels",
        json={"kind": "wechat", "name": "WX", "settings": {"appid": "wx1"}, "secret": "s1"},
        headers=h,
    )
    wid = wx.json()["id"]
    r = await client.patch(
        f"/v1/channels/{wid}",
        json={"settings": {"appid": "wx2", "api_base": None}, "secret": "s2"},
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert r.json()["settings"] == {"appid": "wx2"} and "s2" not in r.text and "secret" not in r.json()
    r = await client.patch(f"/v1/channels/{wid}", json={"settings": {"appid": ""}}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["field"] == "settings.appid"

    from sqlalchemy import select

    from tessera.connect.models import Channel
    from tessera.core import context
    from tessera.core.db.session import unit_of_work

    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            c = (await s.execute(select(Channel).where(Channel.id == uuid.UUID(wid)))).scalar_one()
            assert c.secret == "s2" and c.settings == {"appid": "wx2"}

    mail = await client.post(
        "/v1/channels",
        json={
            "kind": "email",
            "name": "Mail",
            "settings": {"host": "smtp.example.com", "port": 25, "from": "news@shop.example"},
        },
        headers=h,
    )
    mid = mail.json()["id"]
    r = await client.patch(
        f"/v1/channels/{mid}",
        json={"settings": {"port": 587, "tls": "starttls", "username": "u"}, "secret": "pw"},
        headers=h,
    )
    assert r.status_code == 200, r.text
    assert r.json()["settings"]["port"] == 587 and "pw" not in r.text
    for body, field in (
        ({"settings": {"host": None}}, "settings.host"),
        ({"settings": {"from": "not an address"}}, "settings.from"),
        ({"settings": {"tls": "maybe"}}, "settings.tls"),
        ({"secret": '{"dkim_private_key": "k"}'}, "settings.dkim_selector"),
    ):
        r = await client.patch(f"/v1/channels/{mid}", json=body, headers=h)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["field"] == field, r.text
    assert (await client.get(f"/v1/channels/{mid}", headers=h)).json()["settings"][
        "host"
    ] == "smtp.example.com"

    sms = (await client.post("/v1/channels", json={"kind": "sms", "name": "S"}, headers=h)).json()["id"]
    r = await client.patch(f"/v1/channels/{sms}", json={"secret": "x"}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["field"] == "secret"
    r = await client.patch(f"/v1/channels/{wid}", json={"secret": "x"}, headers=other_tenant.headers("admin"))
    assert r.status_code == 404


async def test_gateway_rebinds_an_edited_link_and_unbinds_a_disabled_one(
    client: httpx.AsyncClient, tenant: TenantWorld, smsc: SmscSimulator, gateway: Any
) -> None:
    ids = await setup_sms(client, tenant, smsc, links=1)
    h = tenant.headers("admin")
    link = ids["link_ids"][0]
    d = await gateway(link_refresh=0.2)

    def bound_as() -> list[str]:
        return [x["system_id"] for x in smsc.bound_sessions()]

    async def is_bound(system_id: str) -> bool:
        runner = d.runners.get(uuid.UUID(link))
        return bound_as() == [system_id] and runner is not None and runner.bound

    await wait_until(lambda: is_bound("acct0"), timeout=10)
    r = await client.patch(f"/v1/links/{link}", json={"system_id": "acct1", "window": 3}, headers=h)
    assert r.status_code == 200
    await wait_until(lambda: is_bound("acct1"), timeout=10)
    assert d.runners[uuid.UUID(link)].info.window == 3 and len(d.runners[uuid.UUID(link)].workers) == 3
    r = await client.post("/v1/messages", json={"to": "13800000001", "body": "after"}, headers=h)
    await wait_final(tenant, 1, timeout=10)
    m = (await client.get(f"/v1/messages/{r.json()['id']}", headers=h)).json()
    assert m["status"] == "delivered" and m["link_id"] == link

    await client.patch(f"/v1/links/{link}", json={"status": "disabled"}, headers=h)

    async def unbound() -> bool:
        return uuid.UUID(link) not in d.runners and bound_as() == []

    await wait_until(unbound, timeout=10)
    assert d.stats["rebound"] >= 2


# --- approval permission --------------------------------------------------------------------


async def _key_of(world: TenantWorld, role: str) -> dict[str, str]:
    """Headers with a new API key of the user of ``role`` (a key holds its creator's permissions)."""
    from tessera.core import context
    from tessera.core.db.session import unit_of_work
    from tessera.core.identity import auth
    from tessera.core.identity.models import User
    from tessera.core.identity.schemas import ApiKeyCreate

    with context.tenant_scope(world.tenant_id):
        async with unit_of_work() as s:
            user = await s.get(User, world.users[role])
            assert user is not None
            principal = await auth.build_principal(s, user)
            _key, raw = await auth.create_api_key(s, ApiKeyCreate(name="writer key"), principal)
    return {"Authorization": f"Bearer {raw}"}


async def test_approving_needs_channels_approve(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    h = tenant.headers("admin")
    role = await client.post(
        "/v1/roles",
        json={"key": "writer", "name": "Writer", "permissions": ["channels:manage", "messages:read"]},
        headers=h,
    )
    assert role.status_code == 201, role.text
    r = await client.patch(
        f"/v1/users/{tenant.users['member']}", json={"role_id": role.json()["id"]}, headers=h
    )
    assert r.status_code == 200, r.text
    writer = await _key_of(tenant, "member")
    t = await client.post(
        "/v1/templates", json={"name": "T", "class": "notification", "bodies": {"sms": "Hi"}}, headers=writer
    )
    assert t.status_code == 201, t.text
    tid = t.json()["id"]
    assert (await client.post(f"/v1/templates/{tid}/submit", headers=writer)).status_code == 200
    sig = (await client.post("/v1/signatures", json={"text": "Acme"}, headers=writer)).json()["id"]
    for who in (writer, tenant.headers("manager")):
        assert (await client.post(f"/v1/templates/{tid}/approve", headers=who)).status_code == 403
        r = await client.post(f"/v1/templates/{tid}/reject", json={"reason": "no"}, headers=who)
        assert r.status_code == 403
        assert (await client.post(f"/v1/signatures/{sig}/approve", headers=who)).status_code == 403
        assert (await client.post(f"/v1/signatures/{sig}/reject", headers=who)).status_code == 403
    assert (await client.get(f"/v1/templates/{tid}", headers=h)).json()["status"] == "pending"
    for who in ("admin", "owner"):
        r = await client.post(f"/v1/signatures/{sig}/approve", headers=tenant.headers(who))
        assert r.status_code == 200 and r.json()["status"] == "approved"
    r = await client.post(f"/v1/templates/{tid}/approve", headers=tenant.headers("owner"))
    assert r.status_code == 200 and r.json()["status"] == "approved"


async def test_gateway_uses_a_changed_wechat_secret(
    client: httpx.AsyncClient, tenant: TenantWorld, gateway: Any
) -> None:
    from tessera.connect.adapters.wechat_fake import FakeWeChat

    fake = FakeWeChat()
    h = tenant.headers("admin")
    ch = (
        await client.post(
            "/v1/channels",
            json={
                "kind": "wechat",
                "name": "OA",
                "settings": {"appid": "wx-test", "api_base": "http://wechat"},
                "secret": "s3cret",
            },
            headers=h,
        )
    ).json()["id"]
    t = await client.post(
        "/v1/templates",
        json={"name": "o", "class": "notification", "bodies": {"wechat": "x {{v}}"}, "external_id": "TPL-1"},
        headers=h,
    )
    tid = t.json()["id"]
    await client.post(f"/v1/templates/{tid}/submit", headers=h)
    await client.post(f"/v1/templates/{tid}/approve", headers=h)
    d = await gateway(wechat_transport=httpx.ASGITransport(app=fake.app), link_refresh=0.2)

    async def send() -> dict[str, Any]:
        body = {
            "channel": "wechat",
            "channel_id": ch,
            "to": "oAbC1",
            "template_id": tid,
            "variables": {"v": "1"},
        }
        r = await client.post("/v1/messages", json=body, headers=h)
        assert r.status_code == 202, r.text
        mid = r.json()["id"]

        async def decided() -> bool:
            m = (await client.get(f"/v1/messages/{mid}", headers=h)).json()
            return m["status"] in ("submitted", "rejected")

        await wait_until(decided, timeout=10)
        return (await client.get(f"/v1/messages/{mid}", headers=h)).json()

    assert (await send())["status"] == "submitted"
    fake.secret = "rotated"  # the secret is reset on WeChat's side
    fake.expire_tokens()
    r = await client.patch(f"/v1/channels/{ch}", json={"secret": "rotated"}, headers=h)
    assert r.status_code == 200 and "rotated" not in r.text

    async def reconfigured() -> bool:
        runner = d.runners.get(uuid.UUID(ch))
        return runner is not None and getattr(runner, "params", None) == (
            "wx-test",
            "rotated",
            "http://wechat",
        )

    await wait_until(reconfigured, timeout=10)
    assert (await send())["status"] == "submitted"
    assert len(fake.sent) == 2
