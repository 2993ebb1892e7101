"""Queries of the messaging context (the guard adds the tenant filter)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.connect.models import DispatchItem, Message, MessageEvent
from tessera.core.db.base import table_of
from tessera.core.db.repository import TenantRepository
from tessera.core.http.listing import FilterField, FilterSet

MESSAGE_FILTERS = FilterSet(
    fields={
        "status": FilterField(Message.status, str, ("eq", "in")),
        "channel": FilterField(Message.channel_kind, str, ("eq", "in")),
        "channel_id": FilterField(Message.channel_id, uuid.UUID, ("eq",)),
        "class": FilterField(Message.message_class, str, ("eq", "in")),
        "created_at": FilterField(Message.created_at, dt.datetime, ("gte", "lte")),
        "campaign_id": FilterField(Message.campaign_id, uuid.UUID, ("eq",)),
        "reference": FilterField(Message.reference, str, ("eq",)),
        "template_id": FilterField(Message.template_id, uuid.UUID, ("eq",)),
    },
    sortable={"created_at": Message.created_at},
    default_sort="-created_at",
    id_column=Message.id,
)

DISPATCH_CHANNEL = "connect_dispatch"
"""PostgreSQL NOTIFY channel: payload is the lowest lane committed (0 = verification)."""

INSERT_CHUNK = 2000


class MessageRepository(TenantRepository[Message]):
    model = Message

    async def events(self, message_id: uuid.UUID) -> list[MessageEvent]:
        stmt = select(MessageEvent).where(MessageEvent.message_id == message_id).order_by(MessageEvent.id)
        return list((await self.session.execute(stmt)).scalars())

    async def insert_many(
        self,
        messages: Sequence[dict[str, Any]],
        events: Sequence[dict[str, Any]],
        queue: Sequence[dict[str, Any]],
    ) -> None:
        """Multi-row inserts of messages, their first events and their dispatch rows."""
        for start in range(0, len(messages), INSERT_CHUNK):
            await self.session.execute(insert(table_of(Message)), messages[start : start + INSERT_CHUNK])
        for start in range(0, len(events), INSERT_CHUNK):
            await self.session.execute(insert(table_of(MessageEvent)), events[start : start + INSERT_CHUNK])
        for start in range(0, len(queue), INSERT_CHUNK):
            await self.session.execute(insert(table_of(DispatchItem)), queue[start : start + INSERT_CHUNK])

    async def for_release(self, message_id: uuid.UUID) -> Any:
        """The fields a held message is checked again with before it is released."""
        stmt = select(
            Message.id,
            Message.status,
            Message.channel_kind,
            Message.message_class,
            Message.to,
            Message.to_index,
            Message.body,
            Message.scheduled_at,
            Message.variables,  # email: the subject and HTML part are checked again too
        ).where(Message.id == message_id)
        return (await self.session.execute(stmt)).first()

    async def set_status(
        self, message_id: uuid.UUID, status: str, *, reason: str | None, **values: Any
    ) -> None:
        await self.session.execute(
            update(Message)
            .where(Message.id == message_id)
            .values(status=status, reason=reason, **values)
            .execution_options(synchronize_session=False)
        )


async def notify_dispatch(session: AsyncSession, lane: int) -> None:
    """Wake gateways of other processes once this transaction commits (PostgreSQL only; the
    server drops the notification if the transaction rolls back)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_notify(:c, :p)"), {"c": DISPATCH_CHANNEL, "p": str(lane)})
