"""``Repository.read``: one-round-trip reads on PostgreSQL answer exactly what ``get`` answers."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import inspect

from tessera.core import context
from tessera.core.crypto.keyring import get_keyring
from tessera.core.db.direct import _json_loads
from tessera.core.db.session import direct_reader, get_database, unit_of_work
from tessera.core.identity.models import User
from tessera.core.identity.repository import RoleRepository, UserRepository
from tests.conftest import TenantWorld
from tests.core.conftest import pg_only

COLUMNS = [c.key for c in User.__mapper__.column_attrs]


def _values(user: User) -> dict[str, Any]:
    return {k: getattr(user, k) for k in COLUMNS}


async def _read(tenant: TenantWorld, uid: uuid.UUID) -> User | None:
    """``UserRepository.read`` in a unit of work of its own, in ``tenant``."""
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            return await UserRepository(s).read(uid)


@pg_only
async def test_read_answers_what_get_answers_in_one_direct_query(tenant: TenantWorld) -> None:
    uid = tenant.users["member"]
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            expected = _values(await UserRepository(s).get(uid))  # type: ignore[arg-type]
        async with unit_of_work() as s:
            found = await UserRepository(s).read(uid)
            assert found is not None
            assert inspect(found).detached  # not from the session: the direct path answered
            assert not s.in_transaction()
    assert _values(found) == expected
    assert found.phone == "+8613800138000"  # decrypted like the session's result
    assert found.created_at.tzinfo is not None


@pg_only
async def test_read_finds_nothing_of_another_tenant(tenant: TenantWorld, other_tenant: TenantWorld) -> None:
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            await UserRepository(s).read(tenant.users["admin"])  # keys loaded, path warm
            assert await UserRepository(s).read(other_tenant.users["admin"]) is None
            assert await UserRepository(s).read(uuid.uuid4()) is None


@pg_only
async def test_the_tenant_setting_ends_with_the_read_and_rls_holds_without_it(tenant: TenantWorld) -> None:
    reader = get_database().direct
    assert reader is not None
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            assert await UserRepository(s).read(tenant.users["admin"]) is not None
    conn = await reader._acquire()
    reader._unwatch(conn)  # driven by psycopg's own waits below, not by the reader's watch
    try:
        cur = await conn.execute("SELECT current_setting('app.tenant_id', true), current_user")
        setting, role = await cur.fetchone()  # type: ignore[misc]
        cur = await conn.execute("SELECT count(*) FROM users")
        (visible,) = await cur.fetchone()  # type: ignore[misc]
    finally:
        reader._release(conn, True)
    assert setting in (None, "")
    assert role == "tessera_app"
    assert visible == 0


@pg_only
async def test_read_inside_an_open_transaction_sees_its_writes(tenant: TenantWorld) -> None:
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            role = await RoleRepository(s).by_key("member")
            assert role is not None
            user = await UserRepository(s).create(
                User(email="new@x.example.com", name="New", role_id=role.id)
            )
            s.expunge(user)
            found = await UserRepository(s).read(user.id)  # the session's transaction: not committed
            assert found is not None and not inspect(found).detached


@pg_only
async def test_read_falls_back_to_the_session_when_keys_are_not_loaded(tenant: TenantWorld) -> None:
    get_keyring().forget()
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            found = await UserRepository(s).read(tenant.users["member"])
            assert found is not None and not inspect(found).detached
    assert found.phone == "+8613800138000"


@pg_only
async def test_many_concurrent_reads_share_the_small_pool(tenant: TenantWorld) -> None:
    reader = get_database().direct
    assert reader is not None
    uid = tenant.users["admin"]
    found = await asyncio.gather(*(_read(tenant, uid) for _ in range(reader._size * 3)))
    assert all(u is not None and u.id == uid for u in found)
    assert reader._opened <= reader._size


@pg_only
async def test_a_cancelled_read_does_not_return_its_connection(tenant: TenantWorld) -> None:
    reader = get_database().direct
    assert reader is not None
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            await UserRepository(s).read(tenant.users["admin"])
            before = reader._opened
            for _ in range(100):
                task = asyncio.create_task(UserRepository(s).read(tenant.users["admin"]))
                # Cancel it while it waits for the server's answer (a loaded machine may let a
                # read finish before the test gets to cancel it: then try again).
                while not task.done() and not any(w.waiter for w in reader._watches.values()):
                    await asyncio.sleep(0)
                if task.done():
                    continue
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                break
            else:
                pytest.fail("no read could be cancelled in flight")
            assert reader._opened <= before
            assert await UserRepository(s).read(tenant.users["admin"]) is not None


async def test_read_needs_a_tenant_in_scope(tenant: TenantWorld) -> None:
    with context.tenant_scope(None), pytest.raises(context.NoTenantInScope):
        async with unit_of_work() as s:
            await UserRepository(s).read(tenant.users["admin"])


async def test_sqlite_has_no_direct_reader(tenant: TenantWorld) -> None:
    async with unit_of_work() as s:
        reader = direct_reader(s)
    assert (reader is not None) == get_database().is_postgres


@pg_only
async def test_a_failed_query_raises_and_leaves_the_pool_usable(tenant: TenantWorld) -> None:
    import psycopg

    reader = get_database().direct
    assert reader is not None
    uid = tenant.users["admin"]
    with context.tenant_scope(tenant.tenant_id):  # the phone column is decrypted in scope
        async with unit_of_work() as s:
            await UserRepository(s).get(uid)  # the tenant's keys
        assert await reader.get(User, uid, tenant.tenant_id) is not None
        opened = reader._opened
        plan = reader.plan(User)
        good = plan.name, plan.query
        # A statement of the same shape (two parameters) that fails when it runs.
        plan.name, plan.query = b"tessera_test_failing", b"SELECT 1 / 0 WHERE $1::text <> $2::text"
        try:
            with pytest.raises(psycopg.errors.DivisionByZero):
                await reader.get(User, uid, tenant.tenant_id)
        finally:
            plan.name, plan.query = good
        assert reader._opened == opened - 1  # the failed read's connection was closed, not pooled
        found = await reader.get(User, uid, tenant.tenant_id)
    assert found is not None and found.id == uid
    assert reader._opened == opened


@pg_only
async def test_connections_the_server_closed_while_idle_are_replaced_not_used(
    tenant: TenantWorld, database_urls: dict[str, str]
) -> None:
    import psycopg

    reader = get_database().direct
    assert reader is not None
    uid = tenant.users["admin"]
    await asyncio.gather(*(_read(tenant, uid) for _ in range(3)))  # a few pooled, watched connections
    pids = [c.info.backend_pid for c in reader._idle]
    assert pids
    owner = database_urls["owner"].replace("postgresql+psycopg://", "postgresql://")
    async with await psycopg.AsyncConnection.connect(owner, autocommit=True) as admin:
        await admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
    for _ in range(100):  # the watches see the sockets close
        await asyncio.sleep(0.01)
        if all(w.stirred for c, w in reader._watches.items() if c.info.backend_pid in pids):
            break
    found = await asyncio.gather(*(_read(tenant, uid) for _ in range(len(pids) + 1)))
    assert all(u is not None and u.id == uid for u in found)
    assert not {c.info.backend_pid for c in reader._idle} & set(pids)
    assert reader._opened <= reader._size


@pg_only
async def test_a_read_on_a_connection_closed_under_it_is_tried_again_on_another(
    tenant: TenantWorld, database_urls: dict[str, str]
) -> None:
    """The server closes the pooled connections and the reads start at once, before any watch
    can have seen the sockets close: each read that takes a dead connection fails there, drops
    it and is answered on another."""
    import psycopg

    reader = get_database().direct
    assert reader is not None
    uid = tenant.users["admin"]
    await asyncio.gather(*(_read(tenant, uid) for _ in range(3)))
    pids = [c.info.backend_pid for c in reader._idle]
    assert pids
    owner = database_urls["owner"].replace("postgresql+psycopg://", "postgresql://")
    async with await psycopg.AsyncConnection.connect(owner, autocommit=True) as admin:
        await admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,))
        for _ in range(500):  # the backends are gone (the watches are not asked)
            gone = await (
                await admin.execute("SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,))
            ).fetchone()
            if gone and gone[0]:
                break
            await asyncio.sleep(0.01)
    for watch in reader._watches.values():
        watch.stirred = False  # as if no watch had seen a socket close yet
    found = await asyncio.gather(*(_read(tenant, uid) for _ in range(len(pids) + 1)))
    assert all(u is not None and u.id == uid for u in found)
    assert not {c.info.backend_pid for c in reader._idle} & set(pids)
    assert reader._opened <= reader._size


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_json_columns_decode_to_exactly_what_the_json_module_gives(value: Any) -> None:
    text = json.dumps(value)
    expected = json.loads(text)
    for data in (text, text.encode(), memoryview(text.encode())):
        got = _json_loads(data)
        assert got == expected and repr(got) == repr(expected)  # 10**30 stays an int, -0.0 a float


@pg_only
async def test_the_reader_has_its_own_pool_size(tenant: TenantWorld) -> None:
    from tessera.settings import get_settings

    reader = get_database().direct
    assert reader is not None
    assert reader._size == get_settings().db_read_pool_size == 10  # the tests' setting


@pg_only
async def test_each_connection_prepares_the_tenant_setting_and_a_models_read_once(
    tenant: TenantWorld,
) -> None:
    reader = get_database().direct
    assert reader is not None
    for _ in range(3):  # one after another: one pooled connection serves them all
        assert await _read(tenant, tenant.users["admin"]) is not None
    assert await _read(tenant, uuid.uuid4()) is None
    conn = await reader._acquire()
    reader._unwatch(conn)  # driven by psycopg's own waits below, not by the reader's watch
    try:
        cur = await conn.execute("SELECT name, parameter_types::text[] FROM pg_prepared_statements")
        prepared = {name: types for name, types in await cur.fetchall()}
    finally:
        reader._release(conn, True)
    read = reader.plan(User).name
    assert prepared == {"tessera_set_tenant": ["text"], read.decode(): ["uuid", "uuid"]}
    assert reader._prepared[conn] == {b"tessera_set_tenant", read}
