"""An SMTP sink (aiosmtpd) for demos, tests and benchmarks.

It runs in its own thread and event loop (``aiosmtpd.controller.Controller``), so synchronous
and asynchronous callers can both use it and, in benchmarks, it does not share a core with the
sender. Messages are kept in memory (optional) and/or written to a directory as ``.eml`` with a
``.json`` envelope beside each (sender, recipients, time). Configured recipients are refused at
RCPT time with 550 (hard) or 451 (soft).

The demo mailbox of a tenant is the directory :func:`mailbox_dir` (``<data dir>/mail-sink/
<tenant id>``): ``tessera demo`` points a sink at it and the console's sink page reads it with
:func:`list_mailbox` / :func:`read_mailbox`. A tenant only ever reads its own directory, so one
tenant's mail is not even addressable by another.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session

__all__ = ["ReceivedMessage", "SmtpSink", "StoredMail", "list_mailbox", "mailbox_dir", "read_mailbox"]


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    peer: str
    received_at: float


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


# a path of plain atoms: what senders write; anything else goes to aiosmtpd's full parser
_PLAIN_PATH = re.compile(r"\s*<([A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9.-]+)>")


class _SinkServer(SMTPServer):
    """aiosmtpd's SMTP server, cheaper per message for the benchmarks and the demo.

    * It advertises PIPELINING (RFC 2920; aiosmtpd reads commands line by line, so a pipelined
      group is already served in order) and writes the replies of a group in one send, once
      the group is read, instead of one send per reply.
    * A plain ``<local@domain>`` path is read with one regular expression; any other path goes
      through aiosmtpd's RFC 5322 parser as before.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._replies: list[bytes] = []

    async def push(self, status: str | bytes) -> None:
        reply = (
            status.encode("utf-8" if self.enable_SMTPUTF8 else "ascii") if isinstance(status, str) else status
        )
        self._replies.append(reply + b"\r\n")
        if len(self._replies) == 1:
            self.loop.call_soon(self._flush)
        if reply[:1] not in (b"2", b"3") or reply[:3] == b"221":  # errors and goodbyes at once
            self._flush()
        await self._writer.drain()

    def _flush(self) -> None:
        if self._replies:
            data = b"".join(self._replies)
            self._replies.clear()
            if self.transport is not None and not self.transport.is_closing():
                self._writer.write(data)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        match = _PLAIN_PATH.match(arg)
        if match is None or len(match.group(1).rpartition("@")[0]) > (self.local_part_limit or 1 << 30):
            return super()._getaddr(arg)
        return match.group(1), arg[match.end() :].lstrip()


class _SinkController(Controller):
    def factory(self) -> SMTPServer:
        return _SinkServer(self.handler, **self.SMTP_kwargs)


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_EHLO(
        self, server: SMTPServer, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_RCPT(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        key = address.lower()
        if key in self.sink.hard_fail:
            return f"550 5.1.1 <{address}>: Recipient address rejected: user unknown"
        if key in self.sink.soft_fail:
            return f"451 4.2.0 <{address}>: Mailbox temporarily unavailable, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or (
            envelope.content if isinstance(envelope.content, bytes) else str(envelope.content or "").encode()
        )
        self.sink._store(
            ReceivedMessage(
                mail_from=str(envelope.mail_from or ""),
                rcpt_tos=tuple(envelope.rcpt_tos),
                data=data,
                peer=str(session.peer),
                received_at=time.time(),
            )
        )
        return "250 2.0.0 Message accepted for delivery"


class SmtpSink:
    """``with SmtpSink() as sink: ... sink.port, sink.messages, sink.count``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        store_dir: Path | str | None = None,
        keep_in_memory: bool = True,
        hard_fail: Iterable[str] = (),
        soft_fail: Iterable[str] = (),
    ) -> None:
        self.host = host
        self.port = port or _free_port(host)
        self.store_dir = Path(store_dir) if store_dir is not None else None
        self.keep_in_memory = keep_in_memory
        self.hard_fail = {a.lower() for a in hard_fail}
        self.soft_fail = {a.lower() for a in soft_fail}
        self.messages: list[ReceivedMessage] = []
        self.count = 0
        self._lock = threading.Lock()
        self._controller: Controller | None = None

    def set_failures(self, *, hard: Iterable[str] = (), soft: Iterable[str] = ()) -> None:
        self.hard_fail = {a.lower() for a in hard}
        self.soft_fail = {a.lower() for a in soft}

    def _store(self, message: ReceivedMessage) -> None:
        with self._lock:
            self.count += 1
            number = self.count
            if self.keep_in_memory:
                self.messages.append(message)
        if self.store_dir is not None:
            stem = f"{int(message.received_at * 1000)}-{number:08d}"
            envelope = {
                "mail_from": message.mail_from,
                "rcpt_tos": list(message.rcpt_tos),
                "received_at": message.received_at,
            }
            # The envelope first: a reader lists ``.eml`` files, which then always have one.
            (self.store_dir / f"{stem}.json").write_text(json.dumps(envelope))
            (self.store_dir / f"{stem}.eml").write_bytes(message.data)

    def start(self) -> SmtpSink:
        if self._controller is not None:
            return self
        if self.store_dir is not None:
            self.store_dir.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {"decode_data": False, "data_size_limit": 50 * 1024 * 1024}
        self._controller = _SinkController(_Handler(self), hostname=self.host, port=self.port, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def clear(self) -> None:
        with self._lock:
            self.messages.clear()
            self.count = 0

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count >= count:
                return True
            time.sleep(0.01)
        return self.count >= count

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --- the demo mailbox read by the console ---------------------------------------------------

_KEY = re.compile(r"^[0-9]{1,16}-[0-9]{8}$")
MAX_LISTED = 200


def mailbox_dir(data_dir: Path | str, tenant_id: uuid.UUID) -> Path:
    """Where the demo sink of ``tenant_id`` stores what it receives."""
    return Path(data_dir) / "mail-sink" / str(tenant_id)


@dataclass(frozen=True, slots=True)
class StoredMail:
    key: str
    mail_from: str
    rcpt_tos: tuple[str, ...]
    sender: str
    to: str
    subject: str
    received_at: dt.datetime
    size: int
    text: str
    html: str | None
    headers: tuple[tuple[str, str], ...]


def _parse(path: Path, *, body: bool) -> StoredMail | None:
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    try:
        env = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        env = {}
    msg = message_from_bytes(raw, policy=policy.default)
    text, html = "", None
    if body and isinstance(msg, EmailMessage):
        part = msg.get_body(("plain",))
        text = part.get_content() if part is not None else ""
        hpart = msg.get_body(("html",))
        html = hpart.get_content() if hpart is not None else None
    received = env.get("received_at") or path.stat().st_mtime
    return StoredMail(
        key=path.stem,
        mail_from=str(env.get("mail_from", "")),
        rcpt_tos=tuple(env.get("rcpt_tos", ())),
        sender=str(msg.get("From", "")),
        to=str(msg.get("To", "")),
        subject=str(msg.get("Subject", "")),
        received_at=dt.datetime.fromtimestamp(float(received), dt.UTC),
        size=len(raw),
        text=text,
        html=html,
        headers=tuple((k, str(v)) for k, v in msg.items()) if body else (),
    )


def list_mailbox(directory: Path, limit: int = MAX_LISTED) -> list[StoredMail]:
    """Newest first; headers only."""
    if not directory.is_dir():
        return []
    paths = sorted(
        (p for p in directory.glob("*.eml") if _KEY.match(p.stem)), key=lambda p: p.stem, reverse=True
    )
    out = [_parse(p, body=False) for p in paths[:limit]]
    return [m for m in out if m is not None]


def read_mailbox(directory: Path, key: str) -> StoredMail | None:
    """One message with its text and HTML parts; None for an unknown or malformed key."""
    if not _KEY.match(key):
        return None
    path = directory / f"{key}.eml"
    if not path.is_file():
        return None
    return _parse(path, body=True)
