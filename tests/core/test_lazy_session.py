"""The unit of work's session is built on first use, and behaves as an ``AsyncSession`` then."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core import context
from tessera.core.db import session as session_mod
from tessera.core.db.session import after_commit, get_database, unit_of_work, untouched
from tessera.core.identity.repository import UserRepository
from tests.conftest import TenantWorld


async def test_an_unused_unit_of_work_never_builds_a_session(tenant: TenantWorld, monkeypatch: Any) -> None:
    built: list[Any] = []
    real_init = AsyncSession.__init__

    def counting_init(self: AsyncSession, *a: Any, **kw: Any) -> None:
        built.append(self)
        real_init(self, *a, **kw)

    monkeypatch.setattr(AsyncSession, "__init__", counting_init)
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            assert isinstance(s, AsyncSession)
            assert untouched(s)
        assert built == []
        async with unit_of_work() as s:
            assert (await s.execute(text("SELECT 1"))).scalar() == 1
            assert not untouched(s)
            assert s.in_transaction()
        assert built == [s]


async def test_a_used_session_commits_and_runs_after_commit_callbacks(tenant: TenantWorld) -> None:
    ran: list[str] = []
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            after_commit(s, lambda: ran.append("done"))  # first use: through ``info``
            user = await UserRepository(s).get(tenant.users["member"])
            assert user is not None
            user.name = "Renamed Member"
        assert ran == ["done"]
        async with unit_of_work() as s:
            again = await UserRepository(s).get(tenant.users["member"])
            assert again is not None and again.name == "Renamed Member"


async def test_an_error_in_an_unused_unit_of_work_propagates_and_leaves_nothing(tenant: TenantWorld) -> None:
    class Boom(Exception):
        pass

    try:
        with context.tenant_scope(tenant.tenant_id):
            async with unit_of_work() as s:
                raise Boom
    except Boom:
        pass
    assert untouched(s)


async def test_the_session_reads_the_same_bind_whether_built_or_not(tenant: TenantWorld) -> None:
    db = get_database()
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            expected = db.direct
            assert session_mod.direct_reader(s) is expected  # untouched: from the factory
            assert s.bind is db.engine  # builds it
            assert session_mod.direct_reader(s) is expected
