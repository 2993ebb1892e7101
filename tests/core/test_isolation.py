"""The two walls: the ORM guard (both databases) and PostgreSQL row-level security."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.exc import DBAPIError

from tessera.core import context
from tessera.core.audit.models import AuditEvent
from tessera.core.db.base import table_of
from tessera.core.db.session import get_database, unit_of_work
from tessera.core.identity.models import Role, User
from tests.conftest import TenantWorld
from tests.core.conftest import pg_only


async def test_guard_refuses_orm_queries_without_tenant(tenant: TenantWorld) -> None:
    with context.tenant_scope(None):
        for stmt in (select(User), select(Role.id).where(Role.key == "admin"), select(AuditEvent)):
            with pytest.raises(context.NoTenantInScope):
                async with unit_of_work() as s:
                    await s.execute(stmt)
        with pytest.raises(context.NoTenantInScope):
            async with unit_of_work() as s:
                s.add(Role(key="x-role", name="X", permissions=[], visibility={}))
                await s.flush()


async def test_guard_scopes_orm_queries_to_the_tenant(tenant: TenantWorld, other_tenant: TenantWorld) -> None:
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            users = (await s.execute(select(User))).scalars().all()
            foreign = await s.get(User, other_tenant.users["admin"])
            joined = (await s.execute(select(User.id).join(Role, Role.id == User.role_id))).all()
    assert {u.tenant_id for u in users} == {tenant.tenant_id}
    assert len(users) == len(tenant.users)
    assert foreign is None
    assert len(joined) == len(tenant.users)


async def test_guard_refuses_a_row_of_another_tenant(tenant: TenantWorld, other_tenant: TenantWorld) -> None:
    with context.tenant_scope(tenant.tenant_id), pytest.raises(context.NoTenantInScope):
        async with unit_of_work() as s:
            s.add(
                Role(tenant_id=other_tenant.tenant_id, key="planted", name="P", permissions=[], visibility={})
            )
            await s.flush()


async def test_guard_scopes_core_update_and_delete_on_tenant_tables(
    tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    users = table_of(User)
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            await s.execute(update(users).values(name="renamed"))
            await s.execute(delete(table_of(Role)).where(table_of(Role).c.key == "no-such-role"))
    with context.tenant_scope(other_tenant.tenant_id):
        async with unit_of_work() as s:
            names = set((await s.execute(select(User.name))).scalars())
    assert "renamed" not in names
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            assert set((await s.execute(select(User.name))).scalars()) == {"renamed"}
    with context.tenant_scope(None), pytest.raises(context.NoTenantInScope):
        async with unit_of_work() as s:
            await s.execute(update(users).values(name="everyone"))


def _role_row(key: str, **extra: Any) -> dict[str, Any]:
    return {"id": uuid.uuid4(), "key": key, "name": key, "permissions": [], "visibility": {}, **extra}


async def test_guard_gives_bulk_inserted_rows_the_tenant_and_refuses_another_tenants(
    tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            # Core and ORM bulk forms, a list of rows and a single row; one row names its tenant.
            await s.execute(insert(table_of(Role)), [_role_row("bulk-a"), _role_row("bulk-b")])
            await s.execute(insert(Role), [_role_row("bulk-c", tenant_id=tenant.tenant_id)])
            await s.execute(insert(Role), _role_row("bulk-d"))
        planted = [_role_row("ok"), _role_row("planted", tenant_id=other_tenant.tenant_id)]
        with pytest.raises(context.NoTenantInScope):
            async with unit_of_work() as s:
                await s.execute(insert(Role), planted)
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            mine = set((await s.execute(select(Role.key).where(Role.key.like("bulk-%")))).scalars())
            assert not (await s.execute(select(Role.key).where(Role.key.in_(["ok", "planted"])))).all()
    assert mine == {"bulk-a", "bulk-b", "bulk-c", "bulk-d"}  # nothing of the refused statement
    with context.tenant_scope(other_tenant.tenant_id):
        async with unit_of_work() as s:
            assert not (await s.execute(select(Role.key).where(Role.key.like("bulk-%")))).all()
    with context.tenant_scope(None), pytest.raises(context.NoTenantInScope):
        async with unit_of_work() as s:
            await s.execute(insert(Role), [_role_row("nobody")])


async def _count(conn: Any, table: str) -> int:
    return int((await conn.execute(text(f'SELECT count(*) FROM "{table}"'))).scalar_one())


@pg_only
async def test_rls_app_role_without_tenant_sees_nothing(
    tenant: TenantWorld, database_urls: dict[str, str]
) -> None:
    engine = get_database().engine
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT current_user"))).scalar_one() == "tessera_app"
        for table in ("users", "roles", "audit_log", "api_keys", "tenant_keys", "auth_sessions"):
            assert await _count(conn, table) == 0, table
        await conn.execute(
            text("SELECT set_config('app.tenant_id', :t, false)"), {"t": str(tenant.tenant_id)}
        )
        assert await _count(conn, "users") == len(tenant.users)
        assert await _count(conn, "audit_log") > 0
        await conn.execute(text("SELECT set_config('app.tenant_id', '', false)"))
        await conn.rollback()
    # The owner role (migrations) sees the rows: the zero above is RLS, not an empty table.
    from sqlalchemy.ext.asyncio import create_async_engine

    owner = create_async_engine(database_urls["owner"])
    async with owner.connect() as conn:
        assert await _count(conn, "users") == len(tenant.users)
    await owner.dispose()


def _role_insert() -> Any:
    return text(
        "INSERT INTO roles (id, tenant_id, key, name, description, builtin, permissions, visibility,"
        " created_at, updated_at) VALUES (:id, :tid, :key, 'R', '', false, '[]', '{}', now(), now())"
    )


@pg_only
async def test_rls_with_check_refuses_rows_for_another_tenant(
    tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    engine = get_database().engine
    async with engine.connect() as conn:
        await conn.execute(text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(tenant.tenant_id)})
        # Own tenant: allowed (the statement itself is valid).
        await conn.execute(_role_insert(), {"id": uuid.uuid4(), "tid": tenant.tenant_id, "key": "own-ok"})
        with pytest.raises(DBAPIError, match="row-level security"):
            await conn.execute(
                _role_insert(), {"id": uuid.uuid4(), "tid": other_tenant.tenant_id, "key": "x"}
            )
        await conn.rollback()
    async with engine.connect() as conn:
        # No tenant at all: nothing can be inserted either.
        with pytest.raises(DBAPIError, match="row-level security"):
            await conn.execute(_role_insert(), {"id": uuid.uuid4(), "tid": tenant.tenant_id, "key": "y"})
        await conn.rollback()


@pg_only
async def test_rls_update_cannot_reach_another_tenant(tenant: TenantWorld, other_tenant: TenantWorld) -> None:
    engine = get_database().engine
    async with engine.connect() as conn:
        await conn.execute(text("SELECT set_config('app.tenant_id', :t, true)"), {"t": str(tenant.tenant_id)})
        r = await conn.execute(
            text("UPDATE users SET name = 'pwned' WHERE tenant_id = :o"), {"o": other_tenant.tenant_id}
        )
        assert r.rowcount == 0
        with pytest.raises(DBAPIError, match="row-level security"):
            await conn.execute(
                text("UPDATE users SET tenant_id = :o WHERE tenant_id = :t"),
                {"o": other_tenant.tenant_id, "t": tenant.tenant_id},
            )
        await conn.rollback()


@pg_only
async def test_every_tenant_owned_table_reads_the_tenant_once_per_statement(
    tenant: TenantWorld, database_urls: dict[str, str]
) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    from tessera.core.db.base import TENANT_OWNED_TABLES

    owner = create_async_engine(database_urls["owner"])
    try:
        async with owner.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT tablename, qual, with_check FROM pg_policies"
                        " WHERE schemaname = current_schema() AND policyname = 'tenant_isolation'"
                    )
                )
            ).all()
    finally:
        await owner.dispose()
    policies = {r[0]: (r[1], r[2]) for r in rows}
    assert set(TENANT_OWNED_TABLES) <= set(policies)
    for table, (qual, check) in policies.items():
        for expr in (qual, check):
            # A sub-select (an InitPlan, once per statement), not a per-row current_setting().
            assert "SELECT" in expr and "current_setting('app.tenant_id'" in expr, (table, expr)
    # The app role with a tenant set still sees that tenant's rows and only those.
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            got = (await s.execute(text("SELECT DISTINCT tenant_id FROM users"))).scalars().all()
    assert got == [tenant.tenant_id]
