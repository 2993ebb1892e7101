"""Events the contacts context publishes.

``contact.created``, ``contact.updated``, ``contact.merged`` (survivor_id, loser_id),
``segment.entered`` / ``segment.left`` (segment_id, contact_ids), ``contact.import_finished``.
Publishing goes through ``tessera.core.events`` when that module is installed; the import is
resolved at call time so this context works before the events kernel lands.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger(__name__)

CONTACT_CREATED = "contact.created"
CONTACT_UPDATED = "contact.updated"
CONTACT_MERGED = "contact.merged"
SEGMENT_ENTERED = "segment.entered"
SEGMENT_LEFT = "segment.left"
IMPORT_FINISHED = "contact.import_finished"


def _publisher() -> Any:
    try:
        return importlib.import_module("tessera.core.events.service").publish
    except (ModuleNotFoundError, AttributeError):
        return None


async def publish(session: AsyncSession, name: str, payload: dict[str, Any]) -> bool:
    """Publish in the caller's transaction; False when no event bus is installed."""
    session.info.setdefault("contacts_published", []).append((name, payload))
    fn = _publisher()
    if fn is None:
        return False
    await fn(session, name, payload)
    return True
