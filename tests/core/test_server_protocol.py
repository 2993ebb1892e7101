"""``tessera serve``'s HTTP protocol: one send per response, nothing reordered or lost."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn

from tessera.core.http.server import CoalescingTransport, HttpProtocol


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.events: list[str] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.events.append("close")
        self.closing = True

    def abort(self) -> None:
        self.events.append("abort")
        self.closing = True

    def write_eof(self) -> None:
        self.events.append("eof")

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.events.append("set_protocol")

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1)}.get(name, default)


async def test_writes_of_one_loop_turn_leave_as_one_write_in_order() -> None:
    raw = RecordingTransport()
    t = CoalescingTransport(raw, asyncio.get_running_loop())
    t.write(b"HTTP/1.1 200 OK\r\n\r\n")
    t.write(b"")
    t.writelines([b"{", b"}"])
    assert raw.writes == []
    assert t.get_write_buffer_size() == 7 + 21
    await asyncio.sleep(0)
    assert raw.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}"]
    t.write(bytearray(b"next"))
    await asyncio.sleep(0)
    assert raw.writes[-1] == b"next"
    assert t.get_extra_info("peername") == ("127.0.0.1", 1)  # everything else: the real transport's


async def test_close_eof_and_handover_flush_first_and_abort_drops() -> None:
    loop = asyncio.get_running_loop()
    for action, expected_writes in (("close", 1), ("write_eof", 1), ("set_protocol", 1), ("abort", 0)):
        raw = RecordingTransport()
        t = CoalescingTransport(raw, loop)
        t.write(b"last words")
        getattr(t, action)(*((asyncio.Protocol(),) if action == "set_protocol" else ()))
        assert len(raw.writes) == expected_writes, action
        await asyncio.sleep(0)
        assert len(raw.writes) == expected_writes, action  # the scheduled flush finds nothing
        assert raw.events, action


async def test_nothing_is_written_to_a_transport_that_is_closing() -> None:
    raw = RecordingTransport()
    t = CoalescingTransport(raw, asyncio.get_running_loop())
    t.write(b"x")
    raw.closing = True
    await asyncio.sleep(0)
    assert raw.writes == []


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/stream":
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
        )
        for part in (b"one,", b"two"):
            await send({"type": "http.response.body", "body": part, "more_body": True})
            await asyncio.sleep(0.01)
        await send({"type": "http.response.body", "body": b""})
        return
    body = b'{"ok":true}'
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
    # Still in the task step that completed the response: it has already left.
    SENT_WHEN_COMPLETE.append(SENDS[-1] if SENDS else b"")


SENDS: list[bytes] = []
SENT_WHEN_COMPLETE: list[bytes] = []


class _CountingTransport:
    """Between the coalescing transport and the socket's: records each write that reaches it."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        SENDS.append(bytes(data))
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CountingProtocol(HttpProtocol):
    def connection_made(self, transport: Any) -> None:
        super().connection_made(_CountingTransport(transport))


async def test_a_served_response_leaves_in_one_send_and_keep_alive_and_streaming_work() -> None:
    SENDS.clear()
    SENT_WHEN_COMPLETE.clear()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(
        _app, host="127.0.0.1", port=port, http=CountingProtocol, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(2):  # keep-alive: the second request on the same connection
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            first = await asyncio.wait_for(reader.read(65536), 5)
            assert first.startswith(b"HTTP/1.1 200 OK\r\n")
            while not first.endswith(b'{"ok":true}'):
                first += await asyncio.wait_for(reader.read(65536), 5)
            assert SENDS[-1] == first  # status line, headers and body: one write to the socket
            # … written when the response completed, not at the end of the loop turn
            assert SENT_WHEN_COMPLETE[-1] == first
        writer.write(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        data = b""
        while not data.endswith(b"0\r\n\r\n"):
            chunk = await asyncio.wait_for(reader.read(65536), 5)
            assert chunk
            data += chunk
        assert b"4\r\none,\r\n3\r\ntwo\r\n0\r\n\r\n" in data
        assert len(SENDS) == 2 + 3  # the streamed chunks still leave as they are produced
        writer.close()
    finally:
        server.should_exit = True
        await task
