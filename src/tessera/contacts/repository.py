"""Every query of the contacts context. The guard adds the tenant filter to each."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import delete, select, update

from tessera.contacts.models import (
    Account,
    Contact,
    ContactConsent,
    ContactEvent,
    ContactIdentity,
    ContactMerge,
    ContactTag,
    DataJob,
    FieldDefinition,
    Segment,
    SegmentMember,
    Tag,
    TagGroup,
)
from tessera.core.db.repository import TenantRepository


class ContactRepository(TenantRepository[Contact]):
    model = Contact

    def live(self):  # type: ignore[no-untyped-def]
        return select(Contact).where(Contact.merged_into_id.is_(None))

    async def by_index(self, kind: str, value_index: str) -> ContactIdentity | None:
        stmt = select(ContactIdentity).where(
            ContactIdentity.kind == kind, ContactIdentity.value_index == value_index
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def owners_of_indexes(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], uuid.UUID]:
        """(kind, value_index) → contact id for those that exist."""
        if not pairs:
            return {}
        indexes = list({p[1] for p in pairs})
        out: dict[tuple[str, str], uuid.UUID] = {}
        for i in range(0, len(indexes), 1000):
            stmt = select(
                ContactIdentity.kind, ContactIdentity.value_index, ContactIdentity.contact_id
            ).where(ContactIdentity.value_index.in_(indexes[i : i + 1000]))
            for kind, idx, cid in (await self.session.execute(stmt)).all():
                out[(kind, idx)] = cid
        return out

    async def identities(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[ContactIdentity]]:
        out: dict[uuid.UUID, list[ContactIdentity]] = defaultdict(list)
        if ids:
            stmt = (
                select(ContactIdentity)
                .where(ContactIdentity.contact_id.in_(ids))
                .order_by(ContactIdentity.is_primary.desc(), ContactIdentity.created_at)
            )
            for row in (await self.session.execute(stmt)).scalars():
                out[row.contact_id].append(row)
        return out

    async def consents(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[ContactConsent]]:
        out: dict[uuid.UUID, list[ContactConsent]] = defaultdict(list)
        if ids:
            stmt = select(ContactConsent).where(ContactConsent.contact_id.in_(ids))
            for row in (await self.session.execute(stmt)).scalars():
                out[row.contact_id].append(row)
        return out

    async def consent(self, contact_id: uuid.UUID, channel: str) -> ContactConsent | None:
        stmt = select(ContactConsent).where(
            ContactConsent.contact_id == contact_id, ContactConsent.channel == channel
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def tag_ids(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
        out: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
        if ids:
            stmt = select(ContactTag.contact_id, ContactTag.tag_id).where(ContactTag.contact_id.in_(ids))
            for cid, tid in (await self.session.execute(stmt)).all():
                out[cid].append(tid)
        return out

    async def delete_identities(self, contact_id: uuid.UUID, kind: str) -> None:
        await self.session.execute(
            delete(ContactIdentity).where(
                ContactIdentity.contact_id == contact_id, ContactIdentity.kind == kind
            )
        )

    async def reassign(self, model: type, loser: uuid.UUID, survivor: uuid.UUID) -> None:
        await self.session.execute(
            update(model).where(model.contact_id == loser).values(contact_id=survivor)  # type: ignore[attr-defined]
        )

    async def events_of(self, contact_id: uuid.UUID, limit: int) -> list[ContactEvent]:
        stmt = (
            select(ContactEvent)
            .where(ContactEvent.contact_id == contact_id)
            .order_by(ContactEvent.occurred_at.desc())
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def merges_of(self, contact_id: uuid.UUID) -> list[ContactMerge]:
        stmt = select(ContactMerge).where(ContactMerge.survivor_id == contact_id)
        return list((await self.session.execute(stmt)).scalars())


class AccountRepository(TenantRepository[Account]):
    model = Account


class FieldRepository(TenantRepository[FieldDefinition]):
    model = FieldDefinition

    async def for_object(self, object_type: str) -> dict[str, FieldDefinition]:
        stmt = select(FieldDefinition).where(FieldDefinition.object_type == object_type)
        return {f.key: f for f in (await self.session.execute(stmt)).scalars()}


class TagRepository(TenantRepository[Tag]):
    model = Tag

    async def groups(self) -> list[TagGroup]:
        return list((await self.session.execute(select(TagGroup).order_by(TagGroup.key))).scalars())

    async def existing_links(
        self, contact_ids: Sequence[uuid.UUID], tag_ids: Sequence[uuid.UUID]
    ) -> set[tuple[uuid.UUID, uuid.UUID]]:
        stmt = select(ContactTag.contact_id, ContactTag.tag_id).where(
            ContactTag.contact_id.in_(contact_ids), ContactTag.tag_id.in_(tag_ids)
        )
        return {(a, b) for a, b in (await self.session.execute(stmt)).all()}


class SegmentRepository(TenantRepository[Segment]):
    model = Segment

    async def member_ids(self, segment_id: uuid.UUID) -> set[uuid.UUID]:
        stmt = select(SegmentMember.contact_id).where(SegmentMember.segment_id == segment_id)
        return set((await self.session.execute(stmt)).scalars())


class DataJobRepository(TenantRepository[DataJob]):
    model = DataJob


def _filters():  # type: ignore[no-untyped-def]
    from tessera.core.http.listing import FilterField, FilterSet

    return FilterSet(
        fields={
            "name": FilterField(Contact.name, operators=("eq", "contains")),
            "city": FilterField(Contact.city, operators=("eq", "in", "contains")),
            "lifecycle_stage": FilterField(
                Contact.lifecycle_stage, choices=("subscriber", "lead", "qualified", "customer", "churned")
            ),
            "source": FilterField(Contact.source),
            "owner_id": FilterField(Contact.owner_id, kind=uuid.UUID),
            "account_id": FilterField(Contact.account_id, kind=uuid.UUID),
            "created_at": FilterField(
                Contact.created_at, kind=__import__("datetime").datetime, operators=("gte", "lte")
            ),
        },
        sortable={"created_at": Contact.created_at, "name": Contact.name, "updated_at": Contact.updated_at},
        id_column=Contact.id,
    )


CONTACT_FILTERS = _filters()
