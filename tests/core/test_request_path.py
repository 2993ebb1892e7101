"""The request hot path: one-round-trip tenant setting on PostgreSQL, the unit of work ending
before the response, shared tenant-status lookups, per-route metrics and request ids."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.http.deps import DbSession
from tests.conftest import TenantWorld
from tests.core.conftest import pg_only


def _statements(db: Any) -> tuple[list[str], Any]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(db.engine.sync_engine, "before_cursor_execute", record)
    return seen, record


@pg_only
async def test_pg_transaction_opens_with_the_tenant_in_one_statement(db: Any, tenant: TenantWorld) -> None:
    from tessera.core import context
    from tessera.core.db.session import unit_of_work

    seen, record = _statements(db)
    try:
        with context.tenant_scope(tenant.tenant_id):
            async with unit_of_work() as s:
                got = (await s.execute(text("SELECT current_setting('app.tenant_id', true)"))).scalar()
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)
    assert got == str(tenant.tenant_id)
    begins = [st for st in seen if "set_config('app.tenant_id'" in st]
    assert begins == [f"BEGIN; SELECT set_config('app.tenant_id', '{tenant.tenant_id}', true)"]


@pg_only
async def test_pg_tenant_setting_ends_with_the_transaction(db: Any, tenant: TenantWorld) -> None:
    """The pooled connection does not carry the tenant into the next transaction or outside one."""
    from tessera.core import context
    from tessera.core.db.session import unit_of_work
    from tessera.core.identity.models import User

    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            assert (await s.execute(text(f"SELECT count(*) FROM {User.__tablename__}"))).scalar() >= 1
    with context.tenant_scope(None):
        for _ in range(3):  # whichever pooled connection comes back, it has no tenant
            async with db.engine.connect() as conn:
                assert (
                    await conn.execute(text("SELECT current_setting('app.tenant_id', true)"))
                ).scalar() == ""
                assert (await conn.execute(text(f"SELECT count(*) FROM {User.__tablename__}"))).scalar() == 0
        async with unit_of_work(platform=True) as s:
            assert (await s.execute(text(f"SELECT count(*) FROM {User.__tablename__}"))).scalar() == 0


@pg_only
async def test_pg_core_transactions_are_atomic_and_scoped(db: Any, tenant: TenantWorld) -> None:
    """Driver autocommit must not make ``engine.begin()`` blocks non-transactional."""
    from tessera.core import context

    with context.tenant_scope(tenant.tenant_id):
        with pytest.raises(RuntimeError):
            async with db.engine.begin() as conn:
                assert (
                    await conn.execute(text("SELECT current_setting('app.tenant_id', true)"))
                ).scalar() == str(tenant.tenant_id)
                await conn.execute(text("UPDATE users SET name = 'changed-then-rolled-back'"))
                raise RuntimeError("roll back")
        async with db.engine.connect() as conn:
            names = (await conn.execute(text("SELECT name FROM users"))).scalars().all()
    assert names and "changed-then-rolled-back" not in names


@pg_only
async def test_pg_other_isolation_levels_and_autocommit(db: Any, tenant: TenantWorld) -> None:
    from tessera.core import context

    with context.tenant_scope(tenant.tenant_id):
        async with db.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="SERIALIZABLE")
            level = (await conn.execute(text("SHOW transaction_isolation"))).scalar()
            setting = (await conn.execute(text("SELECT current_setting('app.tenant_id', true)"))).scalar()
            await conn.commit()
        assert (level, setting) == ("serializable", str(tenant.tenant_id))
        async with db.engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            # No transaction, so no transaction-local tenant either: RLS shows nothing.
            assert (await conn.execute(text("SELECT count(*) FROM users"))).scalar() == 0
        # Connections back from the pool return to the one-round-trip path.
        seen, record = _statements(db)
        try:
            for _ in range(3):
                async with db.engine.connect() as conn:
                    level = (await conn.execute(text("SHOW transaction_isolation"))).scalar()
                    setting = (
                        await conn.execute(text("SELECT current_setting('app.tenant_id', true)"))
                    ).scalar()
                    assert (level, setting) == ("read committed", str(tenant.tenant_id))
        finally:
            event.remove(db.engine.sync_engine, "before_cursor_execute", record)
        assert [st for st in seen if "set_config" in st] == [
            f"BEGIN; SELECT set_config('app.tenant_id', '{tenant.tenant_id}', true)"
        ] * 3


async def _get_probe(app: FastAPI, send: Any) -> None:
    """Drive ``GET /probe`` through ``app`` as a server would, with ``send`` seeing the messages."""

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/probe",
        "raw_path": b"/probe",
        "query_string": b"",
        "root_path": "",
        "headers": [],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)


async def test_unit_of_work_commits_before_the_response_is_sent(app: Any) -> None:
    """A request's writes are durable before the client sees its answer."""
    from tessera.core.db.session import after_commit

    events: list[str] = []
    probe = FastAPI()

    @probe.get("/probe")
    async def endpoint(session: DbSession) -> dict[str, bool]:
        assert (await session.execute(text("SELECT 1"))).scalar() == 1
        after_commit(session, lambda: events.append("committed"))
        return {"ok": True}

    async def send(message: dict[str, Any]) -> None:
        events.append(message["type"])
        if message["type"] == "http.response.start":
            assert message["status"] == 200

    await _get_probe(probe, send)
    assert events == ["committed", "http.response.start", "http.response.body"]


async def _session_dependency(session: DbSession) -> AsyncSession:
    return session


SessionViaDependency = Annotated[AsyncSession, Depends(_session_dependency)]


async def test_one_unit_of_work_per_request_and_an_idle_one_still_commits_first(app: Any) -> None:
    """The auth dependency and the endpoint share the request's session; a unit of work that ran
    nothing ends without a round trip but still before the response, after-commit hooks run."""
    from tessera.core.db.session import after_commit

    events: list[Any] = []
    probe = FastAPI()

    @probe.get("/probe")
    async def endpoint(session: DbSession, other: SessionViaDependency) -> dict[str, bool]:
        assert session is other
        after_commit(session, lambda: events.append("committed"))
        events.append(session)
        return {"ok": True}

    async def send(message: dict[str, Any]) -> None:
        events.append(message["type"])

    await _get_probe(probe, send)
    session = events.pop(0)
    assert isinstance(session, AsyncSession) and not session.in_transaction()
    assert events == ["committed", "http.response.start", "http.response.body"]


async def test_tenant_status_lookups_are_shared(db: Any, tenant: TenantWorld) -> None:
    from tessera.core.http.deps import forget_tenant_status, tenant_status

    forget_tenant_status()
    seen, record = _statements(db)
    try:
        results = await asyncio.gather(*(tenant_status(tenant.tenant_id) for _ in range(20)))
        again = await tenant_status(tenant.tenant_id)
        missing = await tenant_status(uuid.uuid4())
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)
    assert results == [("active", tenant.slug)] * 20
    assert again == ("active", tenant.slug)
    assert missing is None
    lookups = [st for st in seen if "FROM tenants" in st]
    assert len(lookups) == 2  # one for the 20 concurrent callers (then cached), one for the unknown id


async def test_tenant_status_waiters_survive_a_cancelled_lookup(app: Any, tenant: TenantWorld) -> None:
    from tessera.core.http import deps

    deps.forget_tenant_status()
    leader = asyncio.ensure_future(deps.tenant_status(tenant.tenant_id))
    await asyncio.sleep(0)  # the leader registers its lookup and starts it
    waiter = asyncio.ensure_future(deps.tenant_status(tenant.tenant_id))
    await asyncio.sleep(0)
    leader.cancel()
    assert await waiter == ("active", tenant.slug)
    with pytest.raises(asyncio.CancelledError):
        await leader
    assert not deps._tenant_lookups.in_flight(tenant.tenant_id)


async def test_api_key_lookups_in_flight_are_shared(
    db: Any, client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    """When a key's cache entry expires, the requests in flight with it share one lookup."""
    from tessera.core.identity import auth

    auth.clear_principal_cache()
    seen, record = _statements(db)
    try:
        user_id = tenant.users["member"]
        answers = await asyncio.gather(
            *(client.get(f"/v1/users/{user_id}", headers=tenant.headers("admin")) for _ in range(20))
        )
        revoked = await client.get(f"/v1/users/{user_id}", headers={"Authorization": "Bearer tsk_x_y_z"})
    finally:
        event.remove(db.engine.sync_engine, "before_cursor_execute", record)
    assert [r.status_code for r in answers] == [200] * 20
    assert revoked.status_code == 401
    assert len([st for st in seen if "FROM api_keys" in st]) == 1  # not one per request


async def test_request_id_metrics_and_security_headers(
    client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    user_id = tenant.users["member"]
    r = await client.get(
        f"/v1/users/{user_id}", headers={**tenant.headers("admin"), "X-Request-Id": "req-42"}
    )
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "req-42"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["ratelimit-limit"]
    r2 = await client.get(f"/v1/users/{uuid.uuid4()}", headers=tenant.headers("admin"))
    assert r2.status_code == 404
    assert len(r2.headers["x-request-id"]) == 32
    metrics = (await client.get("/metrics")).text
    ok = 'tessera_http_requests_total{method="GET",route="/v1/users/{user_id}",status="200"}'
    missing = 'tessera_http_requests_total{method="GET",route="/v1/users/{user_id}",status="404"}'
    assert ok in metrics and missing in metrics
    assert (
        'tessera_http_request_duration_seconds_count{method="GET",route="/v1/users/{user_id}",status="200"}'
        in (metrics)
    )


def test_authenticated_operations_document_both_credentials(app: Any) -> None:
    """``require`` reads the API key and the session cookie itself (no per-request
    sub-dependencies), and the OpenAPI document still names both schemes on its operations."""
    doc = app.openapi()
    both = [{"HTTPBearer": []}, {"APIKeyCookie": []}]
    assert doc["paths"]["/v1/users/{user_id}"]["get"]["security"] == both
    assert doc["paths"]["/v1/users"]["post"]["security"] == both
    schemes = doc["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    assert schemes["APIKeyCookie"] == {
        "type": "apiKey",
        "in": "cookie",
        "name": "tessera_session",
        "description": "Console session.",
    }
    assert "security" not in doc["paths"]["/healthz"]["get"]
    assert app.openapi() is doc  # generated once


def test_request_ids_are_unique_hex_and_a_forked_child_draws_its_own() -> None:
    import os

    from tessera.core.http.middleware import new_request_id

    ids = {new_request_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id and leave at once
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert child[:16] != new_request_id()[:16]  # not the parent's random half
