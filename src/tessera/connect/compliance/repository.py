"""Every query of the compliance engine. Tenant scoping comes from the guard."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Collection
from typing import Any

from sqlalchemy import (
    JSON,
    String,
    bindparam,
    cast,
    func,
    insert,
    literal,
    select,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.connect.compliance.models import (
    ComplianceSettings,
    ComplianceWord,
    GlobalListEntry,
    GlobalWord,
    ListEntry,
    ListVersion,
    OptOut,
    Review,
)
from tessera.connect.models import Message
from tessera.core import context
from tessera.core.db.base import table_of, utcnow, uuid7
from tessera.core.db.repository import Repository, TenantRepository
from tessera.core.tenancy.models import Tenant


class WordRepository(TenantRepository[ComplianceWord]):
    model = ComplianceWord

    async def by_word(self, word: str) -> ComplianceWord | None:
        return await self.one_or_none(self.select().where(ComplianceWord.word == word))

    async def listing(self, category: str | None = None) -> list[ComplianceWord]:
        stmt = self.select().order_by(ComplianceWord.category, ComplianceWord.word)
        if category:
            stmt = stmt.where(ComplianceWord.category == category)
        return await self.all(stmt)


class GlobalWordRepository(Repository[GlobalWord]):
    model = GlobalWord

    async def listing(self) -> list[GlobalWord]:
        return await self.all(self.select().order_by(GlobalWord.category, GlobalWord.word))


# Every send's lookups, built once with bound parameters: a statement object keeps its cache
# key (and the tenant guard's) across calls, where building one per call cost about as much
# as its round trip.
_VERSIONS = select(ListVersion.scope, ListVersion.version).where(
    ListVersion.scope.in_(bindparam("scopes", expanding=True))
)
_LIST_KINDS = select(ListEntry.value_index, ListEntry.list_kind).where(
    ListEntry.value_index.in_(bindparam("indexes", expanding=True))
)
_GLOBAL_KINDS = select(GlobalListEntry.value, GlobalListEntry.list_kind).where(
    GlobalListEntry.value.in_(bindparam("values", expanding=True))
)


def _lists_and_versions_stmt() -> Any:
    lists = union_all(
        select(
            literal("t").label("src"), ListEntry.value_index.label("key"), ListEntry.list_kind.label("kind")
        ).where(ListEntry.value_index.in_(bindparam("indexes", expanding=True))),
        select(literal("g"), GlobalListEntry.value, GlobalListEntry.list_kind).where(
            GlobalListEntry.value.in_(bindparam("values", expanding=True))
        ),
        select(literal("v"), ListVersion.scope, cast(ListVersion.version, String)).where(
            ListVersion.scope.in_(bindparam("scopes", expanding=True))
        ),
    ).subquery("lists")
    return select(lists.c.src, lists.c.key, lists.c.kind)


# Built once: a statement object keeps its cache key (and the tenant guard's) across calls.
_LISTS_AND_VERSIONS = _lists_and_versions_stmt()


def lists_and_versions_column() -> Any:
    """:func:`lists_and_versions`' read as one JSON column (``[[src, key, kind], …]``), for a
    caller that puts it in a statement of its own (binds ``indexes``, ``values``, ``scopes``;
    read back with :func:`parse_lists_and_versions`)."""
    lists = _lists_and_versions_stmt().subquery("lists_json")
    return type_coerce(
        select(
            func.json_agg(func.json_build_array(lists.c.src, lists.c.key, lists.c.kind))
        ).scalar_subquery(),
        JSON(),
    )


def lists_and_versions_params(
    indexes: Collection[str], values: Collection[str], scopes: list[str]
) -> dict[str, Any]:
    return {"indexes": list(set(indexes)), "values": list(set(values)), "scopes": scopes}


def parse_lists_and_versions(
    rows: Any,
) -> tuple[dict[str, set[str]], dict[str, set[str]], dict[str, int]]:
    tenant: dict[str, set[str]] = {}
    global_: dict[str, set[str]] = {}
    versions: dict[str, int] = {}
    for src, key, kind in rows or ():
        if src == "v":
            versions[key] = int(kind)
        else:
            (tenant if src == "t" else global_).setdefault(key, set()).add(kind)
    return tenant, global_, versions


async def lists_and_versions(
    session: AsyncSession, indexes: Collection[str], values: Collection[str], scopes: list[str]
) -> tuple[dict[str, set[str]], dict[str, set[str]], dict[str, int]]:
    """What an outbound check reads, in one query: the tenant's list kinds by blind index (see
    :meth:`ListEntryRepository.kinds_for_many`), the global lists' kinds by address
    (:meth:`GlobalListRepository.kinds_for_many`) and the word lists' versions of ``scopes``
    (:meth:`VersionRepository.versions`). The tenant guard scopes the tenant's lists."""
    rows = await session.execute(_LISTS_AND_VERSIONS, lists_and_versions_params(indexes, values, scopes))
    return parse_lists_and_versions(rows.all())


class VersionRepository(Repository[ListVersion]):
    model = ListVersion

    async def versions(self, scopes: list[str]) -> dict[str, int]:
        rows = await self.session.execute(_VERSIONS, {"scopes": list(scopes)})
        return {s: v for s, v in rows.all()}

    async def bump(self, scope: str) -> None:
        res = await self.session.execute(
            update(ListVersion)
            .where(ListVersion.scope == scope)
            .values(version=ListVersion.version + 1)
            .execution_options(synchronize_session=False)
        )
        if res.rowcount == 0:  # type: ignore[attr-defined]
            self.session.add(ListVersion(scope=scope, version=1))
            await self.session.flush()


class ListEntryRepository(TenantRepository[ListEntry]):
    model = ListEntry

    async def kinds_for(self, index: str) -> set[str]:
        rows = await self.session.execute(select(ListEntry.list_kind).where(ListEntry.value_index == index))
        return set(rows.scalars())

    async def kinds_for_many(self, indexes: Collection[str]) -> dict[str, set[str]]:
        """Blind index → list kinds, for many addresses in one query."""
        out: dict[str, set[str]] = {}
        if not indexes:
            return out
        rows = await self.session.execute(_LIST_KINDS, {"indexes": list(set(indexes))})
        for index, kind in rows.all():
            out.setdefault(index, set()).add(kind)
        return out

    async def find(self, list_kind: str, index: str) -> ListEntry | None:
        return await self.one_or_none(
            self.select().where(ListEntry.list_kind == list_kind, ListEntry.value_index == index)
        )

    async def listing(self, list_kind: str) -> list[ListEntry]:
        return await self.all(
            self.select().where(ListEntry.list_kind == list_kind).order_by(ListEntry.created_at, ListEntry.id)
        )


class GlobalListRepository(Repository[GlobalListEntry]):
    model = GlobalListEntry

    async def kinds_for(self, value: str) -> set[str]:
        rows = await self.session.execute(
            select(GlobalListEntry.list_kind).where(GlobalListEntry.value == value)
        )
        return set(rows.scalars())

    async def kinds_for_many(self, values: Collection[str]) -> dict[str, set[str]]:
        """Address → list kinds of the global lists, for many addresses in one query."""
        out: dict[str, set[str]] = {}
        if not values:
            return out
        rows = await self.session.execute(_GLOBAL_KINDS, {"values": list(set(values))})
        for value, kind in rows.all():
            out.setdefault(value, set()).add(kind)
        return out


class OptOutRepository(TenantRepository[OptOut]):
    model = OptOut

    async def find(self, channel: str, index: str) -> OptOut | None:
        return await self.one_or_none(
            self.select().where(OptOut.channel == channel, OptOut.address_index == index)
        )

    async def opted_out(self, channel: str, indexes: Collection[str]) -> set[str]:
        """The blind indexes among ``indexes`` opted out of ``channel`` (one query)."""
        if not indexes:
            return set()
        rows = await self.session.execute(
            select(OptOut.address_index).where(
                OptOut.channel == channel, OptOut.address_index.in_(set(indexes))
            )
        )
        return set(rows.scalars())

    async def listing(self, channel: str | None, limit: int) -> list[OptOut]:
        stmt = self.select().order_by(OptOut.created_at.desc(), OptOut.id.desc()).limit(limit)
        if channel:
            stmt = stmt.where(OptOut.channel == channel)
        return await self.all(stmt)


class SettingsRepository(TenantRepository[ComplianceSettings]):
    model = ComplianceSettings

    async def current(self) -> ComplianceSettings | None:
        return await self.one_or_none(self.select())


class ReviewRepository(TenantRepository[Review]):
    model = Review

    async def insert_many(self, rows: list[dict[str, Any]]) -> list[uuid.UUID]:
        """Multi-row insert (ids, tenant and timestamps set here); returns the ids in order."""
        tid = context.current_tenant_id()
        now = utcnow()
        for r in rows:
            r.update(id=uuid7(), tenant_id=tid, created_at=now, updated_at=now)
        for start in range(0, len(rows), 2000):
            await self.session.execute(insert(table_of(Review)), rows[start : start + 2000])
        return [r["id"] for r in rows]

    async def listing(self, status: str | None, limit: int) -> list[Review]:
        stmt = self.select().order_by(Review.created_at.desc(), Review.id.desc()).limit(limit)
        if status:
            stmt = stmt.where(Review.status == status)
        return await self.all(stmt)


class SentCounter(TenantRepository[Message]):
    """Marketing messages already accepted for a recipient (frequency caps)."""

    model = Message

    async def marketing_since(self, to_index: str, since: dt.datetime) -> int:
        stmt = select(func.count()).where(
            Message.to_index == to_index,
            Message.message_class == "marketing",
            Message.created_at >= since,
            Message.status != "rejected",
        )
        return int((await self.session.execute(stmt)).scalar_one())

    async def marketing_since_many(self, to_indexes: Collection[str], since: dt.datetime) -> dict[str, int]:
        """Marketing messages per recipient since ``since``: one grouped query."""
        if not to_indexes:
            return {}
        stmt = (
            select(Message.to_index, func.count())
            .where(
                Message.to_index.in_(set(to_indexes)),
                Message.message_class == "marketing",
                Message.created_at >= since,
                Message.status != "rejected",
            )
            .group_by(Message.to_index)
        )
        return {k: int(n) for k, n in (await self.session.execute(stmt)).all()}


async def tenant_timezone(session: AsyncSession, tenant_id: uuid.UUID) -> str:
    row = (await session.execute(select(Tenant.timezone).where(Tenant.id == tenant_id))).scalar_one_or_none()
    return row or "UTC"
