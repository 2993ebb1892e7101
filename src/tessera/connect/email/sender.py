"""An SMTP link: a pool of aiosmtplib connections with bounce classification.

Concurrency comes from the pool (one transaction per connection at a time): aiosmtplib does not
pipeline SMTP commands, so throughput scales with ``pool_size`` until the peer saturates.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import getaddresses
from enum import StrEnum
from types import TracebackType

import aiosmtplib
from aiosmtplib.protocol import SMTPProtocol, normalize_message_line_endings

from tessera.connect.email.dkim import DkimSigner, message_bytes

__all__ = ["SendResult", "SmtpConfig", "SmtpLink", "TlsMode"]


class TlsMode(StrEnum):
    NONE = "none"
    STARTTLS = "starttls"
    TLS = "tls"


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    host: str
    port: int = 25
    tls: TlsMode = TlsMode.NONE
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    pool_size: int = 4
    timeout: float = 30.0
    local_hostname: str | None = None
    tls_context: ssl.SSLContext | None = None
    validate_certs: bool = True
    max_messages_per_connection: int = 1000


@dataclass(frozen=True, slots=True)
class SendResult:
    """``permanent`` is True for a 5xx answer (hard bounce), False for 4xx or success."""

    accepted: bool
    smtp_code: int
    smtp_message: str
    permanent: bool
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)

    @property
    def hard_bounce(self) -> bool:
        return not self.accepted and self.permanent

    @property
    def soft_bounce(self) -> bool:
        return not self.accepted and not self.permanent


def _failure(code: int, message: str) -> SendResult:
    return SendResult(False, code, message, permanent=500 <= code < 600)


class _Connection:
    __slots__ = ("client", "sent")

    def __init__(self, client: aiosmtplib.SMTP) -> None:
        self.client = client
        self.sent = 0


class SmtpLink:
    """A pooled SMTP client. Use ``async with SmtpLink(config) as link: await link.send(msg)``."""

    def __init__(self, config: SmtpConfig, *, signer: DkimSigner | None = None) -> None:
        if config.pool_size < 1:
            raise ValueError("pool_size must be >= 1")
        self.config = config
        self.signer = signer
        self._idle: asyncio.LifoQueue[_Connection | None] = asyncio.LifoQueue()
        for _ in range(config.pool_size):
            self._idle.put_nowait(None)  # a free slot, connected lazily
        self._open: set[_Connection] = set()
        self._closed = False

    async def __aenter__(self) -> SmtpLink:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def _new_client(self) -> aiosmtplib.SMTP:
        c = self.config
        return aiosmtplib.SMTP(
            hostname=c.host,
            port=c.port,
            username=c.username,
            password=c.password,
            local_hostname=c.local_hostname,
            timeout=c.timeout,
            use_tls=c.tls is TlsMode.TLS,
            start_tls=c.tls is TlsMode.STARTTLS,
            validate_certs=c.validate_certs,
            tls_context=c.tls_context,
        )

    async def _connect(self) -> _Connection:
        client = self._new_client()
        await client.connect()
        conn = _Connection(client)
        self._open.add(conn)
        return conn

    async def _discard(self, conn: _Connection) -> None:
        self._open.discard(conn)
        with contextlib.suppress(Exception):
            if conn.client.is_connected:
                await conn.client.quit()
        with contextlib.suppress(Exception):
            conn.client.close()

    async def send(
        self,
        message: EmailMessage | bytes,
        *,
        sender: str | None = None,
        recipients: list[str] | None = None,
    ) -> SendResult:
        """Send one message. Envelope defaults to the From and To/Cc/Bcc headers."""
        if self._closed:
            raise RuntimeError("link is closed")
        if isinstance(message, EmailMessage):
            sender = sender or _first_address(message.get_all("From", []))
            if recipients is None:
                recipients = [
                    a
                    for _, a in getaddresses(
                        [*message.get_all("To", []), *message.get_all("Cc", []), *message.get_all("Bcc", [])]
                    )
                    if a
                ]
            if "Bcc" in message:
                del message["Bcc"]
        if not sender or not recipients:
            raise ValueError("sender and recipients are required")
        raw = self.signer.sign(message) if self.signer is not None else message_bytes(message)
        slot = await self._idle.get()
        conn = slot
        try:
            for attempt in (1, 2):
                try:
                    if conn is None or not conn.client.is_connected:
                        if conn is not None:
                            await self._discard(conn)
                        conn = await self._connect()
                    if isinstance(message, bytes):
                        refused, response = await _transaction(conn.client, sender, recipients, raw)
                    else:
                        refused, response = await conn.client.sendmail(sender, recipients, raw)
                    conn.sent += 1
                    return SendResult(
                        accepted=True,
                        smtp_code=250,
                        smtp_message=str(response),
                        permanent=False,
                        refused={k: (v.code, v.message) for k, v in refused.items()},
                    )
                except aiosmtplib.SMTPRecipientsRefused as exc:
                    first = exc.recipients[0]
                    return SendResult(
                        False,
                        first.code,
                        first.message,
                        permanent=500 <= first.code < 600,
                        refused={r.recipient: (r.code, r.message) for r in exc.recipients},
                    )
                except aiosmtplib.SMTPResponseException as exc:
                    if exc.code == 421 and attempt == 1:  # server closing the channel: reconnect
                        await self._discard(conn) if conn else None
                        conn = None
                        continue
                    with contextlib.suppress(Exception):
                        await conn.client.rset() if conn else None
                    return _failure(exc.code, exc.message)
                except (
                    aiosmtplib.SMTPServerDisconnected,
                    aiosmtplib.SMTPConnectError,
                    ConnectionError,
                    TimeoutError,
                    aiosmtplib.SMTPTimeoutError,
                ) as exc:
                    if conn is not None:
                        await self._discard(conn)
                    conn = None
                    if attempt == 2:
                        return _failure(421, f"connection failed: {exc}")
            return _failure(421, "unreachable")  # pragma: no cover
        finally:
            if conn is not None and conn.sent >= self.config.max_messages_per_connection:
                await self._discard(conn)
                conn = None
            self._idle.put_nowait(conn)

    async def close(self) -> None:
        self._closed = True
        for conn in list(self._open):
            await self._discard(conn)

    async def close_when_idle(self, timeout: float | None = None) -> None:
        """Close once every send in progress is done (or after ``timeout``, by default the
        link's own): a link replaced by one with new settings finishes what it started."""
        try:
            async with asyncio.timeout(self.config.timeout if timeout is None else timeout):
                while self._idle.qsize() < self.config.pool_size:
                    await asyncio.sleep(0.05)
        except TimeoutError:
            pass
        finally:
            await self.close()


_ENVELOPE_ADDRESS = re.compile(r"[!-~]+@[!-~]+")


def _envelope(address: str) -> bytes:
    """``<address>`` for MAIL FROM / RCPT TO; an empty sender is the null reverse path."""
    if address and (not _ENVELOPE_ADDRESS.fullmatch(address) or any(c in address for c in '<>"')):
        raise ValueError(f"not an envelope address: {address!r}")
    return b"<" + address.encode("ascii") + b">"


async def _transaction(
    client: aiosmtplib.SMTP, sender: str, recipients: list[str], raw: bytes
) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
    """MAIL, RCPT, DATA for a message already in wire form, as ``sendmail`` does it.

    ``sendmail`` parses every address twice with ``email.utils.parseaddr`` (about 0.4 ms per
    message in the pipeline's profile); envelope addresses here are plain ``local@domain`` (the
    pipeline validated them), so one regular expression checks them. Same errors as
    ``sendmail``: a refused sender or message raises ``SMTPResponseException`` (after RSET),
    every recipient refused raises ``SMTPRecipientsRefused``.
    """
    reverse_path = _envelope(sender)
    paths = [_envelope(r) for r in recipients]
    if client.is_ehlo_or_helo_needed:
        await client.ehlo()
    if _CAN_PIPELINE and client.supports_extension("pipelining") and client.protocol is not None:
        return await _pipelined(client, client.protocol, sender, recipients, reverse_path, paths, raw)
    try:
        response = await client.execute_command(b"MAIL", b"FROM:" + reverse_path)
        if response.code != 250:
            raise aiosmtplib.SMTPSenderRefused(response.code, response.message, sender)
        refused: dict[str, aiosmtplib.SMTPResponse] = {}
        for recipient, path in zip(recipients, paths, strict=True):
            response = await client.execute_command(b"RCPT", b"TO:" + path)
            if response.code not in (250, 251):
                refused[recipient] = response
        if len(refused) == len(recipients):
            raise aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(r.code, r.message, a) for a, r in refused.items()]
            )
        response = await client.data(raw)
    except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
        with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
            await client.rset()
        raise
    return refused, response.message


# What the pipelined transaction uses of aiosmtplib's protocol: its reply buffer and parser.
# Without them (another aiosmtplib), transactions fall back to one command per round trip.
_CAN_PIPELINE = all(
    hasattr(SMTPProtocol, name) for name in ("_read_response_from_buffer", "read_response", "write")
)


async def _replies(
    protocol: SMTPProtocol, count: int, timeout: float | None
) -> list[aiosmtplib.SMTPResponse]:
    """The next ``count`` replies, in order.

    aiosmtplib's protocol hands over one reply per ``read_response`` and keeps what follows it
    in its buffer: replies already buffered are parsed here, the others awaited. Between two
    reads nothing yields to the event loop, so no reply can arrive while none is expected.
    """
    out: list[aiosmtplib.SMTPResponse] = []
    async with asyncio.timeout(timeout):
        while len(out) < count:
            reply = protocol._read_response_from_buffer()
            if reply is None:
                protocol._response_pending = True
                reply = await protocol.read_response(timeout=None)
            out.append(reply)
    return out


async def _pipelined(
    client: aiosmtplib.SMTP,
    protocol: SMTPProtocol,
    sender: str,
    recipients: list[str],
    reverse_path: bytes,
    paths: list[bytes],
    raw: bytes,
) -> tuple[dict[str, aiosmtplib.SMTPResponse], str]:
    """RFC 2920: MAIL, every RCPT and DATA in one write, then the content in a second one:
    two round trips per message instead of 3 + recipients. Same outcomes and errors as the
    one-command-at-a-time path."""
    timeout = client.timeout
    group = [b"MAIL FROM:" + reverse_path + b"\r\n"]
    group += [b"RCPT TO:" + path + b"\r\n" for path in paths]
    group.append(b"DATA\r\n")
    try:
        protocol._response_pending = True
        protocol.write(b"".join(group))
        replies = await _replies(protocol, len(group), timeout)
    except (TimeoutError, aiosmtplib.SMTPServerDisconnected):
        client.close()  # replies may still be on the way: never reuse this connection
        raise
    mail, rcpts, data = replies[0], replies[1:-1], replies[-1]
    refused = {r: reply for r, reply in zip(recipients, rcpts, strict=True) if reply.code not in (250, 251)}
    try:
        if data.code == 354 and (mail.code != 250 or len(refused) == len(recipients)):
            # a server that opened DATA anyway gets an empty message it will refuse or drop
            protocol._response_pending = True
            protocol.write(b".\r\n")
            await _replies(protocol, 1, timeout)
        if mail.code != 250:
            raise aiosmtplib.SMTPSenderRefused(mail.code, mail.message, sender)
        if len(refused) == len(recipients):
            raise aiosmtplib.SMTPRecipientsRefused(
                [aiosmtplib.SMTPRecipientRefused(r.code, r.message, a) for a, r in refused.items()]
            )
        if data.code != 354:
            raise aiosmtplib.SMTPDataError(data.code, data.message)
        crlf = raw.count(b"\r\n")
        if crlf == raw.count(b"\n") == raw.count(b"\r") and raw.endswith(b"\r\n"):
            content = raw  # already CRLF lines (what render_email writes): three scans, no copy
        else:
            content = normalize_message_line_endings(raw)
        if content.startswith(b"."):
            content = b"." + content
        protocol._response_pending = True
        protocol.write(content.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        (response,) = await _replies(protocol, 1, timeout)
        if response.code != 250:
            raise aiosmtplib.SMTPDataError(response.code, response.message)
    except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
        with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
            await client.rset()
        raise
    except (TimeoutError, aiosmtplib.SMTPServerDisconnected):
        client.close()
        raise
    return refused, response.message


def _first_address(values: list[str]) -> str | None:
    for _, addr in getaddresses(values):
        if addr:
            return addr
    return None
