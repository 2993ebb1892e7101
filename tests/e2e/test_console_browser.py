"""End-to-end journeys in Chromium against a live server."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pyotp
import pytest

from tessera.core import context as ctxvars
from tessera.core.db.session import unit_of_work
from tessera.core.identity import auth
from tests.conftest import TenantWorld
from tests.e2e.conftest import axe_violations, sign_in

pytestmark = pytest.mark.e2e


async def _enable_totp(world: TenantWorld, role: str) -> str:
    user_id = world.users[role]
    with ctxvars.tenant_scope(world.tenant_id):
        async with unit_of_work() as s:
            secret, _uri = await auth.mfa_enrol(s, user_id, world.slug)
            await auth.mfa_activate(s, user_id, pyotp.TOTP(secret).now())
    return secret


async def test_sign_in_with_two_factor(live_server: str, context: Any, tenant: TenantWorld) -> None:
    secret = await _enable_totp(tenant, "admin")
    page = await context.new_page()
    await sign_in(page, live_server, tenant.slug, tenant.emails["admin"], tenant.password)
    assert "/console/login/mfa" in page.url
    await page.fill("#f-code", "000000")
    await page.click("button[type=submit]")
    assert await page.locator("#f-code-err").is_visible()
    await page.fill("#f-code", pyotp.TOTP(secret).now())
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{live_server}/console/")
    assert await page.locator("h1").inner_text() == "Good to see you, Admin User"
    # The activity chart is drawn by the vendored Chart.js from its JSON config (no inline script).
    await page.wait_for_selector("canvas[data-chart][data-ready='1']")
    assert await page.evaluate("() => typeof Chart === 'function'")


async def test_admin_journey(live_server: str, context: Any, tenant: TenantWorld) -> None:
    """Invite a user with a role, build a custom role in the matrix and watch a page become
    forbidden, create an API key seen only once, find all of it in the audit log."""
    page = await context.new_page()
    await sign_in(page, live_server, tenant.slug, tenant.emails["admin"], tenant.password)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    # Invite a user and give them a role.
    await page.click("a[data-nav='admin.users']")
    await page.click("text=Invite user")
    email = f"invitee-{uuid.uuid4().hex[:6]}@example.com"
    await page.fill("#f-email", email)
    await page.fill("#f-name", "Invited Person")
    await page.select_option("#f-role_id", label="Read-only")
    await page.click("button:has-text('Send invitation')")
    await page.wait_for_url(re.compile(r".*/console/admin/users/[0-9a-f-]+.*"))
    assert await page.locator(".toast-msg").first.inner_text() == f"Invitation sent to {email}."
    await page.select_option("#f-role_id", label="Manager")
    await page.click("button:has-text('Save changes')")
    await page.wait_for_load_state()
    assert "Manager" in await page.locator(".kv").inner_text()

    # A custom role built in the matrix; the member gets it, then loses audit:read.
    await page.goto(f"{live_server}/console/admin/roles")
    await page.fill("#f-name", "Auditors")
    await page.fill("#f-key", "auditors")
    await page.click("button:has-text('Create role')")
    await page.wait_for_url(re.compile(r".*/console/admin/roles/[0-9a-f-]+.*"))
    role_url = page.url.split("?")[0]
    await page.check("input[value='audit:read']")
    await page.check("input[value='users:read']")
    await page.click("button:has-text('Save permissions')")
    await page.wait_for_load_state()
    assert await page.locator("input[value='audit:read']").is_checked()

    await page.goto(f"{live_server}/console/admin/users/{tenant.users['member']}")
    await page.select_option("#f-role_id", label="Auditors")
    await page.click("button:has-text('Save changes')")
    await page.wait_for_load_state()

    member = await context.browser.new_context()
    mpage = await member.new_page()
    await sign_in(mpage, live_server, tenant.slug, tenant.emails["member"], tenant.password)
    await mpage.goto(f"{live_server}/console/admin/audit")
    assert await mpage.locator("h1").inner_text() == "Audit log"
    await page.goto(role_url)
    await page.uncheck("input[value='audit:read']")
    await page.click("button:has-text('Save permissions')")
    await page.wait_for_load_state()
    resp = await mpage.goto(f"{live_server}/console/admin/audit")
    assert resp.status == 403
    assert await mpage.locator("h1").inner_text() == "You do not have access to this page"
    assert await mpage.locator("a[data-nav='admin.audit']").count() == 0
    await member.close()

    # An API key is shown once.
    await page.goto(f"{live_server}/console/admin/api-keys")
    await page.fill("#f-name", "e2e key")
    await page.click("button:has-text('Create key')")
    key = await page.locator("[data-testid=new-key]").inner_text()
    assert key.startswith("tsk_")
    await page.goto(f"{live_server}/console/admin/api-keys")
    assert await page.locator("[data-testid=new-key]").count() == 0
    assert key not in await page.content()

    # Both actions are in the audit log; the filter narrows it; the detail has before/after.
    await page.goto(f"{live_server}/console/admin/audit")
    admin_email = tenant.emails["admin"]
    for action in ("api_key.create", "user.create"):
        box = page.locator("input[name='action__contains']")
        await box.fill(action)
        async with page.expect_response(lambda r, a=action: f"action__contains={a}" in r.url):
            await box.press("Enter")
        await page.wait_for_timeout(50)
        rows = page.locator("tbody tr", has_text=admin_email)
        assert await rows.count() == 1, action
        assert action in await rows.first.inner_text()
    await page.goto(f"{live_server}/console/admin/audit?action=role.update")
    await page.locator("tbody a").first.click()
    await page.wait_for_load_state()
    assert await page.locator("td.before").count() >= 1
    assert not errors, errors


async def test_switch_to_chinese(live_server: str, context: Any, tenant: TenantWorld) -> None:
    page = await context.new_page()
    await sign_in(page, live_server, tenant.slug, tenant.emails["admin"], tenant.password)
    await page.goto(f"{live_server}/console/admin/users")
    await page.click(".user-menu summary")
    await page.click("button[value='zh_Hans']")
    await page.wait_for_load_state()
    assert await page.locator("h1").inner_text() == "用户"
    assert await page.get_attribute("html", "lang") == "zh-Hans"
    assert "系统管理" in await page.locator(".sidebar").inner_text()


@pytest.mark.parametrize(
    "path",
    [
        "/console/admin/users",
        "/console/admin/users/{member}",
        "/console/admin/audit",
        "/console/admin/roles",
        "/console/",
    ],
)
async def test_phone_viewport_has_no_horizontal_scroll(
    live_server: str, chromium: Any, tenant: TenantWorld, path: str
) -> None:
    ctx = await chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = await ctx.new_page()
        await sign_in(page, live_server, tenant.slug, tenant.emails["admin"], tenant.password)
        await page.goto(live_server + path.format(member=tenant.users["member"]))
        width = await page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"{path}: scrollWidth {width[0]} > innerWidth {width[1]}"
    finally:
        await ctx.close()


ADMIN_PAGES = [
    "/console/",
    "/console/admin/users",
    "/console/admin/users/new",
    "/console/admin/users/{member}",
    "/console/admin/departments",
    "/console/admin/roles",
    "/console/admin/roles/{role}",
    "/console/admin/api-keys",
    "/console/admin/audit",
    "/console/admin/settings",
    "/console/profile",
    "/console/admin/subscription",
    "/console/admin/webhooks",
    "/console/admin/jobs",
    "/console/admin/users?status=nobody-matches",
    "/console/search?q=Member",
]


async def test_accessibility_of_admin_pages(live_server: str, context: Any, tenant: TenantWorld) -> None:
    page = await context.new_page()
    await page.goto(f"{live_server}/console/login")
    assert await axe_violations(page, live_server) == []
    await sign_in(page, live_server, tenant.slug, tenant.emails["admin"], tenant.password)
    found = {}
    for path in ADMIN_PAGES:
        await page.goto(live_server + path.format(member=tenant.users["member"], role=tenant.roles["member"]))
        v = await axe_violations(page, live_server)
        if v:
            found[path] = v
    assert found == {}, __import__("json").dumps(found, indent=1)
