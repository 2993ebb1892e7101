"""Connect console pages: messages, channels and links, routes and portability, templates and
signatures (issue 6). httpx against the app, signed in through the console's own form."""

# ruff: noqa: F811 - the console fixtures are imported and then requested by name
from __future__ import annotations

import json
import re
import urllib.parse
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from tests.conftest import TenantWorld
from tests.connect.messaging.conftest import setup_sms, wait_final
from tests.console.conftest import Browser, browser, browser2  # noqa: F401 - fixtures

from tessera.connect.models import PortedNumber, Template
from tessera.connect.smpp.server import SmscAccount, SmscConfig, SmscSimulator
from tessera.core import context
from tessera.core.db.session import unit_of_work

PHONE = "+8613812345678"


async def _send(client: httpx.AsyncClient, world: TenantWorld, to: str = PHONE, **kw: Any) -> str:
    r = await client.post(
        "/v1/messages", json={"to": to, "body": "Your code is 1234", **kw}, headers=world.headers("admin")
    )
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


async def _count(world: TenantWorld, model: Any) -> int:
    with context.tenant_scope(world.tenant_id):
        async with unit_of_work() as s:
            return int((await s.execute(select(func.count()).select_from(model))).scalar_one())


def _field_error(html: str, field: str) -> bool:
    return f'id="f-{field}-err"' in html


async def test_pages_render_per_role(
    browser: Browser, client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    await setup_sms(client, tenant)
    pages = [
        "/console/connect/messages",
        "/console/connect/messages/send",
        "/console/connect/channels",
        "/console/connect/channels/new",
        "/console/connect/routes",
        "/console/connect/templates",
        "/console/connect/templates/new",
    ]
    await browser.login(tenant, "admin")
    for url in pages:
        r = await browser.get(url)
        assert r.status_code == 200, (url, r.text[:300])
    home = await browser.get("/console/")
    assert "Messages today" in home.text
    for key in ("connect.messages", "connect.channels", "connect.routes", "connect.templates"):
        assert f'data-nav="{key}"' in home.text

    await browser.client.post("/console/logout", data={"csrf_token": browser.csrf})
    await browser.login(tenant, "member")
    allowed = {"/console/connect/messages", "/console/connect/messages/send", "/console/connect/templates"}
    for url in pages:
        r = await browser.get(url)
        assert r.status_code == (200 if url in allowed else 403), (url, r.status_code)
    home = await browser.get("/console/")
    assert 'data-nav="connect.messages"' in home.text and 'data-nav="connect.channels"' not in home.text

    await browser.client.post("/console/logout", data={"csrf_token": browser.csrf})
    await browser.login(tenant, "read-only")
    assert (await browser.get("/console/connect/messages")).status_code == 200
    assert (await browser.get("/console/connect/messages/send")).status_code == 403
    r = await browser.post("/console/connect/messages/send", {"to": PHONE, "body": "x"})
    assert r.status_code == 403


async def test_post_without_csrf_is_refused(browser: Browser, tenant: TenantWorld) -> None:
    await browser.login(tenant, "admin")
    r = await browser.post("/console/connect/channels/new", {"kind": "sms", "name": "X"}, csrf=False)
    assert r.status_code == 403
    r = await browser.get("/console/connect/channels")
    assert "No channels yet." in r.text


async def test_channel_and_link_forms(browser: Browser, tenant: TenantWorld) -> None:
    await browser.login(tenant, "admin")
    r = await browser.post("/console/connect/channels/new", {"kind": "sms", "name": ""})
    assert r.status_code == 422 and _field_error(r.text, "name")
    r = await browser.post("/console/connect/channels/new", {"kind": "wechat", "name": "WX"})
    assert r.status_code == 422 and _field_error(r.text, "appid")
    email = {"kind": "email", "name": "Mail", "smtp_port": "70000", "from_address": "nobody"}
    r = await browser.post("/console/connect/channels/new", email)
    assert r.status_code == 422 and _field_error(r.text, "smtp_port")
    r = await browser.post("/console/connect/channels/new", {**email, "smtp_port": "2525"})
    assert r.status_code == 422 and _field_error(r.text, "smtp_host")
    r = await browser.post(
        "/console/connect/channels/new", {**email, "smtp_port": "2525", "smtp_host": "127.0.0.1"}
    )
    assert r.status_code == 422 and _field_error(r.text, "from_address")
    r = await browser.post(
        "/console/connect/channels/new",
        {**email, "smtp_port": "2525", "smtp_host": "127.0.0.1", "from_address": "Acme <news@acme.example>",
         "smtp_password": "mail-secret", "tls": "none"},
    )  # fmt: skip
    assert r.status_code == 303, r.text
    r = await browser.get(r.headers["location"].split("?")[0])
    assert "news@acme.example" in r.text and "2525" in r.text and "mail-secret" not in r.text
    r = await browser.post("/console/connect/channels/new", {"kind": "sms", "name": "Main SMS"})
    assert r.status_code == 303
    ch_url = r.headers["location"].split("?")[0]
    ch_id = ch_url.rsplit("/", 1)[1]

    bad = {"name": "l1", "host": "", "port": "99999", "system_id": "acct", "password": "toolongpassword"}
    r = await browser.post(f"{ch_url}/links", bad)
    assert r.status_code == 422
    for f in ("host", "port", "password"):
        assert _field_error(r.text, f), f
    r = await browser.post(
        f"{ch_url}/links",
        {
            "name": "l1",
            "host": "127.0.0.1",
            "port": "2775",
            "system_id": "acct",
            "password": "pw",
            "source_rules": "[1",
        },
    )
    assert r.status_code == 422 and _field_error(r.text, "source_rules")
    r = await browser.post(
        f"{ch_url}/links",
        {"name": "l1", "host": "127.0.0.1", "port": "2775", "system_id": "acct", "password": "s3cr3t",
         "window": "5", "tps": "50", "source_rules": '{"allowed": ["10690001"]}'},
    )  # fmt: skip
    assert r.status_code == 303, r.text
    link_url = r.headers["location"].split("?")[0]
    r = await browser.get(link_url)
    assert r.status_code == 200 and "s3cr3t" not in r.text and "10690001" in r.text
    assert 'data-link-state="idle"' in r.text
    r = await browser.post(link_url, {"name": "l1", "window": "0", "status": "active"})
    assert r.status_code == 422 and _field_error(r.text, "window")
    r = await browser.post(link_url, {"name": "Primary", "window": "20", "tps": "100", "status": "disabled"})
    assert r.status_code == 303
    r = await browser.get(link_url)
    assert "Primary" in r.text and 'data-link-state="disabled"' in r.text

    r = await browser.post(ch_url, {"name": "", "status": "active"})
    assert r.status_code == 422 and _field_error(r.text, "name")
    r = await browser.post(ch_url, {"name": "Renamed", "status": "active", "default_source": "10690009"})
    assert r.status_code == 303
    r = await browser.get("/console/connect/channels")
    assert "Renamed" in r.text and "10690009" in r.text
    r = await browser.get(f"/console/connect/channels/{ch_id}/live", headers={"HX-Request": "true"})
    assert r.status_code == 200 and "<html" not in r.text and "Primary" in r.text


async def test_live_link_state_and_throughput(
    app: Any, browser: Browser, client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    from tessera.connect.dispatcher import Dispatcher

    sim = SmscSimulator(SmscConfig(accounts=[SmscAccount("acct0", "pw")], port=0))
    await sim.start()
    ids = await setup_sms(client, tenant, sim)  # before the gateway starts: it caches routes
    d = Dispatcher(submit_timeout=1.0)
    await d.start()
    app.state.connect_gateway = d
    try:
        for i in range(3):
            await _send(client, tenant, to=f"+86138000000{i:02d}")
        st = await wait_final(tenant, 3)
        assert st.get("delivered") == 3, st
        await browser.login(tenant, "admin")
        r = await browser.get(f"/console/connect/channels/{ids['channel_id']}")
        assert r.status_code == 200
        assert 'data-link-state="bound"' in r.text and d.id in r.text, re.findall(
            r'data-link-state="[a-z]+"', r.text
        )
        cfg = json.loads(
            re.search(r'<script type="application/json" id="chart-[^"]+">(.*?)</script>', r.text, re.S).group(
                1
            )
        )  # type: ignore[union-attr]
        submits, receipts = (ds["data"] for ds in cfg["data"]["datasets"])
        assert round(sum(submits) * 60) == 3 and round(sum(receipts) * 60) == 3
    finally:
        app.state.connect_gateway = None
        await d.stop()
        await sim.stop()


async def test_link_bound_by_another_gateway(
    app: Any, browser: Browser, client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    """A bind held by another gateway process: on PostgreSQL its advisory lock says so; the
    in-process gateway also remembers the links it was refused."""
    from types import SimpleNamespace

    from tessera.connect.dispatcher import _advisory_key
    from tessera.core.db.session import get_database

    ids = await setup_sms(client, tenant)
    link = uuid.UUID(ids["link_ids"][0])
    db = get_database()
    holder = None
    if db.is_postgres:
        from sqlalchemy import text

        holder = await db.engine.connect()
        await holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _advisory_key(link)})
    else:
        app.state.connect_gateway = SimpleNamespace(id="gw-here", runners={}, unavailable={link})
    try:
        await browser.login(tenant, "admin")
        r = await browser.get(f"/console/connect/channels/links/{link}")
        assert 'data-link-state="elsewhere"' in r.text and "Bound by another gateway" in r.text
    finally:
        app.state.connect_gateway = None
        if holder is not None:
            await holder.close()


async def test_routes_portability_and_lookup(
    browser: Browser, client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    ids = await setup_sms(client, tenant, links=2)
    ch = ids["channel_id"]
    await browser.login(tenant, "admin")
    r = await browser.get(f"/console/connect/routes?channel={ch}")
    assert r.status_code == 200 and "Default (any carrier)" in r.text
    r = await browser.post(
        "/console/connect/routes/new",
        {
            "channel": ch,
            "carrier": "China Mobile",
            "link_id": ids["link_ids"][1],
            "priority": "0",
            "weight": "0",
        },
    )
    assert r.status_code == 422 and _field_error(r.text, "weight")
    r = await browser.post(
        "/console/connect/routes/new",
        {
            "channel": ch,
            "carrier": "China Mobile",
            "link_id": str(uuid.uuid4()),
            "priority": "0",
            "weight": "10",
        },
    )
    assert r.status_code == 422 and _field_error(r.text, "link_id")
    r = await browser.post(
        "/console/connect/routes/new",
        {
            "channel": ch,
            "carrier": "China Mobile",
            "link_id": ids["link_ids"][1],
            "priority": "0",
            "weight": "30",
        },
    )
    assert r.status_code == 303

    r = await browser.post("/console/connect/routes/lookup", {"channel": ch, "number": "12"})
    assert r.status_code == 422 and _field_error(r.text, "number")
    r = await browser.post("/console/connect/routes/lookup", {"channel": ch, "number": "13812345678"})
    assert r.status_code == 200
    result = r.text[r.text.index("lookup-result") :]
    assert "China Mobile" in result and "link1" in result and "last failover" in result

    # A bad line anywhere: nothing is imported.
    before = await _count(tenant, PortedNumber)
    files = {
        "file": ("ported.csv", b"number,carrier\n13812345678,China Unicom\nnot-a-number,X\n", "text/csv")
    }
    r = await browser.client.post(
        "/console/connect/routes/porting/import",
        data={"csrf_token": browser.csrf, "channel": ch},
        files=files,
    )
    assert r.status_code == 422 and "line 3" in r.text and _field_error(r.text, "file"), r.text[-3000:]
    assert await _count(tenant, PortedNumber) == before
    files = {
        "file": (
            "ported.csv",
            b"number,carrier\n13812345678,China Telecom\n13900000000,China Unicom\n",
            "text/csv",
        )
    }
    r = await browser.client.post(
        "/console/connect/routes/porting/import",
        data={"csrf_token": browser.csrf, "channel": ch},
        files=files,
    )
    toast = urllib.parse.unquote_plus(r.headers["location"])
    assert r.status_code == 303 and "2 ported numbers added, 0 updated" in toast
    files = {"file": ("ported.csv", "号码,运营商\n13812345678,China Unicom\n".encode(), "text/csv")}
    r = await browser.client.post(
        "/console/connect/routes/porting/import",
        data={"csrf_token": browser.csrf, "channel": ch},
        files=files,
    )
    toast = urllib.parse.unquote_plus(r.headers["location"])
    assert r.status_code == 303 and "0 ported numbers added, 1 updated" in toast
    assert await _count(tenant, PortedNumber) == 2
    r = await browser.post("/console/connect/routes/lookup", {"channel": ch, "number": "13812345678"})
    result = r.text[r.text.index("lookup-result") :]
    assert "China Unicom" in result and "Default (any carrier)" in result

    # Edit the route, then delete it.
    r = await browser.get(f"/console/connect/routes?channel={ch}")
    route_id = re.search(r"/console/connect/routes/([0-9a-f-]{36})\"", r.text).group(1)  # type: ignore[union-attr]
    r = await browser.post(
        f"/console/connect/routes/{route_id}", {"carrier": "", "link_id": ids["link_ids"][0], "weight": "5"}
    )
    assert r.status_code == 422 and _field_error(r.text, "carrier")
    r = await browser.post(
        f"/console/connect/routes/{route_id}",
        {"carrier": "China Telecom", "link_id": ids["link_ids"][0], "priority": "3", "weight": "5"},
    )
    assert r.status_code == 303
    r = await browser.get(f"/console/connect/routes/{route_id}")
    assert 'value="China Telecom"' in r.text
    r = await browser.post(f"/console/connect/routes/{route_id}/delete")
    assert r.status_code == 303
    assert (await browser.get(f"/console/connect/routes/{route_id}")).status_code == 404


async def test_template_approval_flow(browser: Browser, browser2: Browser, tenant: TenantWorld) -> None:
    await browser.login(tenant, "admin")
    r = await browser.post("/console/connect/templates/new", {"name": "", "message_class": "notification"})
    assert r.status_code == 422 and _field_error(r.text, "name") and _field_error(r.text, "body_sms")
    r = await browser.post(
        "/console/connect/templates/new",
        {"name": "Order shipped", "message_class": "notification", "body_sms": "Order {{order}} shipped"},
    )
    assert r.status_code == 303
    url = r.headers["location"].split("?")[0]
    r = await browser.get(url)
    assert "Draft" in r.text and "order" in r.text and "Submit for approval" in r.text

    r = await browser.post(
        f"{url}/preview", {"channel": "sms", "var_order": "A-1"}, headers={"HX-Request": "true"}
    )
    assert r.status_code == 200 and "Order A-1 shipped" in r.text and "GSM-7" in r.text
    r = await browser.post(
        f"{url}/preview", {"channel": "sms", "var_order": "订单"}, headers={"HX-Request": "true"}
    )
    assert "UCS-2" in r.text

    r = await browser.post(f"{url}/approve")
    assert r.status_code == 409  # a draft cannot be approved
    assert (await browser.post(f"{url}/submit")).status_code == 303
    r = await browser.get(url)
    assert "Pending approval" in r.text and "Approve" in r.text

    # A manager manages messages but does not hold channels:approve.
    await browser2.login(tenant, "manager")
    assert (await browser2.post(f"{url}/approve")).status_code == 403
    assert (await browser2.post(f"{url}/reject", {"reason": "no"})).status_code == 403

    r = await browser.post(f"{url}/reject", {"reason": "  "})
    assert r.status_code == 422 and _field_error(r.text, "reason")
    r = await browser.post(f"{url}/reject", {"reason": "Missing the opt-out text"})
    assert r.status_code == 303
    r = await browser.get(url)
    assert "Rejected: Missing the opt-out text" in r.text
    r = await browser.post(
        url, {"name": "Order shipped", "body_sms": "Order {{order}} shipped. Reply TD to opt out"}
    )
    assert r.status_code == 303
    assert (await browser.post(f"{url}/submit")).status_code == 303
    assert (await browser.post(f"{url}/approve")).status_code == 303
    r = await browser.get("/console/connect/templates")
    assert "Order shipped" in r.text and "Approved" in r.text

    # Signatures: registered pending, approved by an approver.
    r = await browser.post("/console/connect/templates/signatures/new", {"text": "A"})
    assert r.status_code == 422 and _field_error(r.text, "text")
    r = await browser.post("/console/connect/templates/signatures/new", {"text": "Acme", "is_default": "on"})
    assert r.status_code == 303
    r = await browser.post("/console/connect/templates/signatures/new", {"text": "【Acme】"})
    assert r.status_code == 422 and "already exists" in r.text.lower()
    r = await browser.get("/console/connect/templates")
    sid = re.search(r"signatures/([0-9a-f-]{36})/approve", r.text).group(1)  # type: ignore[union-attr]
    assert (await browser2.post(f"/console/connect/templates/signatures/{sid}/approve")).status_code == 403
    assert (await browser.post(f"/console/connect/templates/signatures/{sid}/approve")).status_code == 303
    r = await browser.get("/console/connect/messages/send")
    assert "【Acme】" in r.text and "Order shipped" in r.text


async def test_message_search_by_phone_is_tenant_scoped(
    browser: Browser, client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    await setup_sms(client, tenant)
    await setup_sms(client, other_tenant)
    mine = await _send(client, tenant, reference="mine-1")
    await _send(client, tenant, to="+8613900000000", reference="mine-2")
    theirs = await _send(client, other_tenant, reference="theirs-1")

    await browser.login(tenant, "admin")
    r = await browser.post("/console/connect/messages/search", {"to": "abc def"})
    assert r.status_code == 422 and 'id="msg-to-err"' in r.text
    r = await browser.post("/console/connect/messages/search", {"to": "138 1234 5678", "status": "accepted"})
    assert r.status_code == 303
    location = r.headers["location"]
    assert "13812345678" not in location and "rcpt=" in location and "status=accepted" in location
    r = await browser.get(location)
    assert r.status_code == 200
    assert mine in r.text and theirs not in r.text and "mine-2" not in r.text
    r = await browser.get(location + "&format=csv")
    assert r.headers["content-type"].startswith("text/csv")
    lines = r.text.strip().splitlines()
    assert len(lines) == 2 and mine in lines[1]

    r = await browser.get("/console/connect/messages?reference=mine-2")
    assert "mine-2" in r.text and mine not in r.text
    r = await browser.get("/console/connect/messages?since=2000-01-01&until=2000-01-02")
    assert "No messages match these filters." in r.text
    r = await browser.get("/console/connect/messages?since=yesterday")
    assert r.status_code == 422
    r = await browser.get("/console/connect/messages?limit=1")
    nxt = re.search(r'href="/console/connect/messages(\?[^"]*cursor=[^"]+)"', r.text)
    assert nxt
    r2 = await browser.get("/console/connect/messages" + nxt.group(1).replace("&amp;", "&"))
    assert r2.status_code == 200 and mine in r2.text

    r = await browser.get(f"/console/connect/messages/{mine}")
    assert r.status_code == 200 and "Delivery timeline" in r.text and "Accepted" in r.text
    r = await browser.get(f"/console/connect/messages/{theirs}")
    assert r.status_code == 404


async def test_masking_for_members(browser: Browser, client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    await setup_sms(client, tenant)
    mid = await _send(client, tenant)
    await browser.login(tenant, "member")
    r = await browser.get("/console/connect/messages")
    assert mid in r.text and "13812345678" not in r.text
    r = await browser.get(f"/console/connect/messages/{mid}")
    assert "13812345678" not in r.text


async def test_send_test_message_form(
    browser: Browser, client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    ids = await setup_sms(client, tenant)
    await browser.login(tenant, "member")
    r = await browser.post(
        "/console/connect/messages/send",
        {"channel_id": ids["channel_id"], "to": "12", "message_class": "notification", "body": "Hi"},
    )
    assert r.status_code == 422 and _field_error(r.text, "to")
    r = await browser.post(
        "/console/connect/messages/send",
        {"channel_id": ids["channel_id"], "to": PHONE, "message_class": "notification"},
    )
    assert r.status_code == 422 and _field_error(r.text, "body")
    r = await browser.post(
        "/console/connect/messages/send",
        {"channel_id": ids["channel_id"], "to": PHONE, "message_class": "bogus", "body": "Hi"},
    )
    assert r.status_code == 422 and _field_error(r.text, "message_class")
    r = await browser.post(
        "/console/connect/messages/send",
        {
            "channel_id": ids["channel_id"],
            "to": PHONE,
            "message_class": "notification",
            "body": "Hello there",
        },
    )
    assert r.status_code == 303
    r = await browser.get(r.headers["location"])
    assert r.status_code == 200 and "Hello there" in r.text and "Accepted" in r.text

    # An approved template with a variable.
    h = tenant.headers("admin")
    r = await client.post(
        "/v1/templates",
        json={"name": "Ship", "class": "notification", "bodies": {"sms": "Order {{order}} shipped"}},
        headers=h,
    )
    tid = r.json()["id"]
    await client.post(f"/v1/templates/{tid}/submit", headers=h)
    await client.post(f"/v1/templates/{tid}/approve", headers=h)
    form = {"channel_id": ids["channel_id"], "to": PHONE, "message_class": "notification", "template_id": tid}
    r = await browser.post("/console/connect/messages/send", {**form, "variables": "order"})
    assert r.status_code == 422 and _field_error(r.text, "variables")
    r = await browser.post("/console/connect/messages/send", form)
    assert r.status_code == 422 and _field_error(r.text, "variables")
    r = await browser.post("/console/connect/messages/send", {**form, "variables": "order = A-9\n"})
    assert r.status_code == 303, r.text
    r = await browser.get(r.headers["location"])
    assert "Order A-9 shipped" in r.text


async def test_cross_tenant_detail_pages_are_404(
    browser: Browser,
    browser2: Browser,
    client: httpx.AsyncClient,
    tenant: TenantWorld,
    other_tenant: TenantWorld,
) -> None:
    ids = await setup_sms(client, tenant)
    mid = await _send(client, tenant)
    r = await client.post(
        "/v1/templates",
        json={"name": "T", "class": "notification", "bodies": {"sms": "hi"}},
        headers=tenant.headers("admin"),
    )
    tid = r.json()["id"]
    await client.post(f"/v1/templates/{tid}/submit", headers=tenant.headers("admin"))
    await browser.login(tenant, "admin")
    r = await browser.get(f"/console/connect/routes?channel={ids['channel_id']}")
    route_id = re.search(r"/console/connect/routes/([0-9a-f-]{36})\"", r.text).group(1)  # type: ignore[union-attr]
    r = await client.post("/v1/signatures", json={"text": "Victim"}, headers=tenant.headers("admin"))
    sid = r.json()["id"]

    await browser2.login(other_tenant, "owner")
    ch, link = ids["channel_id"], ids["link_ids"][0]
    for url in (
        f"/console/connect/messages/{mid}",
        f"/console/connect/channels/{ch}",
        f"/console/connect/channels/{ch}/live",
        f"/console/connect/channels/links/{link}",
        f"/console/connect/channels/links/{link}/live",
        f"/console/connect/routes/{route_id}",
        f"/console/connect/templates/{tid}",
    ):
        r = await browser2.get(url)
        assert r.status_code == 404, (url, r.status_code)
    assert (await browser2.get(f"/console/connect/routes?channel={ch}")).status_code == 404
    for url, data in (
        (f"/console/connect/templates/{tid}/approve", {}),
        (f"/console/connect/templates/{tid}/reject", {"reason": "x"}),
        (f"/console/connect/templates/{tid}/reject", {"reason": ""}),
        (f"/console/connect/templates/{tid}", {"name": "Hacked", "body_sms": "x"}),
        (f"/console/connect/templates/{tid}/preview", {"channel": "sms"}),
        (f"/console/connect/channels/{ch}", {"name": "Hacked", "status": "disabled"}),
        (
            f"/console/connect/channels/{ch}/links",
            {"name": "x", "host": "h", "port": "1", "system_id": "s", "password": "p"},
        ),
        (f"/console/connect/channels/links/{link}", {"name": "Hacked", "window": "1", "status": "disabled"}),
        (f"/console/connect/channels/links/{link}/delete", {}),
        (
            f"/console/connect/routes/{route_id}",
            {"carrier": "x", "link_id": link, "priority": "0", "weight": "1"},
        ),
        (f"/console/connect/routes/{route_id}/delete", {}),
        (f"/console/connect/templates/signatures/{sid}/approve", {}),
    ):
        r = await browser2.post(url, data)
        assert r.status_code == 404, (url, r.status_code)
    r = await browser2.post("/console/connect/routes/lookup", {"channel": ch, "number": PHONE})
    assert r.status_code == 404
    r = await browser2.post("/console/connect/routes/new", {"channel": ch, "carrier": "*", "link_id": link})
    assert r.status_code == 404
    r = await browser2.post(
        "/console/connect/messages/send",
        {"channel_id": ch, "to": PHONE, "message_class": "notification", "body": "x"},
    )
    assert r.status_code == 422 and _field_error(r.text, "channel_id")

    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            t = await s.get(Template, uuid.UUID(tid))
            assert t is not None and t.status == "pending" and t.name == "T"
    r = await client.get(f"/v1/links/{link}", headers=tenant.headers("admin"))
    assert r.json()["name"] == "link0" and r.json()["status"] == "active"
    r = await client.get(f"/v1/channels/{ch}/routes", headers=tenant.headers("admin"))
    assert len(r.json()) == 1
    r = await client.get("/v1/signatures", headers=tenant.headers("admin"))
    assert r.json()[0]["status"] == "pending"


@pytest.mark.parametrize("lang", ["zh_Hans"])
async def test_pages_in_chinese(
    browser: Browser, client: httpx.AsyncClient, tenant: TenantWorld, lang: str
) -> None:
    await setup_sms(client, tenant)
    await browser.login(tenant, "admin")
    await browser.post("/console/locale", {"locale": lang, "next": "/console/"})
    r = await browser.get("/console/connect/templates")
    assert "短信签名" in r.text


async def test_list_pages_query_count_does_not_grow(
    browser: Browser, client: httpx.AsyncClient, tenant: TenantWorld, db: Any
) -> None:
    from sqlalchemy import event

    ids = await setup_sms(client, tenant)
    await _send(client, tenant)
    h = tenant.headers("admin")
    await client.post(
        "/v1/templates", json={"name": "T0", "class": "notification", "bodies": {"sms": "a"}}, headers=h
    )
    await browser.login(tenant, "admin")
    engine = db.engine.sync_engine
    seen: list[str] = []

    def count(conn: object, cursor: object, statement: str, *a: object) -> None:
        if "connect_" in statement:  # the pages' own queries (sign-in caching comes and goes)
            seen.append(statement)

    async def queries(path: str) -> int:
        seen.clear()
        event.listen(engine, "before_cursor_execute", count)
        try:
            r = await browser.get(path)
            assert r.status_code == 200
        finally:
            event.remove(engine, "before_cursor_execute", count)
        return len(seen)

    paths = (
        "/console/connect/messages",
        "/console/connect/channels",
        f"/console/connect/routes?channel={ids['channel_id']}",
        "/console/connect/templates",
    )
    before = {p: await queries(p) for p in paths}
    for i in range(5):
        await _send(client, tenant, to=f"+86139000000{i:02d}")
        await client.post(
            "/v1/templates",
            json={"name": f"T{i + 1}", "class": "notification", "bodies": {"sms": "a"}},
            headers=h,
        )
        r = await client.post(
            f"/v1/channels/{ids['channel_id']}/links",
            json={"name": f"x{i}", "host": "127.0.0.1", "port": 2775, "system_id": "s", "password": "p"},
            headers=h,
        )
        await client.post(
            f"/v1/channels/{ids['channel_id']}/routes",
            json={"carrier": f"C{i}", "link_id": r.json()["id"]},
            headers=h,
        )
    after = {p: await queries(p) for p in paths}
    assert after == before


# --- routes by class and prefix, channel and link editing (issue 6, second round) -------------


async def test_route_form_takes_class_and_prefix_and_the_tester_follows_them(
    browser: Browser, client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    ids = await setup_sms(client, tenant, links=2)
    ch, (l0, l1) = ids["channel_id"], ids["link_ids"]
    await browser.login(tenant, "admin")
    r = await browser.get(f"/console/connect/routes?channel={ch}")
    assert 'name="message_class"' in r.text and 'name="prefix"' in r.text and "Any class" in r.text
    base = {"channel": ch, "carrier": "*", "link_id": l1, "priority": "0", "weight": "100"}
    for bad, field in (({"prefix": "8613"}, "prefix"), ({"message_class": "urgent"}, "message_class")):
        r = await browser.post("/console/connect/routes/new", {**base, **bad})
        assert r.status_code == 422 and _field_error(r.text, field), bad
    r = await client.get(f"/v1/channels/{ch}/routes", headers=tenant.headers("admin"))
    assert len(r.json()) == 2  # nothing added
    r = await browser.post(
        "/console/connect/routes/new", {**base, "message_class": "verification", "prefix": "+86138"}
    )
    assert r.status_code == 303, r.text
    r = await browser.get(f"/console/connect/routes?channel={ch}")
    table = r.text[r.text.index("table-title") : r.text.index("Add a route")]
    assert "+86138" in table and "Verification" in table
    assert table.index("+86138") < table.index("Default (any carrier)")  # the most specific first

    r = await browser.post(
        "/console/connect/routes/lookup",
        {"channel": ch, "number": "13812345678", "message_class": "verification"},
    )
    result = r.text[r.text.index("lookup-result") :]
    assert "verification · +86138" in result
    assert result.index("link1") < result.index("link0") and "last failover" in result
    r = await browser.post(
        "/console/connect/routes/lookup",
        {"channel": ch, "number": "13812345678", "message_class": "marketing"},
    )
    result = r.text[r.text.index("lookup-result") :]
    assert "Default (any carrier)" in result and "link0" in result
    r = await browser.post(
        "/console/connect/routes/lookup", {"channel": ch, "number": "13812345678", "message_class": "x"}
    )
    assert r.status_code == 422

    route = next(
        x
        for x in (await client.get(f"/v1/channels/{ch}/routes", headers=tenant.headers("admin"))).json()
        if x["prefix"]
    )
    r = await browser.get(f"/console/connect/routes/{route['id']}")
    assert 'value="+86138"' in r.text and 'value="verification" selected' in r.text
    r = await browser.post(
        f"/console/connect/routes/{route['id']}",
        {"message_class": "", "carrier": "*", "prefix": "+86", "link_id": l0, "priority": "1", "weight": "5"},
    )
    assert r.status_code == 303
    r = await client.get(f"/v1/routes/{route['id']}", headers=tenant.headers("admin"))
    assert r.json()["class"] is None and r.json()["prefix"] == "+86" and r.json()["link_id"] == l0
    r = await browser.post(
        f"/console/connect/routes/{route['id']}",
        {"carrier": "*", "prefix": "+", "link_id": l0, "priority": "1", "weight": "5"},
    )
    assert r.status_code == 422 and _field_error(r.text, "prefix")


async def test_link_edit_form_changes_the_connection_and_source_rules(
    browser: Browser,
    browser2: Browser,
    client: httpx.AsyncClient,
    tenant: TenantWorld,
    other_tenant: TenantWorld,
) -> None:
    ids = await setup_sms(client, tenant)
    link = ids["link_ids"][0]
    url = f"/console/connect/channels/links/{link}"
    await browser.login(tenant, "admin")
    r = await browser.get(url)
    for name in ("host", "port", "system_id", "system_type", "source_rules"):
        assert f'name="{name}"' in r.text, name
    edit = {"name": "Edited", "host": "10.1.2.3", "port": "2776", "system_id": "acct9", "password": "",
            "system_type": "VMA", "window": "7", "tps": "25", "source_rules": '{"allowed": ["1068*"]}',
            "status": "active"}  # fmt: skip
    for bad, field in (
        ({"port": "70000"}, "port"),
        ({"system_id": "x" * 16}, "system_id"),
        ({"source_rules": "[1"}, "source_rules"),
        ({"source_rules": '{"allowed": ["no spaces allowed here!"]}'}, "source_rules"),
        ({"source_rules": '{"other": 1}'}, "source_rules"),
    ):
        r = await browser.post(url, {**edit, **bad})
        assert r.status_code == 422 and _field_error(r.text, field), bad
    assert (await client.get(f"/v1/links/{link}", headers=tenant.headers("admin"))).json()[
        "host"
    ] == "127.0.0.1"
    r = await browser.post(url, edit)
    assert r.status_code == 303, r.text
    got = (await client.get(f"/v1/links/{link}", headers=tenant.headers("admin"))).json()
    assert (got["host"], got["port"], got["system_id"], got["system_type"], got["window"], got["tps"]) == (
        "10.1.2.3", 2776, "acct9", "VMA", 7, 25.0
    )  # fmt: skip
    assert got["source_rules"] == {"allowed": ["1068*"]}
    from tessera.connect.models import Link

    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            row = await s.get(Link, uuid.UUID(link))
            assert row is not None and row.password == "pw"  # an empty password field keeps it
    r = await browser.get(url)
    assert "1068*" in r.text and 'value="pw"' not in r.text
    # the rules now refuse the channel's default sender 10690001
    r = await client.post("/v1/messages", json={"to": PHONE, "body": "x"}, headers=tenant.headers("admin"))
    assert r.status_code == 422 and r.json()["error"]["field"] == "source"
    r = await browser.post(url, {**edit, "source_rules": "", "password": "newpw"})
    assert r.status_code == 303
    assert (await client.get(f"/v1/links/{link}", headers=tenant.headers("admin"))).json()[
        "source_rules"
    ] == {}

    await browser2.login(other_tenant, "owner")
    r = await browser2.post(url, {**edit, "host": "evil.example"})
    assert r.status_code == 404
    assert (await client.get(f"/v1/links/{link}", headers=tenant.headers("admin"))).json()[
        "host"
    ] == "10.1.2.3"


async def test_channel_edit_form_changes_wechat_and_email_settings(
    browser: Browser,
    browser2: Browser,
    client: httpx.AsyncClient,
    tenant: TenantWorld,
    other_tenant: TenantWorld,
) -> None:
    h = tenant.headers("admin")
    wx = (
        await client.post(
            "/v1/channels",
            json={"kind": "wechat", "name": "WX", "settings": {"appid": "wx1"}, "secret": "old-secret"},
            headers=h,
        )
    ).json()["id"]
    await browser.login(tenant, "admin")
    url = f"/console/connect/channels/{wx}"
    r = await browser.get(url)
    assert 'name="appid"' in r.text and 'name="secret"' in r.text and "old-secret" not in r.text
    r = await browser.post(url, {"name": "WX", "status": "active", "appid": "", "secret": ""})
    assert r.status_code == 422 and _field_error(r.text, "appid")
    r = await browser.post(url, {"name": "WX", "status": "active", "appid": "wx2", "secret": "new-secret"})
    assert r.status_code == 303
    from tessera.connect.models import Channel

    async def stored(cid: str) -> Channel:
        with context.tenant_scope(tenant.tenant_id):
            async with unit_of_work() as s:
                c = await s.get(Channel, uuid.UUID(cid))
                assert c is not None
                return c

    c = await stored(wx)
    assert c.settings["appid"] == "wx2" and c.secret == "new-secret"
    r = await browser.post(url, {"name": "WX2", "status": "active", "appid": "wx2", "secret": ""})
    assert r.status_code == 303 and (await stored(wx)).secret == "new-secret"  # empty keeps it

    mail = (
        await client.post(
            "/v1/channels",
            json={
                "kind": "email",
                "name": "Mail",
                "settings": {"host": "127.0.0.1", "port": 2525, "from": "news@acme.example"},
                "secret": json.dumps({"smtp_password": "p1", "dkim_private_key": "KEY"}),
            },
            headers=h,
        )
    ).json()["id"]
    url = f"/console/connect/channels/{mail}"
    form = {"name": "Mail", "status": "active", "smtp_host": "127.0.0.1", "smtp_port": "2525", "tls": "none",
            "smtp_username": "", "smtp_password": "", "from_address": "news@acme.example",
            "dkim_selector": "s1"}  # fmt: skip
    for bad, field in (
        ({"smtp_host": ""}, "smtp_host"),
        ({"smtp_port": "0"}, "smtp_port"),
        ({"from_address": "nobody"}, "from_address"),
        ({"dkim_selector": ""}, "dkim_selector"),  # the stored secret carries a DKIM key
    ):
        r = await browser.post(url, {**form, **bad})
        assert r.status_code == 422 and _field_error(r.text, field), (bad, r.text[-2000:])
    r = await browser.post(url, {**form, "smtp_port": "587", "tls": "starttls", "smtp_password": "p2"})
    assert r.status_code == 303, r.text
    c = await stored(mail)
    assert (
        c.settings["port"] == 587 and c.settings["tls"] == "starttls" and c.settings["dkim_selector"] == "s1"
    )
    assert json.loads(c.secret or "") == {"smtp_password": "p2", "dkim_private_key": "KEY"}
    r = await browser.get(url)
    assert "p2" not in r.text and "KEY" not in r.text and 'value="587"' in r.text

    await browser2.login(other_tenant, "owner")
    r = await browser2.post(url, {**form, "smtp_host": "evil.example"})
    assert r.status_code == 404
    assert (await stored(mail)).settings["host"] == "127.0.0.1"
