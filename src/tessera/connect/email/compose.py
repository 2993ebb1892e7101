"""Compose tracking-ready multipart/alternative messages with one-click unsubscribe headers."""

from __future__ import annotations

import base64
import html as html_lib
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

__all__ = [
    "TRACKING_HEADER",
    "compose_email",
    "encode_header_text",
    "format_address",
    "make_message_id",
    "render_email",
    "text_to_html",
]

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


# --- wire form without the ``email`` package ------------------------------------------------
#
# ``compose_email`` builds an ``EmailMessage`` and serialising it costs about 6 ms per message
# (header registry, policy folding, content managers): the pipeline sends thousands per second,
# so it writes the same MIME structure directly. The parts are 7bit when the text is ASCII with
# lines the RFC allows, base64 otherwise; headers with non-ASCII text are RFC 2047 encoded.

_CRLF = "\r\n"


def _one_line(value: str) -> str:
    """Header values never carry line breaks (no header injection through subject or names)."""
    if "\r" in value or "\n" in value:
        value = " ".join(value.splitlines())
    return value


def encode_header_text(value: str, *, used: int = 0) -> str:
    """RFC 2047 ``=?utf-8?b?...?=`` words (folded) for non-ASCII text; ASCII folded at spaces.

    ``used`` is the length of ``Name: `` already on the first line.
    """
    value = _one_line(value)
    if value.isascii():
        if used + len(value) <= 78:
            return value
        lines: list[str] = []
        current = ""
        limit = 78 - used
        for word in value.split(" "):
            if current and len(current) + 1 + len(word) > limit:
                lines.append(current)
                current = word
                limit = 77
            else:
                current = f"{current} {word}" if current else word
        lines.append(current)
        return "\r\n ".join(lines)
    words: list[str] = []
    chunk = bytearray()
    for ch in value:
        encoded = ch.encode("utf-8", "surrogatepass")
        if len(chunk) + len(encoded) > 45:  # 45 bytes -> 60 base64 chars, 72 with the wrapper
            words.append(f"=?utf-8?b?{base64.b64encode(bytes(chunk)).decode('ascii')}?=")
            chunk.clear()
        chunk += encoded
    if chunk:
        words.append(f"=?utf-8?b?{base64.b64encode(bytes(chunk)).decode('ascii')}?=")
    return "\r\n ".join(words)


def format_address(address: str) -> str:
    """``Name <addr>`` with the display name encoded when needed; a bare address unchanged."""
    name, addr = parseaddr(_one_line(address))
    if not addr:
        raise ValueError(f"not an email address: {address!r}")
    if not name:
        return addr
    if name.isascii():
        quoted = name if all(c.isalnum() or c in " !#$%&'*+-/=?^_`{|}~" for c in name) else quote_name(name)
        return f"{quoted} <{addr}>"
    return f"{encode_header_text(name, used=6)} <{addr}>"


def quote_name(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _part(content_type: str, text: str, boundary: str) -> str:
    body = text.replace("\r\n", "\n").replace("\r", "\n")
    if body.isascii() and boundary not in body and all(len(line) <= 998 for line in body.split("\n")):
        encoding = "7bit"
        payload = body.replace("\n", _CRLF)
        if not payload.endswith(_CRLF):
            payload += _CRLF
    else:
        encoding = "base64"
        payload = (
            base64.encodebytes(body.encode("utf-8", "surrogatepass")).decode("ascii").replace("\n", _CRLF)
        )
    return (
        f'--{boundary}{_CRLF}Content-Type: {content_type}; charset="utf-8"{_CRLF}'
        f"Content-Transfer-Encoding: {encoding}{_CRLF}{_CRLF}{payload}"
    )


def text_to_html(text: str) -> str:
    """A minimal HTML alternative of a plain-text body (escaped, paragraphs and line breaks)."""
    paragraphs = [p for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    inner = "".join(f"<p>{html_lib.escape(p).replace(chr(10), '<br>')}</p>" for p in paragraphs)
    return f"<html><body>{inner}</body></html>"


def render_email(
    *,
    sender: str,
    to: str,
    subject: str,
    text: str,
    html: str | None,
    message_id: str,
    date: datetime | None = None,
    reply_to: str | None = None,
    unsubscribe_mailto: str | None = None,
    unsubscribe_url: str | None = None,
    tracking_id: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> bytes:
    """The wire form (CRLF) of a ``multipart/alternative`` text + HTML message.

    Same headers and rules as :func:`compose_email` (``unsubscribe_url`` must be https and adds
    RFC 8058 one-click); ``sender`` may already be formatted with :func:`format_address`. An
    absent ``html`` is derived from ``text`` so every message has both parts.
    """
    boundary = f"=_t{uuid.uuid4().hex}"
    lines = [
        f"From: {sender if sender.isascii() else format_address(sender)}",
        f"To: {format_address(to)}",
        f"Subject: {encode_header_text(subject, used=9)}",
        f"Date: {format_datetime(date or datetime.now(UTC))}",
        f"Message-ID: {message_id}",
        "MIME-Version: 1.0",
    ]
    if reply_to:
        lines.append(f"Reply-To: {format_address(reply_to)}")
    targets: list[str] = []
    if unsubscribe_mailto:
        uri = (
            unsubscribe_mailto if unsubscribe_mailto.startswith("mailto:") else f"mailto:{unsubscribe_mailto}"
        )
        targets.append(f"<{_one_line(uri)}>")
    if unsubscribe_url:
        if not unsubscribe_url.startswith("https://"):
            raise ValueError("unsubscribe_url must be an https URL")
        targets.append(f"<{_one_line(unsubscribe_url)}>")
    if targets:
        lines.append("List-Unsubscribe: " + ",\r\n ".join(targets))
    if unsubscribe_url:
        lines.append("List-Unsubscribe-Post: List-Unsubscribe=One-Click")
    if tracking_id:
        lines.append(f"{TRACKING_HEADER}: {_one_line(tracking_id)}")
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {encode_header_text(value, used=len(name) + 2)}")
    lines.append(f'Content-Type: multipart/alternative;{_CRLF} boundary="{boundary}"')
    head = _CRLF.join(lines)
    body = (
        _part("text/plain", text, boundary)
        + _part("text/html", html if html is not None else text_to_html(text), boundary)
        + f"--{boundary}--{_CRLF}"
    )
    return f"{head}{_CRLF}{_CRLF}{body}".encode("ascii")
