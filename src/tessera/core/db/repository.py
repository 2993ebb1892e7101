"""Repository base classes. Repositories own every query of their context."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core import context
from tessera.core.db.base import Base
from tessera.core.db.direct import DecodeError
from tessera.core.db.session import direct_reader, untouched

M = TypeVar("M", bound=Base)

_BY_ID: dict[type, Select[Any]] = {}


class Repository(Generic[M]):
    """Queries over one model. Tenant scoping is added by :mod:`tessera.core.db.guard`."""

    model: type[M]

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def select(self) -> Select[Any]:
        return select(self.model)

    async def get(self, id: uuid.UUID, *options: Any) -> M | None:
        stmt = self._by_id()
        if options:
            stmt = stmt.options(*options)
        found: M | None = (await self.session.execute(stmt, {"id_": id})).scalar_one_or_none()
        return found

    async def read(self, id: uuid.UUID) -> M | None:
        """The row with primary key ``id``, for answering a read: like :meth:`get`, except that
        the instance may come back detached (changing it changes nothing; use :meth:`get` for
        rows to modify).

        On PostgreSQL, while the session has no transaction open and holds nothing (no
        statement ran yet, so there is nothing this read could fail to see), the row is read in
        one round trip outside the session (:mod:`tessera.core.db.direct`), under the same
        tenant guard and row-level security. Otherwise, or when the tenant's rows cannot be
        decoded there (its data keys are loaded by a session's transaction), :meth:`get`.
        """
        session = self.session
        tid = context.current_tenant_id_or_none()
        if (
            tid is not None
            and type(id) is uuid.UUID
            and type(self).select is Repository.select
            and (
                untouched(session)
                or (
                    not session.in_transaction()
                    and not session.identity_map
                    and not session.new
                    and not session.deleted
                )
            )
        ):
            reader = direct_reader(session)
            if reader is not None:
                try:
                    found: M | None = await reader.get(self.model, id, tid)
                except DecodeError:
                    pass
                else:
                    return found
        return await self.get(id)

    def _by_id(self) -> Select[Any]:
        """``select().where(id = :id_)``, built once per repository class (building a statement
        costs more than executing a cached one) unless the class defines its own ``select``."""
        cls = type(self)
        if cls.select is not Repository.select:
            return self.select().where(self.model.id == bindparam("id_"))  # type: ignore[attr-defined]
        stmt = _BY_ID.get(cls)
        if stmt is None:
            stmt = _BY_ID[cls] = self.select().where(self.model.id == bindparam("id_"))  # type: ignore[attr-defined]
        return stmt

    async def get_many(self, ids: Sequence[uuid.UUID]) -> list[M]:
        if not ids:
            return []
        stmt = self.select().where(self.model.id.in_(ids))  # type: ignore[attr-defined]
        return list((await self.session.execute(stmt)).scalars())

    async def one_or_none(self, stmt: Select[Any]) -> M | None:
        found: M | None = (await self.session.execute(stmt)).scalar_one_or_none()
        return found

    async def all(self, stmt: Select[Any]) -> list[M]:
        return list((await self.session.execute(stmt)).scalars())

    async def count(self, stmt: Select[Any] | None = None) -> int:
        base = stmt if stmt is not None else self.select()
        q = select(func.count()).select_from(base.order_by(None).subquery())
        return int((await self.session.execute(q)).scalar_one())

    def add(self, obj: M) -> M:
        self.session.add(obj)
        return obj

    async def create(self, obj: M) -> M:
        self.session.add(obj)
        await self.session.flush()
        return obj

    async def delete(self, obj: M) -> None:
        await self.session.delete(obj)
        await self.session.flush()


class TenantRepository(Repository[M], Generic[M]):
    """Repository of a tenant-owned model: the guard filters and stamps ``tenant_id``."""
