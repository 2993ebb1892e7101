"""Duplicate suggestions and merging.

A merge keeps the survivor, takes per-field winners, moves identities, tags, events, consent,
segment memberships and merge history to it, stores the loser's full snapshot (encrypted) in
``contact_merges`` and marks the loser ``merged_into_id`` (never deleted, so references from
other contexts can follow it).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.contacts import events
from tessera.contacts.dedupe import Candidate, Suggestion, score
from tessera.contacts.models import (
    Account,
    Contact,
    ContactConsent,
    ContactEvent,
    ContactIdentity,
    ContactMerge,
    ContactTag,
    SegmentMember,
)
from tessera.contacts.repository import ContactRepository
from tessera.contacts.service.contacts import SNAPSHOT_FIELDS, get_contact, snapshot
from tessera.core.access.principal import Principal
from tessera.core.access.visibility import visible_owner_clause
from tessera.core.audit import service as audit
from tessera.core.http.errors import InvalidInput

# Fields with a per-field winner; custom attributes are merged key by key.
MERGEABLE = tuple(f for f in SNAPSHOT_FIELDS if f != "attributes")


async def suggest_duplicates(
    session: AsyncSession,
    contact_id: uuid.UUID,
    *,
    limit: int = 10,
    min_score: int = 60,
    principal: Principal | None = None,
) -> list[tuple[Contact, Suggestion]]:
    me = await get_contact(session, contact_id, principal)
    acc_names: dict[uuid.UUID, str] = {}
    # Candidates: same phone tail, same city, same account or a shared name token.
    conds = []
    if me.phone_tail:
        conds.append(Contact.phone_tail == me.phone_tail)
    if me.city:
        conds.append(Contact.city == me.city)
    if me.account_id:
        conds.append(Contact.account_id == me.account_id)
    for token in {t for t in me.name.split() if len(t) >= 2} or {me.name[:2]}:
        conds.append(Contact.name.contains(token))
    from sqlalchemy import or_

    stmt = (
        select(Contact).where(Contact.id != me.id, Contact.merged_into_id.is_(None), or_(*conds)).limit(500)
    )
    if principal is not None:  # never name a contact the caller may not see
        stmt = stmt.where(visible_owner_clause(Contact.owner_id, principal, "contacts"))
    others = list((await session.execute(stmt)).scalars())
    acc_ids = {c.account_id for c in [me, *others] if c.account_id}
    if acc_ids:
        for aid, name in (
            await session.execute(select(Account.id, Account.name).where(Account.id.in_(acc_ids)))
        ).all():
            acc_names[aid] = name

    def cand(c: Contact) -> Candidate:
        return Candidate(
            c.id, c.name, acc_names.get(c.account_id) if c.account_id else None, c.city, c.phone_tail
        )

    base = cand(me)
    scored = [(c, score(base, cand(c))) for c in others]
    scored = [s for s in scored if s[1].score >= min_score]
    scored.sort(key=lambda s: s[1].score, reverse=True)
    return scored[:limit]


async def merge_contacts(
    session: AsyncSession,
    survivor_id: uuid.UUID,
    loser_id: uuid.UUID,
    field_winners: dict[str, str] | None = None,
    principal: Principal | None = None,
) -> ContactMerge:
    if survivor_id == loser_id:
        raise InvalidInput("a contact cannot be merged into itself", field="loser_id")
    survivor = await get_contact(session, survivor_id, principal)
    loser = await get_contact(session, loser_id, principal)
    for f in field_winners or {}:
        if f not in MERGEABLE and f != "attributes":
            raise InvalidInput(f"'{f}' is not a mergeable field", field=f"field_winners.{f}")
    repo = ContactRepository(session)
    before = snapshot(survivor)
    loser_snap: dict[str, Any] = {
        k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in snapshot(loser).items()
    }
    loser_idents = (await repo.identities([loser.id])).get(loser.id, [])
    loser_snap["identities"] = [
        {"kind": i.kind, "value": i.value, "primary": i.is_primary} for i in loser_idents
    ]
    loser_snap["consent"] = {
        c.channel: {"status": c.status, "source": c.source}
        for c in (await repo.consents([loser.id])).get(loser.id, [])
    }
    loser_snap["tag_ids"] = [str(t) for t in (await repo.tag_ids([loser.id])).get(loser.id, [])]

    winners: dict[str, str] = {}
    for f in MERGEABLE:
        choice = (field_winners or {}).get(f)
        sv, lv = getattr(survivor, f), getattr(loser, f)
        if choice == "loser" or (choice is None and sv in (None, "") and lv not in (None, "")):
            setattr(survivor, f, lv)
            winners[f] = "loser"
        else:
            winners[f] = "survivor"
    if (field_winners or {}).get("attributes") == "loser":
        survivor.attributes = {**(survivor.attributes or {}), **(loser.attributes or {})}
    else:
        survivor.attributes = {**(loser.attributes or {}), **(survivor.attributes or {})}
    winners["attributes"] = (field_winners or {}).get("attributes", "survivor")

    # Identities: the survivor keeps its primaries; the loser's become secondary.
    survivor_kinds = {i.kind for i in (await repo.identities([survivor.id])).get(survivor.id, [])}
    for i in loser_idents:
        if i.kind in survivor_kinds:
            i.is_primary = False
    await session.flush()
    await repo.reassign(ContactIdentity, loser.id, survivor.id)
    if not survivor.phone_tail and loser.phone_tail:
        survivor.phone_tail = loser.phone_tail

    # Consent: the most recent decision per channel wins.
    s_cons = {c.channel: c for c in (await repo.consents([survivor.id])).get(survivor.id, [])}
    for c in (await repo.consents([loser.id])).get(loser.id, []):
        mine = s_cons.get(c.channel)
        if mine is None or (c.updated_at > mine.updated_at):
            if mine is not None:
                mine.status, mine.source, mine.updated_at = c.status, c.source, c.updated_at
            else:
                session.add(
                    ContactConsent(
                        contact_id=survivor.id,
                        channel=c.channel,
                        status=c.status,
                        source=c.source,
                        updated_at=c.updated_at,
                    )
                )
    await session.flush()
    await session.execute(delete(ContactConsent).where(ContactConsent.contact_id == loser.id))

    # Tags and segment memberships: union without duplicates.
    s_tags = set((await repo.tag_ids([survivor.id])).get(survivor.id, []))
    if s_tags:
        await session.execute(
            delete(ContactTag).where(ContactTag.contact_id == loser.id, ContactTag.tag_id.in_(s_tags))
        )
    await repo.reassign(ContactTag, loser.id, survivor.id)
    s_segs = set(
        (
            await session.execute(
                select(SegmentMember.segment_id).where(SegmentMember.contact_id == survivor.id)
            )
        ).scalars()
    )
    if s_segs:
        await session.execute(
            delete(SegmentMember).where(
                SegmentMember.contact_id == loser.id, SegmentMember.segment_id.in_(s_segs)
            )
        )
    await repo.reassign(SegmentMember, loser.id, survivor.id)
    await repo.reassign(ContactEvent, loser.id, survivor.id)
    await session.execute(
        update(ContactMerge).where(ContactMerge.survivor_id == loser.id).values(survivor_id=survivor.id)
    )

    loser.merged_into_id = survivor.id
    record = ContactMerge(
        survivor_id=survivor.id,
        loser_id=loser.id,
        loser_snapshot=json.dumps(loser_snap, ensure_ascii=False, default=str),
        field_winners=winners,
    )
    session.add(record)
    await session.flush()
    await audit.record(
        session,
        "contact.merge",
        "contact",
        survivor.id,
        before=before,
        after={**snapshot(survivor), "merged_loser_id": str(loser.id)},
    )
    await events.publish(
        session, events.CONTACT_MERGED, {"survivor_id": str(survivor.id), "loser_id": str(loser.id)}
    )
    return record


async def resolve_merged(session: AsyncSession, contact_id: uuid.UUID) -> uuid.UUID:
    """Follow ``merged_into_id`` to the surviving contact (for contexts holding old ids)."""
    repo = ContactRepository(session)
    seen = set()
    cur = contact_id
    while cur not in seen:
        seen.add(cur)
        c = await repo.get(cur)
        if c is None or c.merged_into_id is None:
            return cur
        cur = c.merged_into_id
    return cur
