"""The HTTP server protocol ``tessera serve`` runs: uvicorn's httptools protocol, one send per
response.

uvicorn writes a response's status line and headers as soon as the application sends
``http.response.start``, and the body when it sends ``http.response.body``: two ``send``
system calls, two TCP segments and two wake-ups of the client for every small JSON answer.
On loopback that second send measured about a tenth of an authenticated read's server CPU.
:class:`HttpProtocol` hands uvicorn a transport that gathers what one turn of the event loop
writes and sends it at the end of that turn (``call_soon``), so a response that the
application sends in one go (every JSON response) leaves in one ``send``, made as soon as the
response is complete (:meth:`HttpProtocol.on_response_complete`). Streaming responses
still go out as they are produced: each chunk is flushed at the end of the turn that wrote it.
Closing or aborting the connection, ``write_eof`` and handing the connection over to another
protocol (a WebSocket upgrade) all flush or drop what is gathered first, so nothing is
reordered or lost.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class CoalescingTransport:
    """A write transport proxy: writes made in one event-loop turn leave as one ``write``."""

    __slots__ = ("_loop", "_pending", "_scheduled", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._scheduled: asyncio.Handle | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        self._pending.append(bytes(data))
        if self._scheduled is None:
            self._scheduled = self._loop.call_soon(self._flush_later)

    def _flush_later(self) -> None:
        self._scheduled = None
        self.flush()

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def flush(self) -> None:
        """Send what is gathered now (a complete response need not wait for the end of the turn)."""
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        pending = self._pending
        if not pending:
            return
        self._pending = []
        if self._transport.is_closing():
            return
        self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()
        self._transport.set_protocol(protocol)

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._pending))

    def __getattr__(self, name: str) -> Any:
        # is_closing, get_extra_info, pause_reading, resume_reading, … : the real transport's.
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools HTTP/1.1 protocol writing through a :class:`CoalescingTransport`.

    A response leaves as soon as it is complete, in the same turn: waiting for the end of the
    turn would queue it behind every other task step made ready in that turn (under load, the
    other requests' steps), which adds to its latency and gathers nothing more."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        coalescing = CoalescingTransport(transport, self.loop)  # type: ignore[arg-type]
        super().connection_made(coalescing)  # type: ignore[arg-type]

    def on_response_complete(self) -> None:
        transport = self.transport
        if isinstance(transport, CoalescingTransport):
            transport.flush()
        super().on_response_complete()
