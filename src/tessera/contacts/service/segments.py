"""Segments: preview counts, static lists, materialised membership with entered/left events."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.contacts import events
from tessera.contacts.errors import ContactNotFound, SegmentNotFound
from tessera.contacts.models import Contact, Segment, SegmentMember
from tessera.contacts.repository import SegmentRepository
from tessera.contacts.schemas import SegmentCreate, SegmentUpdate
from tessera.contacts.segments import compile_rules
from tessera.core.audit import service as audit
from tessera.core.db.base import utcnow
from tessera.core.http.errors import InvalidInput


def matching(rules: dict[str, Any]):  # type: ignore[no-untyped-def]
    """SELECT of the ids of live contacts matching ``rules`` (one statement)."""
    return select(Contact.id).where(Contact.merged_into_id.is_(None), compile_rules(rules))


async def count_matching(session: AsyncSession, rules: dict[str, Any]) -> int:
    stmt = (
        select(func.count())
        .select_from(Contact)
        .where(Contact.merged_into_id.is_(None), compile_rules(rules))
    )
    return int((await session.execute(stmt)).scalar_one())


async def get_segment(session: AsyncSession, segment_id: uuid.UUID) -> Segment:
    seg = await SegmentRepository(session).get(segment_id)
    if seg is None:
        raise SegmentNotFound(field="segment_id")
    return seg


async def create_segment(session: AsyncSession, data: SegmentCreate) -> Segment:
    if data.kind == "dynamic":
        if not data.rules:
            raise InvalidInput("a dynamic segment needs rules", field="rules")
        compile_rules(data.rules)
    elif data.rules:
        raise InvalidInput("a static list has members, not rules", field="rules")
    seg = await SegmentRepository(session).create(Segment(name=data.name, kind=data.kind, rules=data.rules))
    await audit.record(
        session, "segment.create", "segment", seg.id, after={"name": seg.name, "kind": seg.kind}
    )
    return seg


async def update_segment(session: AsyncSession, segment_id: uuid.UUID, data: SegmentUpdate) -> Segment:
    seg = await get_segment(session, segment_id)
    before = {"name": seg.name, "rules": seg.rules}
    if data.name is not None:
        seg.name = data.name
    if data.rules is not None:
        if seg.kind != "dynamic":
            raise InvalidInput("a static list has no rules", field="rules")
        compile_rules(data.rules)
        seg.rules = data.rules
    await session.flush()
    await audit.record(
        session,
        "segment.update",
        "segment",
        seg.id,
        before=before,
        after={"name": seg.name, "rules": seg.rules},
    )
    return seg


async def delete_segment(session: AsyncSession, segment_id: uuid.UUID) -> None:
    seg = await get_segment(session, segment_id)
    await SegmentRepository(session).delete(seg)
    await audit.record(session, "segment.delete", "segment", segment_id, before={"name": seg.name})


async def add_members(session: AsyncSession, segment_id: uuid.UUID, contact_ids: list[uuid.UUID]) -> int:
    seg = await get_segment(session, segment_id)
    if seg.kind != "static":
        raise InvalidInput("members are added to static lists only", field="segment_id")
    ids = list(set(contact_ids))
    found = set(
        (
            await session.execute(
                select(Contact.id).where(Contact.id.in_(ids), Contact.merged_into_id.is_(None))
            )
        ).scalars()
    )
    if len(found) != len(ids):
        raise ContactNotFound("a contact does not exist", field="contact_ids")
    have = await SegmentRepository(session).member_ids(seg.id)
    new = [c for c in ids if c not in have]
    now = utcnow()
    if new:
        await session.execute(  # the tenant guard gives each row the tenant in scope
            insert(SegmentMember),
            [{"segment_id": seg.id, "contact_id": c, "added_at": now} for c in new],
        )
    seg.member_count = len(have) + len(new)
    await audit.record(session, "segment.members_add", "segment", seg.id, changes={"added": len(new)})
    return len(new)


async def remove_members(session: AsyncSession, segment_id: uuid.UUID, contact_ids: list[uuid.UUID]) -> int:
    seg = await get_segment(session, segment_id)
    if seg.kind != "static":
        raise InvalidInput("members are removed from static lists only", field="segment_id")
    res = await session.execute(
        delete(SegmentMember).where(
            SegmentMember.segment_id == seg.id, SegmentMember.contact_id.in_(contact_ids)
        )
    )
    removed = int(res.rowcount or 0)  # type: ignore[attr-defined]
    seg.member_count = max(0, seg.member_count - removed)
    await audit.record(session, "segment.members_remove", "segment", seg.id, changes={"removed": removed})
    return removed


async def refresh_segment(session: AsyncSession, segment_id: uuid.UUID) -> tuple[int, int, int]:
    """Re-materialise a dynamic segment: (member_count, entered, left); publishes the deltas."""
    seg = await get_segment(session, segment_id)
    if seg.kind != "dynamic" or not seg.rules:
        raise InvalidInput("only dynamic segments are refreshed", field="segment_id")
    now_ids = set((await session.execute(matching(seg.rules))).scalars())
    had = await SegmentRepository(session).member_ids(seg.id)
    entered, left = now_ids - had, had - now_ids
    now = utcnow()
    if left:
        lst = list(left)
        for i in range(0, len(lst), 1000):
            await session.execute(
                delete(SegmentMember).where(
                    SegmentMember.segment_id == seg.id, SegmentMember.contact_id.in_(lst[i : i + 1000])
                )
            )
    if entered:
        await session.execute(
            insert(SegmentMember),
            [{"segment_id": seg.id, "contact_id": c, "added_at": now} for c in entered],
        )
    seg.member_count, seg.refreshed_at = len(now_ids), now
    await session.flush()
    from tessera.contacts.service.tags import sync_rule_tags_of

    await sync_rule_tags_of(session, seg.id, now_ids)
    if entered:
        await events.publish(
            session,
            events.SEGMENT_ENTERED,
            {"segment_id": str(seg.id), "contact_ids": [str(c) for c in entered]},
        )
    if left:
        await events.publish(
            session, events.SEGMENT_LEFT, {"segment_id": str(seg.id), "contact_ids": [str(c) for c in left]}
        )
    return len(now_ids), len(entered), len(left)


async def segment_member_ids(session: AsyncSession, segment_id: uuid.UUID) -> set[uuid.UUID]:
    """Public: ids in a segment (materialised membership; refresh dynamic ones first)."""
    await get_segment(session, segment_id)
    return await SegmentRepository(session).member_ids(segment_id)


async def refresh_all_dynamic(session: AsyncSession) -> int:
    """Refresh every dynamic segment of the tenant in scope (the scheduled refresh); returns
    how many were refreshed."""
    ids = list(
        (
            await session.execute(
                select(Segment.id)
                .where(Segment.kind == "dynamic", Segment.rules.is_not(None))
                .order_by(Segment.id)
            )
        ).scalars()
    )
    for sid in ids:
        await refresh_segment(session, sid)
    return len(ids)
