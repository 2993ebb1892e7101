"""Delivery status notifications (RFC 3464): parse ``multipart/report; report-type=delivery-status``.

``build_dsn`` produces such a report too, for the sink, simulators and tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, message_from_string, policy
from email.message import EmailMessage, Message
from email.utils import format_datetime, make_msgid

__all__ = ["BounceRecord", "build_dsn", "is_dsn", "parse_dsn"]

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")


@dataclass(frozen=True, slots=True)
class BounceRecord:
    recipient: str
    action: str  # failed | delayed | delivered | relayed | expanded
    status: str  # enhanced status code, e.g. "5.1.1"
    diagnostic: str
    permanent: bool  # hard bounce
    original_message_id: str | None = None

    @property
    def hard(self) -> bool:
        return self.permanent and self.action == "failed"

    @property
    def soft(self) -> bool:
        return not self.permanent and self.action in ("failed", "delayed")


def _as_message(message: Message | bytes | str) -> Message:
    if isinstance(message, bytes):
        return message_from_bytes(message, policy=policy.default)
    if isinstance(message, str):
        return message_from_string(message, policy=policy.default)
    return message


def is_dsn(message: Message | bytes | str) -> bool:
    msg = _as_message(message)
    return msg.get_content_type() == "multipart/report" and (
        str(msg.get_param("report-type", "")).lower() == "delivery-status"
    )


def _strip_type(value: str) -> str:
    # "rfc822; user@example.com" -> "user@example.com"
    return value.split(";", 1)[1].strip() if ";" in value else value.strip()


def parse_dsn(message: Message | bytes | str) -> list[BounceRecord]:
    """One record per recipient of a DSN; an empty list if ``message`` is not a DSN."""
    msg = _as_message(message)
    if not is_dsn(msg):
        return []
    original_id: str | None = None
    blocks: list[Message] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            payload = part.get_payload()
            if isinstance(payload, list):
                blocks.extend(p for p in payload if isinstance(p, Message))
        elif ctype in ("message/rfc822", "text/rfc822-headers") and original_id is None:
            original_id = _original_message_id(part)
    records: list[BounceRecord] = []
    for block in blocks[1:] if len(blocks) > 1 else blocks:
        recipient_field = block.get("Final-Recipient") or block.get("Original-Recipient")
        if not recipient_field:
            continue
        action = str(block.get("Action", "")).strip().lower()
        status = str(block.get("Status", "")).strip()
        diagnostic = _strip_type(" ".join(str(block.get("Diagnostic-Code", "")).split()))
        match = _STATUS.search(status) or _STATUS.search(diagnostic)
        status_code = ".".join(match.groups()) if match else status
        permanent = status_code.startswith("5") if status_code else action == "failed"
        records.append(
            BounceRecord(
                recipient=_strip_type(str(recipient_field)),
                action=action,
                status=status_code,
                diagnostic=diagnostic,
                permanent=permanent and action != "delayed",
                original_message_id=original_id,
            )
        )
    return records


def _original_message_id(part: Message) -> str | None:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        value = payload[0].get("Message-ID")
        return str(value).strip() if value else None
    if isinstance(payload, str):
        inner = message_from_string(payload, policy=policy.default)
        value = inner.get("Message-ID")
        return str(value).strip() if value else None
    return None


def build_dsn(
    *,
    reporting_mta: str,
    recipient: str,
    status: str,
    diagnostic: str,
    original: EmailMessage | None = None,
    action: str | None = None,
    sender: str | None = None,
    to: str | None = None,
) -> EmailMessage:
    """A DSN for one recipient (``status`` like ``"5.1.1"``; action defaults from its class)."""
    action = action or ("failed" if status.startswith("5") else "delayed")
    dsn = EmailMessage()
    dsn["From"] = sender or f"MAILER-DAEMON@{reporting_mta}"
    dsn["To"] = to or (str(original["From"]) if original is not None and original["From"] else "postmaster")
    dsn["Subject"] = "Delivery Status Notification (Failure)" if action == "failed" else "Delivery delayed"
    dsn["Date"] = format_datetime(datetime.now(UTC))
    dsn["Message-ID"] = make_msgid(domain=reporting_mta)
    dsn.set_content(f"Delivery to {recipient} {action}: {diagnostic}\n")
    dsn.make_mixed()
    dsn.set_type("multipart/report")
    dsn.set_param("report-type", "delivery-status")
    status_part = Message()
    status_part.set_type("message/delivery-status")
    per_message = Message()
    per_message["Reporting-MTA"] = f"dns; {reporting_mta}"
    per_recipient = Message()
    per_recipient["Final-Recipient"] = f"rfc822; {recipient}"
    per_recipient["Action"] = action
    per_recipient["Status"] = status
    per_recipient["Diagnostic-Code"] = f"smtp; {diagnostic}"
    status_part.set_payload([per_message, per_recipient])
    dsn.attach(status_part)  # type: ignore[arg-type]
    if original is not None:
        headers = Message()
        headers.set_type("text/rfc822-headers")
        head = original.as_bytes(policy=policy.SMTP).split(b"\r\n\r\n", 1)[0]
        headers.set_payload(head.decode("ascii", "replace") + "\r\n")
        dsn.attach(headers)  # type: ignore[arg-type]
    return dsn
