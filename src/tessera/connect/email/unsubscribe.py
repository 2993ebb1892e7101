"""One-click unsubscribe (RFC 8058) for email messages: signed links and the opt-out they trigger.

Every email the pipeline sends carries ``List-Unsubscribe: <https://…/u/<token>>`` and
``List-Unsubscribe-Post: List-Unsubscribe=One-Click``. The token names the tenant and the
message, nothing personal: ``base64url(version | tenant id | message id | MAC)``, the MAC being
HMAC-SHA256 (truncated to 128 bits) over the channel kind ``email``, the tenant id and the
message id under a key derived from the master key (``unsubscribe-link`` purpose). Older
master keys still verify, so links in mail sent before a master-key rotation keep working.

:func:`unsubscribe` resolves a verified token to the message's recipient in that tenant and
opts the address out of the tenant's email through the compliance opt-out service (the same
one the inbound ``STOP`` keyword uses: idempotent and audited), and records the contact's
email consent as opted out when the address belongs to a contact.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hmac
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from tessera.connect.compliance import service as compliance
from tessera.connect.repository import MessageRepository
from tessera.core.crypto.keyring import get_keyring
from tessera.core.http.errors import NotFound

__all__ = [
    "CHANNEL",
    "UnsubscribeLinkNotFound",
    "UnsubscribeToken",
    "base_url",
    "make_token",
    "read_token",
    "unsubscribe",
    "unsubscribe_url",
]

CHANNEL = "email"
_VERSION = 1
_MAC_BYTES = 16
_LENGTH = 1 + 16 + 16 + _MAC_BYTES
_PURPOSE = b"tessera-unsubscribe-link-v1"


class UnsubscribeLinkNotFound(NotFound):
    """The unsubscribe link is not valid."""

    code = "unsubscribe.link_not_found"


@dataclasses.dataclass(frozen=True, slots=True)
class UnsubscribeToken:
    tenant_id: uuid.UUID
    message_id: uuid.UUID


def _keys() -> list[bytes]:
    """The link keys: derived from the current master key first, then from previous ones."""
    masters = get_keyring().masters
    return [
        hmac.digest(master, _PURPOSE, "sha256") for master in (masters.current, *masters.previous.values())
    ]


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.digest(key, CHANNEL.encode() + b"|" + payload, "sha256")[:_MAC_BYTES]


def make_token(tenant_id: uuid.UUID, message_id: uuid.UUID) -> str:
    payload = bytes([_VERSION]) + tenant_id.bytes + message_id.bytes
    raw = payload + _mac(_keys()[0], payload)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def read_token(token: str) -> UnsubscribeToken | None:
    """The tenant and message a token names, or None when it is malformed, forged or tampered."""
    if not token or len(token) > 100 or not token.isascii():
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != _LENGTH or raw[0] != _VERSION:
        return None
    payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if not any(hmac.compare_digest(_mac(key, payload), mac) for key in _keys()):
        return None
    return UnsubscribeToken(uuid.UUID(bytes=payload[1:17]), uuid.UUID(bytes=payload[17:33]))


def base_url() -> str | None:
    """``TESSERA_PUBLIC_URL`` without a trailing slash when it is https (RFC 8058 asks for
    https; without it, mail carries only the channel's ``unsubscribe_mailto``)."""
    from tessera.settings import get_settings

    url = (get_settings().public_url or "").strip().rstrip("/")
    return url if url.startswith("https://") else None


def unsubscribe_url(base: str, tenant_id: uuid.UUID, message_id: uuid.UUID) -> str:
    return f"{base}/u/{make_token(tenant_id, message_id)}"


async def unsubscribe(session: AsyncSession, message_id: uuid.UUID) -> None:
    """Opt the recipient of ``message_id`` (tenant in scope) out of the tenant's email.

    Idempotent: a second click changes nothing and writes no audit row. A message of another
    channel, or none at all in this tenant, is :class:`UnsubscribeLinkNotFound`."""
    message = await MessageRepository(session).get(message_id)
    if message is None or message.channel_kind != CHANNEL:
        raise UnsubscribeLinkNotFound(field="token")
    if await compliance.is_opted_out(session, channel=CHANNEL, address=message.to):
        return
    await compliance.opt_out(session, channel=CHANNEL, address=message.to, source="unsubscribe_link")
    await _set_consent(session, message.to)


async def _set_consent(session: AsyncSession, address: str) -> None:
    try:
        from tessera.contacts.service import find_contact_by_identity, set_consent
    except ImportError:  # pragma: no cover - contacts context not installed
        return
    contact = await find_contact_by_identity(session, "email", address)
    if contact is not None:
        await set_consent(session, contact.id, CHANNEL, "opted_out", "unsubscribe_link")
