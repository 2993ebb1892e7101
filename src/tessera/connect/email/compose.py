"""Compose tracking-ready multipart/alternative messages with one-click unsubscribe headers."""

from __future__ import annotations

import html as html_lib
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

__all__ = ["TRACKING_HEADER", "compose_email", "make_message_id"]

TRACKING_HEADER = "X-Tessera-Tracking-Id"


def make_message_id(domain: str, unique: str | None = None) -> str:
    """``<unique@domain>``; ``unique`` defaults to a random UUID hex."""
    return f"<{unique or uuid.uuid4().hex}@{domain}>"


def _domain_of(address: str) -> str:
    return address.rsplit("@", 1)[-1].strip(">").strip() or "localhost"


def compose_email(
    *,
    sender: str | Address,
    to: str | Address,
    subject: str,
    text: str,
    html: str | None = None,
    unsubscribe_mailto: str | None = None,
    unsubscribe_url: str | None = None,
    message_id: str | None = None,
    date: datetime | None = None,
    reply_to: str | None = None,
    tracking_id: str | None = None,
    open_pixel_url: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> EmailMessage:
    """Build a text (+ HTML) message.

    ``unsubscribe_mailto`` is an address (``unsub@example.com``) or a ``mailto:`` URI;
    ``unsubscribe_url`` must be https and also enables RFC 8058 one-click
    (``List-Unsubscribe-Post: List-Unsubscribe=One-Click``). ``tracking_id`` goes into the
    ``X-Tessera-Tracking-Id`` header (bounces and feedback loops carry it back);
    ``open_pixel_url`` appends a 1x1 image to the HTML part.
    """
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime.now(UTC))
    sender_address = sender.addr_spec if isinstance(sender, Address) else str(sender)
    msg["Message-ID"] = message_id or make_message_id(_domain_of(sender_address))
    if reply_to:
        msg["Reply-To"] = reply_to
    targets: list[str] = []
    if unsubscribe_mailto:
        uri = (
            unsubscribe_mailto if unsubscribe_mailto.startswith("mailto:") else f"mailto:{unsubscribe_mailto}"
        )
        targets.append(f"<{uri}>")
    if unsubscribe_url:
        if not unsubscribe_url.startswith("https://"):
            raise ValueError("unsubscribe_url must be an https URL")
        targets.append(f"<{unsubscribe_url}>")
    if targets:
        msg["List-Unsubscribe"] = ", ".join(targets)
    if unsubscribe_url:
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    if tracking_id:
        msg[TRACKING_HEADER] = tracking_id
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(text)
    if html is not None:
        if open_pixel_url:
            pixel = f'<img src="{html_lib.escape(open_pixel_url)}" width="1" height="1" alt="" style="display:none">'
            lower = html.lower()
            at = lower.rfind("</body>")
            html = html[:at] + pixel + html[at:] if at >= 0 else html + pixel
        msg.add_alternative(html, subtype="html")
    return msg
