"""Customer-data pages in Chromium: the contact 360 journey, the lifecycle board, accessibility
and phone-sized viewports."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest

from tests.conftest import TenantWorld
from tests.e2e.conftest import axe_violations, sign_in

pytestmark = pytest.mark.e2e


async def _world(live_server: str, tenant: TenantWorld) -> dict[str, str]:
    """A member's contact with a phone and a tag to add; the manager shares the member's department."""
    h = tenant.headers("admin")
    async with httpx.AsyncClient(base_url=live_server) as api:
        dept = await api.post("/v1/departments", json={"name": "East sales"}, headers=h)
        assert dept.status_code == 201, dept.text
        for role in ("member", "manager"):
            r = await api.patch(
                f"/v1/users/{tenant.users[role]}", json={"department_id": dept.json()["id"]}, headers=h
            )
            assert r.status_code == 200, r.text
        acc = await api.post(
            "/v1/accounts", json={"name": "Acme Trading", "owner_id": str(tenant.users["member"])}, headers=h
        )
        c = await api.post(
            "/v1/contacts",
            json={
                "name": "Wang Xiaoming",
                "phones": ["13912345678"],
                "emails": ["xiaoming@example.com"],
                "city": "Hangzhou",
                "lifecycle_stage": "lead",
                "account_id": acc.json()["id"],
                "owner_id": str(tenant.users["member"]),
            },
            headers=h,
        )
        assert c.status_code == 201, c.text
        other = await api.post(
            "/v1/contacts",
            json={"name": "Wang Xiaoming", "city": "Hangzhou", "owner_id": str(tenant.users["member"])},
            headers=h,
        )
        tag = await api.post("/v1/tags", json={"name": "Trade fair 2026"}, headers=h)
        return {
            "contact": c.json()["id"],
            "other": other.json()["id"],
            "account": acc.json()["id"],
            "tag": tag.json()["id"],
        }


async def _contact(live_server: str, tenant: TenantWorld, cid: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=live_server) as api:
        r = await api.get(f"/v1/contacts/{cid}", headers=tenant.headers("admin"))
        assert r.status_code == 200, r.text
        return dict(r.json())


async def test_contact_360_journey(
    live_server: str, context: Any, chromium: Any, tenant: TenantWorld
) -> None:
    ids = await _world(live_server, tenant)
    page = await context.new_page()
    await sign_in(page, live_server, tenant.slug, tenant.emails["member"], tenant.password)
    errors: list[str] = []  # listened to after signing in: the browser's own favicon request 404s
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    # From the list to the 360 page; the member sees the phone masked and cannot reveal it.
    await page.click("a[data-nav='contacts']")
    await page.wait_for_url(f"{live_server}/console/contacts")
    assert "139****5678" in await page.locator("tbody").inner_text()
    await page.locator(f"tbody a[href='/console/contacts/{ids['contact']}']").click()
    await page.wait_for_url(re.compile(rf".*/console/contacts/{ids['contact']}$"))
    assert await page.locator("h1").inner_text() == "Wang Xiaoming"
    await page.click("nav.tabs >> text=Identities")
    await page.wait_for_load_state()
    assert await page.locator("[data-testid=phone]").inner_text() == "139****5678"
    assert await page.locator("[data-testid=unmask]").count() == 0
    assert "13912345678" not in await page.content()

    # Add a tag from the 360 page and see it there.
    await page.click("nav.tabs >> text=Tags")
    await page.wait_for_load_state()
    await page.select_option("#cp-add-tag", value=ids["tag"])
    await page.click("form.cp-inline button:has-text('Add tag')")
    await page.wait_for_load_state()
    assert "Trade fair 2026" in await page.locator("[data-testid=tags]").inner_text()
    assert (await _contact(live_server, tenant, ids["contact"]))["tag_ids"] == [ids["tag"]]

    # Drag the card from Lead to Customer on the board; the change is persisted.
    await page.goto(f"{live_server}/console/contacts/board")
    card = page.locator(f".kanban-card[data-card='{ids['contact']}']")
    target = page.locator(".kanban-col[data-column='customer'] .kanban-cards")
    async with page.expect_response(lambda r: r.url.endswith("/console/contacts/board/move")) as resp:
        await card.drag_to(target)
    assert (await resp.value).status == 204
    assert (await _contact(live_server, tenant, ids["contact"]))["lifecycle_stage"] == "customer"
    await page.reload()
    assert (
        await page.locator(f".kanban-col[data-column='customer'] [data-card='{ids['contact']}']").count() == 1
    )
    assert not errors, errors

    # A manager of the same department sees the mask too, and may reveal it (audited).
    ctx = await chromium.new_context(viewport={"width": 1280, "height": 860})
    try:
        mpage = await ctx.new_page()
        await sign_in(mpage, live_server, tenant.slug, tenant.emails["manager"], tenant.password)
        await mpage.goto(f"{live_server}/console/contacts/{ids['contact']}?tab=identities")
        assert await mpage.locator("[data-testid=phone]").inner_text() == "139****5678"
        await mpage.click("[data-testid=unmask]")
        await mpage.wait_for_load_state()
        assert await mpage.locator("[data-testid=phone]").inner_text() == "+8613912345678"
        assert await mpage.locator("[data-testid=revealed]").count() == 1
    finally:
        await ctx.close()
    async with httpx.AsyncClient(base_url=live_server) as api:
        audit = await api.get(
            "/v1/audit-events", params={"action": "pii.unmask"}, headers=tenant.headers("admin")
        )
        assert [e["object_id"] for e in audit.json()["items"]] == [ids["contact"]]

    # An administrator (pii:view) sees it in clear.
    ctx = await chromium.new_context(viewport={"width": 1280, "height": 860})
    try:
        apage = await ctx.new_page()
        await sign_in(apage, live_server, tenant.slug, tenant.emails["admin"], tenant.password)
        await apage.goto(f"{live_server}/console/contacts/{ids['contact']}?tab=identities")
        assert await apage.locator("[data-testid=phone]").inner_text() == "+8613912345678"
    finally:
        await ctx.close()


PAGES = [
    "/console/contacts",
    "/console/contacts/new",
    "/console/contacts/board",
    "/console/contacts/{contact}",
    "/console/contacts/{contact}/edit",
    "/console/contacts/{contact}?tab=identities",
    "/console/contacts/{contact}?tab=consent",
    "/console/contacts/{contact}?tab=tags",
    "/console/contacts/{contact}?tab=timeline",
    "/console/contacts/{contact}?tab=duplicates",
    "/console/contacts/{contact}?tab=merges",
    "/console/contacts/accounts",
    "/console/contacts/accounts/new",
    "/console/contacts/accounts/{account}",
    "/console/contacts/accounts/{account}?tab=contacts",
    "/console/contacts/tags",
    "/console/contacts/duplicates",
    "/console/contacts/duplicates/merge?a={contact}&b={other}",
]


async def test_accessibility_of_contacts_pages(live_server: str, context: Any, tenant: TenantWorld) -> None:
    ids = await _world(live_server, tenant)
    page = await context.new_page()
    await sign_in(page, live_server, tenant.slug, tenant.emails["admin"], tenant.password)
    found = {}
    for path in PAGES:
        resp = await page.goto(live_server + path.format(**ids))
        assert resp.status == 200, path
        v = await axe_violations(page, live_server)
        if v:
            found[path] = v
    assert found == {}, json.dumps(found, indent=1)


async def test_phone_viewport_has_no_horizontal_scroll(
    live_server: str, chromium: Any, tenant: TenantWorld
) -> None:
    ids = await _world(live_server, tenant)
    ctx = await chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = await ctx.new_page()
        await sign_in(page, live_server, tenant.slug, tenant.emails["admin"], tenant.password)
        wide = {}
        for path in PAGES:
            await page.goto(live_server + path.format(**ids))
            width = await page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
            if width[0] > width[1]:
                wide[path] = width
        assert wide == {}, wide
    finally:
        await ctx.close()
