"""An SMTP sink (aiosmtpd) for demos, tests and benchmarks.

It runs in its own thread and event loop (``aiosmtpd.controller.Controller``), so synchronous
and asynchronous callers can both use it and, in benchmarks, it does not share a core with the
sender. Messages are kept in memory (optional) and/or written to a directory as ``.eml``.
Configured recipients are refused at RCPT time with 550 (hard) or 451 (soft).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import Envelope, Session

__all__ = ["ReceivedMessage", "SmtpSink"]


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


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

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
            path = self.store_dir / f"{int(message.received_at * 1000)}-{number:08d}.eml"
            path.write_bytes(message.data)

    def start(self) -> SmtpSink:
        if self._controller is not None:
            return self
        if self.store_dir is not None:
            self.store_dir.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, Any] = {"decode_data": False, "data_size_limit": 50 * 1024 * 1024}
        self._controller = Controller(_Handler(self), hostname=self.host, port=self.port, **kwargs)
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
