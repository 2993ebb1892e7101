"""Value types of the SMPP ESME: results, receipts, MO, configuration, counters, rate limiter.

Split from :mod:`.client` to keep files small; import them from either module.
"""

from __future__ import annotations

import asyncio
import enum
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from tessera.connect.smpp import pdu as P


class BindState(enum.StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    BINDING = "binding"
    BOUND = "bound"
    UNBINDING = "unbinding"
    BIND_FAILED = "bind_failed"
    CLOSED = "closed"


class Outcome(enum.StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    UNKNOWN = "unknown"
    NOT_SENT = "not_sent"


class BindError(Exception):
    """The SMSC refused the bind (``status`` is the SMPP command_status)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"bind refused: {P.status_name(status)}")
        self.status = status


@dataclass(frozen=True, slots=True)
class PartResult:
    index: int
    outcome: Outcome
    message_id: str | None = None
    status: int | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class SubmitResult:
    outcome: Outcome
    parts: tuple[PartResult, ...]
    data_coding: int

    @property
    def ok(self) -> bool:
        return self.outcome is Outcome.ACCEPTED

    @property
    def message_ids(self) -> tuple[str | None, ...]:
        return tuple(p.message_id for p in self.parts)

    @property
    def message_id(self) -> str | None:
        return self.parts[0].message_id if self.parts else None

    @property
    def status(self) -> int | None:
        """First non-zero SMPP status among the parts; 0 when all were accepted."""
        for p in self.parts:
            if p.status:
                return p.status
        return 0 if self.ok else None

    @property
    def reason(self) -> str:
        return next((p.reason for p in self.parts if p.reason), "")


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    message_id: str
    stat: str
    message_state: int | None
    error: str
    delivered: bool
    source: str
    destination: str
    submit_date: str = ""
    done_date: str = ""
    sub: str = ""
    dlvrd: str = ""
    text: str = ""
    raw: str = ""


@dataclass(frozen=True, slots=True)
class MoMessage:
    source: str
    destination: str
    text: str
    data_coding: int
    payload: bytes
    parts: int
    received_at: float


ReceiptHandler = Callable[[DeliveryReceipt], Awaitable[None] | None]
MoHandler = Callable[[MoMessage], Awaitable[None] | None]


@dataclass(slots=True)
class ClientConfig:
    host: str
    port: int
    system_id: str
    password: str
    system_type: str = ""
    window: int = 10
    tps: float | None = None
    """The link's contracted throughput; None: only the window and throttling limit it."""
    enquire_link_interval: float = 30.0
    response_timeout: float = 10.0
    connect_timeout: float = 5.0
    reconnect_initial: float = 0.2
    reconnect_max: float = 30.0
    throttle_backoff_initial: float = 0.05
    throttle_backoff_max: float = 2.0
    throttle_max_retries: int = 1000
    min_tps: float = 1.0
    mo_reassembly_timeout: float = 300.0
    name: str = ""


@dataclass(slots=True)
class ClientStats:
    connects: int = 0
    connect_failures: int = 0
    binds: int = 0
    bind_failures: int = 0
    disconnects: int = 0
    submit_sm_sent: int = 0
    accepted: int = 0
    rejected: int = 0
    throttled: int = 0
    unknown: int = 0
    not_sent: int = 0
    response_timeouts: int = 0
    receipts: int = 0
    mo_messages: int = 0
    mo_parts: int = 0
    enquire_links_sent: int = 0
    generic_nacks: int = 0


_RECEIPT_FIELD: Final = re.compile(r"(id|sub|dlvrd|submit date|done date|stat|err):(\S*)", re.IGNORECASE)


class TokenBucket:
    """GCRA rate limiter: callers reserve evenly spaced slots; ``rate=None`` is unlimited."""

    __slots__ = ("_pause_until", "_tat", "burst", "rate")

    def __init__(self, rate: float | None, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst
        self._tat = 0.0
        self._pause_until = 0.0

    def set_rate(self, rate: float | None) -> None:
        self.rate = rate

    def pause(self, until: float) -> None:
        self._pause_until = max(self._pause_until, until)

    def open_now(self) -> bool:
        """Unlimited and not paused: :meth:`reserve` would answer 0.0 and change nothing."""
        return self.rate is None and time.monotonic() >= self._pause_until

    def reserve(self) -> float:
        """Reserve a slot; return how long to wait for it (0.0: go now)."""
        now = time.monotonic()
        if self.rate is None:
            return max(0.0, self._pause_until - now)
        interval = 1.0 / self.rate
        burst = self.burst if self.burst is not None else max(1.0, self.rate / 20)
        tat = max(self._tat, now, self._pause_until)
        start = max(tat - (burst - 1) * interval, now, self._pause_until)
        self._tat = tat + interval
        return start - now

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)


def parse_receipt(req: Any) -> DeliveryReceipt:
    raw = (req.short_message or req.message_payload or b"").decode("latin-1")
    found = {k.lower(): v for k, v in _RECEIPT_FIELD.findall(raw)}
    text_at = raw.lower().find("text:")
    text = raw[text_at + 5 :] if text_at >= 0 else ""
    tlv_id = P.text_field(req.receipted_message_id)
    state: int | None = req.message_state
    stat = found.get("stat", "").upper() or P.STAT_BY_STATE.get(state or 0, "")
    if state is None:
        state = P.STATE_BY_STAT.get(stat)
    return DeliveryReceipt(
        message_id=tlv_id or found.get("id", ""),
        stat=stat,
        message_state=state,
        error=found.get("err", ""),
        delivered=state == P.STATE_DELIVERED,
        source=P.text_field(req.source_addr),
        destination=P.text_field(req.destination_addr),
        submit_date=found.get("submit date", ""),
        done_date=found.get("done date", ""),
        sub=found.get("sub", ""),
        dlvrd=found.get("dlvrd", ""),
        text=text,
        raw=raw,
    )
