"""Read paths of the customer-data console pages (lists, 360 page, board, tags, duplicates).

Everything here only reads; each function takes the session (tenant scope comes from the guard)
and, where records are owner-scoped, the caller's principal for the visibility clause. Results
are plain dataclasses so that templates never trigger a query.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, and_, exists, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from tessera.contacts.dedupe import Candidate, score
from tessera.contacts.models import (
    LIFECYCLE_STAGES,
    Account,
    Contact,
    ContactConsent,
    ContactIdentity,
    ContactMerge,
    ContactTag,
    DuplicateDismissal,
    Segment,
    Tag,
    TagGroup,
)
from tessera.contacts.repository import ContactRepository
from tessera.core.access.principal import Principal
from tessera.core.access.visibility import visible_owner_clause
from tessera.core.crypto.types import blind_index
from tessera.core.http.errors import InvalidInput
from tessera.core.identity.models import User


def visible_contacts(principal: Principal) -> Select[Any]:
    """Live (not merged away) contacts the principal may see."""
    return select(Contact).where(
        Contact.merged_into_id.is_(None), visible_owner_clause(Contact.owner_id, principal, "contacts")
    )


async def visible_ids(
    session: AsyncSession, principal: Principal, ids: Sequence[uuid.UUID]
) -> set[uuid.UUID]:
    """Which of ``ids`` are live contacts the principal may see."""
    if not ids:
        return set()
    stmt = visible_contacts(principal).with_only_columns(Contact.id).where(Contact.id.in_(list(ids)))
    return set((await session.execute(stmt)).scalars())


def with_tag(stmt: Select[Any], tag_id: uuid.UUID) -> Select[Any]:
    return stmt.where(
        exists(
            select(ContactTag.contact_id).where(
                ContactTag.contact_id == Contact.id, ContactTag.tag_id == tag_id
            )
        )
    )


def visible_accounts(principal: Principal) -> Select[Any]:
    return select(Account).where(visible_owner_clause(Account.owner_id, principal, "accounts"))


# --- rows of the contacts list ----------------------------------------------------------------


@dataclass
class ContactRow:
    """A contact with what its list row shows (raw personal data: the page masks it)."""

    id: uuid.UUID
    name: str
    city: str | None
    lifecycle_stage: str
    source: str | None
    owner_id: uuid.UUID | None
    account_id: uuid.UUID | None
    created_at: dt.datetime
    updated_at: dt.datetime
    phone: str | None = None
    email: str | None = None
    owner: str | None = None
    account: str | None = None
    tags: list[str] = field(default_factory=list)


async def user_names(session: AsyncSession, ids: Sequence[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    wanted = list({i for i in ids if i})
    if not wanted:
        return {}
    rows = await session.execute(select(User.id, User.name).where(User.id.in_(wanted)))
    return {uid: name for uid, name in rows.all()}


async def account_names(session: AsyncSession, ids: Sequence[uuid.UUID | None]) -> dict[uuid.UUID, str]:
    wanted = list({i for i in ids if i})
    if not wanted:
        return {}
    rows = await session.execute(select(Account.id, Account.name).where(Account.id.in_(wanted)))
    return {aid: name for aid, name in rows.all()}


async def tag_names(session: AsyncSession) -> dict[uuid.UUID, str]:
    rows = await session.execute(select(Tag.id, Tag.name))
    return {tid: name for tid, name in rows.all()}


async def contact_rows(session: AsyncSession, contacts: Sequence[Contact]) -> list[ContactRow]:
    """List rows in five queries whatever the number of contacts."""
    repo = ContactRepository(session)
    ids = [c.id for c in contacts]
    idents = await repo.identities(ids)
    tags = await repo.tag_ids(ids)
    owners = await user_names(session, [c.owner_id for c in contacts])
    accounts = await account_names(session, [c.account_id for c in contacts])
    names = await tag_names(session) if any(tags.values()) else {}
    out = []
    for c in contacts:
        mine = idents.get(c.id, [])
        phone = next((i.value for i in mine if i.kind == "phone"), None)
        email = next((i.value for i in mine if i.kind == "email"), None)
        out.append(
            ContactRow(
                id=c.id,
                name=c.name,
                city=c.city,
                lifecycle_stage=c.lifecycle_stage,
                source=c.source,
                owner_id=c.owner_id,
                account_id=c.account_id,
                created_at=c.created_at,
                updated_at=c.updated_at,
                phone=phone,
                email=email,
                owner=owners.get(c.owner_id) if c.owner_id else None,
                account=accounts.get(c.account_id) if c.account_id else None,
                tags=sorted(names[t] for t in tags.get(c.id, []) if t in names),
            )
        )
    return out


# --- options for selects --------------------------------------------------------------------


async def user_options(session: AsyncSession) -> list[tuple[str, str]]:
    rows = await session.execute(
        select(User.id, User.name).where(User.status != "disabled").order_by(User.name)
    )
    return [(str(uid), name) for uid, name in rows.all()]


async def account_options(
    session: AsyncSession, principal: Principal, limit: int = 500
) -> list[tuple[str, str]]:
    stmt = visible_accounts(principal).order_by(Account.name).limit(limit)
    return [(str(a.id), a.name) for a in (await session.execute(stmt)).scalars()]


async def tag_options(session: AsyncSession) -> list[tuple[str, str]]:
    """(tag id, "Group · Tag") for every tag, grouped tags first by group name."""
    groups = {g.id: g.name for g in (await session.execute(select(TagGroup))).scalars()}
    tags = list((await session.execute(select(Tag))).scalars())
    labelled = [
        (str(t.id), f"{groups[t.group_id]} · {t.name}" if t.group_id in groups else t.name) for t in tags
    ]
    return sorted(labelled, key=lambda o: o[1].lower())


# --- search and home tile -------------------------------------------------------------------


async def search_contacts(
    session: AsyncSession, principal: Principal, q: str, region: str
) -> list[ContactRow]:
    """By name (contains), or exactly by phone or email through their blind indexes."""
    from tessera.contacts.dedupe import normalize_identity

    conds: list[Any] = []
    for kind in ("phone", "email"):
        try:
            value = normalize_identity(kind, q, region)
        except InvalidInput:
            continue
        owners = select(ContactIdentity.contact_id).where(
            ContactIdentity.kind == kind, ContactIdentity.value_index == blind_index(kind, value)
        )
        conds.append(Contact.id.in_(owners))
    escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    conds.append(Contact.name.ilike(f"%{escaped}%", escape="\\"))
    stmt = visible_contacts(principal).where(or_(*conds)).order_by(Contact.name, Contact.id).limit(8)
    return await contact_rows(session, list((await session.execute(stmt)).scalars()))


async def stage_counts(session: AsyncSession, principal: Principal) -> dict[str, int]:
    stmt = (
        select(Contact.lifecycle_stage, func.count())
        .where(
            Contact.merged_into_id.is_(None), visible_owner_clause(Contact.owner_id, principal, "contacts")
        )
        .group_by(Contact.lifecycle_stage)
    )
    counts = dict.fromkeys(LIFECYCLE_STAGES, 0)
    for stage, n in (await session.execute(stmt)).all():
        counts[stage] = int(n)
    return counts


# --- lifecycle board ------------------------------------------------------------------------


async def board(
    session: AsyncSession, principal: Principal, per_stage: int = 50, owner_id: uuid.UUID | None = None
) -> dict[str, list[ContactRow]]:
    """The most recently updated contacts of each lifecycle stage."""
    out: dict[str, list[ContactRow]] = {}
    for stage in LIFECYCLE_STAGES:
        stmt = visible_contacts(principal).where(Contact.lifecycle_stage == stage)
        if owner_id is not None:
            stmt = stmt.where(Contact.owner_id == owner_id)
        stmt = stmt.order_by(Contact.updated_at.desc(), Contact.id.desc()).limit(per_stage)
        out[stage] = await contact_rows(session, list((await session.execute(stmt)).scalars()))
    return out


# --- the 360 page ---------------------------------------------------------------------------


@dataclass
class IdentityView:
    kind: str
    value: str
    primary: bool


@dataclass
class MergeView:
    id: uuid.UUID
    loser_id: uuid.UUID
    loser_name: str
    merged_at: dt.datetime
    field_winners: dict[str, Any]


@dataclass
class Profile:
    contact: Contact
    identities: list[IdentityView]
    consent: dict[str, ContactConsent]
    tags: list[tuple[uuid.UUID, str]]
    owner: str | None
    account: str | None
    merges: list[MergeView]


async def profile(session: AsyncSession, contact: Contact) -> Profile:
    repo = ContactRepository(session)
    idents = (await repo.identities([contact.id])).get(contact.id, [])
    consents = {c.channel: c for c in (await repo.consents([contact.id])).get(contact.id, [])}
    tag_ids = (await repo.tag_ids([contact.id])).get(contact.id, [])
    names = await tag_names(session) if tag_ids else {}
    owner = (
        (await user_names(session, [contact.owner_id])).get(contact.owner_id) if contact.owner_id else None
    )
    account = (
        (await account_names(session, [contact.account_id])).get(contact.account_id)
        if contact.account_id
        else None
    )
    return Profile(
        contact=contact,
        identities=[IdentityView(i.kind, i.value, i.is_primary) for i in idents],
        consent=consents,
        tags=sorted(((t, names[t]) for t in tag_ids if t in names), key=lambda p: p[1].lower()),
        owner=owner,
        account=account,
        merges=await merge_history(session, contact.id),
    )


async def merge_history(session: AsyncSession, contact_id: uuid.UUID) -> list[MergeView]:
    stmt = (
        select(ContactMerge)
        .where(ContactMerge.survivor_id == contact_id)
        .order_by(ContactMerge.merged_at.desc())
    )
    out = []
    for m in (await session.execute(stmt)).scalars():
        try:
            name = str(json.loads(m.loser_snapshot).get("name") or "")
        except ValueError:
            name = ""
        out.append(MergeView(m.id, m.loser_id, name, m.merged_at, dict(m.field_winners or {})))
    return out


async def identity_values(
    session: AsyncSession, contact_id: uuid.UUID, kinds: Sequence[str]
) -> list[IdentityView]:
    idents = (await ContactRepository(session).identities([contact_id])).get(contact_id, [])
    return [IdentityView(i.kind, i.value, i.is_primary) for i in idents if i.kind in kinds]


# --- accounts -------------------------------------------------------------------------------


async def account_contacts(
    session: AsyncSession, principal: Principal, account_id: uuid.UUID, limit: int = 100
) -> list[ContactRow]:
    stmt = (
        visible_contacts(principal)
        .where(Contact.account_id == account_id)
        .order_by(Contact.name, Contact.id)
        .limit(limit)
    )
    return await contact_rows(session, list((await session.execute(stmt)).scalars()))


async def child_accounts(session: AsyncSession, principal: Principal, account_id: uuid.UUID) -> list[Account]:
    stmt = visible_accounts(principal).where(Account.parent_id == account_id).order_by(Account.name)
    return list((await session.execute(stmt)).scalars())


async def contact_counts_by_account(session: AsyncSession, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
    if not ids:
        return {}
    stmt = (
        select(Contact.account_id, func.count())
        .where(Contact.account_id.in_(list(ids)), Contact.merged_into_id.is_(None))
        .group_by(Contact.account_id)
    )
    return {aid: int(n) for aid, n in (await session.execute(stmt)).all() if aid is not None}


# --- tags -----------------------------------------------------------------------------------


@dataclass
class TagView:
    id: uuid.UUID
    name: str
    group_id: uuid.UUID | None
    members: int
    sources: dict[str, int]
    segments: list[tuple[uuid.UUID, str]]
    follows: tuple[uuid.UUID, str] | None = None  # a rule tag: the dynamic segment it follows

    @property
    def rule_based(self) -> bool:
        return (
            self.follows is not None
            or bool(self.segments)
            or any(s != "manual" and s != "api" for s in self.sources)
        )


@dataclass
class GroupView:
    id: uuid.UUID | None
    key: str
    name: str
    tags: list[TagView]


def _segment_tag_ids(rules: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(rules, dict):
        if rules.get("type") == "tag":
            found.update(str(t) for t in rules.get("tag_ids") or [])
        for v in rules.values():
            found |= _segment_tag_ids(v)
    elif isinstance(rules, list):
        for v in rules:
            found |= _segment_tag_ids(v)
    return found


async def tag_overview(session: AsyncSession) -> list[GroupView]:
    """Groups with their tags, each with live member counts by link source and the segments
    whose rules use it."""
    groups = list((await session.execute(select(TagGroup).order_by(TagGroup.name))).scalars())
    tags = list((await session.execute(select(Tag).order_by(Tag.name))).scalars())
    counts: dict[uuid.UUID, dict[str, int]] = defaultdict(dict)
    stmt = (
        select(ContactTag.tag_id, ContactTag.source, func.count())
        .join(Contact, Contact.id == ContactTag.contact_id)
        .where(Contact.merged_into_id.is_(None))
        .group_by(ContactTag.tag_id, ContactTag.source)
    )
    for tid, source, n in (await session.execute(stmt)).all():
        counts[tid][source] = int(n)
    users: dict[str, list[tuple[uuid.UUID, str]]] = defaultdict(list)
    names: dict[uuid.UUID, str] = {}
    for seg in (await session.execute(select(Segment))).scalars():
        names[seg.id] = seg.name
        for ref in _segment_tag_ids(seg.rules or {}):
            users[ref].append((seg.id, seg.name))
    views = {
        t.id: TagView(
            t.id,
            t.name,
            t.group_id,
            sum(counts[t.id].values()),
            counts[t.id],
            users.get(str(t.id), []),
            (t.segment_id, names.get(t.segment_id, "")) if t.segment_id else None,
        )
        for t in tags
    }
    out = [GroupView(g.id, g.key, g.name, [v for v in views.values() if v.group_id == g.id]) for g in groups]
    ungrouped = [v for v in views.values() if v.group_id is None]
    if ungrouped:
        out.append(GroupView(None, "", "", ungrouped))
    return out


# --- duplicates queue -----------------------------------------------------------------------


@dataclass
class DuplicatePair:
    a: ContactRow
    b: ContactRow
    score: int
    reasons: list[str]


async def duplicate_queue(
    session: AsyncSession,
    principal: Principal,
    *,
    min_score: int = 60,
    limit: int = 50,
    window: int = 1000,
    scan: int = 2000,
) -> list[DuplicatePair]:
    """Likely duplicate pairs among visible live contacts, best first, without dismissed pairs.

    The ``window`` most recently created contacts are paired with any visible contact sharing
    their phone ending, their name (case-insensitive) or their account: three equality joins
    (indexed, or hash joins) rather than one OR join, so the cost stays linear in the table.
    Pairs are scored with the same rule as the per-contact suggestions.
    """
    a, b = aliased(Contact), aliased(Contact)
    recent = (
        select(Contact.id)
        .where(
            Contact.merged_into_id.is_(None), visible_owner_clause(Contact.owner_id, principal, "contacts")
        )
        .order_by(Contact.created_at.desc())
        .limit(window)
        .scalar_subquery()
    )
    found: set[tuple[uuid.UUID, uuid.UUID]] = set()
    for same in (
        and_(a.phone_tail.is_not(None), a.phone_tail == b.phone_tail),
        func.lower(a.name) == func.lower(b.name),
        and_(a.account_id.is_not(None), a.account_id == b.account_id),
    ):
        stmt = (
            select(a.id, b.id)
            .join(b, same)
            .where(
                b.id.in_(recent),
                a.id != b.id,
                a.merged_into_id.is_(None),
                visible_owner_clause(a.owner_id, principal, "contacts"),
            )
            .limit(scan)
        )
        for x, y in (await session.execute(stmt)).all():
            found.add((x, y) if x < y else (y, x))
    if not found:
        return []
    ids = list({i for p in found for i in p})
    dismissed: set[tuple[uuid.UUID, uuid.UUID]] = set()
    for i in range(0, len(ids), 500):
        rows = await session.execute(
            select(DuplicateDismissal.contact_a_id, DuplicateDismissal.contact_b_id).where(
                DuplicateDismissal.contact_a_id.in_(ids[i : i + 500])
            )
        )
        dismissed |= {(x, y) for x, y in rows.all()}
    found -= dismissed
    contacts: dict[uuid.UUID, Contact] = {}
    for i in range(0, len(ids), 500):
        for c in (await session.execute(select(Contact).where(Contact.id.in_(ids[i : i + 500])))).scalars():
            contacts[c.id] = c
    accounts = await account_names(session, [c.account_id for c in contacts.values()])

    def cand(c: Contact) -> Candidate:
        return Candidate(
            c.id, c.name, accounts.get(c.account_id) if c.account_id else None, c.city, c.phone_tail
        )

    scored = []
    for x, y in found:
        s = score(cand(contacts[x]), cand(contacts[y]))
        if s.score >= min_score:
            scored.append((x, y, s))
    scored.sort(key=lambda t: (-t[2].score, str(t[0]), str(t[1])))
    scored = scored[:limit]
    wanted = list(dict.fromkeys(i for x, y, _s in scored for i in (x, y)))
    by_id = {r.id: r for r in await contact_rows(session, [contacts[i] for i in wanted])}
    return [DuplicatePair(by_id[x], by_id[y], s.score, s.reasons) for x, y, s in scored]


async def is_dismissed(session: AsyncSession, x: uuid.UUID, y: uuid.UUID) -> bool:
    lo, hi = sorted((x, y))
    stmt = select(DuplicateDismissal.id).where(
        DuplicateDismissal.contact_a_id == lo, DuplicateDismissal.contact_b_id == hi
    )
    return (await session.execute(stmt)).first() is not None


async def dynamic_segment_options(session: AsyncSession) -> list[tuple[str, str]]:
    """(id, name) of the tenant's dynamic segments: what a rule tag can follow."""
    rows = await session.execute(
        select(Segment.id, Segment.name).where(Segment.kind == "dynamic").order_by(Segment.name)
    )
    return [(str(i), n) for i, n in rows.all()]
