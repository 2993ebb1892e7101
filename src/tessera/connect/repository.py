"""Queries of the messaging context (the guard adds the tenant filter)."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select

from tessera.connect.models import Message, MessageEvent
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


class MessageRepository(TenantRepository[Message]):
    model = Message

    async def events(self, message_id: uuid.UUID) -> list[MessageEvent]:
        stmt = select(MessageEvent).where(MessageEvent.message_id == message_id).order_by(MessageEvent.id)
        return list((await self.session.execute(stmt)).scalars())
