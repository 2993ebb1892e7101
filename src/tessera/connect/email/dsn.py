"""DSNs (RFC 3464) from the bounce mailbox: fail the message and block hard-bounced addresses.

The original Message-ID of a DSN (``<message id hex@domain>``, written by the pipeline) leads
back to the message through its carrier-id row, which also names the tenant.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import uuid
from typing import Any

from sqlalchemy import insert, select, update

from tessera.connect.email.bounce import parse_dsn
from tessera.connect.email.pipeline import EMAIL_RECEIPT_LINK, block_address, classify, event_row
from tessera.connect.models import FINAL_STATUSES, CarrierReceiptKey, Message, MessageEvent
from tessera.core import context
from tessera.core.db.base import table_of, utcnow
from tessera.core.db.session import switch_tenant, unit_of_work

log = logging.getLogger(__name__)

__all__ = ["BounceMailbox", "DsnOutcome", "process_dsn", "start_bounce_mailbox"]


@dataclasses.dataclass(frozen=True, slots=True)
class DsnOutcome:
    recipient: str
    message_id: uuid.UUID | None
    status: str
    hard: bool
    blocked: bool


_MID = re.compile(r"<([0-9a-f]{32})@")


async def process_dsn(raw: bytes) -> list[DsnOutcome]:
    """Apply one delivery status notification: for each failed recipient whose original message
    is ours, the message fails (even after ``delivered``: the next hop gave up later) and a hard
    bounce blocks the address for the message's tenant. Delays are recorded as events only.
    A message that is not a DSN, or names no message of ours, changes nothing."""
    records = parse_dsn(raw)
    out: list[DsnOutcome] = []
    if not records:
        return out
    now = utcnow()
    with context.tenant_scope(None):
        async with unit_of_work(platform=True) as s:
            for rec in records:
                match = _MID.search(rec.original_message_id or "")
                key = None
                if match:
                    key = (
                        await s.execute(
                            select(CarrierReceiptKey.tenant_id, CarrierReceiptKey.message_id).where(
                                CarrierReceiptKey.link_id == EMAIL_RECEIPT_LINK,
                                CarrierReceiptKey.carrier_id == match.group(1),
                            )
                        )
                    ).first()
                if key is None:
                    out.append(DsnOutcome(rec.recipient, None, rec.status, rec.hard, False))
                    continue
                tid, mid = key
                await switch_tenant(s, tid)
                code = int(rec.status[0]) * 100 + 50 if rec.status[:1] in ("4", "5") else 550
                outcome = classify(code, f"{rec.status} {rec.diagnostic}")
                detail = {"dsn_status": rec.status, "diagnostic": rec.diagnostic[:500], "action": rec.action}
                blocked = False
                if rec.action == "failed" and outcome.kind == "failed":
                    current = (
                        await s.execute(select(Message.status).where(Message.id == mid))
                    ).scalar_one_or_none()
                    if current is not None and (current not in FINAL_STATUSES or current == "delivered"):
                        await s.execute(
                            update(Message)
                            .where(Message.id == mid)
                            .values(status="failed", reason=outcome.reason, done_at=now, updated_at=now)
                            .execution_options(synchronize_session=False)
                        )
                        await s.execute(
                            insert(table_of(MessageEvent)),
                            [
                                event_row(
                                    tid, mid, "bounce", "failed", {**detail, "reason": outcome.reason}, now
                                )
                            ],
                        )
                        await s.execute(
                            update(CarrierReceiptKey)
                            .where(
                                CarrierReceiptKey.link_id == EMAIL_RECEIPT_LINK,
                                CarrierReceiptKey.carrier_id == mid.hex,
                            )
                            .values(outcome="BOUNCED")
                        )
                    if rec.hard and outcome.block:
                        await block_address(s, rec.recipient, outcome)
                        blocked = True
                else:
                    await s.execute(
                        insert(table_of(MessageEvent)),
                        [event_row(tid, mid, "bounce", "delayed", detail, now)],
                    )
                out.append(DsnOutcome(rec.recipient, mid, rec.status, rec.hard, blocked))
                await switch_tenant(s, None)
    return out


class BounceMailbox:
    """The bounce mailbox as an SMTP receiver (aiosmtpd): every message it accepts goes through
    :func:`process_dsn` before the 250, so a DSN is acknowledged only once applied.

    Runs on the caller's event loop (the application's database engine lives there)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self.processed = 0
        self._server: asyncio.base_events.Server | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        data = raw if isinstance(raw, bytes) else str(raw or "").encode()
        try:
            await process_dsn(data)
        except Exception:
            log.exception("bounce processing failed")
            return "451 4.3.0 bounce not processed, try again later"
        self.processed += 1
        return "250 2.0.0 bounce processed"

    async def start(self) -> BounceMailbox:
        from aiosmtpd.smtp import SMTP as SMTPServer

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTPServer(self, decode_data=False, hostname=self.host), host=self.host, port=self.port
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None


async def start_bounce_mailbox(settings: Any) -> BounceMailbox | None:
    """The gateway's bounce mailbox: listening on ``TESSERA_BOUNCE_SMTP_HOST`` /
    ``TESSERA_BOUNCE_SMTP_PORT`` when the port is set (``0`` picks a free port), None otherwise.
    The caller stops it (:meth:`BounceMailbox.stop`) when the gateway stops."""
    port = getattr(settings, "bounce_smtp_port", None)
    if port is None:
        return None
    host = getattr(settings, "bounce_smtp_host", None) or "127.0.0.1"
    mailbox = await BounceMailbox(host, int(port)).start()
    log.info("bounce mailbox listening on %s:%d", host, mailbox.port)
    return mailbox
