"""Data-stewardship use cases of the console: audited unmask, owner and stage changes, tag and
tag-group upkeep, dismissing a duplicate suggestion. Validate, act, audit; never commit."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.contacts.errors import ContactNotFound, DuplicateField, TagNotFound
from tessera.contacts.models import LIFECYCLE_STAGES, Contact, ContactTag, DuplicateDismissal, Tag, TagGroup
from tessera.contacts.schemas import ContactUpdate
from tessera.contacts.service.contacts import get_contact, update_contact
from tessera.contacts.service.tags import ensure_seed_groups
from tessera.core.access.principal import Principal
from tessera.core.access.visibility import visible_owner_clause
from tessera.core.audit import service as audit
from tessera.core.http.errors import Forbidden, InvalidInput
from tessera.core.identity import service as identity

UNMASKABLE = ("phone", "email", "address", "birthday")


async def unmask_contact(
    session: AsyncSession, contact_id: uuid.UUID, principal: Principal, fields: Sequence[str]
) -> dict[str, Any]:
    """Reveal personal data of one visible contact; needs ``pii:unmask``; writes ``pii.unmask``."""
    if not principal.has("pii:unmask"):
        raise Forbidden("revealing personal data needs the pii:unmask permission")
    bad = [f for f in fields if f not in UNMASKABLE]
    if bad or not fields:
        raise InvalidInput(f"fields must be among: {', '.join(UNMASKABLE)}", field="fields")
    contact = await get_contact(session, contact_id, principal)
    from tessera.contacts.repository import ContactRepository

    idents = (await ContactRepository(session).identities([contact.id])).get(contact.id, [])
    out: dict[str, Any] = {}
    for f in fields:
        if f in ("phone", "email"):
            out[f] = [i.value for i in idents if i.kind == f]
        else:
            out[f] = getattr(contact, f)
    await audit.record(session, "pii.unmask", "contact", contact.id, changes={"fields": sorted(set(fields))})
    return out


async def _visible_ids(
    session: AsyncSession, ids: Sequence[uuid.UUID], principal: Principal
) -> list[uuid.UUID]:
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        raise InvalidInput("select at least one contact", field="ids")
    stmt = select(Contact.id).where(
        Contact.id.in_(wanted),
        Contact.merged_into_id.is_(None),
        visible_owner_clause(Contact.owner_id, principal, "contacts"),
    )
    found = set((await session.execute(stmt)).scalars())
    if found != set(wanted):
        raise ContactNotFound("a selected contact does not exist", field="ids")
    return wanted


async def assign_owner(
    session: AsyncSession, ids: Sequence[uuid.UUID], owner_id: uuid.UUID, principal: Principal
) -> int:
    """Give every selected contact the owner (each change audited by the update use case)."""
    wanted = await _visible_ids(session, ids, principal)
    await identity.ensure_user(session, owner_id, field="owner_id")
    for cid in wanted:
        await update_contact(session, cid, ContactUpdate(owner_id=owner_id), principal)
    return len(wanted)


async def tag_contacts(
    session: AsyncSession, ids: Sequence[uuid.UUID], tag_id: uuid.UUID, principal: Principal
) -> int:
    from tessera.contacts.service.tags import assign_tags

    wanted = await _visible_ids(session, ids, principal)
    if (await session.execute(select(Tag.id).where(Tag.id == tag_id))).first() is None:
        raise TagNotFound("the tag does not exist", field="tag_id")
    return await assign_tags(session, wanted, [tag_id])


async def set_stage(
    session: AsyncSession, contact_id: uuid.UUID, stage: str, principal: Principal
) -> Contact:
    if stage not in LIFECYCLE_STAGES:
        raise InvalidInput(
            f"lifecycle_stage must be one of: {', '.join(LIFECYCLE_STAGES)}", field="lifecycle_stage"
        )
    return await update_contact(session, contact_id, ContactUpdate(lifecycle_stage=stage), principal)  # type: ignore[arg-type]


# --- tags and groups ------------------------------------------------------------------------


async def _tag(session: AsyncSession, tag_id: uuid.UUID) -> Tag:
    tag = (await session.execute(select(Tag).where(Tag.id == tag_id))).scalar_one_or_none()
    if tag is None:
        raise TagNotFound(field="tag_id")
    return tag


async def _group(session: AsyncSession, group_id: uuid.UUID) -> TagGroup:
    group = (await session.execute(select(TagGroup).where(TagGroup.id == group_id))).scalar_one_or_none()
    if group is None:
        raise TagNotFound("the tag group does not exist", field="group_id")
    return group


def _clean_name(name: str, limit: int) -> str:
    value = name.strip()
    if not value:
        raise InvalidInput("name is required", field="name")
    if len(value) > limit:
        raise InvalidInput(f"name must be at most {limit} characters", field="name")
    return value


async def rename_tag(session: AsyncSession, tag_id: uuid.UUID, name: str) -> Tag:
    tag = await _tag(session, tag_id)
    value = _clean_name(name, 100)
    dup = (
        await session.execute(
            select(Tag.id).where(Tag.group_id == tag.group_id, Tag.name == value, Tag.id != tag.id)
        )
    ).first()
    if dup is not None:
        raise DuplicateField(f"tag '{value}' already exists in this group", field="name")
    before = tag.name
    tag.name = value
    await session.flush()
    await audit.record(session, "tag.update", "tag", tag.id, before={"name": before}, after={"name": value})
    return tag


async def delete_tag(session: AsyncSession, tag_id: uuid.UUID) -> None:
    tag = await _tag(session, tag_id)
    await session.execute(delete(ContactTag).where(ContactTag.tag_id == tag.id))
    await session.delete(tag)
    await session.flush()
    await audit.record(session, "tag.delete", "tag", tag_id, before={"name": tag.name})


async def rename_group(session: AsyncSession, group_id: uuid.UUID, name: str) -> TagGroup:
    group = await _group(session, group_id)
    value = _clean_name(name, 200)
    before = group.name
    group.name = value
    await session.flush()
    await audit.record(
        session, "tag_group.update", "tag_group", group.id, before={"name": before}, after={"name": value}
    )
    return group


async def delete_group(session: AsyncSession, group_id: uuid.UUID) -> int:
    """Delete a group and its tags (their links go with them); returns the tags removed."""
    group = await _group(session, group_id)
    tag_ids = list((await session.execute(select(Tag.id).where(Tag.group_id == group.id))).scalars())
    if tag_ids:
        await session.execute(delete(ContactTag).where(ContactTag.tag_id.in_(tag_ids)))
        await session.execute(delete(Tag).where(Tag.id.in_(tag_ids)))
    await session.delete(group)
    await session.flush()
    await audit.record(
        session, "tag_group.delete", "tag_group", group_id, before={"key": group.key, "name": group.name}
    )
    return len(tag_ids)


async def groups(session: AsyncSession) -> list[TagGroup]:
    return await ensure_seed_groups(session)


# --- duplicates -----------------------------------------------------------------------------


async def dismiss_duplicate(
    session: AsyncSession, x: uuid.UUID, y: uuid.UUID, principal: Principal
) -> DuplicateDismissal | None:
    """Record that two visible contacts are not the same person (idempotent)."""
    if x == y:
        raise InvalidInput("a contact cannot be a duplicate of itself", field="other_id")
    await get_contact(session, x, principal)
    await get_contact(session, y, principal)
    lo, hi = sorted((x, y))
    existing = (
        await session.execute(
            select(DuplicateDismissal).where(
                DuplicateDismissal.contact_a_id == lo, DuplicateDismissal.contact_b_id == hi
            )
        )
    ).scalar_one_or_none()
    if existing is not None:
        return existing
    row = DuplicateDismissal(contact_a_id=lo, contact_b_id=hi, dismissed_by=principal.user_id)
    session.add(row)
    await session.flush()
    await audit.record(session, "contact.duplicate_dismiss", "contact", lo, changes={"other_id": str(hi)})
    return row
