"""Connect console in Chromium: find a message by its recipient and read its delivery timeline,
approve a template, axe on every Connect I page, and a phone-sized viewport without horizontal
scroll."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from tests.conftest import TenantWorld
from tests.connect.messaging.conftest import setup_sms
from tests.e2e.conftest import axe_violations, sign_in

pytestmark = pytest.mark.e2e

PHONE = "13812345678"


async def _world(client: httpx.AsyncClient, tenant: TenantWorld) -> dict[str, Any]:
    ids = await setup_sms(client, tenant, signature="Acme")
    h = tenant.headers("admin")
    r = await client.post(
        "/v1/messages", json={"to": PHONE, "body": "Your code is 1234", "reference": "e2e-1"}, headers=h
    )
    assert r.status_code == 202, r.text
    ids["message_id"] = r.json()["id"]
    r = await client.post(
        "/v1/templates",
        json={
            "name": "Delivery notice",
            "class": "notification",
            "bodies": {"sms": "Parcel {{code}} arrives today"},
        },
        headers=h,
    )
    ids["template_id"] = r.json()["id"]
    r = await client.post(f"/v1/templates/{ids['template_id']}/submit", headers=h)
    assert r.status_code == 200, r.text
    return ids


def _pages(ids: dict[str, Any]) -> list[str]:
    return [
        "/console/connect/messages",
        f"/console/connect/messages/{ids['message_id']}",
        "/console/connect/messages/send",
        "/console/connect/channels",
        f"/console/connect/channels/{ids['channel_id']}",
        f"/console/connect/channels/links/{ids['link_ids'][0]}",
        "/console/connect/channels/new",
        f"/console/connect/routes?channel={ids['channel_id']}",
        "/console/connect/templates",
        f"/console/connect/templates/{ids['template_id']}",
        "/console/connect/templates/new",
    ]


async def test_find_a_message_and_approve_a_template(
    live_server: str, context: Any, client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    ids = await _world(client, tenant)
    page = await context.new_page()
    errors: list[str] = []
    # The browser's own /favicon.ico request is not one of our pages' resources.
    page.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and not str(m.location.get("url", "")).endswith("/favicon.ico")
            else None
        ),
    )
    await sign_in(page, live_server, tenant.slug, tenant.emails["admin"], tenant.password)

    await page.click("a[data-nav='connect.messages']")
    await page.fill("#msg-to", "138 1234 5678")
    await page.click("button:has-text('Find by recipient')")
    await page.wait_for_url(re.compile(r".*/console/connect/messages\?.*rcpt=.*"))
    assert PHONE not in page.url
    rows = page.locator("#message-rows tbody tr")
    assert await rows.count() == 1
    await rows.first.locator("a").click()
    await page.wait_for_url(f"{live_server}/console/connect/messages/{ids['message_id']}")
    timeline = page.locator("ol.timeline")
    assert "Accepted" in await timeline.inner_text()
    assert "Your code is 1234" in await page.locator("main").inner_text()

    await page.goto(f"{live_server}/console/connect/templates")
    await page.click("text=Delivery notice")
    await page.wait_for_url(re.compile(r".*/console/connect/templates/[0-9a-f-]+$"))
    # The preview is filled in by htmx as soon as the page loads, and follows what is typed.
    await page.fill("#pv-code", "SF-1001")
    await page.wait_for_function(
        "() => document.querySelector('#template-preview').textContent.includes('Parcel SF-1001 arrives today')"
    )
    assert "【Acme】" in await page.locator("#template-preview").inner_text()
    await page.click("button:has-text('Approve')")
    await page.wait_for_load_state()
    assert await page.locator(".toast-msg").first.inner_text() == "Template approved."
    assert "Approved" in await page.locator(".subtitle").inner_text()
    assert errors == []


async def test_connect_pages_have_no_serious_axe_violations(
    live_server: str, context: Any, client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    ids = await _world(client, tenant)
    page = await context.new_page()
    await sign_in(page, live_server, tenant.slug, tenant.emails["admin"], tenant.password)
    found = {}
    for path in _pages(ids):
        await page.goto(live_server + path)
        await page.wait_for_load_state("networkidle")
        v = await axe_violations(page, live_server)
        if v:
            found[path] = v
    assert found == {}, json.dumps(found, indent=1)


async def test_connect_pages_fit_a_phone(
    live_server: str, chromium: Any, client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    ids = await _world(client, tenant)
    ctx = await chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = await ctx.new_page()
        await sign_in(page, live_server, tenant.slug, tenant.emails["admin"], tenant.password)
        wide = {}
        for path in _pages(ids):
            await page.goto(live_server + path)
            await page.wait_for_load_state("networkidle")
            width = await page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
            if width[0] > width[1]:
                wide[path] = width
        assert wide == {}, wide
    finally:
        await ctx.close()
