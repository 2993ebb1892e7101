"""Admin pages: users, roles and the permission matrix, API keys, audit log, settings, saved views."""

from __future__ import annotations

import re

from tessera.core.identity import mail
from tests.conftest import TenantWorld
from tests.console.conftest import Browser


async def test_users_list_filters_sort_export(browser: Browser, tenant: TenantWorld) -> None:
    await browser.login(tenant, "admin")
    r = await browser.get("/console/admin/users")
    assert r.status_code == 200
    for role in ("Owner User", "Member User", "Manager User"):
        assert role in r.text
    r = await browser.get("/console/admin/users?name__contains=memb")
    assert "Member User" in r.text and "Owner User" not in r.text
    # htmx partial: only the rows region comes back.
    r = await browser.get(
        "/console/admin/users?sort=name", headers={"HX-Request": "true", "HX-Target": "list-admin-users"}
    )
    assert r.status_code == 200 and "<html" not in r.text
    names = re.findall(r">(\w+(?:-\w+)? User)</a>", r.text)
    assert names == sorted(names) and len(names) == 5
    r = await browser.get("/console/admin/users?limit=2&sort=name")
    nxt = re.search(r'href="(\?[^"]*cursor=[^"]+)"', r.text)
    assert nxt, "a next-page link"
    r2 = await browser.get("/console/admin/users" + nxt.group(1).replace("&amp;", "&"))
    rows2 = r2.text[r2.text.index("<tbody>") :]
    assert r2.status_code == 200 and "Member User" in rows2 and "Admin User" not in rows2
    r = await browser.get("/console/admin/users?format=csv&status=active")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.text.splitlines()[0].startswith("Name,Email,Role")
    assert len(r.text.strip().splitlines()) == 6
    r = await browser.get("/console/admin/users?sort=password")
    assert r.status_code == 422 and "sort must be one of" in r.text


async def test_invite_user_and_change_role(browser: Browser, tenant: TenantWorld) -> None:
    await browser.login(tenant, "admin")
    mail.outbox.clear()
    r = await browser.post("/console/admin/users/new", {"email": "bad", "name": ""})
    assert r.status_code == 422
    assert r.text.count('aria-invalid="true"') >= 2
    r = await browser.post("/console/admin/users/new", {"email": tenant.emails["member"], "name": "Dup"})
    assert r.status_code == 422 and "already exists" in r.text
    r = await browser.post(
        "/console/admin/users/new",
        {"email": "new.person@example.com", "name": "New Person", "role_id": str(tenant.roles["read-only"])},
    )
    assert r.status_code == 303, r.text
    user_url = r.headers["location"].split("?")[0]
    assert mail.outbox and mail.outbox[-1][0] == "new.person@example.com"
    r = await browser.get(user_url)
    assert r.status_code == 200 and "New Person" in r.text and "Invited" in r.text
    r = await browser.post(
        user_url, {"name": "New Person", "role_id": str(tenant.roles["manager"]), "locale": "en"}
    )
    assert r.status_code == 303
    r = await browser.get(user_url + "?tab=timeline")
    assert "user.update" in r.text and "user.create" in r.text
    r = await browser.get(user_url + "?tab=related")
    assert "Not a member of any team." in r.text
    r = await browser.post(user_url + "/disable")
    assert r.status_code == 303
    r = await browser.get("/console/admin/users?status=disabled")
    assert "New Person" in r.text


async def test_bulk_disable(browser: Browser, tenant: TenantWorld) -> None:
    await browser.login(tenant, "admin")
    r = await browser.post(
        "/console/admin/users/bulk-disable",
        {"ids": [str(tenant.users["member"]), str(tenant.users["read-only"])]},
    )
    assert r.status_code == 303
    r = await browser.get("/console/admin/users?status=disabled")
    assert "Member User" in r.text and "Read-Only User" in r.text


async def test_custom_role_matrix_makes_page_forbidden(
    browser: Browser, browser2: Browser, tenant: TenantWorld
) -> None:
    await browser.login(tenant, "admin")
    r = await browser.post("/console/admin/roles", {"name": "Auditor", "key": "auditor"})
    assert r.status_code == 303
    role_url = r.headers["location"].split("?")[0]
    role_id = role_url.rsplit("/", 1)[1]
    r = await browser.get(role_url)
    assert r.status_code == 200 and 'value="audit:read"' in r.text
    r = await browser.post(role_url, {"permissions": ["audit:read", "users:read", "bogus:perm"]})
    assert r.status_code == 422 and "unknown permission" in r.text
    r = await browser.post(role_url, {"permissions": ["audit:read", "users:read"]})
    assert r.status_code == 303
    r = await browser.post(
        f"/console/admin/users/{tenant.users['member']}", {"name": "Member User", "role_id": role_id}
    )
    assert r.status_code == 303
    await browser2.login(tenant, "member")
    assert (await browser2.get("/console/admin/audit")).status_code == 200
    r = await browser.post(role_url, {"permissions": ["users:read"]})
    assert r.status_code == 303
    r = await browser2.get("/console/admin/audit")
    assert r.status_code == 403 and "audit:read" in r.text
    # Built-in roles are read-only in the matrix.
    r = await browser.post(f"/console/admin/roles/{tenant.roles['member']}", {"permissions": ["*"]})
    assert r.status_code == 403


async def test_api_key_shown_once_and_revoked(browser: Browser, tenant: TenantWorld) -> None:
    await browser.login(tenant, "admin")
    r = await browser.post("/console/admin/api-keys", {"name": "billing sync"})
    assert r.status_code == 200
    key = re.search(r'data-testid="new-key">(tsk_[^<]+)<', r.text).group(1)  # type: ignore[union-attr]
    r = await browser.client.get("/v1/me", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200
    r = await browser.get("/console/admin/api-keys")
    assert "billing sync" in r.text and key not in r.text
    key_id = (await browser.client.get("/v1/api-keys", headers=tenant.headers("admin"))).json()["items"]
    kid = next(k["id"] for k in key_id if k["name"] == "billing sync")
    r = await browser.post(f"/console/admin/api-keys/{kid}/revoke")
    assert r.status_code == 303
    r = await browser.client.get("/v1/me", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 401


async def test_audit_log_filters_and_detail(browser: Browser, tenant: TenantWorld) -> None:
    await browser.login(tenant, "admin")
    await browser.post(
        "/console/admin/settings",
        {
            "name": "Audited Name",
            "locale": "en",
            "timezone": "Asia/Shanghai",
            "currency": "CNY",
            "default_region": "CN",
        },
    )
    r = await browser.get("/console/admin/audit?action=tenant.update")
    assert r.status_code == 200 and "tenant.update" in r.text and "user.create" not in r.text
    href = re.search(r'href="(/console/admin/audit/[0-9a-f-]+)"', r.text).group(1)  # type: ignore[union-attr]
    r = await browser.get(href)
    assert r.status_code == 200 and "Audited Name" in r.text and 'class="before"' in r.text
    r = await browser.get("/console/admin/audit?action__contains=user&actor_type=system")
    assert r.status_code == 200 and "user.create" in r.text
    assert "/v1/audit-events/export?action__contains=user&amp;actor_type=system" in r.text
    r = await browser.get("/console/admin/audit?created_at__gte=not-a-date")
    assert r.status_code == 422


async def test_settings_validation(browser: Browser, tenant: TenantWorld) -> None:
    await browser.login(tenant, "admin")
    r = await browser.get("/console/admin/settings")
    assert r.status_code == 200 and 'value="Asia/Shanghai" selected' in r.text
    r = await browser.post(
        "/console/admin/settings", {"name": "X", "currency": "yuan", "timezone": "Mars/Base"}
    )
    assert r.status_code == 422 and r.text.count('aria-invalid="true"') == 2


async def test_departments_and_teams(browser: Browser, tenant: TenantWorld) -> None:
    await browser.login(tenant, "admin")
    r = await browser.post("/console/admin/departments", {"name": "Sales"})
    assert r.status_code == 303
    r = await browser.get("/console/admin/departments")
    parent = re.search(r'<option value="([0-9a-f-]+)"[^>]*>Sales</option>', r.text).group(1)  # type: ignore[union-attr]
    r = await browser.post("/console/admin/departments", {"name": "Sales East", "parent_id": parent})
    assert r.status_code == 303
    r = await browser.post("/console/admin/teams", {"name": "Closers", "department_id": parent})
    assert r.status_code == 303
    r = await browser.post("/console/admin/teams", {"name": "Closers"})
    assert r.status_code == 422 and "already exists" in r.text
    r = await browser.get("/console/admin/departments")
    tree = r.text[r.text.index('<ul class="tree">') :]
    assert re.search(
        r"Sales <span.*?<ul class=\"tree\">\s*<li><span class=\"tree-node\">Sales East", tree, re.S
    ), tree[:600]


async def test_saved_views(browser: Browser, browser2: Browser, tenant: TenantWorld) -> None:
    await browser.login(tenant, "admin")
    r = await browser.post(
        "/console/views",
        {
            "page": "admin.users",
            "name": "Disabled people",
            "query": "status=disabled",
            "next": "/console/admin/users",
        },
    )
    assert r.status_code == 303
    r = await browser.post(
        "/console/views",
        {
            "page": "admin.users",
            "name": "Everyone shared",
            "query": "",
            "shared": "on",
            "next": "/console/admin/users",
        },
    )
    r = await browser.get("/console/admin/users")
    assert "Disabled people" in r.text and "Everyone shared" in r.text
    await browser2.login(tenant, "owner")
    r = await browser2.get("/console/admin/users")
    assert "Everyone shared" in r.text and "Disabled people" not in r.text
    r = await browser.post("/console/views", {"page": "admin.users", "name": ""})
    assert r.status_code == 422


async def test_cross_tenant_ids_are_404_pages(
    browser: Browser, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    await browser.login(other_tenant, "owner")
    victim_user = tenant.users["member"]
    for url in (f"/console/admin/users/{victim_user}", f"/console/admin/roles/{tenant.roles['member']}"):
        r = await browser.get(url)
        assert r.status_code == 404 and "Page not found" in r.text, url
    for url, data in (
        (f"/console/admin/users/{victim_user}", {"name": "Pwned"}),
        (f"/console/admin/users/{victim_user}/disable", {}),
        (f"/console/admin/users/{victim_user}/reset-mfa", {}),
        (f"/console/admin/roles/{tenant.roles['member']}", {"permissions": ["*"]}),
    ):
        r = await browser.post(url, data)
        assert r.status_code == 404, (url, r.status_code)
    r = await browser.post("/console/admin/users/bulk-disable", {"ids": [str(victim_user)]})
    assert r.status_code == 404
    keys = (await browser.client.get("/v1/api-keys", headers=tenant.headers("admin"))).json()["items"]
    r = await browser.post(f"/console/admin/api-keys/{keys[0]['id']}/revoke")
    assert r.status_code == 404
    events = (await browser.client.get("/v1/audit-events", headers=tenant.headers("admin"))).json()["items"]
    r = await browser.get(f"/console/admin/audit/{events[0]['id']}")
    assert r.status_code == 404
    # The victim's data is untouched.
    r = await browser.client.get(f"/v1/users/{victim_user}", headers=tenant.headers("admin"))
    assert r.json()["name"] == "Member User" and r.json()["status"] == "active"
    r = await browser.client.get("/v1/me", headers={"Authorization": f"Bearer {tenant.keys['admin']}"})
    assert r.status_code == 200


async def test_list_pages_query_count_does_not_grow_with_rows(
    browser: Browser, tenant: TenantWorld, db: object
) -> None:
    from sqlalchemy import event

    from tessera.core import context as ctxvars
    from tessera.core.db.session import unit_of_work
    from tessera.core.identity import service
    from tessera.core.identity.schemas import UserCreate

    await browser.login(tenant, "admin")
    engine = db.engine.sync_engine  # type: ignore[attr-defined]
    seen: list[str] = []

    def count(conn: object, cursor: object, statement: str, *a: object) -> None:
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

    before = {
        p: await queries(p)
        for p in ("/console/admin/users", "/console/admin/audit", "/console/admin/api-keys")
    }
    with ctxvars.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            for i in range(15):
                await service.create_user(s, UserCreate(email=f"extra{i}@example.com", name=f"Extra {i}"))
    after = {p: await queries(p) for p in before}
    assert after == before


async def test_subscription_page(browser: Browser, browser2: Browser, tenant: TenantWorld) -> None:
    await browser.login(tenant, "owner")
    r = await browser.get("/console/admin/subscription")
    assert r.status_code == 200 and "seats" in r.text
    r = await browser.get("/console/")
    assert "Seats in use" in r.text
    await browser2.login(tenant, "manager")
    assert (await browser2.get("/console/admin/subscription")).status_code == 403


async def test_webhooks_and_jobs_pages(
    browser: Browser, browser2: Browser, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    await browser.login(tenant, "admin")
    r = await browser.post("/console/admin/webhooks", {"url": "ftp://x", "event_types": ""})
    assert r.status_code == 422 and r.text.count('aria-invalid="true"') >= 1
    r = await browser.post(
        "/console/admin/webhooks",
        {"url": "https://hooks.example.com/in", "event_types": "contact.created, contact.updated"},
    )
    assert r.status_code == 200, r.text
    assert re.search(r'data-testid="new-secret">[^<]+<', r.text)
    href = re.search(r'href="(/console/admin/webhooks/[0-9a-f-]+)"', r.text).group(1)  # type: ignore[union-attr]
    r = await browser.get(href)
    assert (
        r.status_code == 200
        and "contact.created, contact.updated" in r.text
        and "No deliveries yet." in r.text
    )
    assert (await browser.get("/console/admin/jobs")).status_code == 200
    await browser2.login(other_tenant, "owner")
    assert (await browser2.get(href)).status_code == 404
    assert (await browser2.post(href + "/delete")).status_code == 404
    assert (await browser.get(href)).status_code == 200
    await browser2.login(tenant, "member")
    assert (await browser2.get("/console/admin/webhooks")).status_code == 403
    assert (await browser2.get("/console/admin/jobs")).status_code == 403
