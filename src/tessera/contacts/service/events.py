"""Behaviour events and the contact timeline.

Other contexts add their own items (messages, deals, tickets …) to the timeline with
:func:`register_timeline_source`; the timeline merges every source by time.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.contacts.errors import ContactNotFound
from tessera.contacts.models import ContactEvent
from tessera.contacts.repository import ContactRepository
from tessera.contacts.schemas import EventIn, TimelineItem
from tessera.contacts.service.contacts import find_contact_by_identity, get_contact
from tessera.core.db.base import utcnow, uuid7
from tessera.core.http.errors import InvalidInput, TesseraError

TimelineSource = Callable[[AsyncSession, uuid.UUID, int], Awaitable[list[TimelineItem]]]
_sources: dict[str, TimelineSource] = {}


def register_timeline_source(name: str, fn: TimelineSource) -> None:
    """``fn(session, contact_id, limit)`` returns that context's most recent items."""
    _sources[name] = fn


def unregister_timeline_source(name: str) -> None:
    _sources.pop(name, None)


async def resolve_contact(session: AsyncSession, ev: EventIn) -> uuid.UUID:
    ident = ev.contact
    if ident.contact_id is not None:
        return (await get_contact(session, ident.contact_id)).id
    if not ident.kind or not ident.value:
        raise InvalidInput("give contact.contact_id or contact.kind and contact.value", field="contact")
    found = await find_contact_by_identity(session, ident.kind, ident.value)
    if found is None or found.merged_into_id is not None:
        raise ContactNotFound("no contact has this identity", field="contact.value")
    return found.id


def _row(ev: EventIn, contact_id: uuid.UUID) -> dict[str, Any]:
    at = ev.occurred_at or utcnow()
    if at.tzinfo is None:
        raise InvalidInput("occurred_at needs a time zone", field="occurred_at")
    return {
        "id": uuid7(),  # tenant_id: the tenant guard's, when the rows are inserted
        "contact_id": contact_id,
        "name": ev.name,
        "properties": ev.properties,
        "occurred_at": at.astimezone(dt.UTC),
        "source": ev.source,
    }


async def record_event(session: AsyncSession, ev: EventIn) -> tuple[uuid.UUID, uuid.UUID]:
    cid = await resolve_contact(session, ev)
    row = _row(ev, cid)
    await session.execute(insert(ContactEvent), [row])
    return row["id"], cid


async def record_events(session: AsyncSession, evs: list[EventIn]) -> tuple[int, list[dict[str, Any]]]:
    """Accept every resolvable event; the others are reported with index and error."""
    rows: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    cache: dict[tuple[Any, ...], uuid.UUID] = {}
    for i, ev in enumerate(evs):
        key = (ev.contact.contact_id, ev.contact.kind, ev.contact.value)
        try:
            if key not in cache:
                cache[key] = await resolve_contact(session, ev)
            rows.append(_row(ev, cache[key]))
        except TesseraError as exc:
            rejected.append({"index": i, "code": exc.code, "message": exc.message, "field": exc.field})
    if rows:
        await session.execute(insert(ContactEvent), rows)
    return len(rows), rejected


async def _own_items(session: AsyncSession, contact_id: uuid.UUID, limit: int) -> list[TimelineItem]:
    repo = ContactRepository(session)
    items = [
        TimelineItem(
            at=e.occurred_at,
            source="contacts",
            kind="event",
            title=e.name,
            data={"properties": e.properties, "source": e.source},
        )
        for e in await repo.events_of(contact_id, limit)
    ]
    items += [
        TimelineItem(
            at=m.merged_at,
            source="contacts",
            kind="merge",
            title="Merged a duplicate",
            data={"loser_id": str(m.loser_id)},
        )
        for m in await repo.merges_of(contact_id)
    ]
    return items


async def timeline(
    session: AsyncSession, contact_id: uuid.UUID, limit: int = 100, principal: Any = None
) -> list[TimelineItem]:
    await get_contact(session, contact_id, principal)
    items = await _own_items(session, contact_id, limit)
    for fn in list(_sources.values()):
        items += await fn(session, contact_id, limit)
    items.sort(key=lambda i: i.at, reverse=True)
    return items[:limit]
