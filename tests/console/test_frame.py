"""The frame: sign-in, CSP, navigation by permission, error pages, CSRF, language."""

from __future__ import annotations

import pyotp

from tessera.core.identity import mail
from tests.conftest import TenantWorld
from tests.console.conftest import Browser


async def test_login_page_and_security_headers(browser: Browser) -> None:
    r = await browser.get("/console/login")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-frame-options"] == "DENY"
    assert "<script>" not in r.text and " on" + "click=" not in r.text
    assert 'name="workspace"' in r.text


async def test_unauthenticated_redirects_to_login(browser: Browser) -> None:
    r = await browser.get("/console/admin/users")
    assert r.status_code == 303
    assert r.headers["location"].startswith("/console/login?next=%2Fconsole%2Fadmin%2Fusers")
    r = await browser.get("/console/admin/users", headers={"HX-Request": "true"})
    assert r.status_code == 204 and r.headers["hx-redirect"].startswith("/console/login")


async def test_bad_password_shows_inline_error(browser: Browser, tenant: TenantWorld) -> None:
    r = await browser.post(
        "/console/login",
        {"workspace": tenant.slug, "email": tenant.emails["admin"], "password": "wrong-password"},
        csrf=False,
    )
    assert r.status_code == 401
    assert "incorrect" in r.text
    r = await browser.post(
        "/console/login", {"workspace": tenant.slug, "email": "not-an-email", "password": "x"}, csrf=False
    )
    assert r.status_code == 422
    assert 'aria-invalid="true"' in r.text and "valid email" in r.text


async def test_home_and_navigation_follow_permissions(
    browser: Browser, browser2: Browser, tenant: TenantWorld
) -> None:
    await browser.login(tenant, "admin")
    r = await browser.get("/console/")
    assert r.status_code == 200, r.text
    for key in ("admin.users", "admin.roles", "admin.api_keys", "admin.audit", "admin.settings"):
        assert f'data-nav="{key}"' in r.text
    assert "Active users" in r.text and 'type="application/json"' in r.text
    assert f'"X-CSRF-Token": "{browser.csrf}"' in r.text

    await browser2.login(tenant, "member")
    r = await browser2.get("/console/")
    assert r.status_code == 200
    assert 'data-nav="admin.users"' in r.text  # users:read
    assert 'data-nav="admin.roles"' not in r.text and 'data-nav="admin.audit"' not in r.text
    r = await browser2.get("/console/admin/roles")
    assert r.status_code == 403
    assert "You do not have access to this page" in r.text and "admin:roles" in r.text
    r = await browser2.get("/console/admin/users/" + str(tenant.users["admin"]))
    assert r.status_code == 403
    # Without pii:view, emails in the user list are masked.
    r = await browser2.get("/console/admin/users")
    assert r.status_code == 200 and tenant.emails["owner"] not in r.text
    assert "o***@" + tenant.emails["owner"].split("@")[1] in r.text


async def test_error_pages(browser: Browser, tenant: TenantWorld) -> None:
    await browser.login(tenant, "admin")
    r = await browser.get("/console/no/such/page")
    assert r.status_code == 404 and "Page not found" in r.text
    r = await browser.get("/console/admin/users/not-a-uuid")
    assert r.status_code == 404 and "Page not found" in r.text
    # API routes keep the JSON error body.
    r = await browser.client.get("/v1/users/not-a-uuid", headers=tenant.headers("admin"))
    assert r.status_code == 422 and r.json()["error"]["field"]


async def test_csrf_refused_without_token(browser: Browser, tenant: TenantWorld) -> None:
    await browser.login(tenant, "admin")
    r = await browser.post("/console/admin/settings", {"name": "Hacked"}, csrf=False)
    assert r.status_code == 403 and "CSRF" in r.text
    r = await browser.post("/console/admin/settings", {"name": "Hacked", "csrf_token": "wrong"}, csrf=False)
    assert r.status_code == 403
    r = await browser.get("/console/admin/settings")
    assert "Hacked" not in r.text
    # The header form of the token (htmx) works as well as the field.
    r = await browser.client.post(
        "/console/admin/settings",
        data={
            "name": "Renamed",
            "locale": "en",
            "timezone": "UTC",
            "currency": "CNY",
            "default_region": "CN",
        },
        headers={"X-CSRF-Token": browser.csrf},
    )
    assert r.status_code == 303, r.text
    r = await browser.get("/console/admin/settings")
    assert "Renamed" in r.text


async def test_two_factor_sign_in(browser: Browser, browser2: Browser, tenant: TenantWorld) -> None:
    await browser.login(tenant, "manager")
    r = await browser.post("/console/profile/mfa/enrol")
    assert r.status_code == 200
    import re

    secret = re.search(r'data-testid="totp-secret">([A-Z2-7]+)<', r.text).group(1)  # type: ignore[union-attr]
    r = await browser.post("/console/profile/mfa/activate", {"code": "000000", "secret": secret})
    assert r.status_code == 422
    r = await browser.post(
        "/console/profile/mfa/activate", {"code": pyotp.TOTP(secret).now(), "secret": secret}
    )
    assert r.status_code == 200 and "recovery codes" in r.text

    r = await browser2.client.post(
        "/console/login",
        data={"workspace": tenant.slug, "email": tenant.emails["manager"], "password": tenant.password},
    )
    assert r.status_code == 303 and r.headers["location"].startswith("/console/login/mfa")
    r = await browser2.get("/console/")
    assert r.status_code == 303 and r.headers["location"] == "/console/login/mfa"
    await browser2.refresh_csrf()
    page = await browser2.get("/console/login/mfa")
    import re as _re

    browser2.csrf = _re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    r = await browser2.post("/console/login/mfa", {"code": "123456", "next": "/console/"})
    assert r.status_code == 422 and "not valid" in r.text, r.text[r.text.find("<main") :][:1500]
    r = await browser2.post("/console/login/mfa", {"code": pyotp.TOTP(secret).now(), "next": "/console/"})
    assert r.status_code == 303 and r.headers["location"] == "/console/"
    assert (await browser2.get("/console/")).status_code == 200


async def test_password_reset_flow(browser: Browser, tenant: TenantWorld) -> None:
    mail.outbox.clear()
    r = await browser.post(
        "/console/reset", {"workspace": tenant.slug, "email": tenant.emails["member"]}, csrf=False
    )
    assert r.status_code == 200 and "we have sent it a link" in r.text
    r2 = await browser.post(
        "/console/reset", {"workspace": tenant.slug, "email": "nobody@example.com"}, csrf=False
    )
    assert r2.status_code == 200 and "we have sent it a link" in r2.text
    link = mail.outbox[-1][2].split("\n")[1]
    token = link.split("token=")[1]
    r = await browser.get("/reset?token=" + token)
    assert r.status_code == 303 and r.headers["location"].startswith("/console/reset/confirm")
    r = await browser.post("/console/reset/confirm", {"token": token, "password": "short"}, csrf=False)
    assert r.status_code == 422 and 'aria-invalid="true"' in r.text
    r = await browser.post(
        "/console/reset/confirm", {"token": token, "password": "a-brand-new-password"}, csrf=False
    )
    assert r.status_code == 303
    r = await browser.post(
        "/console/reset/confirm", {"token": token, "password": "another-password-1"}, csrf=False
    )
    assert r.status_code == 422 and "invalid or has expired" in r.text
    r = await browser.client.post(
        "/console/login",
        data={"workspace": tenant.slug, "email": tenant.emails["member"], "password": "a-brand-new-password"},
    )
    assert r.status_code == 303


async def test_switch_language_and_sign_out(browser: Browser, tenant: TenantWorld) -> None:
    await browser.login(tenant, "admin")
    r = await browser.post("/console/locale", {"locale": "zh_Hans", "next": "/console/admin/users"})
    assert r.status_code == 303 and r.headers["location"] == "/console/admin/users"
    r = await browser.get("/console/admin/users")
    assert r.status_code == 200
    assert 'lang="zh-Hans"' in r.text and "用户" in r.text and "退出登录" in r.text
    r = await browser.post("/console/logout")
    assert r.status_code == 303
    r = await browser.get("/console/")
    assert r.status_code == 303 and r.headers["location"].startswith("/console/login")


async def test_global_search(browser: Browser, tenant: TenantWorld) -> None:
    await browser.login(tenant, "admin")
    r = await browser.get("/console/search?q=Member", headers={"HX-Request": "true"})
    assert r.status_code == 200
    assert "Member User" in r.text and "<html" not in r.text
    r = await browser.get("/console/search?q=zzzz-nothing")
    assert "No results" in r.text and "<html" in r.text


async def test_sign_in_page_in_chinese(browser: Browser) -> None:
    r = await browser.get("/console/login?lang=zh_Hans")
    assert r.status_code == 200 and 'lang="zh-Hans"' in r.text and "忘记密码？" in r.text
    r = await browser.get("/console/login", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert "工作区" in r.text
