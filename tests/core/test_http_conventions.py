"""API conventions: idempotent replays, rate limits, body limits, validation errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tessera.settings import Settings
from tests.conftest import TenantWorld


async def _roles(client: httpx.AsyncClient, world: TenantWorld) -> list[str]:
    return [r["key"] for r in (await client.get("/v1/roles", headers=world.headers("admin"))).json()]


async def test_idempotent_replay(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    h = {**tenant.headers("admin"), "Idempotency-Key": "create-role-1"}
    body = {"key": "support", "name": "Support", "permissions": ["users:read"]}
    first = await client.post("/v1/roles", headers=h, json=body)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    second = await client.post("/v1/roles", headers=h, json=body)
    assert second.status_code == 201
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json() == first.json()
    assert (await _roles(client, tenant)).count("support") == 1
    other = await client.post("/v1/roles", headers=h, json={**body, "name": "Different"})
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency.key_reused"
    # Without the key a repeat is a new request (and here a conflict).
    plain = await client.post("/v1/roles", headers=tenant.headers("admin"), json=body)
    assert plain.status_code == 409


async def test_idempotency_key_still_running_answers_409_until_stale(
    client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    import datetime as dt
    import hashlib

    from sqlalchemy import update

    from tessera.core.db.base import utcnow
    from tessera.core.db.session import unit_of_work
    from tessera.core.http.models import IdempotencyRecord

    body = b'{"name": "Support"}'
    path = "/v1/teams"
    headers = {**tenant.headers("admin"), "Idempotency-Key": "k-running", "content-type": "application/json"}
    scope = hashlib.sha256(tenant.keys["admin"].encode()).hexdigest()
    now = utcnow()
    async with unit_of_work(platform=True) as s:
        s.add(
            IdempotencyRecord(
                scope=scope,
                key="k-running",
                request_hash=hashlib.sha256(path.encode() + b"\0" + body).hexdigest(),
                state="pending",
                created_at=now,
                expires_at=now + dt.timedelta(hours=1),
            )
        )
    r = await client.post(path, content=body, headers=headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "idempotency.in_progress", r.text
    # A pending row whose request died long ago no longer blocks the key.
    async with unit_of_work(platform=True) as s:
        await s.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.key == "k-running")
            .values(created_at=now - dt.timedelta(hours=1))
        )
    r = await client.post(path, content=body, headers=headers)
    assert r.status_code == 201, r.text


async def test_idempotency_keys_are_per_credential(
    client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    body = {"name": "Ops"}
    a = await client.post(
        "/v1/departments", headers={**tenant.headers("admin"), "Idempotency-Key": "k"}, json=body
    )
    b = await client.post(
        "/v1/departments", headers={**other_tenant.headers("admin"), "Idempotency-Key": "k"}, json=body
    )
    assert a.status_code == b.status_code == 201
    assert "idempotent-replayed" not in b.headers
    assert a.json()["id"] != b.json()["id"]
    too_long = await client.post(
        "/v1/departments", headers={**tenant.headers("admin"), "Idempotency-Key": "x" * 256}, json=body
    )
    assert too_long.status_code == 422


async def test_failed_requests_are_replayed_too(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    h = {**tenant.headers("admin"), "Idempotency-Key": "bad-1"}
    r1 = await client.post("/v1/departments", headers=h, json={"name": ""})
    r2 = await client.post("/v1/departments", headers=h, json={"name": ""})
    assert r1.status_code == r2.status_code == 422
    assert r2.headers["idempotent-replayed"] == "true"


@pytest.fixture
async def small_app(app: Any, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    from tessera.app import create_app

    small = create_app(
        settings.model_copy(update={"rate_limit_per_key": 3, "rate_limit_per_ip": 2, "max_body_bytes": 2000})
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=small), base_url="http://testserver") as c:
        yield c


async def test_rate_limit_per_key(
    small_app: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    h = tenant.headers("admin")
    seen = []
    for _ in range(3):
        r = await small_app.get("/v1/me", headers=h)
        assert r.status_code == 200
        seen.append(int(r.headers["ratelimit-remaining"]))
        assert r.headers["ratelimit-limit"] == "3"
    assert seen == [2, 1, 0]
    r = await small_app.get("/v1/me", headers=h)
    assert r.status_code == 429
    assert r.json()["error"]["code"] == "rate_limit.exceeded"
    assert int(r.headers["retry-after"]) >= 1
    assert r.headers["ratelimit-remaining"] == "0"
    # Another key has its own bucket; health checks are exempt.
    assert (await small_app.get("/v1/me", headers=other_tenant.headers("admin"))).status_code == 200
    assert (await small_app.get("/healthz")).status_code == 200


async def test_rate_limit_per_ip_for_anonymous(small_app: httpx.AsyncClient) -> None:
    codes = [(await small_app.post("/v1/sessions", json={})).status_code for _ in range(3)]
    assert codes == [422, 422, 429]


async def test_body_limit(small_app: httpx.AsyncClient, tenant: TenantWorld) -> None:
    h = tenant.headers("admin")
    big = {"name": "x" * 3000}
    r = await small_app.post("/v1/departments", headers=h, json=big)
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request.too_large"

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"{" + b" " * 600

    r = await small_app.post(
        "/v1/departments", headers={**h, "content-type": "application/json"}, content=chunks()
    )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "request.too_large"
    keyed = {**h, "content-type": "application/json", "Idempotency-Key": "big-1"}
    r = await small_app.post("/v1/departments", headers=keyed, content=chunks())
    assert r.status_code == 413
    assert (await small_app.get("/v1/departments", headers=h)).json() == []


@pytest.mark.parametrize(
    ("path", "body", "field", "rule"),
    [
        ("/v1/users", {"email": "not-an-email", "name": "A"}, "email", "value_error"),
        ("/v1/users", {"name": "A"}, "email", "missing"),
        (
            "/v1/users",
            {"email": "a@x.example.com", "name": "A", "password": "short"},
            "password",
            "string_too_short",
        ),
        ("/v1/users", {"email": "a@x.example.com", "name": "A", "extra": 1}, "extra", "extra_forbidden"),
        ("/v1/roles", {"key": "Bad Key", "name": "R"}, "key", "string_pattern_mismatch"),
        (
            "/v1/roles",
            {"key": "ok-key", "name": "R", "visibility": {"default": "everyone"}},
            "visibility.default",
            "literal_error",
        ),
        ("/v1/departments", {"name": "D", "parent_id": "nope"}, "parent_id", "uuid_parsing"),
    ],
)
async def test_validation_errors_name_field_and_rule(
    client: httpx.AsyncClient, tenant: TenantWorld, path: str, body: dict[str, Any], field: str, rule: str
) -> None:
    r = await client.post(path, headers=tenant.headers("admin"), json=body)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "request.invalid"
    assert err["field"] == field
    assert err["details"]["rule"] == rule
    assert field in err["message"]
    assert err["request_id"]


async def test_service_errors_name_the_field(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    h = tenant.headers("admin")
    r = await client.post(
        "/v1/roles", headers=h, json={"key": "x-role", "name": "X", "permissions": ["nope:nope"]}
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "permissions"
    r = await client.post("/v1/users", headers=h, json={"email": tenant.emails["member"], "name": "Dup"})
    assert r.status_code == 409 and r.json()["error"] == {
        **r.json()["error"],
        "code": "user.duplicate_email",
        "field": "email",
    }
    r = await client.get("/v1/users", headers=h, params={"limit": 0})
    assert r.status_code == 422 and r.json()["error"]["field"] == "limit"
    r = await client.get("/v1/users", headers=h, params={"sort": "password_hash"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "sort"
    r = await client.get("/v1/users", headers=h, params={"cursor": "garbage"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "cursor"


async def test_request_id_and_security_headers(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    r = await client.get("/v1/me", headers={**tenant.headers("admin"), "X-Request-ID": "abc123"})
    assert r.headers["x-request-id"] == "abc123"
    assert r.headers["x-content-type-options"] == "nosniff"
    r = await client.get("/v1/users/00000000-0000-0000-0000-000000000000", headers=tenant.headers("admin"))
    assert r.status_code == 404 and r.json()["error"]["request_id"]


async def test_nul_characters_are_refused_on_every_database(
    client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    """PostgreSQL cannot store NUL in text; every backend refuses it up front with one rule."""
    h = {**tenant.headers("admin"), "content-type": "application/json"}
    for content in (b'{"name": "a\\u0000b"}', b'{"name": "ok", "x": ["\\u0000"]}'):
        r = await client.post("/v1/teams", content=content, headers=h)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "request.nul_character"
    r = await client.get("/v1/users?email__contains=a%00b", headers=tenant.headers("admin"))
    assert r.status_code == 422 and r.json()["error"]["code"] == "request.nul_character"
    # An escaped backslash followed by "u0000" is ordinary text, not a NUL.
    r = await client.post("/v1/teams", content=b'{"name": "path\\\\u0000"}', headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["name"] == "path\\u0000"
    r = await client.get("/v1/teams", headers=tenant.headers("admin"))
    assert [t["name"] for t in r.json()] == ["path\\u0000"]


async def test_an_exhausted_database_pool_answers_503_to_retry(
    client: httpx.AsyncClient, tenant: TenantWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Overload that leaves no free connection within the pool's timeout is a retryable 503
    in the error shape, documented on every operation, and writes nothing."""
    import sqlalchemy.exc
    from sqlalchemy.ext.asyncio import AsyncSession

    h = tenant.headers("admin")
    before = await _roles(client, tenant)

    async def no_connection(self: AsyncSession, *args: Any, **kwargs: Any) -> Any:
        raise sqlalchemy.exc.TimeoutError(
            "QueuePool limit of size 10 overflow 0 reached, connection timed out"
        )

    with monkeypatch.context() as m:
        m.setattr(AsyncSession, "execute", no_connection)
        r = await client.post(
            "/v1/roles", headers=h, json={"key": "busy", "name": "Busy", "permissions": ["users:read"]}
        )
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == "1"
    error = r.json()["error"]
    assert error["code"] == "service.busy" and error["request_id"]
    assert await _roles(client, tenant) == before
    doc = (await client.get("/openapi.json")).json()
    assert "503" in doc["paths"]["/v1/roles"]["post"]["responses"]
