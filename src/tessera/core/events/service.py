"""Publishing domain events: rows in the caller's transaction, one job per subscriber.

An event exists exactly when the write that caused it commits. Besides the in-process
subscribers, every active webhook endpoint of the tenant subscribed to the event type gets a
delivery (see :mod:`tessera.core.webhooks.service`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core import context
from tessera.core.db.base import utcnow, uuid7
from tessera.core.events.registry import subscribers_of
from tessera.core.jobs import service as jobs


def envelope(
    event_name: str,
    payload: dict[str, Any],
    *,
    event_id: uuid.UUID | None = None,
    occurred_at: dt.datetime | None = None,
) -> dict[str, Any]:
    return {
        "event_id": str(event_id or uuid7()),
        "event": event_name,
        "data": payload,
        "occurred_at": (occurred_at or utcnow()).isoformat(),
    }


async def publish(session: AsyncSession, event_name: str, payload: dict[str, Any]) -> None:
    """Publish ``event_name`` in the caller's transaction (tenant from context, nullable)."""
    env = envelope(event_name, payload)
    for handler_name in subscribers_of(event_name):
        await jobs.enqueue(session, handler_name, env)
    if context.current_tenant_id_or_none() is not None:
        from tessera.core.webhooks import service as webhooks

        await webhooks.fan_out(session, env)
