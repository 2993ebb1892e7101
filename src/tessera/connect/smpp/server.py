"""``tessera smsc``: an SMSC simulator speaking SMPP 3.4 over asyncio.

``submit_sm`` is parsed and receipts (``deliver_sm`` with ``receipted_message_id`` and
``message_state``) are built by :mod:`.pdu` directly, with smpplib's bytes; other PDUs with a
body go through smpplib's codec; header-only PDUs are packed directly. Each connection is an ``asyncio.Protocol``: every chunk read is cut into
PDUs, all answers produced while handling that chunk are joined and written once, and
out-of-band PDUs (delayed receipts, MO) are coalesced by a ``call_soon`` flush — thousands of
``submit_sm`` per second on one core.

Features: several accounts (system_id/password, optional TPS per bind), the three bind modes,
``enquire_link``, ``unbind``, ``generic_nack`` for garbage, ``submit_sm`` → ``submit_sm_resp``
with a message id, ``ESME_RTHROTTLED`` beyond the TPS, delivery receipts after a configurable
delay with a seeded outcome mix, scripted disconnects, MO injection (method and ``POST /mo``),
and counters (method and ``GET /stats``) including how many times each
(source, destination, short_message) was accepted, so tests can prove exactly-once.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import itertools
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal, Self, cast

from tessera.connect import encoding
from tessera.connect.smpp import pdu as P

Outcome = Literal["delivered", "undeliverable", "expired", "none"]
OUTCOMES: Final[tuple[Outcome, ...]] = ("delivered", "undeliverable", "expired", "none")
_OUTCOME_STATE: Final = {
    "delivered": (P.STATE_DELIVERED, "DELIVRD", "000", "001"),
    "undeliverable": (P.STATE_UNDELIVERABLE, "UNDELIV", "001", "000"),
    "expired": (P.STATE_EXPIRED, "EXPIRED", "000", "000"),
}
BindMode = Literal["transmitter", "receiver", "transceiver"]
_BIND_MODES: Final[dict[int, BindMode]] = {
    P.BIND_TRANSMITTER: "transmitter",
    P.BIND_RECEIVER: "receiver",
    P.BIND_TRANSCEIVER: "transceiver",
}
SubmissionKey = tuple[str, str, bytes]


@dataclass(frozen=True, slots=True)
class SmscAccount:
    system_id: str
    password: str
    tps: float | None = None
    """Maximum accepted submit_sm per second on each bind of this account (None: unlimited)."""


@dataclass(slots=True)
class SmscConfig:
    accounts: list[SmscAccount] = field(default_factory=lambda: [SmscAccount("tessera", "secret")])
    host: str = "127.0.0.1"
    port: int = 0
    http_port: int | None = None
    """Port of the HTTP side door (``POST /mo``, ``GET /stats``); None disables it, 0 picks one."""
    receipt_delay: float = 0.0
    outcomes: dict[str, float] = field(default_factory=lambda: {"delivered": 1.0})
    """Weights over ``delivered``, ``undeliverable``, ``expired`` and ``none`` (no receipt)."""
    seed: int = 0
    disconnect_after_submits: int | None = None
    """Drop the connection when the N-th submit_sm arrives (one-shot; see ``arm_disconnect``)."""
    reject_destinations: dict[str, int] = field(default_factory=dict)
    """Destination prefix → SMPP status answered instead of accepting (permanent errors)."""
    system_id: str = "TESSERA-SMSC"
    keep_messages: bool = True


@dataclass(slots=True)
class SubmittedMessage:
    message_id: str
    system_id: str
    source: str
    destination: str
    data_coding: int
    esm_class: int
    registered_delivery: int
    short_message: bytes
    submitted_at: float

    def text(self) -> str:
        body = self.short_message
        if self.esm_class & encoding.ESM_CLASS_UDHI:
            _, body = encoding.parse_udh(body)
        return encoding.decode_payload(body, self.data_coding)


@dataclass(slots=True)
class SmscStats:
    connections: int = 0
    binds: int = 0
    bind_failures: int = 0
    unbinds: int = 0
    submits: int = 0
    throttled: int = 0
    rejected: int = 0
    receipts_sent: int = 0
    receipts_acked: int = 0
    receipts_queued: int = 0
    mo_sent: int = 0
    generic_nacks: int = 0
    enquire_links: int = 0
    scripted_disconnects: int = 0


class _RateLimit:
    """Token bucket per bind: ``rate`` tokens/s, burst of one second's worth."""

    __slots__ = ("rate", "stamp", "tokens")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class _Session(asyncio.Protocol):
    def __init__(self, smsc: SmscSimulator) -> None:
        self.smsc = smsc
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.out: list[bytes] = []
        self.flush_pending = False
        self.mode: BindMode | None = None
        self.system_id = ""
        self.limit: _RateLimit | None = None
        self.seq = P.Sequence()
        self.closed = False
        self.peer = ""
        self.unacked: dict[int, dict[str, Any]] = {}
        """deliver_sm sent and not yet acknowledged: requeued when the connection goes away."""

    # -- transport -------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport; uvloop's are not subclasses of asyncio.Transport, so no isinstance.
        self.transport = cast(asyncio.Transport, transport)
        self.peer = str(transport.get_extra_info("peername"))
        self.smsc.stats_.connections += 1
        self.smsc._sessions.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.smsc._sessions.discard(self)
        self.smsc._unbound(self)
        self._requeue_unacked()

    def _requeue_unacked(self) -> None:
        """Store-and-forward like a real SMSC: unacknowledged deliver_sm go to the next bind."""
        pending, self.unacked = self.unacked, {}
        for fields in pending.values():
            self.smsc._route(self.system_id, fields, None)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            frames = P.split_frames(self.buf)
        except P.FramingError:
            self.smsc.stats_.generic_nacks += 1
            self.out.append(P.header_only(P.GENERIC_NACK, P.ESME_RINVCMDLEN, 0))
            self.flush()
            self.abort(graceful=True)
            return
        handle = self.handle
        for raw in frames:
            if self.closed:
                return
            handle(raw)
        self.flush()

    def send(self, data: bytes) -> None:
        self.out.append(data)
        if not self.flush_pending:
            self.flush_pending = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self.flush_pending = False
        if self.out and self.transport is not None and not self.closed:
            self.transport.write(b"".join(self.out))
        self.out.clear()

    def abort(self, graceful: bool = False) -> None:
        if self.transport is None or self.closed:
            return
        self.closed = True
        if graceful:
            self.transport.close()
        else:
            self.transport.abort()
        self.smsc._unbound(self)
        self._requeue_unacked()

    # -- PDUs ------------------------------------------------------------------------------
    def handle(self, raw: bytes) -> None:
        command_id = int.from_bytes(raw[4:8], "big")
        sequence = int.from_bytes(raw[12:16], "big")
        if command_id == P.SUBMIT_SM:
            self.on_submit(raw, sequence)
        elif command_id == P.DELIVER_SM | P.RESP:
            fields = self.unacked.pop(sequence, None)
            status = int.from_bytes(raw[8:12], "big")
            self.smsc.stats_.receipts_acked += 1
            if status != P.ESME_ROK and fields is not None:
                # the ESME could not take it now (e.g. ESME_RX_T_APPN): redeliver shortly
                loop = asyncio.get_running_loop()
                loop.call_later(0.5, lambda: self.smsc._route(self.system_id, fields, None))
        elif command_id == P.ENQUIRE_LINK:
            self.smsc.stats_.enquire_links += 1
            self.out.append(P.header_only(P.ENQUIRE_LINK | P.RESP, P.ESME_ROK, sequence))
        elif command_id in _BIND_MODES:
            self.on_bind(raw, command_id, sequence)
        elif command_id == P.UNBIND:
            self.smsc.stats_.unbinds += 1
            self.out.append(P.header_only(P.UNBIND | P.RESP, P.ESME_ROK, sequence))
            self.flush()
            self.abort(graceful=True)
        elif command_id & P.RESP:
            pass  # enquire_link_resp, unbind_resp, generic_nack: nothing to do
        else:
            self.smsc.stats_.generic_nacks += 1
            self.out.append(P.header_only(P.GENERIC_NACK, P.ESME_RINVCMDID, sequence))

    def on_bind(self, raw: bytes, command_id: int, sequence: int) -> None:
        resp_id = command_id | P.RESP
        name = self.smsc.config.system_id
        if self.mode is not None:
            self.out.append(P.with_cstring(resp_id, P.ESME_RALYBND, sequence, name))
            return
        try:
            req = P.parse(raw)
        except P.CODEC_ERRORS:
            self.smsc.stats_.generic_nacks += 1
            self.out.append(P.header_only(P.GENERIC_NACK, P.ESME_RINVCMDLEN, sequence))
            return
        system_id = P.text_field(req.system_id)
        password = P.text_field(req.password)
        account = self.smsc._accounts.get(system_id)
        if account is None:
            status = P.ESME_RINVSYSID
        elif account.password != password:
            status = P.ESME_RINVPASWD
        else:
            status = P.ESME_ROK
        if status != P.ESME_ROK or account is None:
            self.smsc.stats_.bind_failures += 1
            self.out.append(P.with_cstring(resp_id, status, sequence, name))
            return
        self.mode = _BIND_MODES[command_id]
        self.system_id = system_id
        self.limit = _RateLimit(account.tps) if account.tps else None
        self.smsc.stats_.binds += 1
        self.out.append(P.with_cstring(resp_id, P.ESME_ROK, sequence, name))
        self.smsc._bound(self)

    def on_submit(self, raw: bytes, sequence: int) -> None:
        smsc = self.smsc
        if self.mode not in ("transmitter", "transceiver"):
            smsc.stats_.rejected += 1
            self.out.append(P.with_cstring(P.SUBMIT_SM | P.RESP, P.ESME_RINVBNDSTS, sequence, ""))
            return
        if smsc._disconnect_countdown is not None and smsc._disconnect_matches(self):
            smsc._disconnect_countdown -= 1
            if smsc._disconnect_countdown <= 0:
                smsc._disconnect_countdown = None
                smsc._disconnect_system_id = None
                smsc.stats_.scripted_disconnects += 1
                self.flush()
                self.abort()
                return
        if self.limit is not None and not self.limit.take():
            smsc.stats_.throttled += 1
            self.out.append(P.with_cstring(P.SUBMIT_SM | P.RESP, P.ESME_RTHROTTLED, sequence, ""))
            return
        try:
            req = P.parse(raw)
        except P.CODEC_ERRORS:
            smsc.stats_.rejected += 1
            self.out.append(P.with_cstring(P.SUBMIT_SM | P.RESP, P.ESME_RSYSERR, sequence, ""))
            return
        if smsc.config.reject_destinations:
            status = smsc._rejection(P.text_field(req.destination_addr))
            if status:
                smsc.stats_.rejected += 1
                self.out.append(P.with_cstring(P.SUBMIT_SM | P.RESP, status, sequence, ""))
                return
        message_id = smsc._next_id()
        msg = SubmittedMessage(
            message_id=message_id,
            system_id=self.system_id,
            source=P.text_field(req.source_addr),
            destination=P.text_field(req.destination_addr),
            data_coding=req.data_coding or 0,
            esm_class=req.esm_class or 0,
            registered_delivery=req.registered_delivery or 0,
            short_message=req.short_message or b"",
            submitted_at=time.time(),
        )
        smsc._accept(msg)
        self.out.append(P.with_cstring(P.SUBMIT_SM | P.RESP, P.ESME_ROK, sequence, message_id))
        smsc._maybe_receipt(msg, self)

    def send_deliver(self, fields: dict[str, Any]) -> None:
        seq = self.seq.next()
        self.unacked[seq] = fields
        self.send(P.build("deliver_sm", seq, **fields))


class SmscSimulator:
    """The simulator. ``async with SmscSimulator(config) as smsc:`` starts and stops it."""

    def __init__(self, config: SmscConfig | None = None) -> None:
        self.config = config or SmscConfig()
        self._accounts = {a.system_id: a for a in self.config.accounts}
        self.stats_ = SmscStats()
        self.messages: list[SubmittedMessage] = []
        self.submissions: Counter[SubmissionKey] = Counter()
        self.by_id: dict[str, SubmittedMessage] = {}
        self._sessions: set[_Session] = set()
        self._receivers: dict[str, list[_Session]] = defaultdict(list)
        self._pending: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._rr = itertools.count()
        self._rng = random.Random(self.config.seed)
        self._outcome_names, self._cum_weights = self._weights(self.config.outcomes)
        self._ids = itertools.count(1)
        self._id_prefix = f"{int(time.time()) & 0xFFFFFF:06x}"
        self._disconnect_countdown: int | None = self.config.disconnect_after_submits
        self._disconnect_system_id: str | None = None
        self._server: asyncio.Server | None = None
        self._http: asyncio.Server | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self.port = 0
        self.http_port = 0

    @staticmethod
    def _weights(outcomes: dict[str, float]) -> tuple[list[str], list[float]]:
        names: list[str] = [n for n in OUTCOMES if outcomes.get(n, 0.0) > 0]
        unknown = set(outcomes) - set(OUTCOMES)
        if unknown or not names:
            raise ValueError(f"outcomes must weigh some of {OUTCOMES}, got {outcomes}")
        return names, list(itertools.accumulate(outcomes[n] for n in names))

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Session(self), self.config.host, self.config.port)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.config.http_port is not None:
            self._http = await asyncio.start_server(self._serve_http, self.config.host, self.config.http_port)
            self.http_port = self._http.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for server in (self._server, self._http):
            if server is not None:
                server.close()
        for session in list(self._sessions):
            session.abort()
        for server in (self._server, self._http):
            if server is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(server.wait_closed(), 2)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- scripting -------------------------------------------------------------------------
    def arm_disconnect(self, after_submits: int, system_id: str | None = None) -> None:
        """Drop the connection that carries the ``after_submits``-th submit_sm from now on.

        That submit_sm and any behind it in the same read are not answered; the answers to the
        earlier ones are flushed first.
        """
        self._disconnect_countdown = after_submits
        self._disconnect_system_id = system_id

    def _disconnect_matches(self, session: _Session) -> bool:
        return self._disconnect_system_id in (None, session.system_id)

    def set_tps(self, system_id: str, tps: float | None) -> None:
        account = self._accounts[system_id]
        self._accounts[system_id] = SmscAccount(account.system_id, account.password, tps)
        for session in self._sessions:
            if session.system_id == system_id:
                session.limit = _RateLimit(tps) if tps else None

    def disconnect_all(self) -> None:
        for session in list(self._sessions):
            session.abort()

    # -- counters --------------------------------------------------------------------------
    def count(self, source: str, destination: str, short_message: bytes) -> int:
        """How many times this exact (source, destination, short_message) was accepted."""
        return self.submissions[(source, destination, short_message)]

    def duplicates(self) -> dict[SubmissionKey, int]:
        return {k: n for k, n in self.submissions.items() if n > 1}

    def bound_sessions(self) -> list[dict[str, str]]:
        return [
            {"system_id": s.system_id, "mode": s.mode, "peer": s.peer}
            for s in self._sessions
            if s.mode is not None and not s.closed
        ]

    def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = asdict(self.stats_)
        data["distinct_submissions"] = len(self.submissions)
        data["duplicate_submissions"] = len(self.duplicates())
        data["bound"] = self.bound_sessions()
        texts: Counter[str] = Counter()
        if len(self.messages) <= 10_000:
            texts.update(m.text() for m in self.messages)
        data["submits_by_text"] = dict(texts.most_common(50))
        return data

    # -- internals used by sessions --------------------------------------------------------
    def _next_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):010x}"

    def _rejection(self, destination: str) -> int:
        for prefix, status in self.config.reject_destinations.items():
            if destination.startswith(prefix):
                return status
        return 0

    def _accept(self, msg: SubmittedMessage) -> None:
        self.stats_.submits += 1
        self.submissions[(msg.source, msg.destination, msg.short_message)] += 1
        if self.config.keep_messages:
            self.messages.append(msg)
            self.by_id[msg.message_id] = msg

    def _bound(self, session: _Session) -> None:
        if session.mode in ("receiver", "transceiver"):
            self._receivers[session.system_id].append(session)
            pending = self._pending.pop(session.system_id, [])
            for fields in pending:
                session.send_deliver(fields)

    def _unbound(self, session: _Session) -> None:
        receivers = self._receivers.get(session.system_id)
        if receivers and session in receivers:
            receivers.remove(session)

    def _route(self, system_id: str, fields: dict[str, Any], prefer: _Session | None) -> bool:
        """Send a deliver_sm to a receiving bind of ``system_id``; queue it when none is bound."""
        if prefer is not None and not prefer.closed and prefer.mode == "transceiver":
            prefer.send_deliver(fields)
            return True
        receivers = [s for s in self._receivers.get(system_id, ()) if not s.closed]
        if receivers:
            receivers[next(self._rr) % len(receivers)].send_deliver(fields)
            return True
        self._pending[system_id].append(fields)
        return False

    def _maybe_receipt(self, msg: SubmittedMessage, session: _Session) -> None:
        wanted = msg.registered_delivery & 0x03
        if not wanted:
            return
        roll = self._rng.random() * self._cum_weights[-1]
        outcome = self._outcome_names[bisect.bisect_right(self._cum_weights, roll)]
        if outcome == "none" or (wanted == 2 and outcome == "delivered"):
            return
        delay = self.config.receipt_delay
        if delay <= 0:
            self._send_receipt(msg, outcome, session)
        else:
            loop = asyncio.get_running_loop()
            handle: asyncio.TimerHandle | None = None

            def fire() -> None:
                if handle is not None:
                    self._timers.discard(handle)
                self._send_receipt(msg, outcome, session)

            handle = loop.call_later(delay, fire)
            self._timers.add(handle)

    def _send_receipt(self, msg: SubmittedMessage, outcome: str, session: _Session) -> None:
        state, stat, err, dlvrd = _OUTCOME_STATE[outcome]
        text = msg.text()[:20] if msg.data_coding == 0 else ""
        fmt = "%y%m%d%H%M"
        receipt = (
            f"id:{msg.message_id} sub:001 dlvrd:{dlvrd} "
            f"submit date:{time.strftime(fmt, time.gmtime(msg.submitted_at))} "
            f"done date:{time.strftime(fmt, time.gmtime())} "
            f"stat:{stat} err:{err} text:{text}"
        )
        fields: dict[str, Any] = {
            "source_addr": msg.destination,
            "destination_addr": msg.source,
            "esm_class": 0x04,
            "data_coding": 0,
            "short_message": receipt.encode("latin-1", errors="replace"),
            "receipted_message_id": msg.message_id,
            "message_state": state,
        }
        if self._route(msg.system_id, fields, session):
            self.stats_.receipts_sent += 1
        else:
            self.stats_.receipts_queued += 1

    # -- MO --------------------------------------------------------------------------------
    def inject_mo(self, system_id: str, source: str, dest: str, text: str) -> int:
        """Send a mobile-originated message to a receiving bind of ``system_id``.

        Long texts travel as UDH-concatenated parts (esm_class 0x40). Returns the number of
        deliver_sm PDUs sent now; with no receiver bound they are queued until one binds.
        """
        message = encoding.encode_message(text)
        sent = 0
        for payload in message.payloads:
            fields: dict[str, Any] = {
                "source_addr": source,
                "destination_addr": dest,
                "source_addr_ton": 1,
                "source_addr_npi": 1,
                "esm_class": message.esm_class,
                "data_coding": message.data_coding,
                "short_message": payload,
            }
            self.stats_.mo_sent += 1
            if self._route(system_id, fields, None):
                sent += 1
        return sent

    # -- HTTP side door --------------------------------------------------------------------
    async def _serve_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            head = request.decode("latin-1").split("\r\n")
            method, path = head[0].split(" ")[0:2]
            headers = {
                k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:] if line)
            }
            length = int(headers.get("content-length", "0") or 0)
            body = await reader.readexactly(length) if length else b""
            status, payload = self._route_http(method, path, body)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            writer.close()
            return
        except ValueError as exc:
            status, payload = 400, {"error": str(exc)}
        data = json.dumps(payload).encode()
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "OK")
        writer.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
            + data
        )
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()

    def _route_http(self, method: str, path: str, body: bytes) -> tuple[int, dict[str, Any]]:
        if method == "GET" and path.split("?")[0] == "/stats":
            return 200, self.stats()
        if method == "POST" and path == "/mo":
            req = json.loads(body or b"{}")
            missing = [k for k in ("source", "dest", "text") if not req.get(k)]
            if missing:
                raise ValueError(f"missing {', '.join(missing)}")
            system_id = req.get("system_id") or self.config.accounts[0].system_id
            sent = self.inject_mo(system_id, req["source"], req["dest"], req["text"])
            return 200, {"ok": True, "delivered": sent}
        return 404, {"error": "not found"}


def _parse_account(spec: str) -> SmscAccount:
    parts = spec.split(":")
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError("account is system_id:password[:tps]")
    return SmscAccount(parts[0], parts[1], float(parts[2]) if len(parts) == 3 else None)


def _parse_outcomes(spec: str) -> dict[str, float]:
    pairs = (item.split("=") for item in spec.split(",") if item)
    return {name.strip(): float(weight) for name, weight in pairs}


def main(argv: list[str] | None = None, ready: Callable[[SmscSimulator], None] | None = None) -> None:
    """Run the simulator until interrupted; prints one JSON line with the ports when ready."""
    ap = argparse.ArgumentParser(prog="tessera smsc", description="SMPP SMSC simulator")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=2775)
    ap.add_argument("--http-port", type=int, default=None)
    ap.add_argument("--account", action="append", type=_parse_account, default=None)
    ap.add_argument("--receipt-delay", type=float, default=0.0)
    ap.add_argument("--outcomes", type=_parse_outcomes, default={"delivered": 1.0})
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-keep-messages", action="store_true")
    args = ap.parse_args(argv)
    config = SmscConfig(
        accounts=args.account or [SmscAccount("tessera", "secret")],
        host=args.host,
        port=args.port,
        http_port=args.http_port,
        receipt_delay=args.receipt_delay,
        outcomes=args.outcomes,
        seed=args.seed,
        keep_messages=not args.no_keep_messages,
    )

    async def run() -> None:
        smsc = SmscSimulator(config)
        await smsc.start()
        print(json.dumps({"smsc": "ready", "port": smsc.port, "http_port": smsc.http_port}))
        if ready is not None:
            ready(smsc)
        try:
            await asyncio.Event().wait()
        finally:
            await smsc.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


if __name__ == "__main__":
    import sys

    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    main()
