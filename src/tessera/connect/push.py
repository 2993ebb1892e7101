"""Verification codes pushed to a gateway (PostgreSQL).

A code's way from the API's commit to the carrier was: the ``NOTIFY`` announcing it, the
gateway's claim (a round trip to PostgreSQL: the dispatch row's ``UPDATE … RETURNING`` with the
message's read), then its ``submit_sm``. Under bulk load every hop between processes waits for a
CPU, and the claim's round trip was the slowest stage of the slowest codes. So the API assigns a
code to a live gateway instead, in the code's own transaction: its dispatch row is written in
state 2 with ``claimed_by`` that gateway, and the announcement carries the message itself,
sealed with the tenant's data key (AES-GCM, as the number is sealed in its column; the carrier a
ported number moved to is appended by the statement, from the tenant's portability table). The
gateway hears it, builds the item from it and submits it at once; it records its claim (state 1,
the message ``queued`` with its event) beside the submit, and the submit's result after that.

Only gateways that say so in a fresh heartbeat (``connect_gateways.code_push``) are given
codes: a gateway says so while its listener is connected and heard the announcement its own
last heartbeats made (``H<gateway>``), so one whose LISTEN cannot hear (through a
transaction-pooling proxy) is not. What could be lost is recovered as a claim would be:

- an announcement the gateway did not hear (its listener reconnecting): the gateway's own sweep
  takes its assigned rows older than ``URGENT_GRACE`` that it has not seen, every
  ``PUSH_SWEEP_EVERY``
  and whenever its listener connects (``Dispatcher._sweep_pushed``);
- an announcement it heard but cannot build an item from (the tenant's keys or routes not loaded
  yet, a route missing, the message expired): it takes the row through the claim's statement,
  which reads the message, and hands it over as a claim does;
- a code whose links another gateway binds (each link is bound by one gateway, and a gateway
  holding none is not given codes): put back in the queue at once and announced with its
  tenant, so that gateway claims it (``Dispatcher._hand_back``);
- a gateway that died: its assigned rows go back to the queue with its claimed ones when its
  heartbeat is stale (``Dispatcher._heartbeat``), and a stopping gateway puts them back itself.

A gateway never sends a code twice: an announcement and the sweep are handled in one event loop,
and each message id is taken by whichever comes first (``Dispatcher._pushed_ids``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import time
import uuid
from typing import Any

import orjson

from tessera.core.crypto.keyring import get_keyring

PREFIX = "P"
SEP = "|"
# a gateway's heartbeat announces ``H<gateway>``: hearing its own tells it its listener works
HEARD_PREFIX = "H"
# pg_notify refuses payloads of 8,000 bytes and more: a longer message is announced as before
MAX_PAYLOAD = 7000
# how long the API trusts its list of gateways taking codes, and how fresh their heartbeat must be
TARGETS_TTL = 1.0
FRESH = dt.timedelta(seconds=3)


@dataclasses.dataclass(slots=True, frozen=True)
class PushedCode:
    """What a gateway needs to submit a code without reading its message."""

    message_id: uuid.UUID
    tenant_id: uuid.UUID
    to: str
    source: str
    body: str
    carrier: str  # the carrier of the number's prefix
    ported: str  # the carrier the number moved to ('' when it did not)
    channel_id: uuid.UUID
    message_class: str
    valid_until: dt.datetime | None


@dataclasses.dataclass(slots=True, frozen=True)
class Heard:
    """An announcement of a pushed code, before its message is opened."""

    gateway: str
    tenant_id: uuid.UUID
    message_id: uuid.UUID
    sealed: str
    ported: str


def announcement(gateway: str, message: dict[str, Any]) -> str | None:
    """The dispatch channel's payload pushing ``message`` (a row of ``connect_messages`` as the
    send writes it) to ``gateway``, without its ported carrier (which the statement appends);
    ``None`` when it would not fit in a notification."""
    tid: uuid.UUID = message["tenant_id"]
    valid = message.get("valid_until")
    sealed = get_keyring().encrypt(
        tid,
        orjson.dumps(
            [
                message["to"],
                message["source"] or "",
                message["body"],
                message["carrier"] or "",
                str(message["channel_id"]),
                message["message_class"],
                valid.isoformat() if valid is not None else None,
            ]
        ).decode(),
    )
    text = SEP.join((PREFIX + gateway, str(tid), str(message["id"]), sealed, ""))
    return text if len(text) <= MAX_PAYLOAD else None


def heard(payload: str) -> Heard | None:
    """The parts of a pushed code's announcement (``None``: not one, or malformed)."""
    if not payload.startswith(PREFIX):
        return None
    parts = payload[len(PREFIX) :].split(SEP)
    if len(parts) != 5:
        return None
    try:
        return Heard(parts[0], uuid.UUID(parts[1]), uuid.UUID(parts[2]), parts[3], parts[4])
    except ValueError:
        return None


def open_code(h: Heard) -> PushedCode:
    """The code's message, unsealed with the tenant's data key (which must be loaded in this
    process); raises when it cannot be."""
    to, source, body, carrier, channel, mclass, valid = orjson.loads(
        get_keyring().decrypt(h.tenant_id, h.sealed)
    )
    return PushedCode(
        h.message_id,
        h.tenant_id,
        to,
        source,
        body,
        carrier,
        h.ported,
        uuid.UUID(channel),
        mclass,
        dt.datetime.fromisoformat(valid) if valid is not None else None,
    )


class Targets:
    """The API process's list of gateways taking codes, read at most every ``TARGETS_TTL``."""

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._until = 0.0

    def due(self) -> bool:
        return time.monotonic() >= self._until

    def set(self, ids: list[str]) -> None:
        self._ids, self._until = ids, time.monotonic() + TARGETS_TTL

    def pick(self) -> str | None:
        """A gateway for the next code, any of them (one that does not bind the code's links
        hands it back to the queue, see ``Dispatcher._hand_back``)."""
        return random.choice(self._ids) if self._ids else None

    def forget(self) -> None:
        self._ids, self._until = [], 0.0


targets = Targets()
