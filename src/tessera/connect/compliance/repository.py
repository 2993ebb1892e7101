"""Every query of the compliance engine. Tenant scoping comes from the guard."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import func, select, update
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


class VersionRepository(Repository[ListVersion]):
    model = ListVersion

    async def versions(self, scopes: list[str]) -> dict[str, int]:
        rows = await self.session.execute(
            select(ListVersion.scope, ListVersion.version).where(ListVersion.scope.in_(scopes))
        )
        return {s: v for s, v in rows.tuples()}

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


class OptOutRepository(TenantRepository[OptOut]):
    model = OptOut

    async def find(self, channel: str, index: str) -> OptOut | None:
        return await self.one_or_none(
            self.select().where(OptOut.channel == channel, OptOut.address_index == index)
        )

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


async def tenant_timezone(session: AsyncSession, tenant_id: uuid.UUID) -> str:
    row = (await session.execute(select(Tenant.timezone).where(Tenant.id == tenant_id))).scalar_one_or_none()
    return row or "UTC"
