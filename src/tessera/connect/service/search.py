"""Reading messages: list with filters (status, channel, recipient via blind index, time range,
campaign, reference) and keyset pagination; one message with its history."""

from __future__ import annotations

import uuid
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.connect.errors import MessageInvalid, MessageNotFound
from tessera.connect.models import Message, MessageEvent
from tessera.connect.repository import MESSAGE_FILTERS, MessageRepository
from tessera.core.crypto.types import blind_index
from tessera.core.http.listing import ListQuery, apply_listing, page_of
from tessera.core.phone import InvalidPhone, normalize_phone


async def list_messages(session: AsyncSession, params: Mapping[str, str]) -> tuple[list[Message], str | None]:
    q = ListQuery.from_params(params, MESSAGE_FILTERS)
    stmt = select(Message)
    to = params.get("to")
    if to:
        try:
            e164 = normalize_phone(to, "CN", field="to")
            stmt = stmt.where(Message.to_index == blind_index("phone", e164))
        except InvalidPhone:
            if len(to) > 64:
                raise MessageInvalid(
                    "not a phone number or openid", field="to", rule="invalid_phone"
                ) from None
            stmt = stmt.where(Message.to_index == blind_index("openid", to))
    rows = (await session.execute(apply_listing(stmt, q, MESSAGE_FILTERS))).scalars().all()
    return page_of(rows, q, MESSAGE_FILTERS)


async def get_message(session: AsyncSession, message_id: uuid.UUID) -> tuple[Message, list[MessageEvent]]:
    repo = MessageRepository(session)
    m = await repo.get(message_id)
    if m is None:
        raise MessageNotFound()
    return m, await repo.events(message_id)
