"""Sign-in: lockout, two-factor, CSRF, password reset, suspended tenants, operator keys."""

from __future__ import annotations

import uuid

import httpx
import pyotp
import pytest

from tessera.core.identity import mail
from tests.conftest import TenantWorld
from tests.core.conftest import make_operator_key, sign_in


async def test_lockout_after_repeated_failures(browser: httpx.AsyncClient, tenant: TenantWorld) -> None:
    from tessera.settings import get_settings

    n = get_settings().login_max_failures
    for _ in range(n):
        r = await sign_in(browser, tenant, "member", password="wrong-password")
        assert r.status_code == 401
        assert r.json()["error"]["code"] == "auth.invalid_credentials"
    r = await sign_in(browser, tenant, "member")
    assert r.status_code == 403, r.text
    assert r.json()["error"]["code"] == "auth.locked"
    assert r.json()["error"]["details"]["retry_after"] > 0
    # Another user of the tenant is not affected.
    assert (await sign_in(browser, tenant, "admin")).status_code == 200


async def test_unknown_user_and_workspace_are_plain_401(
    browser: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    r = await browser.post(
        "/v1/sessions",
        json={"workspace": tenant.slug, "email": "nobody@x.example.com", "password": "whatever-pw"},
    )
    assert r.status_code == 401 and r.json()["error"]["code"] == "auth.invalid_credentials"
    r = await browser.post(
        "/v1/sessions",
        json={"workspace": "no-such-ws", "email": "a@x.example.com", "password": "whatever-pw"},
    )
    assert r.status_code == 401 and r.json()["error"]["code"] == "auth.invalid_credentials"


async def _login(
    app: object, world: TenantWorld, role: str = "member"
) -> tuple[httpx.AsyncClient, dict[str, str]]:
    c = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")  # type: ignore[arg-type]
    r = await sign_in(c, world, role)
    assert r.status_code == 200, r.text
    return c, {"X-CSRF-Token": r.json()["csrf_token"], **({"mfa": "1"} if r.json()["mfa_required"] else {})}


async def test_two_factor(app: object, tenant: TenantWorld) -> None:
    c, h = await _login(app, tenant)
    csrf = {"X-CSRF-Token": h["X-CSRF-Token"]}
    enrol = await c.post("/v1/me/mfa/enrol", headers=csrf)
    assert enrol.status_code == 200, enrol.text
    secret = enrol.json()["secret"]
    assert enrol.json()["otpauth_uri"].startswith("otpauth://totp/")
    bad = await c.post("/v1/me/mfa/activate", headers=csrf, json={"code": "000000"})
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "code"
    act = await c.post("/v1/me/mfa/activate", headers=csrf, json={"code": pyotp.TOTP(secret).now()})
    assert act.status_code == 200, act.text
    codes = act.json()["recovery_codes"]
    assert len(codes) == 10
    await c.aclose()

    # Password alone is not enough any more.
    c2, h2 = await _login(app, tenant)
    assert h2.get("mfa") == "1"
    blocked = await c2.get("/v1/users")
    assert blocked.status_code == 403 and blocked.json()["error"]["code"] == "auth.mfa_required"
    me = await c2.get("/v1/me")  # allowed while pending, to show the challenge
    assert me.status_code == 200
    wrong = await c2.post(
        "/v1/sessions/mfa", headers={"X-CSRF-Token": h2["X-CSRF-Token"]}, json={"code": "123456"}
    )
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "auth.invalid_mfa_code"
    ok = await c2.post(
        "/v1/sessions/mfa",
        headers={"X-CSRF-Token": h2["X-CSRF-Token"]},
        json={"code": pyotp.TOTP(secret).now()},
    )
    assert ok.status_code == 204, ok.text
    assert (await c2.get("/v1/users")).status_code == 200
    await c2.aclose()

    # A recovery code works once.
    c3, h3 = await _login(app, tenant)
    r = await c3.post(
        "/v1/sessions/mfa", headers={"X-CSRF-Token": h3["X-CSRF-Token"]}, json={"code": codes[0]}
    )
    assert r.status_code == 204, r.text
    assert (await c3.get("/v1/users")).status_code == 200
    await c3.aclose()
    c4, h4 = await _login(app, tenant)
    r = await c4.post(
        "/v1/sessions/mfa", headers={"X-CSRF-Token": h4["X-CSRF-Token"]}, json={"code": codes[0]}
    )
    assert r.status_code == 422
    assert (await c4.get("/v1/users")).status_code == 403
    await c4.aclose()


async def test_csrf_needed_for_cookie_writes(app: object, tenant: TenantWorld) -> None:
    c, h = await _login(app, tenant, "admin")
    body = {"name": "Sales"}
    r = await c.post("/v1/departments", json=body)
    assert r.status_code == 403 and r.json()["error"]["code"] == "auth.csrf"
    r = await c.post("/v1/departments", json=body, headers={"X-CSRF-Token": "forged"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "auth.csrf"
    assert (await c.get("/v1/departments")).json() == []  # nothing was written; reads need no token
    r = await c.post("/v1/departments", json=body, headers=h)
    assert r.status_code == 201, r.text
    await c.aclose()


async def test_logout_ends_the_session(app: object, tenant: TenantWorld) -> None:
    c, h = await _login(app, tenant)
    cookie = c.cookies.get("tessera_session")
    assert (await c.delete("/v1/sessions/current", headers=h)).status_code == 204
    r = await c.get("/v1/me", cookies={"tessera_session": cookie})
    assert r.status_code == 401
    await c.aclose()


async def test_password_reset(browser: httpx.AsyncClient, tenant: TenantWorld) -> None:
    mail.outbox.clear()
    r = await browser.post(
        "/v1/password-resets", json={"workspace": tenant.slug, "email": tenant.emails["member"]}
    )
    assert r.status_code == 202
    unknown = await browser.post(
        "/v1/password-resets", json={"workspace": tenant.slug, "email": "no@x.example.com"}
    )
    assert unknown.status_code == 202
    assert len(mail.outbox) == 1
    to, _subject, text = mail.outbox[-1]
    assert to == tenant.emails["member"]
    token = text.split("token=", 1)[1].split()[0]
    short = await browser.post("/v1/password-resets/confirm", json={"token": token, "password": "short"})
    assert short.status_code == 422 and short.json()["error"]["field"] == "password"
    ok = await browser.post(
        "/v1/password-resets/confirm", json={"token": token, "password": "a-brand-new-pw"}
    )
    assert ok.status_code == 204, ok.text
    again = await browser.post(
        "/v1/password-resets/confirm", json={"token": token, "password": "another-new-pw"}
    )
    assert again.status_code == 422 and again.json()["error"]["code"] == "auth.invalid_reset_token"
    assert (await sign_in(browser, tenant, "member")).status_code == 401
    assert (await sign_in(browser, tenant, "member", password="a-brand-new-pw")).status_code == 200


async def test_suspended_tenant_is_refused(
    app: object, client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    op = {"Authorization": f"Bearer {await make_operator_key()}"}
    c, h = await _login(app, tenant, "admin")
    assert (await c.get("/v1/me")).status_code == 200
    # Tenant keys cannot call operator endpoints, and operator keys are checked.
    assert (await client.get("/v1/operator/tenants", headers=tenant.headers("owner"))).status_code == 401
    bad = {"Authorization": "Bearer " + op["Authorization"].rsplit("_", 1)[0] + "_wrongsecret"}
    assert (await client.get("/v1/operator/tenants", headers=bad)).status_code == 401
    r = await client.post(f"/v1/operator/tenants/{tenant.tenant_id}/suspend", headers=op)
    assert r.status_code == 200 and r.json()["status"] == "suspended"
    for resp in (
        await client.get("/v1/me", headers=tenant.headers("admin")),
        await c.get("/v1/me"),
        await sign_in(
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
                base_url="http://testserver",
            ),
            tenant,
            "member",
        ),
    ):
        assert resp.status_code == 403, resp.text
        assert resp.json()["error"]["code"] == "tenant.suspended"
    assert (await client.get("/v1/me", headers=other_tenant.headers("admin"))).status_code == 200
    r = await client.post(f"/v1/operator/tenants/{tenant.tenant_id}/resume", headers=op)
    assert r.status_code == 200 and r.json()["status"] == "active"
    assert (await client.get("/v1/me", headers=tenant.headers("admin"))).status_code == 200
    events = await client.get(
        "/v1/audit-events",
        headers=tenant.headers("admin"),
        params={"action__in": "tenant.suspend,tenant.resume"},
    )
    assert sorted(e["action"] for e in events.json()["items"]) == ["tenant.resume", "tenant.suspend"]
    assert all(e["actor_type"] == "operator" for e in events.json()["items"])
    await c.aclose()


async def test_revoked_and_disabled_credentials(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    h = tenant.headers("admin")
    key = await client.post("/v1/api-keys", headers=h, json={"name": "tmp"})
    raw = key.json()["key"]
    assert (await client.get("/v1/me", headers={"Authorization": f"Bearer {raw}"})).status_code == 200
    await client.delete(f"/v1/api-keys/{key.json()['id']}", headers=h)
    r = await client.get("/v1/me", headers={"Authorization": f"Bearer {raw}"})
    assert r.status_code == 401
    # Disabling a user stops the keys they created.
    assert (await client.get("/v1/me", headers=tenant.headers("member"))).status_code == 200
    await client.post(f"/v1/users/{tenant.users['member']}/disable", headers=h)
    r = await client.get("/v1/me", headers=tenant.headers("member"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "auth.user_disabled"
    # A key cannot grant more than its creator holds.
    r = await client.post(
        "/v1/api-keys", headers=tenant.headers("manager"), json={"name": "x", "scopes": ["admin:users"]}
    )
    assert r.status_code == 403


async def test_malformed_credentials(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    for value in ("nonsense", "tsk_zz_yy_xx", f"tsk_{tenant.tenant_id.hex}_nokey_secret"):
        r = await client.get("/v1/me", headers={"Authorization": f"Bearer {value}"})
        assert r.status_code == 401, value
    assert (await client.get("/v1/me")).status_code == 401


async def test_a_key_last_used_time_is_written_once_a_minute_per_process(
    client: httpx.AsyncClient, tenant: TenantWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a key's cached principal expires, the requests then in flight look the key up
    again; only the first of them writes the last-used time (the row's own time would let
    every one of them update the same row and queue behind each other's commits)."""
    from tessera.core.identity import auth
    from tessera.core.identity.repository import ApiKeyRepository

    h = tenant.headers("admin")
    created = (await client.post("/v1/api-keys", headers=h, json={"name": "touchy"})).json()
    bearer = {"Authorization": f"Bearer {created['key']}"}
    touched: list[uuid.UUID] = []

    async def count(self: ApiKeyRepository, key_id: uuid.UUID, when: object) -> None:
        touched.append(key_id)  # the row keeps its stale time, as for requests in flight

    monkeypatch.setattr(ApiKeyRepository, "touch", count)
    for _ in range(3):
        auth._principal_cache.clear()  # the cached principal expired
        assert (await client.get("/v1/me", headers=bearer)).status_code == 200
    assert touched == [uuid.UUID(created["id"])]
    # A minute later this process writes it again.
    auth._touched[uuid.UUID(created["id"])] -= auth.TOUCH_EVERY.total_seconds() + 1
    auth._principal_cache.clear()
    assert (await client.get("/v1/me", headers=bearer)).status_code == 200
    assert touched == [uuid.UUID(created["id"])] * 2
