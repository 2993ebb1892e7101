"""Tag groups and tags; manual, bulk and API tagging.

The seed groups (salary level, occupation, hobby, spending preference, spending habit) are
created per tenant on first use of the tag API.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.contacts.errors import ContactNotFound, DuplicateField, TagNotFound
from tessera.contacts.models import Contact, ContactTag, Segment, SegmentMember, Tag, TagGroup
from tessera.contacts.repository import TagRepository
from tessera.contacts.schemas import TagCreate, TagGroupCreate, TagUpdate
from tessera.core.audit import service as audit
from tessera.core.db.base import utcnow
from tessera.core.http.errors import InvalidInput

SEED_GROUPS = {
    "salary_level": "Salary level",
    "occupation": "Occupation",
    "hobby": "Hobby",
    "spending_preference": "Spending preference",
    "spending_habit": "Spending habit",
}


async def ensure_seed_groups(session: AsyncSession) -> list[TagGroup]:
    repo = TagRepository(session)
    groups = await repo.groups()
    if groups:
        return groups
    for key, name in SEED_GROUPS.items():
        session.add(TagGroup(key=key, name=name))
    await session.flush()
    return await repo.groups()


async def create_group(session: AsyncSession, data: TagGroupCreate) -> TagGroup:
    groups = await ensure_seed_groups(session)
    if any(g.key == data.key for g in groups):
        raise DuplicateField(f"tag group '{data.key}' already exists", field="key")
    g = TagGroup(key=data.key, name=data.name)
    session.add(g)
    await session.flush()
    await audit.record(session, "tag_group.create", "tag_group", g.id, after=data.model_dump())
    return g


async def create_tag(session: AsyncSession, data: TagCreate) -> Tag:
    groups = await ensure_seed_groups(session)
    if data.group_id is not None and data.group_id not in {g.id for g in groups}:
        raise TagNotFound("the tag group does not exist", field="group_id")
    repo = TagRepository(session)
    dup = await repo.one_or_none(repo.select().where(Tag.group_id == data.group_id, Tag.name == data.name))
    if dup is not None:
        raise DuplicateField(f"tag '{data.name}' already exists in this group", field="name")
    if data.segment_id is not None:
        await _rule_segment(session, data.segment_id)
    tag = await repo.create(Tag(name=data.name, group_id=data.group_id, segment_id=data.segment_id))
    await audit.record(
        session,
        "tag.create",
        "tag",
        tag.id,
        after={"name": tag.name, "segment_id": str(tag.segment_id) if tag.segment_id else None},
    )
    if tag.segment_id is not None:
        await sync_rule_tag(session, tag)
    return tag


async def _rule_segment(session: AsyncSession, segment_id: uuid.UUID) -> Segment:
    seg = (await session.execute(select(Segment).where(Segment.id == segment_id))).scalar_one_or_none()
    if seg is None:
        raise TagNotFound("the segment does not exist", field="segment_id")
    if seg.kind != "dynamic":
        raise InvalidInput(
            "a rule tag follows a dynamic segment; this one is a static list", field="segment_id"
        )
    return seg


async def update_tag(session: AsyncSession, tag_id: uuid.UUID, data: TagUpdate) -> Tag:
    """Rename a tag or change what it follows (a dynamic segment, or nothing: a manual tag).

    Turning a rule tag into a manual one keeps its links (they become ordinary tags of those
    contacts); pointing it at a segment applies that segment's membership at once.
    """
    repo = TagRepository(session)
    tag = await repo.one_or_none(repo.select().where(Tag.id == tag_id))
    if tag is None:
        raise TagNotFound(field="tag_id")
    fields = data.model_fields_set
    before = {"name": tag.name, "segment_id": str(tag.segment_id) if tag.segment_id else None}
    if "name" in fields and data.name is not None and data.name != tag.name:
        dup = await repo.one_or_none(
            repo.select().where(Tag.group_id == tag.group_id, Tag.name == data.name, Tag.id != tag.id)
        )
        if dup is not None:
            raise DuplicateField(f"tag '{data.name}' already exists in this group", field="name")
        tag.name = data.name
    if "segment_id" in fields and data.segment_id != tag.segment_id:
        if data.segment_id is not None:
            await _rule_segment(session, data.segment_id)
        else:
            await session.execute(
                update(ContactTag)
                .where(ContactTag.tag_id == tag.id, ContactTag.source == "rule")
                .values(source="manual")
            )
        tag.segment_id = data.segment_id
    await session.flush()
    after = {"name": tag.name, "segment_id": str(tag.segment_id) if tag.segment_id else None}
    if after != before:
        await audit.record(session, "tag.update", "tag", tag.id, before=before, after=after)
    if tag.segment_id is not None:
        await sync_rule_tag(session, tag)
    return tag


async def sync_rule_tag(
    session: AsyncSession, tag: Tag, members: set[uuid.UUID] | None = None
) -> tuple[int, int]:
    """Make the tag's ``rule`` links equal the segment's materialised membership: (added, removed).

    Links added by hand (source ``manual``, ``import``, …) are never removed here.
    """
    assert tag.segment_id is not None
    if members is None:
        members = set(
            (
                await session.execute(
                    select(SegmentMember.contact_id).where(SegmentMember.segment_id == tag.segment_id)
                )
            ).scalars()
        )
    links = dict(
        (
            await session.execute(
                select(ContactTag.contact_id, ContactTag.source).where(ContactTag.tag_id == tag.id)
            )
        ).all()
    )
    stale = [c for c, src in links.items() if src == "rule" and c not in members]
    new = [c for c in members if c not in links]
    for i in range(0, len(stale), 1000):
        await session.execute(
            delete(ContactTag).where(
                ContactTag.tag_id == tag.id, ContactTag.contact_id.in_(stale[i : i + 1000])
            )
        )
    if new:
        now = utcnow()
        await session.execute(  # the tenant guard gives each row the tenant in scope
            insert(ContactTag),
            [{"contact_id": c, "tag_id": tag.id, "source": "rule", "created_at": now} for c in new],
        )
    return len(new), len(stale)


async def sync_rule_tags_of(session: AsyncSession, segment_id: uuid.UUID, members: set[uuid.UUID]) -> None:
    """After a segment refresh: every rule tag following it."""
    repo = TagRepository(session)
    for tag in await repo.all(repo.select().where(Tag.segment_id == segment_id)):
        await sync_rule_tag(session, tag, members)


async def list_tags(session: AsyncSession) -> list[Tag]:
    await ensure_seed_groups(session)
    repo = TagRepository(session)
    return await repo.all(repo.select().order_by(Tag.name))


async def assign_tags(
    session: AsyncSession,
    contact_ids: Sequence[uuid.UUID],
    tag_ids: Sequence[uuid.UUID],
    *,
    source: str = "manual",
    audit_it: bool = True,
) -> int:
    """Link every contact to every tag (existing links are kept); returns links added."""
    repo = TagRepository(session)
    tags = await repo.get_many(list(set(tag_ids)))
    if len(tags) != len(set(tag_ids)):
        raise TagNotFound("a tag does not exist", field="tag_ids")
    cids = list(set(contact_ids))
    found = set(
        (
            await session.execute(
                select(Contact.id).where(Contact.id.in_(cids), Contact.merged_into_id.is_(None))
            )
        ).scalars()
    )
    if len(found) != len(cids):
        raise ContactNotFound("a contact does not exist", field="contact_ids")
    have = await repo.existing_links(cids, [t.id for t in tags])
    now = utcnow()
    rows = [  # tenant_id: the tenant guard's, when the rows are inserted
        {"contact_id": c, "tag_id": t.id, "source": source, "created_at": now}
        for c in cids
        for t in tags
        if (c, t.id) not in have
    ]
    if rows:
        await session.execute(insert(ContactTag), rows)
    if audit_it and rows:
        await audit.record(
            session,
            "contact.tag",
            "tag",
            None,
            changes={"contacts": len(cids), "tags": [str(t.id) for t in tags], "links": len(rows)},
        )
    return len(rows)


async def untag(session: AsyncSession, contact_id: uuid.UUID, tag_id: uuid.UUID) -> None:
    res = await session.execute(
        delete(ContactTag).where(ContactTag.contact_id == contact_id, ContactTag.tag_id == tag_id)
    )
    if not res.rowcount:  # type: ignore[attr-defined]
        raise TagNotFound("the contact does not have this tag", field="tag_id")
    await audit.record(session, "contact.untag", "contact", contact_id, changes={"tag_id": str(tag_id)})
