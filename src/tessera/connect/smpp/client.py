"""The ESME towards carriers: one SMPP 3.4 transceiver bind with a window, over asyncio.

Decision: our own asyncio layer over smpplib's PDU codec, not aiosmpplib 0.7.4. Deviates from
ARCHITECTURE.md's stack line for one reason: aiosmpplib has no submit window. Its sender
dequeues one message from a broker and awaits a socket ``drain()`` under a lock per PDU; the
caller gets no awaitable per message (results arrive through hooks keyed by log ids); a
throttled submit is reported to a hook instead of being retried; and we would have to write its
broker, hook and correlator to plug it into the pipeline anyway. Here ``submit()`` returns the
carrier's answer, up to ``window`` submit_sm are outstanding, every PDU produced in one loop
tick goes out in a single ``write()``, and throttling, keepalive and reconnect are ours to tune.

Semantics the pipeline can rely on:

* ``await client.submit(...)`` → :class:`SubmitResult`. ``outcome`` is ``accepted`` (one
  carrier id per part), ``rejected`` (permanent SMPP error, ``status`` holds the code),
  ``unknown`` (sent but no answer: connection lost or response timeout — the carrier may have
  it; the caller decides whether to resubmit) or ``not_sent`` (never written; safe to retry).
* ``ESME_RTHROTTLED`` / ``ESME_RMSGQFUL`` are not results: the link pauses (exponential
  backoff), its token bucket shrinks (multiplicative decrease, slow recovery) and the same part
  is resubmitted transparently.
* Receipts and MO go to ``on_receipt`` / ``on_mo`` callbacks (sync or async) or, without a
  callback, to the ``receipts()`` / ``mo_messages()`` async iterators. With an async callback the
  ``deliver_sm_resp`` is sent after it returns (``ESME_RX_T_APPN`` if it raises, so the SMSC
  redelivers): a persisted receipt is acknowledged only once it is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Final, Self, cast

from tessera.connect import encoding
from tessera.connect.smpp import pdu as P
from tessera.connect.smpp.common import (
    BindError,
    BindState,
    ClientConfig,
    ClientStats,
    DeliveryReceipt,
    MoHandler,
    MoMessage,
    Outcome,
    PartResult,
    ReceiptHandler,
    SubmitResult,
    TokenBucket,
    parse_receipt,
)

__all__ = [
    "BindError",
    "BindState",
    "ClientConfig",
    "ClientStats",
    "DeliveryReceipt",
    "MoHandler",
    "MoMessage",
    "Outcome",
    "PartResult",
    "ReceiptHandler",
    "SmppClient",
    "SubmitResult",
    "TokenBucket",
]


_AUTH_FAILURES: Final = frozenset({P.ESME_RINVPASWD, P.ESME_RINVSYSID})
# single-part texts already encoded (a bulk send repeats one text thousands of times): the
# encoding of a text that fits one part depends on the text and data_coding alone (a long text
# is not kept: each message gets its own concatenation reference)
_ENCODED: dict[tuple[str, int | None], encoding.EncodedMessage] = {}
_ENCODED_MAX: Final = 1024
_THROTTLE_STATUSES: Final = frozenset({P.ESME_RTHROTTLED, P.ESME_RMSGQFUL})
_TICK: Final = 0.25

# What an in-flight request resolves to: (command_status, body) or (None, reason) when lost.
_Answer = tuple[int | None, str]


@dataclass(slots=True)
class _InFlight:
    future: asyncio.Future[_Answer]
    deadline: float
    command: str


@dataclass(slots=True)
class _Partial:
    data_coding: int
    total: int
    first_seen: float
    bodies: dict[int, bytes] = field(default_factory=dict)


class _Link(asyncio.Protocol):
    def __init__(self, client: SmppClient) -> None:
        self.client = client
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's are not subclasses of asyncio.Transport, so no isinstance.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            frames = P.split_frames(self.buf)
        except P.FramingError:
            if self.transport is not None:
                self.transport.abort()
            return
        self.client._on_frames(self, frames)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._on_lost(self, exc)


class SmppClient:
    """One carrier link. ``async with SmppClient(config) as c: await c.submit(...)``."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        on_receipt: ReceiptHandler | None = None,
        on_mo: MoHandler | None = None,
    ) -> None:
        self.config = config
        self.stats = ClientStats()
        self.on_receipt = on_receipt
        self.on_mo = on_mo
        self.last_error = ""
        self.last_bind_status: int | None = None
        self._state = BindState.DISCONNECTED
        self._link: _Link | None = None
        self._out: list[bytes] = []
        self._flush_pending = False
        self._seq = P.Sequence()
        self._pending: dict[int, _InFlight] = {}
        self._window = asyncio.Semaphore(config.window)
        self._bucket = TokenBucket(config.tps)
        self._bound = asyncio.Event()
        self._lost = asyncio.Event()
        self._first_bind: asyncio.Future[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._closing = False
        self._last_rx = 0.0
        self._enquire_seq: int | None = None
        self._accepted_times: deque[float] = deque()
        self._last_throttle = 0.0
        self._pause_until = 0.0
        self._throttle_streak = 0
        self._partials: dict[tuple[str, str, int, int], _Partial] = {}
        self._receipt_q: asyncio.Queue[DeliveryReceipt] = asyncio.Queue()
        self._mo_q: asyncio.Queue[MoMessage] = asyncio.Queue()

    # -- public surface --------------------------------------------------------------------
    @property
    def state(self) -> BindState:
        return self._state

    @property
    def in_flight(self) -> int:
        return sum(1 for f in self._pending.values() if f.command == "submit_sm")

    @property
    def current_tps(self) -> float | None:
        return self._bucket.rate

    def snapshot(self) -> dict[str, Any]:
        """Bind state and counters, JSON-ready, for the console and /metrics."""
        return {
            "name": self.config.name or f"{self.config.system_id}@{self.config.host}",
            "state": str(self._state),
            "window": self.config.window,
            "in_flight": self.in_flight,
            "tps_limit": self.config.tps,
            "current_tps": self._bucket.rate,
            "last_error": self.last_error,
            "last_bind_status": self.last_bind_status,
            **asdict(self.stats),
        }

    async def start(self, wait: bool = True, timeout: float | None = None) -> None:
        """Connect and bind in the background; with ``wait``, return once bound.

        Raises :class:`BindError` when the SMSC refuses the credentials (the link then stays
        in ``bind_failed`` and does not retry) and ``TimeoutError`` after ``timeout``.
        """
        if self._runner is not None:
            raise RuntimeError("client already started")
        loop = asyncio.get_running_loop()
        self._closing = False
        self._first_bind = loop.create_future()
        self._runner = asyncio.create_task(self._run(), name=f"smpp-runner-{self.config.name}")
        self._ticker = asyncio.create_task(self._tick(), name=f"smpp-ticker-{self.config.name}")
        if wait:
            await asyncio.wait_for(asyncio.shield(self._first_bind), timeout)

    async def wait_bound(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._bound.wait(), timeout)

    async def close(self) -> None:
        """Unbind politely (1 s at most), drop the connection and stop reconnecting."""
        self._closing = True
        link = self._link
        if self._state is BindState.BOUND and link is not None:
            self._state = BindState.UNBINDING
            fut = self._request("unbind", P.header_only(P.UNBIND, 0, 0), 1.0)
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(fut, 1.0)
        for task in (self._runner, self._ticker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._link is not None and self._link.transport is not None:
            self._link.transport.abort()
        self._fail_pending("client closed")
        self._state = BindState.CLOSED
        self._bound.set()  # wake waiters so they report not_sent
        for task in list(self._tasks):
            task.cancel()
        self._runner = self._ticker = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def submit(
        self,
        source: str,
        destination: str,
        text: str | None = None,
        *,
        payload: bytes | None = None,
        data_coding: int | None = None,
        registered_delivery: bool | int = True,
        esm_class: int = 0,
        reference: int | None = None,
        service_type: str = "",
        validity_period: str = "",
        timeout: float | None = None,
        urgent: bool = False,
    ) -> SubmitResult:
        """Submit one message (split into UDH-concatenated parts when long).

        ``text`` is encoded as GSM-7 (data_coding 0) when it fits the alphabet, else UCS-2 (8);
        force either with ``data_coding``. ``payload`` sends raw octets with the given
        ``data_coding`` instead. ``timeout`` bounds the wait *before* sending (no bind, full
        window, rate limit): parts not written by then come back ``not_sent``. ``urgent``: the
        PDU is written at once instead of with the rest of this loop turn's (a verification
        code does not wait one more turn of a busy loop).
        """
        if payload is not None:
            dc = data_coding if data_coding is not None else encoding.DATA_CODING_GSM7
            payloads: tuple[bytes, ...] = (payload,)
        elif text is not None:
            message = _encode(text, data_coding, reference)
            dc, payloads = message.data_coding, message.payloads
            esm_class |= message.esm_class
        else:
            raise ValueError("submit needs text or payload")
        base = _fields(source, destination, registered_delivery, esm_class, dc, service_type, validity_period)
        deadline = None if timeout is None else time.monotonic() + timeout
        if len(payloads) == 1:
            parts: tuple[PartResult, ...] = (
                await self._submit_part(0, {**base, "short_message": payloads[0]}, deadline, urgent),
            )
        else:
            parts = tuple(
                await asyncio.gather(
                    *(
                        self._submit_part(i, {**base, "short_message": p}, deadline, urgent)
                        for i, p in enumerate(payloads)
                    )
                )
            )
        outcomes = {p.outcome for p in parts}
        for candidate in (Outcome.REJECTED, Outcome.UNKNOWN, Outcome.NOT_SENT):
            if candidate in outcomes:
                return SubmitResult(candidate, parts, dc)
        return SubmitResult(Outcome.ACCEPTED, parts, dc)

    def send_now(
        self, source: str, destination: str, text: str, *, registered_delivery: bool | int = True
    ) -> Sent | None:
        """Write an urgent single-part ``submit_sm`` now, in the caller's turn of the event loop
        (a verification code does not wait for a worker task's next turn), when it can go at
        once: bound, a window slot free, no rate limit or pause; ``None`` otherwise (nothing
        written: :meth:`submit` sends it as usual). The window slot stays taken until
        :meth:`finish` (which must be awaited) has the answer."""
        if self._closing or self._state is not BindState.BOUND or not self._bound.is_set():
            return None
        if not self._bucket.open_now() or not _take_now(self._window):
            return None
        message = _encode(text, None, None)
        if len(message.payloads) != 1:
            self._window.release()
            return None
        fields = _fields(source, destination, registered_delivery, message.esm_class, message.data_coding)
        fields["short_message"] = message.payloads[0]
        seq = self._seq.next()
        raw = P.build("submit_sm", seq, **fields)
        fut = self._track(seq, "submit_sm", self.config.response_timeout)
        self._send(raw)
        self._flush()
        self.stats.submit_sm_sent += 1
        return Sent(fields, fut, message.data_coding)

    async def finish(self, sent: Sent) -> SubmitResult:
        """The result of a ``submit_sm`` written by :meth:`send_now`, as :meth:`submit` would
        give it (a throttled answer is submitted again, as there)."""
        part = await self._submit_part(0, sent.fields, None, True, sent.answer)
        return SubmitResult(part.outcome, (part,), sent.data_coding)

    async def receipts(self) -> AsyncIterator[DeliveryReceipt]:
        """Receipts not taken by ``on_receipt`` (runs until cancelled)."""
        while True:
            yield await self._receipt_q.get()

    async def mo_messages(self) -> AsyncIterator[MoMessage]:
        """MO messages (reassembled) not taken by ``on_mo`` (runs until cancelled)."""
        while True:
            yield await self._mo_q.get()

    # -- submit internals ------------------------------------------------------------------
    async def _submit_part(
        self,
        index: int,
        fields: dict[str, Any],
        deadline: float | None,
        urgent: bool = False,
        sent: asyncio.Future[_Answer] | None = None,
    ) -> PartResult:
        """``sent``: the answer of this part's first ``submit_sm``, already written with a window
        slot taken (:meth:`send_now`); the slot is given back once it is answered."""
        retries = 0
        while True:
            if sent is not None:
                try:
                    status, body = await sent
                finally:
                    sent = None
                    self._window.release()
            else:
                answer = await self._send_part(index, fields, deadline, urgent)
                if isinstance(answer, PartResult):
                    return answer
                status, body = answer
            if status is None:
                self.stats.unknown += 1
                return PartResult(index, Outcome.UNKNOWN, reason=body)
            if status == P.ESME_ROK:
                self.stats.accepted += 1
                self._throttle_streak = 0
                return PartResult(index, Outcome.ACCEPTED, message_id=body, status=0)
            if status in _THROTTLE_STATUSES and retries < self.config.throttle_max_retries:
                retries += 1
                self.stats.throttled += 1
                self._on_throttled()
                continue
            self.stats.rejected += 1
            return PartResult(index, Outcome.REJECTED, status=status, reason=P.status_name(status))

    async def _send_part(
        self, index: int, fields: dict[str, Any], deadline: float | None, urgent: bool
    ) -> PartResult | _Answer:
        """Send one part and wait for its answer (or a ``not_sent`` result)."""
        if self._closing:
            return self._not_sent(index, "client closed")
        delay = self._bucket.reserve()
        if delay > 0:
            if deadline is not None and time.monotonic() + delay > deadline:
                return self._not_sent(index, "timeout before sending")
            await asyncio.sleep(delay)
        try:
            async with self._window:
                if not self._bound.is_set():
                    remaining = None if deadline is None else deadline - time.monotonic()
                    await asyncio.wait_for(self._bound.wait(), remaining)
                elif deadline is not None and time.monotonic() > deadline:
                    return self._not_sent(index, "timeout before sending")
                if self._closing or self._state is not BindState.BOUND:
                    return self._not_sent(index, "client closed")
                seq = self._seq.next()
                raw = P.build("submit_sm", seq, **fields)
                fut = self._track(seq, "submit_sm", self.config.response_timeout)
                self._send(raw)
                if urgent:
                    self._flush()  # the call_soon'd flush then finds nothing left
                self.stats.submit_sm_sent += 1
                return await fut
        except TimeoutError:
            return self._not_sent(index, "timeout before sending")

    def _not_sent(self, index: int, reason: str) -> PartResult:
        self.stats.not_sent += 1
        return PartResult(index, Outcome.NOT_SENT, reason=reason)

    def _on_throttled(self) -> None:
        """Pause the link and shrink its rate, once per throttle episode.

        A full window is usually throttled at once; only the first answer after a pause
        counts, so the backoff doubles per episode rather than per PDU.
        """
        now = time.monotonic()
        self._last_throttle = now
        if now < self._pause_until:
            return
        cfg = self.config
        self._throttle_streak += 1
        backoff = min(
            cfg.throttle_backoff_max,
            cfg.throttle_backoff_initial * 2 ** min(self._throttle_streak - 1, 16),
        )
        self._pause_until = now + backoff
        self._bucket.pause(self._pause_until)
        observed = self._observed_rate(now)
        current = self._bucket.rate
        if observed >= 1.0:
            target = observed * 0.9  # what the SMSC let through in the last second, less 10 %
        else:
            target = (current or 10.0) * 0.5
        if current is not None:
            target = min(target, current * 0.9)
        self._bucket.set_rate(max(cfg.min_tps, target))

    def _observed_rate(self, now: float) -> float:
        times = self._accepted_times
        while times and now - times[0] > 1.0:
            times.popleft()
        return float(len(times))

    def _recover_rate(self, now: float) -> None:
        rate = self._bucket.rate
        if rate is None or now - self._last_throttle < 2.0:
            return
        ceiling = self.config.tps
        rate *= 1.02  # about +8 %/s: probe upwards slowly after throttling stops
        if ceiling is not None and rate >= ceiling:
            self._bucket.set_rate(ceiling)
        elif ceiling is None and now - self._last_throttle > 10.0:
            self._bucket.set_rate(None)
        else:
            self._bucket.set_rate(rate)

    # -- wire ------------------------------------------------------------------------------
    def _send(self, data: bytes) -> None:
        self._out.append(data)
        if not self._flush_pending:
            self._flush_pending = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_pending = False
        link = self._link
        transport = link.transport if link is not None else None
        if self._out and transport is not None and not transport.is_closing():
            transport.write(b"".join(self._out))
        self._out.clear()

    def _track(self, seq: int, command: str, timeout: float) -> asyncio.Future[_Answer]:
        fut: asyncio.Future[_Answer] = asyncio.get_running_loop().create_future()
        self._pending[seq] = _InFlight(fut, time.monotonic() + timeout, command)
        return fut

    def _request(self, command: str, header: bytes, timeout: float) -> asyncio.Future[_Answer]:
        """Send a header-only request (``header``'s sequence is replaced)."""
        seq = self._seq.next()
        fut = self._track(seq, command, timeout)
        self._send(header[:12] + seq.to_bytes(4, "big"))
        return fut

    def _fail_pending(self, reason: str) -> None:
        pending, self._pending = self._pending, {}
        for inflight in pending.values():
            if not inflight.future.done():
                inflight.future.set_result((None, reason))

    def _on_frames(self, link: _Link, frames: list[bytes]) -> None:
        if link is not self._link:
            return
        self._last_rx = time.monotonic()
        pending = self._pending
        for raw in frames:
            command_id = int.from_bytes(raw[4:8], "big")
            status = int.from_bytes(raw[8:12], "big")
            seq = int.from_bytes(raw[12:16], "big")
            if command_id & P.RESP:
                inflight = pending.pop(seq, None)
                if command_id == P.GENERIC_NACK:
                    self.stats.generic_nacks += 1
                if inflight is None or inflight.future.done():
                    continue
                body = P.cstring_body(raw) if status == P.ESME_ROK and len(raw) > 16 else ""
                if command_id == P.SUBMIT_SM | P.RESP and status == P.ESME_ROK:
                    self._accepted_times.append(self._last_rx)
                inflight.future.set_result((status, body))
            elif command_id == P.DELIVER_SM:
                self._on_deliver(raw, seq)
            elif command_id == P.ENQUIRE_LINK:
                self._send(P.header_only(P.ENQUIRE_LINK | P.RESP, P.ESME_ROK, seq))
            elif command_id == P.UNBIND:
                self._send(P.header_only(P.UNBIND | P.RESP, P.ESME_ROK, seq))
                self._flush()
                if link.transport is not None:
                    link.transport.close()
            else:
                self._send(P.header_only(P.GENERIC_NACK, P.ESME_RINVCMDID, seq))

    def _on_lost(self, link: _Link, exc: Exception | None) -> None:
        if link is not self._link:
            return
        self._link = None
        self._out.clear()
        was_bound = self._state is BindState.BOUND
        self._bound.clear()
        if self._state not in (BindState.CLOSED, BindState.BIND_FAILED):
            self._state = BindState.DISCONNECTED
        if was_bound:
            self.stats.disconnects += 1
        self.last_error = f"connection lost: {exc}" if exc else "connection closed by peer"
        self._fail_pending("connection lost")
        self._lost.set()

    # -- inbound deliver_sm ----------------------------------------------------------------
    def _on_deliver(self, raw: bytes, seq: int) -> None:
        try:
            req = P.parse(raw)
        except P.CODEC_ERRORS:
            self._send(P.with_cstring(P.DELIVER_SM | P.RESP, P.ESME_RSYSERR, seq, ""))
            return
        esm = req.esm_class or 0
        result: Awaitable[None] | None
        if esm & 0x3C in (0x04, 0x08, 0x20):
            receipt = parse_receipt(req)
            self.stats.receipts += 1
            if self.on_receipt is None:
                self._receipt_q.put_nowait(receipt)
                result = None
            else:
                result = self._call(self.on_receipt, receipt)
        else:
            mo = self._assemble_mo(req, esm)
            if mo is None:
                result = None
            else:
                self.stats.mo_messages += 1
                if self.on_mo is None:
                    self._mo_q.put_nowait(mo)
                    result = None
                else:
                    result = self._call(self.on_mo, mo)
        if result is None:
            self._send(P.with_cstring(P.DELIVER_SM | P.RESP, P.ESME_ROK, seq, ""))
        elif isinstance(result, asyncio.Future):  # a handler's future: acked when it is done,
            result.add_done_callback(partial(self._ack_done, seq))  # no task per receipt
        else:
            task = asyncio.ensure_future(self._ack_after(result, seq))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _ack_done(self, seq: int, fut: asyncio.Future[Any]) -> None:
        """The ``deliver_sm_resp`` of a receipt whose handler returned a future, once it is
        done: as :meth:`_ack_after` answers (``ESME_RX_T_APPN`` when it failed; nothing when
        it was cancelled, as a cancelled :meth:`_ack_after` sends nothing)."""
        if fut.cancelled():
            return
        status = P.ESME_ROK
        exc = fut.exception()
        if exc is not None:
            self.last_error = f"handler failed: {exc!r}"
            status = P.ESME_RX_T_APPN
        if self._state is not BindState.CLOSED:
            self._send(P.with_cstring(P.DELIVER_SM | P.RESP, status, seq, ""))

    def _call(self, handler: Callable[[Any], Awaitable[None] | None], arg: Any) -> Awaitable[None] | None:
        try:
            result = handler(arg)
        except Exception as exc:
            self.last_error = f"handler failed: {exc!r}"
            return _raise(exc)
        return result if inspect.isawaitable(result) else None

    async def _ack_after(self, result: Awaitable[None], seq: int) -> None:
        status = P.ESME_ROK
        try:
            await result
        except Exception as exc:
            self.last_error = f"handler failed: {exc!r}"
            status = P.ESME_RX_T_APPN
        self._send(P.with_cstring(P.DELIVER_SM | P.RESP, status, seq, ""))

    def _assemble_mo(self, req: Any, esm: int) -> MoMessage | None:
        source = P.text_field(req.source_addr)
        dest = P.text_field(req.destination_addr)
        dc = req.data_coding or 0
        data: bytes = req.short_message or req.message_payload or b""
        concat: tuple[int, int, int] | None = None
        if esm & encoding.ESM_CLASS_UDHI:
            concat, data = encoding.parse_udh(data)
        elif req.sar_msg_ref_num is not None and req.sar_total_segments:
            concat = (
                req.sar_msg_ref_num,
                req.sar_total_segments,
                req.sar_segment_seqnum or 1,
            )
        self.stats.mo_parts += 1
        now = time.time()
        if concat is None or concat[1] <= 1:
            text = encoding.decode_payload(data, dc)
            return MoMessage(source, dest, text, dc, data, 1, now)
        ref, total, number = concat
        key = (source, dest, ref, total)
        partial = self._partials.get(key)
        if partial is None:
            partial = self._partials[key] = _Partial(dc, total, time.monotonic())
        partial.bodies[number] = data
        if len(partial.bodies) < total:
            return None
        del self._partials[key]
        joined = b"".join(partial.bodies[i] for i in sorted(partial.bodies))
        text = encoding.decode_payload(joined, partial.data_coding)
        return MoMessage(source, dest, text, partial.data_coding, joined, total, now)

    # -- connection lifecycle --------------------------------------------------------------
    async def _run(self) -> None:
        cfg = self.config
        loop = asyncio.get_running_loop()
        attempt = 0
        while not self._closing:
            if attempt:
                delay = min(cfg.reconnect_max, cfg.reconnect_initial * 2 ** (attempt - 1))
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            attempt += 1
            self._state = BindState.CONNECTING
            self._lost.clear()
            try:
                _, link = await asyncio.wait_for(
                    loop.create_connection(lambda: _Link(self), cfg.host, cfg.port),
                    cfg.connect_timeout,
                )
            except (OSError, TimeoutError) as exc:
                self.stats.connect_failures += 1
                self.last_error = f"connect failed: {exc!r}"
                self._state = BindState.DISCONNECTED
                continue
            self.stats.connects += 1
            self._link = link
            self._last_rx = time.monotonic()
            self._state = BindState.BINDING
            status = await self._bind()
            if status is None:
                self._drop()
                continue
            self.last_bind_status = status
            if status != P.ESME_ROK:
                self.stats.bind_failures += 1
                self.last_error = f"bind refused: {P.status_name(status)}"
                self._drop()
                if status in _AUTH_FAILURES:
                    self._state = BindState.BIND_FAILED
                    self._resolve_first_bind(BindError(status))
                    return
                continue
            self.stats.binds += 1
            self._state = BindState.BOUND
            attempt = 0
            self._bound.set()
            self._resolve_first_bind(None)
            await self._lost.wait()

    async def _bind(self) -> int | None:
        cfg = self.config
        seq = self._seq.next()
        fut = self._track(seq, "bind_transceiver", cfg.response_timeout)
        self._send(
            P.build(
                "bind_transceiver",
                seq,
                system_id=cfg.system_id,
                password=cfg.password,
                system_type=cfg.system_type,
                addr_ton=0,
                addr_npi=0,
                address_range="",
            )
        )
        status, reason = await fut
        if status is None:
            self.last_error = f"bind failed: {reason}"
        return status

    def _drop(self) -> None:
        link = self._link
        if link is not None and link.transport is not None:
            link.transport.abort()
        self._link = None
        self._bound.clear()
        self._fail_pending("connection dropped")

    def _resolve_first_bind(self, exc: BaseException | None) -> None:
        fut = self._first_bind
        if fut is None or fut.done():
            return
        if exc is None:
            fut.set_result(None)
        else:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved when nobody waits

    async def _tick(self) -> None:
        cfg = self.config
        while True:
            await asyncio.sleep(_TICK)
            now = time.monotonic()
            for seq, inflight in list(self._pending.items()):
                if now > inflight.deadline and not inflight.future.done():
                    del self._pending[seq]
                    self.stats.response_timeouts += 1
                    inflight.future.set_result((None, "response timeout"))
                    if inflight.command == "enquire_link":
                        self.last_error = "enquire_link unanswered; dropping link"
                        self._drop_and_notify()
            if (
                self._state is BindState.BOUND
                and now - self._last_rx >= cfg.enquire_link_interval
                and self._enquire_seq not in self._pending
            ):
                self.stats.enquire_links_sent += 1
                self._enquire_seq = self._seq.next()
                self._pending[self._enquire_seq] = _InFlight(
                    asyncio.get_running_loop().create_future(),
                    now + cfg.response_timeout,
                    "enquire_link",
                )
                self._send(P.header_only(P.ENQUIRE_LINK, 0, self._enquire_seq))
            self._recover_rate(now)
            self._observed_rate(now)
            stale = [k for k, p in self._partials.items() if now - p.first_seen > cfg.mo_reassembly_timeout]
            for key in stale:
                del self._partials[key]

    def _drop_and_notify(self) -> None:
        link = self._link
        if link is not None and link.transport is not None:
            link.transport.abort()  # connection_lost follows and runs _on_lost


async def _raise(exc: Exception) -> None:
    raise exc


@dataclass(slots=True)
class Sent:
    """A ``submit_sm`` written by :meth:`SmppClient.send_now`, its answer still to come."""

    fields: dict[str, Any]
    answer: asyncio.Future[_Answer]
    data_coding: int


def _take_now(window: asyncio.Semaphore) -> bool:
    """Take a slot of ``window`` if one is free, without waiting (``Semaphore.acquire`` takes a
    free slot without suspending; it is not started when none is free)."""
    if window.locked():
        return False
    acquire = window.acquire()
    try:
        acquire.send(None)
    except StopIteration:
        return True
    acquire.close()  # pragma: no cover - not locked, so it did not wait
    return False


def _fields(
    source: str,
    destination: str,
    registered_delivery: bool | int,
    esm_class: int,
    data_coding: int,
    service_type: str = "",
    validity_period: str = "",
) -> dict[str, Any]:
    """A ``submit_sm``'s fields but its ``short_message``."""
    rd = int(registered_delivery) if isinstance(registered_delivery, bool) else registered_delivery
    src_ton, src_npi = (1, 1) if source.lstrip("+").isdigit() else (5, 0)
    return {
        "service_type": service_type,
        "source_addr_ton": src_ton,
        "source_addr_npi": src_npi,
        "source_addr": source.lstrip("+"),
        "dest_addr_ton": 1,
        "dest_addr_npi": 1,
        "destination_addr": destination.lstrip("+"),
        "esm_class": esm_class,
        "registered_delivery": rd,
        "data_coding": data_coding,
        "validity_period": validity_period,
    }


def _encode(text: str, data_coding: int | None, reference: int | None) -> encoding.EncodedMessage:
    """:func:`encoding.encode_message`, a single-part text's from :data:`_ENCODED` once done."""
    key = (text, data_coding)
    message = _ENCODED.get(key)
    if message is not None:
        return message
    message = encoding.encode_message(text, data_coding, reference)
    if len(message.payloads) == 1:  # its reference plays no part (a long text's does)
        if len(_ENCODED) >= _ENCODED_MAX:
            _ENCODED.clear()
        _ENCODED[key] = message
    return message
