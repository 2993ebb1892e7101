"""The gateway's dispatcher: claim accepted messages by priority lane, route, submit, record receipts.

Flow (one :class:`Dispatcher` per gateway process)::

    connect_dispatch (state 0) --claim, lane order--> state 1 + message 'queued'
        --route (carrier by prefix, portability override, route table weights/failover)-->
        LinkRunner lanes (verification > notification > marketing; a share of each link's
        window is reserved for the two upper lanes) --SmppClient.submit--> writer
        --batched tx--> message 'submitted' + carrier ids, dispatch row deleted
    deliver_sm receipt --writer, batched tx--> 'delivered' / 'failed' / 'expired' (ack after commit)

Crash safety: a submit is only considered done once the writer has committed its result; a
worker takes its next message only after that, so at most one window per link is "sent but
not recorded". When a gateway dies, its claims (state 1) are put back by any live gateway once
its heartbeat is stale; the next claim counts the resubmission on the message (``resubmissions``
+ a ``resubmitted`` event). On PostgreSQL a link is bound by one gateway at a time
(``pg_try_advisory_lock`` on a dedicated connection); claims use ``FOR UPDATE SKIP LOCKED``.

The dispatch queue and carrier-id table are platform tables (no personal data); message rows
are read and written under ``switch_tenant`` so the guard and row-level security apply.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import os
import socket
import time
import uuid
from collections import OrderedDict, defaultdict, deque
from collections.abc import Iterable
from typing import Any, NamedTuple

from sqlalchemy import (
    Integer,
    Text,
    any_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tessera.connect import push as code_push
from tessera.connect import routing
from tessera.connect.code_claim import CodeClaimer, keys_fresh, keys_left
from tessera.connect.code_claim import DecodeError as CodeDecodeError
from tessera.connect.models import (
    FINAL_STATUSES,
    CarrierReceiptKey,
    DispatchItem,
    GatewayHeartbeat,
    Link,
    Message,
    MessageEvent,
    PortedNumber,
    RouteEntry,
)
from tessera.connect.repository import (
    DISPATCH_CHANNEL,
    dispatch_payload,
    doc_source,
    insert_rows,
    notify_payload,
    one_of,
    rows_doc,
)
from tessera.connect.smpp.client import Sent, SmppClient
from tessera.connect.smpp.common import (
    BindState,
    ClientConfig,
    DeliveryReceipt,
    MoMessage,
    Outcome,
    SubmitResult,
)
from tessera.core import context
from tessera.core.db.base import table_of, utcnow
from tessera.core.db.session import get_database, switch_tenant, unit_of_work
from tessera.core.phone import InvalidPhone, normalize_phone

log = logging.getLogger(__name__)

_wake_events: set[asyncio.Event] = set()

URGENT_CLAIM = 100
SLICE = 100  # long loops over a claim yield to the event loop every SLICE messages
URGENT_GRACE = dt.timedelta(seconds=0.5)  # PostgreSQL: a code left to the urgent claim this long
PUSH_SWEEP_EVERY = 2.0  # s between a gateway's sweeps of the codes pushed to it and not heard
PUSHED_REMEMBERED = 600.0  # s a pushed code's id is remembered (taken once, see _pushed_ids)
RECEIPT_LINGER = 0.05  # s a receipt waits for others to share its transaction…
LINGER_BELOW = 50  # …while the receipts' batches are this small (a trickle, not a flow)
RECENT_MAX = 100_000  # ~20 MB at most; a receipt older than that is matched by a SELECT
RECEIPT_STATUS = {"DELIVRD": "delivered", "EXPIRED": "expired"}
RECEIPT_REASON = {
    "UNDELIV": "carrier.undeliverable",
    "REJECTD": "carrier.rejected",
    "DELETED": "carrier.deleted",
    "UNKNOWN": "carrier.unknown",
    "EXPIRED": "carrier.expired",
}


async def _update_submitted(s: AsyncSession, upd: list[dict[str, Any]]) -> None:
    """Write the submit results of one tenant off PostgreSQL (SQLite): one ``executemany``
    (in-process, already cheap); PostgreSQL takes :func:`record_submits`' single statement. A
    Core statement on the messages table, so the guard scopes it to the tenant in scope."""
    if not upd:
        return
    t = table_of(Message)
    await s.execute(
        update(t)
        .where(t.c.id == bindparam("b_id", type_=t.c.id.type))
        .values(
            status=bindparam("b_status", type_=t.c.status.type),
            reason=bindparam("b_reason", type_=t.c.reason.type),
            carrier_ids=bindparam("b_cids", type_=t.c.carrier_ids.type),
            route=bindparam("b_route", type_=t.c.route.type),
            link_id=bindparam("b_link", type_=t.c.link_id.type),
            submitted_at=bindparam("b_sub", type_=t.c.submitted_at.type),
            done_at=bindparam("b_done", type_=t.c.done_at.type),
            updated_at=bindparam("b_upd", type_=t.c.updated_at.type),
        ),
        upd,
    )


_SUBMIT_COLUMNS = {
    "b_id": "id",
    "b_status": "status",
    "b_reason": "reason",
    "b_cids": "carrier_ids",
    "b_route": "route",
    "b_link": "link_id",
    "b_sub": "submitted_at",
    "b_done": "done_at",
}


async def record_submits(
    s: AsyncSession,
    upd: list[dict[str, Any]],
    keys: list[dict[str, Any]],
    events: list[dict[str, Any]],
    done: list[uuid.UUID],
) -> None:
    """Everything a batch of submit results of one tenant writes, in one round trip.

    PostgreSQL: one ``UPDATE`` of the messages from ``json_to_recordset`` carrying the carrier-id
    and event inserts and the dispatch-row delete as data-modifying CTEs: a result waits for
    its commit before its worker takes the next message, so the statements of this
    transaction are on the submit path. The ``UPDATE`` is guarded like any Core update of a
    tenant table; the inserts are checked by row-level security. SQLite: one statement each."""
    if not upd:
        return
    if s.get_bind().dialect.name != "postgresql":
        await _update_submitted(s, upd)
        await insert_rows(s, table_of(CarrierReceiptKey), keys)
        await insert_rows(s, table_of(MessageEvent), events)
        await s.execute(delete(DispatchItem).where(DispatchItem.message_id.in_(done)))
        return
    params: dict[str, Any] = {
        "s_doc": rows_doc(table_of(Message), [{c: u[b] for b, c in _SUBMIT_COLUMNS.items()} for u in upd]),
        "s_ev_doc": rows_doc(table_of(MessageEvent), events) if events else "[]",
        "s_done": done,
        "s_upd": upd[0]["b_upd"],
    }
    if keys:
        params["s_keys_doc"] = rows_doc(table_of(CarrierReceiptKey), keys)
    await s.execute(_built(("record_submits", bool(keys)), _record_submits_stmt, bool(keys)), params)


def _events_cte(name: str, param: str) -> Any:
    """PostgreSQL: a data-modifying CTE inserting message events from the :func:`rows_doc` bound
    as ``param`` (the events' one shape: :data:`EVENT_KEYS`)."""
    e = table_of(MessageEvent)
    v = doc_source(e, EVENT_KEYS, f"{name}_v", bindparam(param, type_=Text()))
    return insert(e).from_select(list(EVENT_KEYS), select(*v.c)).cte(name)


def _record_submits_stmt(with_keys: bool) -> Any:
    """:func:`record_submits`' statement on PostgreSQL, built once per shape (with or without
    carrier ids): an ORM ``UPDATE`` of the messages, so the tenant guard's criterion is added
    once to this statement object, not rebuilt (and the tree cache-keyed again) per batch."""
    t = table_of(Message)
    v = doc_source(t, list(_SUBMIT_COLUMNS.values()), "v", bindparam("s_doc", type_=Text()))
    ctes = []
    if with_keys:
        k = table_of(CarrierReceiptKey)
        kv = doc_source(k, _KEY_COLUMNS, "ins_keys_v", bindparam("s_keys_doc", type_=Text()))
        ctes.append(insert(k).from_select(list(_KEY_COLUMNS), select(*kv.c)).cte("ins_keys"))
    ctes.append(_events_cte("ins_events", "s_ev_doc"))
    d = table_of(DispatchItem)
    ctes.append(
        delete(d)
        .where(d.c.message_id == any_(bindparam("s_done", type_=ARRAY(d.c.message_id.type))))
        .cte("del_dispatch")
    )
    return (
        update(Message)
        .where(Message.id == v.c.id)
        .values(
            status=v.c.status,
            reason=v.c.reason,
            carrier_ids=v.c.carrier_ids,
            route=v.c.route,
            link_id=v.c.link_id,
            submitted_at=v.c.submitted_at,
            done_at=v.c.done_at,
            updated_at=bindparam("s_upd", type_=t.c.updated_at.type),
        )
        .add_cte(*ctes)
        .execution_options(synchronize_session=False)
    )


EVENT_KEYS = ("tenant_id", "message_id", "kind", "status", "detail", "at")
_KEY_COLUMNS = ["link_id", "carrier_id", "tenant_id", "message_id", "part", "parts", "outcome"]


# a claim's messages become 'queued' with their events, in one statement built once
def _queued_pg_stmt() -> Any:
    return (
        update(Message)
        .where(Message.id == any_(bindparam("q_ids", type_=ARRAY(Message.id.type))))
        .values(
            status="queued",
            queued_at=bindparam("q_now", type_=Message.queued_at.type),
            updated_at=bindparam("q_now", type_=Message.updated_at.type),
            attempts=Message.attempts + 1,
        )
        .add_cte(_events_cte("ins_events", "q_ev_doc"))
        .execution_options(synchronize_session=False)
    )


def _final_stmt(pg: bool) -> Any:
    """A receipt's final status for messages not final yet, returning those it changed: an ORM
    ``UPDATE`` built once (the guard's criterion is added once to it, not per receipt)."""
    ids = (
        Message.id == any_(bindparam("f_ids", type_=ARRAY(Message.id.type)))
        if pg
        else Message.id.in_(bindparam("f_ids", expanding=True))
    )
    return (
        update(Message)
        .where(ids, Message.status.not_in(FINAL_STATUSES))
        .values(
            status=bindparam("f_status", type_=Message.status.type),
            reason=bindparam("f_reason", type_=Message.reason.type),
            done_at=bindparam("f_now", type_=Message.done_at.type),
            updated_at=bindparam("f_now", type_=Message.updated_at.type),
        )
        .returning(Message.id)
        .execution_options(synchronize_session=False)
    )


# The hot path's statements, built on first use (not at import: some column types are only
# complete once every model is imported) and then reused.
_BUILT: dict[Any, Any] = {}


def _built(key: Any, build: Any, *args: Any) -> Any:
    stmt = _BUILT.get(key)
    if stmt is None:
        stmt = _BUILT[key] = build(*args)
    return stmt


# What a claim reads of a message, and the carrier its number was ported to (the guard and
# row-level security scope the subquery to the tenant like the rest of the statement).
_MESSAGE_COLUMNS = (
    Message.id,
    Message.to,
    Message.to_index,
    Message.source,
    Message.body,
    Message.carrier,
    Message.channel_id,
    Message.valid_until,
    Message.status,
    Message.channel_kind,
    Message.template_id,
    Message.variables,
    Message.message_class,
    Message.created_at,
)
_PORTED_TO = (
    select(PortedNumber.carrier)
    .where(PortedNumber.number_index == Message.to_index)
    .limit(1)
    .scalar_subquery()
    .label("ported_to")
)


def _claimed_messages_stmt(pg: bool) -> Any:
    """What a claim reads of its messages (binds: ids ``m_ids``), built once: a statement built
    per claim carried the claim's ids in a tree of reference cycles that only the cyclic
    garbage collector frees (the gateway's longest pauses under bulk load)."""
    ids = (
        Message.id == any_(bindparam("m_ids", type_=ARRAY(Message.id.type)))
        if pg
        else Message.id.in_(bindparam("m_ids", expanding=True))
    )
    return select(*_MESSAGE_COLUMNS, _PORTED_TO).where(ids)


def _ready_dispatch(columns: list[Any], now: Any, lanes: Any, limit: Any) -> Any:
    """The dispatch rows ready at ``now`` in the lanes below ``lanes``, at most ``limit``, in
    claim order (values or bound parameters), selecting ``columns``."""
    d = table_of(DispatchItem)
    return (
        select(*columns)
        .where(d.c.state == 0, d.c.available_at <= now, d.c.lane < lanes)
        .order_by(d.c.lane, d.c.available_at, d.c.message_id)
        .limit(limit)
    )


def _bulk_claim_stmt(codes: str) -> Any:
    """:meth:`Dispatcher.claim`'s statement on PostgreSQL, built once per ``codes`` (lane 0:
    ``all`` of it, ``none``, or the codes that ``waited`` since ``b_waited``): lock the ready
    dispatch rows (``b_now``, lanes below ``b_lanes``, at most ``b_limit``), mark them claimed by
    ``b_by`` and return them. Built per claim, the statement was garbage in reference cycles."""
    d = table_of(DispatchItem)
    now = bindparam("b_now", type_=d.c.available_at.type)
    ready = _ready_dispatch(
        [d.c.message_id],
        now,
        bindparam("b_lanes", type_=Integer()),
        bindparam("b_limit", type_=Integer()),
    )
    if codes == "none":
        ready = ready.where(d.c.lane > 0)
    elif codes == "waited":
        ready = ready.where(
            or_(d.c.lane > 0, d.c.available_at <= bindparam("b_waited", type_=d.c.available_at.type))
        )
    return (
        update(d)
        .where(d.c.message_id.in_(ready.with_for_update(skip_locked=True).scalar_subquery()))
        .values(
            state=1,
            claimed_by=bindparam("b_by", type_=d.c.claimed_by.type),
            claimed_at=now,
            claims=d.c.claims + 1,
        )
        .returning(d.c.message_id, d.c.tenant_id, d.c.lane, d.c.claims, d.c.available_at)
    )


def _gc_summary(pauses: list[tuple[int, float, float, int]]) -> dict[str, dict[str, Any]]:
    """Trace only: the collector's pauses (generation, seconds, CPU seconds, objects collected)
    per generation: how many, the longest and its time on the CPU (the rest of it waiting for
    one), the total, and the garbage found (objects in reference cycles, freed by them)."""
    out: dict[str, dict[str, Any]] = {}
    for g in (0, 1, 2):
        mine = [p for p in pauses if p[0] == g]
        longest = max(mine, key=lambda p: p[1], default=(g, 0.0, 0.0, 0))
        out[f"gen{g}"] = {
            "n": len(mine),
            "max_ms": round(longest[1] * 1000, 2),
            "total_ms": round(sum(p[1] for p in mine) * 1000, 1),
            "cpu_max_ms": round(longest[2] * 1000, 2),
            "collected": sum(p[3] for p in mine),
        }
    return out


def _claim_codes_stmt(pushed: bool = False) -> Any:
    """:meth:`Dispatcher.claim_codes`' statement, built once (binds: tenant ``c_tid``, time
    ``c_now``, ``c_limit``, gateway ``c_by``): building and cache-keying this tree of a CTE,
    a subquery and a join per claim was a good part of a code's claim CPU. ``pushed``
    (PostgreSQL): the take of codes pushed to gateway ``c_by`` (:mod:`tessera.connect.push`),
    the dispatch rows of ids ``c_ids`` still assigned to it, instead of the ready ones."""
    d = table_of(DispatchItem)
    tenant = d.c.tenant_id == bindparam("c_tid", type_=d.c.tenant_id.type)
    if pushed:
        ready = (
            select(d.c.message_id)
            .where(
                d.c.state == 2,
                d.c.claimed_by == bindparam("c_by", type_=d.c.claimed_by.type),
                tenant,
                d.c.message_id == any_(bindparam("c_ids", type_=ARRAY(d.c.message_id.type))),
            )
            .with_for_update(skip_locked=True)
        )
    else:
        ready = (
            select(d.c.message_id)
            .where(
                d.c.state == 0,
                d.c.lane == 0,
                tenant,
                d.c.available_at <= bindparam("c_now", type_=d.c.available_at.type),
            )
            .order_by(d.c.available_at, d.c.message_id)
            .limit(bindparam("c_limit", type_=Integer()))
            .with_for_update(skip_locked=True)
        )
    claimed = (
        update(d)
        .where(d.c.message_id.in_(ready.scalar_subquery()))
        .values(
            state=1,
            claimed_by=bindparam("c_by", type_=d.c.claimed_by.type),
            claimed_at=bindparam("c_now", type_=d.c.claimed_at.type),
            claims=d.c.claims + 1,
        )
        .returning(d.c.message_id, d.c.claims, d.c.available_at)
        .cte("claimed")
    )
    # The claimed messages that can go (not final nor submitted, not past their validity)
    # become 'queued' with their event in the same statement, as _claim_tenant would write
    # them (a resubmission counted, its event ``resubmitted``); the SELECT below still reads
    # the rows as they were (one snapshot), and _claim_tenant undoes the rare deferral.
    m = table_of(Message)
    now = bindparam("c_now", type_=m.c.queued_at.type)
    resub = claimed.c.claims > 1
    queued = (
        update(m)
        .where(
            m.c.id == claimed.c.message_id,
            m.c.status.not_in((*FINAL_STATUSES, "submitted")),
            or_(m.c.valid_until.is_(None), m.c.valid_until >= now),
        )
        .values(
            status="queued",
            queued_at=now,
            updated_at=now,
            attempts=m.c.attempts + 1,
            resubmissions=m.c.resubmissions + case((resub, 1), else_=0),
        )
        .returning(m.c.id, m.c.carrier, m.c.to_index, claimed.c.claims)
        .cte("queued")
    )
    ported = (
        select(PortedNumber.carrier)
        .where(PortedNumber.number_index == queued.c.to_index)
        .limit(1)
        .scalar_subquery()
    )
    carrier = case((func.coalesce(ported, "") != "", ported), else_=queued.c.carrier)
    again = queued.c.claims > 1
    e = table_of(MessageEvent)
    events = insert(e).from_select(
        list(EVENT_KEYS),
        select(
            bindparam("c_tid", type_=e.c.tenant_id.type),
            queued.c.id,
            case((again, "resubmitted"), else_="status"),
            literal("queued"),
            case(
                (
                    again,
                    func.jsonb_build_object(
                        "claim", queued.c.claims, "gateway", bindparam("c_by", type_=Text())
                    ),
                ),
                else_=func.jsonb_build_object("carrier", carrier),
            ),
            bindparam("c_now", type_=e.c.at.type),
        ),
    )
    return (
        select(
            claimed.c.message_id.label("claimed_id"),
            claimed.c.claims.label("claims"),
            claimed.c.available_at.label("available_at"),
            *_MESSAGE_COLUMNS,
            _PORTED_TO,
            Message.queued_at,
            Message.attempts,
            Message.resubmissions,
            Message.updated_at,
            queued.c.id.label("queued_id"),
        )
        .select_from(
            claimed.outerjoin(Message, Message.id == claimed.c.message_id).outerjoin(
                queued, queued.c.id == claimed.c.message_id
            )
        )
        .add_cte(events.cte("ins_events"))
        .order_by(claimed.c.available_at, claimed.c.message_id)
    )


def _pg(s: AsyncSession) -> bool:
    return s.get_bind().dialect.name == "postgresql"


def _final_of(stat: str, error: str) -> tuple[str, str | None]:
    """Final status and reason of a message from a receipt's ``stat`` (and error code)."""
    if stat == "DELIVRD":
        return "delivered", None
    status = RECEIPT_STATUS.get(stat, "failed")
    reason = RECEIPT_REASON.get(stat, "carrier.failed")
    if error and status == "failed":
        reason = f"{reason}.{error}"
    return status, reason


_urgent_asks: set[Any] = set()  # Dispatcher._ask_urgent of the dispatchers of this process


def wake(lane: int | None = None, tenant_id: uuid.UUID | None = None) -> None:
    """Tell in-process dispatchers that new messages were committed (called after commit);
    ``lane`` 0 (verification) wakes the urgent claim, which claims at once even when the
    local lanes are full (anything else committed with it is claimed within a poll); with
    ``tenant_id`` it claims that tenant's codes in the tenant's own transaction."""
    if lane == 0:
        for ask in list(_urgent_asks):
            ask(tenant_id)
        return
    for ev in list(_wake_events):
        ev.set()


try:  # status webhooks fan out from the event bus when the kernel provides it
    from tessera.core.events.service import publish as _publish
except ImportError:  # pragma: no cover - kernel piece not present
    _publish = None  # type: ignore[assignment]


@dataclasses.dataclass(slots=True)
class Item:
    message_id: uuid.UUID
    tenant_id: uuid.UUID
    lane: int
    to: str
    source: str
    body: str
    carrier: str
    candidates: list[uuid.UUID]
    tried: list[uuid.UUID] = dataclasses.field(default_factory=list)
    resubmission: bool = False
    kind: str = "sms"
    channel_id: uuid.UUID | None = None
    template_ref: str | None = None
    variables: dict[str, Any] = dataclasses.field(default_factory=dict)
    rule: dict[str, Any] | None = None  # the route row that matched (tessera.connect.routing)
    # a pushed code (tessera.connect.push): done once its claim is recorded, which its result
    # waits for (so the message is 'queued' before it is 'submitted')
    taken: asyncio.Future[None] | None = None


# How long a stopping task has to end before it is cancelled again (see end_tasks).
RECANCEL_AFTER_S = 1.0
# How long a stopping gateway's loops and writers have to finish what they are doing (a claim,
# a batch of results) and end by themselves before they are cancelled: a task cancelled inside
# a database call can lose its connection with the transaction still open (SQLite's write lock
# then stays held by the abandoned connection; every later writer waits its busy timeout).
STOP_GRACE_S = 5.0


async def end_tasks(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until every one has ended, cancelling again those still
    running after ``RECANCEL_AFTER_S``: on Python 3.11 ``asyncio.wait_for`` can lose a cancel
    that arrives as what it waits for completes, and the task goes on (a link worker then
    records its result through a writer being stopped, and would wait for ever, and so would
    its link's stop). Raises what a task died of, as awaiting it would; a cancel of the caller
    is not swallowed."""
    for task in tasks:
        task.cancel()
    pending = {task for task in tasks if not task.done()}
    while pending:
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_AFTER_S)
        for task in pending:
            task.cancel()
    died = [e for task in tasks if not task.cancelled() and (e := task.exception()) is not None]
    if died:
        raise died[0]


@dataclasses.dataclass(slots=True)
class LinkInfo:
    id: uuid.UUID
    tenant_id: uuid.UUID
    host: str
    port: int
    system_id: str
    password: str
    system_type: str
    window: int
    tps: float | None
    status: str
    source_rules: dict[str, Any] = dataclasses.field(default_factory=dict)

    def connection(self) -> tuple[Any, ...]:
        """What a bind is made of: a change rebinds the link (see :meth:`Dispatcher.bind_links`)."""
        return (self.host, self.port, self.system_id, self.password, self.system_type, self.window, self.tps)


@dataclasses.dataclass(slots=True)
class TenantRoutes:
    loaded_at: float
    links: dict[uuid.UUID, LinkInfo]
    routes: dict[uuid.UUID, list[Any]]  # channel → routing.RouteRow (or plain tuples of its fields)
    wechat: dict[uuid.UUID, tuple[str, str, str]] = dataclasses.field(
        default_factory=dict
    )  # appid, secret, api base
    templates: dict[uuid.UUID, str] = dataclasses.field(default_factory=dict)  # template → WeChat template id
    email: dict[uuid.UUID, tuple[dict[str, Any], str | None]] = dataclasses.field(
        default_factory=dict
    )  # email channel → settings, secret
    loaded_utc: dt.datetime = dataclasses.field(default_factory=utcnow)  # when the load started


class _KeyRow(NamedTuple):
    carrier_id: str
    tenant_id: uuid.UUID
    message_id: uuid.UUID
    parts: int


class _Claimed(NamedTuple):
    message_id: uuid.UUID
    tenant_id: uuid.UUID
    lane: int
    claims: int  # claims before this one


def _advisory_key(link_id: uuid.UUID) -> int:
    return (link_id.int & 0x7FFF_FFFF_FFFF_FFFF) ^ 0x5EED


class LinkRunner:
    """One SMPP bind with three priority lanes and ``window`` workers.

    A worker takes the most urgent item its kind allows: ``reserve0`` workers take verification
    codes only (so a code never waits for a window full of notifications), the next ones up
    to ``reserve`` take verification and notification, the rest every lane. An idle worker
    waits on its own future; a new item wakes one idle worker that may take it (no
    thundering herd of ``window`` workers per message)."""

    def __init__(self, dispatcher: Dispatcher, info: LinkInfo) -> None:
        self.d = dispatcher
        self.info = info
        self.lanes: tuple[deque[Item], deque[Item], deque[Item]] = (deque(), deque(), deque())
        # an idle worker's future: woken with None (take from the lanes) or with a code already
        # written for it to finish (see put)
        self.idle: tuple[deque[asyncio.Future[tuple[Item, Sent] | None]], ...] = (deque(), deque(), deque())
        self.workers: list[asyncio.Task[None]] = []
        self.reserve = max(1, info.window // 5) if info.window > 1 else 0
        self.reserve0 = max(1, info.window // 25) if info.window > 2 else 0
        self.lock_conn: AsyncConnection | None = None
        self.available = False
        self.busy = 0  # workers holding an item (a rebind waits for them, see Dispatcher._retire)
        cfg = ClientConfig(
            host=info.host,
            port=info.port,
            system_id=info.system_id,
            password=info.password,
            system_type=info.system_type,
            window=info.window,
            tps=info.tps,
            name=str(info.id),
            **dispatcher.client_options,
        )
        self.client = SmppClient(cfg, on_receipt=self._on_receipt, on_mo=self._on_mo)

    @property
    def bound(self) -> bool:
        return self.available and self.client.state is BindState.BOUND

    def pending(self) -> int:
        return sum(len(q) for q in self.lanes)

    async def start(self) -> bool:
        db = get_database()
        if db.is_postgres:
            conn = await db.engine.connect()
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            got = (
                await conn.execute(
                    text("SELECT pg_try_advisory_lock(:k)"), {"k": _advisory_key(self.info.id)}
                )
            ).scalar()
            if not got:
                await conn.close()
                log.info("link %s is bound by another gateway", self.info.id)
                return False
            self.lock_conn = conn
        self.available = True
        await self.client.start(wait=False)
        self.workers = [
            asyncio.create_task(self._work(i), name=f"link-{self.info.id}-{i}")
            for i in range(self.info.window)
        ]
        return True

    async def stop(self) -> list[Item]:
        await end_tasks(self.workers)
        await self.client.close()
        if self.lock_conn is not None:
            with contextlib.suppress(Exception):
                await self.lock_conn.close()
        left = [it for q in self.lanes for it in q]
        for q in self.lanes:
            q.clear()
        self.available = False
        return left

    async def put(self, item: Item) -> None:
        if item.lane == 0 and self._send_now(item):
            return
        self.lanes[item.lane].append(item)
        self._wake_one(item.lane)

    def _send_now(self, item: Item) -> bool:
        """A verification code with an idle worker to finish it: its submit_sm is written now,
        in the claim's turn of the event loop, rather than in that worker's next turn (under
        bulk load one turn is milliseconds); the worker then awaits the answer and records it
        as usual, so what is sent and not recorded is still at most one message per worker."""
        for kind in range(3):
            idle = self.idle[kind]
            while idle:
                fut = idle.popleft()
                if fut.done():
                    continue
                sent = self.client.send_now(item.source or "10690000", item.to, item.body)
                if sent is None:
                    idle.appendleft(fut)
                    return False
                if self.d.trace is not None:
                    self.d.trace.setdefault(item.to.lstrip("+"), {})["worker"] = time.time()
                fut.set_result((item, sent))
                return True
        return False

    def _wake_one(self, lane: int) -> None:
        """Wake one idle worker allowed to take ``lane``, the most specialised first (a code's
        worker is any idle one: every worker may take a code)."""
        for kind in range(lane, 3):
            idle = self.idle[kind]
            while idle:
                fut = idle.popleft()
                if not fut.done():
                    fut.set_result(None)
                    return

    def _take(self, kind: int) -> Item | None:
        for lane in range(kind + 1):
            q = self.lanes[lane]
            if q:
                item = q.popleft()
                for rest in range(3):  # more waiting: pass the word on to another idle worker
                    if self.lanes[rest]:
                        self._wake_one(rest)
                        break
                return item
        return None

    def _kind(self, index: int) -> int:
        return 0 if index < self.reserve0 else (1 if index < self.reserve else 2)

    async def _work(self, index: int) -> None:
        kind = self._kind(index)
        loop = asyncio.get_running_loop()
        while True:
            item = self._take(kind)
            sent: Sent | None = None
            if item is None:
                fut: asyncio.Future[tuple[Item, Sent] | None] = loop.create_future()
                self.idle[kind].append(fut)
                given = await fut
                if given is None:
                    continue
                item, sent = given  # a code written by put(): its answer to wait for
            self.busy += 1
            self.d.in_flight.add(item.message_id)
            started = time.monotonic()
            if self.d.trace is not None and item.lane == 0 and sent is None:
                self.d.trace.setdefault(item.to.lstrip("+"), {})["worker"] = time.time()
            try:
                if sent is not None:
                    result = await self.client.finish(sent)
                else:
                    result = await self.client.submit(
                        item.source or "10690000",
                        item.to,
                        item.body,
                        registered_delivery=True,
                        timeout=self.d.submit_timeout,
                        urgent=item.lane == 0,
                    )
            except asyncio.CancelledError:
                raise
            except Exception:  # an encoding or socket error must not kill the worker
                log.exception("submit failed")
                result = SubmitResult(Outcome.NOT_SENT, (), 0)
            answered = time.monotonic()
            if self.d.trace is not None and item.lane == 0:
                self.d.trace.setdefault(item.to.lstrip("+"), {})["answered"] = time.time()
            await self.d.on_result(self, item, result)
            self.d.stats["submit_wait_ms"] += int((answered - started) * 1000)
            self.d.stats["record_wait_ms"] += int((time.monotonic() - answered) * 1000)
            self.d.in_flight.discard(item.message_id)
            self.busy -= 1

    def _on_receipt(self, receipt: DeliveryReceipt) -> asyncio.Future[None]:
        """The receipt's future, done once the receipt is committed (the client acknowledges
        it then, by a callback: no task per receipt)."""
        return self.d.receipt_writer.enqueue("receipt", (self.info.id, receipt))

    async def _on_mo(self, mo: MoMessage) -> None:
        """Store a mobile-originated message for the link's tenant before it is acknowledged
        (opt-out keywords, auto-reply rules and the inbound webhook follow from there)."""
        from tessera.connect.inbound.service import receive_mo

        source = mo.source
        if source.isdigit() and not source.startswith("0"):
            # SMPP carries international numbers without "+" (TON international).
            try:
                source = normalize_phone(f"+{source}", "CN", field="source")
            except InvalidPhone:
                source = mo.source
        await receive_mo(self.info.tenant_id, source, mo.destination, mo.text or "")


class WeChatRunner:
    """Sends the WeChat template messages of one channel (official HTTP API, bounded concurrency)."""

    def __init__(
        self, dispatcher: Dispatcher, channel_id: uuid.UUID, appid: str, secret: str, api_base: str
    ) -> None:
        from tessera.connect.adapters.wechat import DEFAULT_API_BASE, WeChatClient

        self.d = dispatcher
        self.info = dataclasses.make_dataclass("Info", [("id", uuid.UUID), ("window", int)])(channel_id, 20)
        self.client = WeChatClient(
            appid, secret, api_base=api_base or DEFAULT_API_BASE, transport=dispatcher.wechat_transport
        )
        self.sem = asyncio.Semaphore(20)
        self.tasks: set[asyncio.Task[None]] = set()
        self.bound = True
        self.params = (appid, secret, api_base)
        self._retired: set[asyncio.Task[None]] = set()

    def reconfigure(self, appid: str, secret: str, api_base: str) -> None:
        """The channel's app id, secret or API address changed: new sends use a new client; the
        old one is closed once the sends already under way on it are done."""
        from tessera.connect.adapters.wechat import DEFAULT_API_BASE, WeChatClient

        old, busy = self.client, set(self.tasks)
        self.client = WeChatClient(
            appid, secret, api_base=api_base or DEFAULT_API_BASE, transport=self.d.wechat_transport
        )
        self.params = (appid, secret, api_base)

        async def close_old() -> None:
            if busy:
                await asyncio.wait(busy, timeout=60)
            await old.close()

        task = asyncio.create_task(close_old())
        self._retired.add(task)
        task.add_done_callback(self._retired.discard)

    def pending(self) -> int:
        return len(self.tasks)

    async def put(self, item: Item) -> None:
        task = asyncio.create_task(self._send(item))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _send(self, item: Item) -> None:
        from tessera.connect.adapters.wechat import WeChatError
        from tessera.connect.smpp.common import PartResult

        async with self.sem:
            self.d.in_flight.add(item.message_id)
            try:
                msgid = await self.client.send_template(
                    item.to, item.template_ref or "", {k: str(v) for k, v in item.variables.items()}
                )
                result = SubmitResult(
                    Outcome.ACCEPTED, (PartResult(0, Outcome.ACCEPTED, message_id=msgid, status=0),), 0
                )
            except WeChatError as exc:
                result = SubmitResult(
                    Outcome.REJECTED,
                    (
                        PartResult(
                            0, Outcome.REJECTED, status=exc.errcode, reason=f"wechat.errcode_{exc.errcode}"
                        ),
                    ),
                    0,
                )
            except Exception:  # network: the request may or may not have arrived
                log.exception("wechat send failed")
                result = SubmitResult(Outcome.UNKNOWN, (PartResult(0, Outcome.UNKNOWN),), 0)
            await self.d.on_result(self, item, result)  # type: ignore[arg-type]
            self.d.in_flight.discard(item.message_id)

    async def stop(self) -> list[Item]:
        for t in list(self.tasks):
            t.cancel()
        await self.client.close()
        return []


_STOP: Any = ("stop", None, None)  # a writer's queue: write what is queued, then end


class Writer:
    """Batches every hot-path write (submit results, receipts) into short transactions.

    ``concurrency`` > 1 (submit results on PostgreSQL): while one batch commits, the next one
    is written beside it (after ``linger``, to gather more), so a result waits for about one
    commit rather than for the end of the previous batch and then its own. Batches of results
    never share a message, so they cannot block each other. A batch whose writes all belong
    to one tenant runs in that tenant's transaction (its tenant set with ``BEGIN``, no
    switching)."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        name: str = "connect-writer",
        *,
        concurrency: int = 1,
        linger: float = 0.0,
    ) -> None:
        self.d = dispatcher
        self.name = name
        self.concurrency = concurrency
        self.linger = linger
        self.queue: asyncio.Queue[tuple[str, Any, asyncio.Future[None]]] = asyncio.Queue()
        self.waiting: list[tuple[float, tuple[uuid.UUID, DeliveryReceipt], asyncio.Future[None]]] = []
        self.task: asyncio.Task[None] | None = None
        self.flushing: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.last_size = 0

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Write what is queued, let the batches being written commit, then end (what has not
        ended after ``STOP_GRACE_S`` is cancelled)."""
        if self.task is not None and not self.task.done():
            self.queue.put_nowait(_STOP)
            await asyncio.wait([self.task], timeout=STOP_GRACE_S)
        if self.flushing:
            await asyncio.wait(set(self.flushing), timeout=STOP_GRACE_S)
        await end_tasks([t for t in (self.task, *self.flushing) if t is not None])

    async def submit_outcome(self, kind: str, payload: Any) -> None:
        await self.enqueue(kind, payload)

    def enqueue(self, kind: str, payload: Any) -> asyncio.Future[None]:
        """Queue a write; its future is done once the write is committed (or failed)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((kind, payload, fut))
        return fut

    async def receipt(self, link_id: uuid.UUID, receipt: DeliveryReceipt) -> None:
        await self.submit_outcome("receipt", (link_id, receipt))

    def kick(self) -> None:
        """Submit results were committed: try the receipts waiting for their message now."""
        if self.waiting and self.queue.empty():
            self.queue.put_nowait(("kick", None, None))  # type: ignore[arg-type]

    async def _run(self) -> None:
        while True:
            try:
                timeout = 0.05 if self.waiting else None
                try:
                    first = await asyncio.wait_for(self.queue.get(), timeout)
                    batch = [first]
                except TimeoutError:
                    batch = []
                stopping = first is _STOP if batch else False
                if stopping:  # what is queued behind is written, then the loop ends
                    batch = []
                if self.concurrency > 1:
                    if self.flushing and self.linger:
                        await asyncio.sleep(self.linger)
                    while len(self.flushing) >= self.concurrency:
                        await asyncio.wait(self.flushing, return_when=asyncio.FIRST_COMPLETED)
                elif self.linger and batch and self.last_size < LINGER_BELOW:
                    # a trickle (the last batch was small): gather more; receipts hold no send.
                    # A flow makes its batches big by itself, and waits for nothing.
                    await asyncio.sleep(self.linger)
                while not self.queue.empty() and len(batch) < 2000:
                    item = self.queue.get_nowait()
                    if item is _STOP:
                        stopping = True
                    else:
                        batch.append(item)
                self.last_size = len(batch)
                if stopping:
                    if batch:
                        await self._flush_logged(batch)
                    if self.queue.empty():
                        return
                    self.queue.put_nowait(_STOP)  # more behind (over 2,000): another batch
                elif self.concurrency > 1:
                    task = asyncio.create_task(self._flush_logged(batch))
                    self.flushing.add(task)
                    task.add_done_callback(self.flushing.discard)
                else:
                    await self._flush(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("writer batch failed")
                await asyncio.sleep(0.2)

    async def _flush_logged(self, batch: list[tuple[str, Any, asyncio.Future[None]]]) -> None:
        try:
            await self._flush(batch)
        except Exception:  # the batch's futures carry the error to their workers
            log.exception("writer batch failed")

    async def _flush(self, batch: list[tuple[str, Any, asyncio.Future[None]]]) -> None:
        results = [(p, f) for k, p, f in batch if k not in ("receipt", "kick")]
        receipts = [(p, f) for k, p, f in batch if k == "receipt"]
        written: list[dict[str, Any]] = []
        now = time.monotonic()
        retry = [(p, f) for _, p, f in self.waiting]
        deadlines = {id(f): t for t, _, f in self.waiting}
        self.waiting = []
        receipts = retry + receipts
        tenants = {(p if isinstance(p, Item) else p[1]).tenant_id for p, _ in results}
        only = next(iter(tenants)) if len(tenants) == 1 and not receipts else None
        if receipts and not results:  # receipts of one tenant, all matched in memory: its own
            only = self.d.receipts_tenant([p for p, _ in receipts])  # transaction, no switch
        try:
            with context.tenant_scope(only):
                async with unit_of_work(platform=only is None) as s:
                    if results:
                        written = await self.d.apply_results(s, [p for p, _ in results], in_tenant=only)
                    unmatched = (
                        await self.d.apply_receipts(s, [p for p, _ in receipts], in_tenant=only)
                        if receipts
                        else set()
                    )
        except Exception as exc:
            for _, f in results + receipts:
                if not f.done():
                    f.set_exception(exc)
            raise
        self.batches += 1
        self.d.stats[f"{self.name}_batches"] += 1
        self.d.stats[f"{self.name}_items"] += len(batch)
        if written:
            self.d.remember(written)
        for _, f in results:
            if not f.done():
                f.set_result(None)
        for p, f in receipts:
            if f.done():
                continue
            if id(p) in unmatched:
                started = deadlines.get(id(f), now)
                if now - started > self.d.receipt_match_timeout:
                    f.set_exception(LookupError(f"no message for carrier id {p[1].message_id}"))
                else:
                    self.waiting.append((started, p, f))
            else:
                f.set_result(None)


class Dispatcher:
    """Claims, routes and submits messages; owns the link runners of this gateway process."""

    def __init__(
        self,
        *,
        gateway_id: str | None = None,
        claim_batch: int = 500,
        heartbeat_interval: float = 1.0,
        stale_after: float = 5.0,
        poll_interval: float = 0.05,
        idle_poll: float = 0.5,
        submit_timeout: float = 5.0,
        receipt_match_timeout: float = 10.0,
        max_pending: int | None = None,
        client_options: dict[str, Any] | None = None,
        wechat_transport: Any = None,
        link_refresh: float = 5.0,
        route_reload_min: float = 1.0,
        trace_file: str | None = None,
        direct_code_claim: bool = True,
        push_codes: bool = True,
    ) -> None:
        # PostgreSQL: verification codes claimed in one round trip (tessera.connect.code_claim)
        self.direct_code_claim = direct_code_claim
        self._claimer: CodeClaimer | None = None
        self._key_reloads: dict[uuid.UUID, asyncio.Task[None]] = {}  # see _keep_keys
        # PostgreSQL: take the codes the API pushes to this gateway (tessera.connect.push);
        # each pushed id is taken once, by its announcement or by the sweep, whichever is first
        self.push_codes = push_codes
        self._pushed_ids: OrderedDict[uuid.UUID, float] = OrderedDict()
        self._takes: dict[uuid.UUID, list[tuple[uuid.UUID, asyncio.Future[None]]]] = {}
        self._take_task: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._push_swept = 0.0
        self.wechat_transport = wechat_transport
        # verification codes' stage times (wall clock), written to ``trace_file`` at stop: see
        # bench/otp_latency.py; destination → {stage: time.time()}
        self.trace_file = trace_file
        self.trace: dict[str, dict[str, float]] | None = {} if trace_file else None
        self._urgent_at = 0.0  # when the urgent claim was last asked for (trace only)
        self.link_refresh = link_refresh
        self.route_reload_min = route_reload_min  # a route miss reloads a tenant's table at most this often
        self.id = gateway_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.claim_batch = claim_batch
        self.heartbeat_interval = heartbeat_interval
        self.stale_after = stale_after
        self.poll_interval = poll_interval
        # PostgreSQL with the NOTIFY listener up: how often an empty queue is polled (see
        # _claim_loop); messages whose time comes (scheduled, deferred, released) wait this long
        self.idle_poll = idle_poll
        self._listening = False
        # when the listener last heard this gateway's own heartbeat announcement: proof that
        # announcements reach it (a LISTEN through a transaction-pooling proxy would not)
        self._heard_self = -1e9
        self.submit_timeout = submit_timeout
        self.receipt_match_timeout = receipt_match_timeout
        self.max_pending = max_pending
        self.client_options = client_options or {"reconnect_initial": 0.05, "reconnect_max": 1.0}
        self.runners: dict[uuid.UUID, LinkRunner] = {}
        self.unavailable: set[uuid.UUID] = set()
        self.routes: dict[uuid.UUID, TenantRoutes] = {}
        # submit results: their commit latency bounds throughput (see Writer; concurrent
        # batches on PostgreSQL, set at start)
        self.writer = Writer(self, "connect-results", linger=0.005)
        # receipts in their own transactions, a trickle of them (one per verification code)
        # gathered for RECEIPT_LINGER: nothing waits for them but their acknowledgement, so
        # they are written a few at a time rather than one transaction each
        self.receipt_writer = Writer(self, "connect-receipts", linger=RECEIPT_LINGER)
        self.in_flight: set[uuid.UUID] = set()
        # (link, carrier id) → (tenant, message, parts) of recently committed submits: most
        # receipts follow their submit within seconds and are matched without a query
        self.recent: OrderedDict[tuple[uuid.UUID, str], tuple[uuid.UUID, uuid.UUID, int]] = OrderedDict()
        self._wake = asyncio.Event()
        self._urgent = asyncio.Event()
        self._urgent_tenants: set[uuid.UUID] = set()  # tenants whose codes were announced
        self._urgent_any = False  # codes of any tenant (an announcement without one)
        self._swept = 0.0  # when the urgent claimers last swept up every tenant's codes
        self._bulk_idle = False  # the last claim of every lane found nothing (see claim)
        self._tasks: list[asyncio.Task[None]] = []
        self.stats: dict[str, int] = defaultdict(int)
        self._stopped = False
        self._stopping = asyncio.Event()  # set by stop(): the loops end at their next turn

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        code_push.targets.forget()
        _wake_events.add(self._wake)
        _urgent_asks.add(self._ask_urgent)
        await self._heartbeat()
        self.writer.concurrency = 3 if get_database().is_postgres else 1
        self.writer.start()
        self.receipt_writer.start()
        try:
            await self.bind_links()
        except Exception:  # the links loop tries again
            log.exception("binding the links failed")
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="connect-claim"),
            # two urgent claimers: a code announced while one claims is claimed by the other
            asyncio.create_task(self._urgent_loop(), name="connect-claim-urgent"),
            asyncio.create_task(self._urgent_loop(), name="connect-claim-urgent-2"),
            asyncio.create_task(self._heartbeat_loop(), name="connect-heartbeat"),
            asyncio.create_task(self._links_loop(), name="connect-links"),
        ]
        if get_database().is_postgres:
            self._tasks.append(asyncio.create_task(self._listen(), name="connect-listen"))
        if self.trace is not None:
            self._tasks.append(asyncio.create_task(self._loop_lag(), name="connect-loop-lag"))

    async def stop(self) -> None:
        """Stop claiming, stop the links, put back what was claimed but not submitted."""
        if self._stopped:
            return
        self._stopped = True
        _wake_events.discard(self._wake)
        _urgent_asks.discard(self._ask_urgent)
        code_push.targets.forget()
        # the loops end by themselves at their next turn (not inside a database call)
        self._stopping.set()
        self._wake.set()
        self._urgent.set()
        takes = [self._take_task] if self._take_task is not None else []
        tasks = self._tasks + list(self._key_reloads.values()) + takes + list(self._side_tasks)
        running = [t for t in tasks if not t.done()]
        if running:
            _, still = await asyncio.wait(running, timeout=STOP_GRACE_S)
            if still:
                log.warning("gateway %s: cancelling %s", self.id, sorted(t.get_name() for t in still))
        await end_tasks(tasks)
        for entries in self._takes.values():  # not taken: the stop puts the rows back below
            for _, fut in entries:
                if not fut.done():
                    fut.set_result(None)
        self._takes = {}
        left: list[Item] = []
        for r in list(self.runners.values()):
            left += await r.stop()
        self.runners.clear()
        await self.writer.stop()
        await self.receipt_writer.stop()
        if self._claimer is not None:
            await self._claimer.close()
        log.warning("gateway %s stopping: %s", self.id, dict(self.stats))
        if self.trace_file and self.trace is not None:
            import orjson

            with open(self.trace_file, "wb") as f:
                lags = sorted(getattr(self, "trace_lags", []) or [0.0])
                lag = {f"p{q}": round(lags[int(q / 100 * (len(lags) - 1))] * 1000, 2) for q in (50, 99)}
                lag["max"] = round(lags[-1] * 1000, 2)
                late = getattr(self, "trace_late", [])
                lag["over_20ms"] = len(late)
                # of the time lost to late wake-ups, the share this process was on the CPU
                lag["over_20ms_busy_share"] = (
                    round(sum(c for _, c in late) / sum(x for x, _ in late), 2) if late else None
                )
                gc_ms = _gc_summary(getattr(self, "trace_gc", []))
                f.write(
                    orjson.dumps(
                        {"stages": self.trace, "stats": dict(self.stats), "loop_lag_ms": lag, "gc": gc_ms}
                    )
                )
        with contextlib.suppress(Exception):
            await self._release([it.message_id for it in left], resubmission=False)
            with context.tenant_scope(None):
                async with unit_of_work(platform=True) as s:
                    # whatever is still claimed by us was possibly sent: the next gateway resubmits
                    # (and so are the codes pushed to us and not taken)
                    await s.execute(
                        update(DispatchItem)
                        .where(DispatchItem.claimed_by == self.id, DispatchItem.state.in_((1, 2)))
                        .values(state=0, claimed_by=None)
                    )
                    await s.execute(delete(GatewayHeartbeat).where(GatewayHeartbeat.id == self.id))

    def pending(self) -> int:
        return sum(r.pending() for r in self.runners.values()) + len(self.in_flight)

    def capacity(self) -> int:
        if self.max_pending is not None:
            return self.max_pending
        windows = sum(r.info.window for r in self.runners.values())
        return max(self.claim_batch, 4 * windows)

    # -- heartbeat and recovery ------------------------------------------------------------
    async def _heartbeat(self) -> None:
        now = utcnow()
        with context.tenant_scope(None):
            async with unit_of_work(platform=True) as s:
                row = await s.get(GatewayHeartbeat, self.id)
                push = self._takes_pushes()
                if self.push_codes and self._listening and _pg(s):  # heard by our listener
                    await s.execute(
                        select(func.pg_notify(DISPATCH_CHANNEL, code_push.HEARD_PREFIX + self.id))
                    )
                if row is None:
                    s.add(GatewayHeartbeat(id=self.id, heartbeat_at=now, started_at=now, code_push=push))
                else:
                    row.heartbeat_at = now
                    row.code_push = push
                stale = now - dt.timedelta(seconds=self.stale_after)
                dead = select(GatewayHeartbeat.id).where(GatewayHeartbeat.heartbeat_at < stale)
                live = select(GatewayHeartbeat.id).where(GatewayHeartbeat.heartbeat_at >= stale)
                res = await s.execute(
                    update(DispatchItem)
                    .where(DispatchItem.state.in_((1, 2)), DispatchItem.claimed_by.not_in(live))
                    .values(state=0, claimed_by=None)
                )
                recovered = int(getattr(res, "rowcount", 0) or 0)
                if recovered:
                    log.warning("recovered %d messages claimed by dead gateways", recovered)
                    self.stats["recovered"] += recovered
                await s.execute(delete(GatewayHeartbeat).where(GatewayHeartbeat.id.in_(dead)))

    # -- links ------------------------------------------------------------------------------
    async def bind_links(self) -> int:
        """Bind every enabled SMPP link of every tenant that no runner of ours holds yet, traffic
        or not: a link also carries the carrier's MO messages and receipts. On PostgreSQL a link
        held by another gateway is skipped (advisory lock) and tried again on the next round, so
        a surviving gateway takes over the links of a dead one. Returns the links started."""
        from tessera.core.tenancy.models import Tenant

        todo: list[tuple[uuid.UUID, uuid.UUID]] = []
        retire: list[uuid.UUID] = []
        known: set[uuid.UUID] = set()
        with context.tenant_scope(None):
            async with unit_of_work(platform=True) as s:
                tids = list((await s.execute(select(Tenant.id))).scalars())
                for tid in tids:
                    await switch_tenant(s, tid)
                    routes = await self._routes(s, tid, force=True)
                    known.update(routes.links)
                    for lid, info in routes.links.items():
                        runner = self.runners.get(lid)
                        if isinstance(runner, LinkRunner) and (
                            info.status != "active" or runner.info.connection() != info.connection()
                        ):
                            retire.append(lid)  # edited or disabled: unbind, and rebind if active
                        if info.status == "active" and (runner is None or lid in retire):
                            todo.append((tid, lid))
                    for cid, params in routes.wechat.items():
                        wr = self.runners.get(cid)
                        if isinstance(wr, WeChatRunner) and wr.params != params:
                            wr.reconfigure(*params)
                await switch_tenant(s, None)
        retire += [lid for lid, r in self.runners.items() if isinstance(r, LinkRunner) and lid not in known]
        for lid in retire:
            await self._retire(lid)
        started = 0
        for tid, lid in todo:
            if self._stopped:
                break
            self.unavailable.discard(lid)
            if await self._runner(tid, lid) is not None:
                started += 1
        return started

    async def _retire(self, link_id: uuid.UUID) -> None:
        """Unbind a link whose settings changed (or that was disabled or deleted): no new work
        goes to it, what waits in its lanes is put back in the queue, submits waiting for the
        window come back not sent, and the submits on the wire finish before the bind closes."""
        runner = self.runners.pop(link_id, None)
        if not isinstance(runner, LinkRunner):
            return
        log.info("link %s changed: unbinding it", link_id)
        left = [it for q in runner.lanes for it in q]
        for q in runner.lanes:
            q.clear()
        await runner.client.close()
        deadline = time.monotonic() + self.submit_timeout + 5.0
        while runner.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        left += await runner.stop()
        await self._release([it.message_id for it in left], resubmission=False)
        self.stats["rebound"] += 1

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or until the gateway stops."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stopping.wait()

    async def _links_loop(self) -> None:
        while not self._stopped:
            await self._pause(self.link_refresh)
            if self._stopped:
                return
            try:
                await self.bind_links()
            except Exception:
                log.exception("binding the links failed")

    async def _heartbeat_loop(self) -> None:
        while not self._stopped:
            await self._pause(self.heartbeat_interval)
            if self._stopped:
                return
            try:
                await self._heartbeat()
            except Exception:
                log.exception("gateway heartbeat failed")

    # -- claiming --------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        while not self._stopped:
            self._wake.clear()
            claimed = 0
            empty = False  # a claim ran and found nothing ready (not: the lanes had no room)
            try:
                room = self.capacity() - self.pending()
                if room >= max(1, min(self.claim_batch, self.capacity()) // 4):
                    claimed = await self.claim(min(room, self.claim_batch))
                    empty = claimed == 0
                    self._bulk_idle = empty
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("claim failed")
                await asyncio.sleep(0.5)
            if claimed == 0 or self.pending() >= self.capacity():
                # Nothing ready: with the NOTIFY listener up every commit of messages wakes this
                # loop (and codes have the urgent claim), so the poll only finds messages whose
                # time came (scheduled, deferred, released): it waits ``idle_poll`` rather than
                # running a claim transaction every ``poll_interval`` (20 a second) for nothing.
                # Lanes full: ``poll_interval``, to refill them as their workers free up.
                wait = self.poll_interval
                if empty and self._listening:
                    wait = max(wait, self.idle_poll)
                # asyncio.timeout, not wait_for: on 3.11 wait_for loses a cancel that arrives as
                # the event is set (a wake() during stop()), and stop() then waits forever
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(wait):
                        await self._wake.wait()

    def _ask_urgent(self, tenant_id: uuid.UUID | None) -> None:
        """Codes were committed (of ``tenant_id``, or of any tenant when ``None``)."""
        if tenant_id is None:
            self._urgent_any = True
        else:
            self._urgent_tenants.add(tenant_id)
        if self.trace is not None and not self._urgent.is_set():
            self._urgent_at = time.time()
        self._urgent.set()

    async def _urgent_loop(self) -> None:
        """Verification codes (lane 0) are claimed by their own tasks as soon as they are
        committed, beside the bulk claims (``SKIP LOCKED`` keeps them apart on PostgreSQL) and
        whatever the local lanes hold: a code does not wait for a bulk claim to finish. An
        announcement naming the tenant (the API's ``NOTIFY`` does) is claimed by
        :meth:`claim_codes` in that tenant's own transaction, in fewer round trips. On
        PostgreSQL, while the announcements are heard and bulk work flows, codes are the urgent
        claimers' alone (see :meth:`claim`): every ``URGENT_GRACE`` one of them also sweeps up
        the codes of every tenant with codes ready that long, in case an announcement was
        missed (by :meth:`claim_codes`, tenant by tenant: :meth:`_tenants_with_codes`)."""
        postgres = get_database().is_postgres
        grace = URGENT_GRACE.total_seconds()
        while not self._stopped:
            sweep = False
            if postgres:
                try:
                    async with asyncio.timeout(max(0.0, self._swept + grace - time.monotonic())):
                        await self._urgent.wait()
                except TimeoutError:
                    due = time.monotonic() >= self._swept + grace  # not swept by the other claimer
                    if due:  # the next one in URGENT_GRACE, swept now or not (idle: no spinning)
                        self._swept = time.monotonic()
                    sweep = due and self._listening and not self._bulk_idle
            else:
                await self._urgent.wait()
            if self._stopped:
                return
            self._urgent.clear()
            if postgres and self.push_codes and time.monotonic() >= self._push_swept + PUSH_SWEEP_EVERY:
                self._push_swept = time.monotonic()  # (the other claimer does not sweep too)
                self._side_task(self._sweep_pushed_logged())
            tenants, self._urgent_tenants = self._urgent_tenants, set()
            every, self._urgent_any = self._urgent_any, False
            if not tenants and not every and not sweep:
                continue  # the other claimer took this announcement
            asked = self._urgent_at if tenants or every else time.time()
            try:
                if postgres:
                    for tid in tenants:
                        if self._bound_elsewhere(tid):  # the gateway that binds them claims them
                            continue
                        while await self.claim_codes(tid, URGENT_CLAIM, asked=asked) >= URGENT_CLAIM:
                            pass
                if every or sweep or not postgres:
                    if postgres:  # tenant by tenant, as an announcement is claimed
                        for tid in await self._tenants_with_codes(missed=sweep and not every):
                            while await self.claim_codes(tid, URGENT_CLAIM, asked=asked) >= URGENT_CLAIM:
                                pass
                    else:  # (no sweep: SQLite has no announcements to miss)
                        while await self.claim(URGENT_CLAIM, lanes=1, asked=asked) >= URGENT_CLAIM:
                            pass
                    self.stats["code_sweeps"] += sweep
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("urgent claim failed")
                await asyncio.sleep(0.5)

    async def _tenants_with_codes(self, missed: bool) -> list[uuid.UUID]:
        """PostgreSQL: the tenants with verification codes ready (``missed``: for URGENT_GRACE
        already), which the urgent claimers' sweep claims by :meth:`claim_codes`, one round trip
        each, rather than through the claim of every lane (a transaction of six round trips:
        under bulk load, with the API slow to commit, the codes it swept up were the slowest
        ~2 %); a tenant's fresh codes go with its missed ones."""
        now = utcnow()
        d = table_of(DispatchItem)
        ready = (
            select(d.c.tenant_id)
            .where(d.c.state == 0, d.c.lane == 0, d.c.available_at <= (now - URGENT_GRACE if missed else now))
            .distinct()
        )
        with context.tenant_scope(None):
            async with unit_of_work(platform=True) as s:
                return list((await s.execute(ready)).scalars())

    async def _loop_lag(self) -> None:
        """Trace only: how late a 5 ms sleep wakes up (the event loop's longest stretches); for
        the late ones (over 20 ms) how much of the lateness this process spent on the CPU (its
        own work, e.g. a long batch) rather than waiting for one (a busy machine); and the
        garbage collector's pauses."""
        import gc

        lags: list[float] = []
        late: list[tuple[float, float]] = []  # (lag, CPU of this process meanwhile)
        pauses: list[tuple[int, float, float, int]] = []  # (generation, seconds, CPU s, collected)
        self.trace_lags, self.trace_late, self.trace_gc = lags, late, pauses
        started: list[float] = [0.0, 0.0]

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                started[0], started[1] = time.perf_counter(), time.thread_time()
            else:
                wall, cpu = time.perf_counter() - started[0], time.thread_time() - started[1]
                pauses.append((info["generation"], wall, cpu, info["collected"]))

        gc.callbacks.append(on_gc)
        try:
            while not self._stopped:
                t, c = time.monotonic(), time.process_time()
                await asyncio.sleep(0.005)
                lag = time.monotonic() - t - 0.005
                lags.append(lag)
                if lag > 0.02:
                    late.append((lag, time.process_time() - c))
        finally:
            gc.callbacks.remove(on_gc)

    async def _listen(self) -> None:
        """PostgreSQL: LISTEN for messages committed by other processes (the API) on a dedicated
        connection; the payload is the lowest lane committed, and lane 0 claims at once."""
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(get_database().url).set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        while not self._stopped:
            try:
                conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
                try:
                    await conn.execute(f"LISTEN {DISPATCH_CHANNEL}")
                    self._listening = True
                    self._wake.set()  # whatever was committed while not listening: claim it now
                    if self.push_codes:
                        await self._heartbeat()  # announces itself: once heard, codes come
                        await self._sweep_pushed(all_ages=True)  # and those we did not hear
                    while not self._stopped:
                        async for note in conn.notifies(timeout=0.5):
                            if note.payload.startswith(code_push.PREFIX):
                                await self._on_pushed(note.payload)
                                continue
                            if note.payload.startswith(code_push.HEARD_PREFIX):
                                self._heard(note.payload)
                                continue
                            lane, _, tenant = note.payload.partition(":")
                            if lane == "0":  # the urgent claim; other lanes within a poll
                                self._ask_urgent(uuid.UUID(tenant) if tenant else None)
                            else:
                                self._wake.set()
                finally:
                    self._listening = False
                    await conn.close()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("connect listen failed")
                await asyncio.sleep(1.0)

    # -- codes pushed to this gateway (tessera.connect.push) ---------------------------------
    def _takes_pushes(self) -> bool:
        """This gateway takes pushed codes (its heartbeat says so): PostgreSQL, listening, its
        listener heard one of its last heartbeats' announcements, and it holds an SMPP link
        (each link is bound by one gateway: one holding none could only hand codes back)."""
        return (
            self.push_codes
            and self._listening
            and not self._stopped
            and time.monotonic() - self._heard_self < 3 * self.heartbeat_interval + 1.0
            and any(isinstance(r, LinkRunner) and r.available for r in self.runners.values())
            and get_database().is_postgres
        )

    def _heard(self, payload: str) -> None:
        """A gateway's heartbeat announcement: this one's proves its listener hears the
        channel; the first one heard (again) is told at once rather than at the next beat."""
        if payload[len(code_push.HEARD_PREFIX) :] != self.id:
            return
        told = self._takes_pushes()
        self._heard_self = time.monotonic()
        if not told and self._takes_pushes():
            self._side_task(self._heartbeat())

    async def _on_pushed(self, payload: str) -> None:
        """A code pushed to a gateway was announced: if to this one, and not taken yet, it is
        submitted at once (its claim recorded beside it, :meth:`_take_later`); one it cannot
        build an item from is taken through the claim statement, which reads its message."""
        heard_at = time.time()
        h = code_push.heard(payload)
        if h is None or h.gateway != self.id or h.message_id in self._pushed_ids:
            return
        self._pushed_ids[h.message_id] = time.monotonic()
        elsewhere = self._bound_elsewhere(h.tenant_id)
        item = None if elsewhere else self._pushed_item(h)
        if item is None and not elsewhere:
            self.stats["pushed_claimed"] += 1
            self._side_task(self._take_and_hand(h.tenant_id, [h.message_id], heard_at))
            return
        if item is None or not any(c in self.runners for c in item.candidates):
            # its links are bound by another gateway: back to the queue, announced to them
            self.stats["pushed_handed_back"] += 1
            self._side_task(self._hand_back(h.tenant_id, h.message_id))
            return
        self.stats["pushed"] += 1
        item.taken = self._take_later(h.tenant_id, h.message_id)
        if self.trace is not None:
            self.trace[item.to.lstrip("+")] = {
                "wake": heard_at,
                "claim": heard_at,
                "claimed": heard_at,
                "urgent": 1.0,
                "pushed": 1.0,
            }
        try:
            await self._dispatch(item)
        except Exception:  # e.g. its link could not be started: back in the queue, as unsent
            log.exception("handing over a pushed code failed")
            await self.writer.submit_outcome("release", item)

    def _pushed_item(self, h: code_push.Heard) -> Item | None:
        """The item of a pushed code, from its announcement and the cached route table;
        ``None`` when the tenant's keys or routes are not loaded (or too old), the message
        cannot be opened, has expired or has no route in the cached table: then the claim's
        statement reads it and decides, as for a claimed code."""
        tid = h.tenant_id
        routes = self.routes.get(tid)
        if (
            routes is None
            or time.monotonic() - routes.loaded_at >= self._routes_max_age
            or not keys_fresh(tid)
        ):
            return None
        try:
            code = code_push.open_code(h)
        except Exception:
            log.warning("a code pushed to gateway %s could not be opened", self.id, exc_info=True)
            return None
        if code.valid_until is not None and code.valid_until < utcnow():
            return None
        carrier = code.ported or code.carrier
        rows = self._route_rows(routes, code, carrier)
        if not rows:
            return None
        self._keep_keys(tid)
        return Item(
            code.message_id,
            tid,
            0,
            code.to,
            code.source,
            code.body,
            carrier,
            [r.link_id for r in rows],
            channel_id=code.channel_id,
            rule=routing.describe(rows[0]),
        )

    def _bound_elsewhere(self, tid: uuid.UUID) -> bool:
        """Every SMPP link of the tenant (in the cached route table) is bound by another
        gateway: its codes are that gateway's to send (this one would claim and release them)."""
        routes = self.routes.get(tid)
        if routes is None or not routes.links:
            return False
        return all(lid in self.unavailable for lid in routes.links)

    async def _hand_back(self, tid: uuid.UUID, message_id: uuid.UUID) -> None:
        """A pushed code whose links another gateway binds: ready again at once and announced
        with its tenant, so that gateway's urgent claim takes it (as every code was before
        pushes). If this fails, the row stays assigned here and the sweep takes it."""
        try:
            with context.tenant_scope(None):
                async with unit_of_work(platform=True) as s:
                    d = DispatchItem
                    await s.execute(
                        update(d)
                        .where(d.message_id == message_id, d.state == 2, d.claimed_by == self.id)
                        .values(state=0, claimed_by=None, available_at=utcnow())
                    )
                    await notify_payload(s, dispatch_payload(0, tid))
        except Exception:
            self._pushed_ids.pop(message_id, None)
            log.exception("handing a pushed code back failed")

    def _side_task(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    def _take_later(self, tid: uuid.UUID, message_id: uuid.UUID) -> asyncio.Future[None]:
        """Record the claim of a pushed code being submitted (its dispatch row claimed by this
        gateway, its message 'queued' with its event), with the others heard meanwhile; the
        future is done once that is committed (or failed: its result is recorded anyway)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._takes.setdefault(tid, []).append((message_id, fut))
        if self._take_task is None or self._take_task.done():
            self._take_task = asyncio.create_task(self._run_takes(), name="connect-takes")
        return fut

    async def _run_takes(self) -> None:
        while self._takes:
            batch, self._takes = self._takes, {}
            claimer = self._code_claimer()
            for tid, entries in batch.items():
                ids = [m for m, _ in entries]
                try:
                    if claimer is not None:  # one round trip (tessera.connect.code_claim)
                        await claimer.take(tid, utcnow(), self.id, ids)
                    else:
                        with context.tenant_scope(tid):
                            async with unit_of_work() as s:
                                await self._take_pushed(s, tid, ids, utcnow())
                    self.stats["pushed_taken"] += len(entries)
                except Exception:
                    log.exception("recording the claim of pushed codes failed")
                finally:
                    for _, fut in entries:
                        if not fut.done():
                            fut.set_result(None)

    async def _take_pushed(
        self, s: AsyncSession, tid: uuid.UUID, ids: list[uuid.UUID], now: dt.datetime
    ) -> list[Any]:
        """The claim statement's take of these codes pushed to this gateway (those still
        assigned to it), in the session's transaction; its rows, messages read."""
        params = {"c_tid": tid, "c_now": now, "c_by": self.id, "c_ids": ids}
        return list((await s.execute(_built("take_pushed", _claim_codes_stmt, True), params)).all())

    async def _take_and_hand(self, tid: uuid.UUID, ids: list[uuid.UUID], asked: float) -> int:
        """Take pushed codes through the claim statement (their messages read from the
        database) and hand them over as claimed codes; on failure they are forgotten as seen,
        so the next sweep takes them."""
        t_claim = time.time()
        now = utcnow()
        try:
            with context.tenant_scope(tid):
                async with unit_of_work() as s:
                    rows = await self._take_pushed(s, tid, ids, now)
                    trows = [_Claimed(r.claimed_id, tid, 0, r.claims - 1) for r in rows]
                    msgs = [r for r in rows if r.id is not None]
                    items = (
                        await self._claim_tenant(s, tid, trows, now, msgs=msgs, in_claim=True) if rows else []
                    )
        except Exception:
            for mid in ids:
                self._pushed_ids.pop(mid, None)
            log.exception("taking pushed codes failed")
            return 0
        self.stats["claimed_codes"] += len(rows)
        await self._claimed(items, asked, t_claim, True)
        return len(rows)

    async def _sweep_pushed(self, *, all_ages: bool = False) -> int:
        """Codes pushed to this gateway and not heard (an announcement sent while its listener
        reconnected), assigned ``URGENT_GRACE`` ago at least (``all_ages``: any, as the listener
        connects): taken and handed over as claims. Returns how many."""
        now = utcnow()
        self._push_swept = time.monotonic()
        horizon = time.monotonic() - PUSHED_REMEMBERED
        while self._pushed_ids and next(iter(self._pushed_ids.values())) < horizon:
            self._pushed_ids.popitem(last=False)
        d = table_of(DispatchItem)
        cut = now if all_ages else now - URGENT_GRACE
        stmt = select(d.c.message_id, d.c.tenant_id).where(
            d.c.state == 2, d.c.claimed_by == self.id, d.c.claimed_at <= cut
        )
        with context.tenant_scope(None):
            async with unit_of_work(platform=True) as s:
                rows = (await s.execute(stmt)).all()
        by_tenant: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
        seen = time.monotonic()
        for mid, tid in rows:
            if mid not in self._pushed_ids:  # (no await between this check and the mark)
                self._pushed_ids[mid] = seen
                by_tenant[tid].append(mid)
        taken = 0
        for tid, ids in by_tenant.items():
            taken += await self._take_and_hand(tid, ids, time.time())
        self.stats["pushed_swept"] += taken
        return taken

    async def _sweep_pushed_logged(self) -> None:
        try:
            await self._sweep_pushed()
        except Exception:
            log.exception("sweeping pushed codes failed")

    async def claim(self, limit: int, *, lanes: int = 3, asked: float = 0.0) -> int:
        """Claim up to ``limit`` ready messages of the first ``lanes`` lanes, by lane order."""
        t_claim = time.time()
        now = utcnow()
        items: list[Item] = []
        d = table_of(DispatchItem)
        pg = get_database().is_postgres
        # codes are announced to every gateway and claimed by the urgent claim in a few
        # milliseconds, else a code ready as a thousand-message claim starts would wait for
        # that whole claim. With the announcements heard and bulk work flowing, a bulk claim
        # takes none: a code whose transaction was slow to commit is older than URGENT_GRACE
        # when announced (under bulk load ~2 % of codes were taken by bulk claims that way, the
        # slowest of them), and one whose announcement was missed is swept up by the urgent
        # claimers every URGENT_GRACE (_urgent_loop). Otherwise (the last claim found nothing:
        # an idle poll holds no code long) a bulk claim takes a code that waited URGENT_GRACE,
        # and the urgent claimers do not sweep.
        codes = "all"
        if lanes > 1 and pg:
            codes = "none" if self._listening and not self._bulk_idle else "waited"
        with context.tenant_scope(None):
            async with unit_of_work(platform=True) as s:
                rows: list[_Claimed]
                if pg:  # one statement: lock, mark and read the claim
                    got = list(
                        (
                            await s.execute(
                                _built(("bulk_claim", codes), _bulk_claim_stmt, codes),
                                {
                                    "b_now": now,
                                    "b_lanes": lanes,
                                    "b_limit": limit,
                                    "b_waited": now - URGENT_GRACE,
                                    "b_by": self.id,
                                },
                            )
                        ).all()
                    )
                    got.sort(key=lambda r: (r.lane, r.available_at, r.message_id))
                    rows = [_Claimed(r.message_id, r.tenant_id, r.lane, r.claims - 1) for r in got]
                else:
                    ready = _ready_dispatch(
                        [d.c.message_id, d.c.tenant_id, d.c.lane, d.c.claims], now, lanes, limit
                    )
                    rows = [_Claimed(*r) for r in (await s.execute(ready)).all()]
                    if rows:
                        await s.execute(
                            update(d)
                            .where(d.c.message_id.in_([r.message_id for r in rows]))
                            .values(state=1, claimed_by=self.id, claimed_at=now, claims=d.c.claims + 1)
                        )
                if not rows:
                    return 0
                by_tenant: dict[uuid.UUID, list[_Claimed]] = defaultdict(list)
                for r in rows:
                    by_tenant[r.tenant_id].append(r)
                for tid, trows in by_tenant.items():
                    await switch_tenant(s, tid)
                    items += await self._claim_tenant(s, tid, trows, now)
                # no switch back to no tenant: the setting is the transaction's own and ends
                # with the commit (a round trip less on every claim); the context variable is
                # restored by tenant_scope
        await self._claimed(items, asked or t_claim, t_claim, lanes == 1)
        return len(items)

    async def _claimed(
        self, items: list[Item], asked: float, t_claim: float, urgent: bool, t_rows: float | None = None
    ) -> None:
        """Hand committed claims to their links (a slice at a time: a claim of a thousand
        messages must not hold the event loop while a code's claim waits for its turn).
        ``t_rows`` (trace): when the one-round-trip claim's rows came back."""
        if self.trace is not None:
            t_done = time.time()
            for it in items:
                if it.lane == 0:
                    self.trace[it.to.lstrip("+")] = {
                        "wake": asked,
                        "claim": t_claim,
                        "claimed": t_done,
                        "urgent": float(urgent),
                    }
                    if t_rows is not None:
                        self.trace[it.to.lstrip("+")]["rows"] = t_rows
        for i, it in enumerate(items):
            if i and not i % SLICE:
                await asyncio.sleep(0)
            await self._dispatch(it)
        self.stats["claimed"] += len(items)

    async def claim_codes(self, tid: uuid.UUID, limit: int, *, asked: float = 0.0) -> int:
        """PostgreSQL: claim up to ``limit`` verification codes of tenant ``tid`` (announced by
        its ``NOTIFY``) in the tenant's own transaction: the dispatch rows' claim, the
        messages' 'queued' status and their events are data-modifying CTEs of the messages'
        read (:func:`_claim_codes_stmt`), so the claim takes two round trips (``BEGIN`` with
        the tenant, the claim) and the commit, where the claim of every lane takes eight;
        each of them waits for a turn of a busy event loop. Rows whose message is gone come
        back without one and are dropped as usual; a message whose route is not known yet is
        put back as it was (:meth:`_undo_queued`)."""
        t_claim = time.time()
        now = utcnow()
        claimer = self._code_claimer()
        if claimer is not None and keys_fresh(tid):
            rows = await self._claim_codes_direct(claimer, tid, now, limit)
            if not rows:
                return 0
            t_rows: float | None = time.time()
            self.stats["claimed_codes_direct"] += len(rows)
            self._keep_keys(tid)
            trows = [_Claimed(r.claimed_id, tid, 0, r.claims - 1) for r in rows]
            msgs = [r for r in rows if r.id is not None]
            try:
                with context.tenant_scope(tid):
                    # committed: whatever is left to write (a deferral, an expiry, a reloaded
                    # route table) goes in a transaction of its own, opened only when needed
                    async with unit_of_work() as s:
                        items = await self._claim_tenant(
                            s, tid, trows, now, msgs=msgs, in_claim=True, pg=True
                        )
            except Exception:
                await self._put_back_codes(tid, rows, now)
                raise
        else:
            t_rows = None
            params = {"c_tid": tid, "c_now": now, "c_limit": limit, "c_by": self.id}
            with context.tenant_scope(tid):
                async with unit_of_work() as s:
                    rows = list((await s.execute(_built("claim_codes", _claim_codes_stmt), params)).all())
                    if not rows:
                        return 0
                    trows = [_Claimed(r.claimed_id, tid, 0, r.claims - 1) for r in rows]
                    msgs = [r for r in rows if r.id is not None]
                    items = await self._claim_tenant(s, tid, trows, now, msgs=msgs, in_claim=True)
            if claimer is not None:
                self._keep_keys(tid)  # loaded (or reloaded) by this transaction
        self.stats["claimed_codes"] += len(rows)
        await self._claimed(items, asked or t_claim, t_claim, True, t_rows)
        return len(rows)

    def _keep_keys(self, tid: uuid.UUID) -> None:
        """A tenant whose codes are claimed in one round trip: its keys are reloaded as soon as
        their time to live is over, by a transaction begun then for that alone, rather than by
        the claim of a code (see :mod:`tessera.connect.code_claim`). One reload at a time per
        tenant; the claims after it schedule the next one."""
        if tid in self._key_reloads or self._stopped:
            return
        left = keys_left(tid)
        if left is None:
            return
        task = asyncio.create_task(self._reload_keys(tid, left), name=f"connect-keys-{tid}")
        self._key_reloads[tid] = task
        task.add_done_callback(lambda _t: self._key_reloads.pop(tid, None))

    async def _reload_keys(self, tid: uuid.UUID, after: float) -> None:
        await self._pause(max(0.0, after) + 0.01)
        if self._stopped:
            return
        try:
            with context.tenant_scope(tid):
                async with unit_of_work() as s:
                    # BEGIN with the tenant: its keys, past their time to live, are reloaded
                    await s.connection()
            self.stats["key_reloads"] += 1
        except Exception:  # the next code's claim goes through a unit of work, which loads them
            log.warning("reloading the keys of tenant %s failed", tid, exc_info=True)

    def _code_claimer(self) -> CodeClaimer | None:
        """The one-round-trip code claim (:mod:`tessera.connect.code_claim`): PostgreSQL
        through psycopg, unless ``direct_code_claim`` was turned off."""
        if self._claimer is None and self.direct_code_claim:
            db = get_database()
            if db.is_postgres and db.engine.dialect.driver == "psycopg":
                self._claimer = CodeClaimer(
                    db.url,
                    db.engine.dialect,
                    _built("claim_codes", _claim_codes_stmt),
                    take_stmt=_built("take_pushed", _claim_codes_stmt, True),
                )
            else:
                self.direct_code_claim = False
        return self._claimer

    async def _claim_codes_direct(
        self, claimer: CodeClaimer, tid: uuid.UUID, now: dt.datetime, limit: int
    ) -> list[Any]:
        """The claim, committed; a row that cannot be decoded puts the whole claim back."""
        try:
            return await claimer.claim(tid, now, limit, self.id)
        except CodeDecodeError as exc:
            rows = exc.args[1] if len(exc.args) > 1 else []
            await self._put_back_codes(tid, rows, now)
            raise

    async def _put_back_codes(self, tid: uuid.UUID, rows: list[Any], now: dt.datetime) -> None:
        """Claimed codes whose claim committed but whose items could not be built: back in
        the queue as they were (their message's status and counters, their 'queued' event,
        the dispatch row's claim), as a failed claim through a unit of work leaves them."""
        if not rows:
            return
        with context.tenant_scope(tid):
            async with unit_of_work() as s:
                undo = [r for r in rows if r.queued_id is not None]
                if undo:
                    await self._undo_queued(s, undo, now)
                await s.execute(
                    update(DispatchItem)
                    .where(one_of(s, DispatchItem.message_id, [r.claimed_id for r in rows]))
                    .where(DispatchItem.claimed_by == self.id, DispatchItem.state == 1)
                    .values(state=0, claimed_by=None, claims=DispatchItem.claims - 1)
                )

    async def _claim_tenant(
        self,
        s: AsyncSession,
        tid: uuid.UUID,
        claimed: list[_Claimed],
        now: dt.datetime,
        *,
        msgs: list[Any] | None = None,
        in_claim: bool = False,
        pg: bool | None = None,
    ) -> list[Item]:
        """Items of the claimed messages of tenant ``tid`` (in scope); ``msgs``: their rows
        already read (:meth:`claim_codes`), else read here; ``in_claim``: the claim statement
        made those with a ``queued_id`` 'queued' already, with their event; ``pg``: the
        database's kind when known (``s`` is then not touched unless something is written)."""
        claims = {r.message_id: r.claims for r in claimed}
        lanes = {r.message_id: r.lane for r in claimed}
        postgres = _pg(s) if pg is None else pg
        if msgs is None:
            msgs = list(
                (
                    await s.execute(
                        _built(("claimed_messages", postgres), _claimed_messages_stmt, postgres),
                        {"m_ids": list(claims)},
                    )
                ).all()
            )
        routes = await self._routes(s, tid)
        deferred: list[uuid.UUID] = []
        undo: list[Any] = []  # queued by the claim statement, then deferred: put back as they were
        expired, gone, live, resub = [], [], [], []
        found = {m.id for m in msgs}
        gone = [mid for mid in claims if mid not in found]
        items: list[Item] = []
        events: list[dict[str, Any]] = []
        for i, m in enumerate(msgs):
            # yields inside a transaction only where writers do not queue behind it (not SQLite)
            if postgres and i and not i % SLICE:
                await asyncio.sleep(0)  # a turn for a code's claim between slices of a big claim
            if m.status in FINAL_STATUSES or m.status == "submitted":
                gone.append(m.id)
                continue
            if m.valid_until is not None and m.valid_until < now:
                expired.append(m.id)
                events.append(
                    {
                        "tenant_id": tid,
                        "message_id": m.id,
                        "kind": "status",
                        "status": "expired",
                        "detail": {"reason": "validity.elapsed"},
                        "at": now,
                    }
                )
                continue
            carrier = m.ported_to or m.carrier
            wechat = m.channel_kind in ("wechat", "email")  # one sender per channel, no route table
            if wechat and m.channel_id not in routes.email and m.channel_id not in routes.wechat:
                # a channel created since the table was cached: reload rather than release the
                # message to be claimed again and again until the next refresh
                fresh = await self._reload_on_miss(s, tid, routes, m.created_at)
                if fresh is None:
                    deferred.append(m.id)
                    if in_claim and m.queued_id is not None:
                        undo.append(m)
                    continue
                routes = fresh
            rows = [] if wechat else self._route_rows(routes, m, carrier)
            if not wechat and not rows:  # a route created since the table was cached is used
                fresh = await self._reload_on_miss(s, tid, routes, m.created_at)
                if fresh is None:
                    deferred.append(m.id)
                    if in_claim and m.queued_id is not None:
                        undo.append(m)
                    continue
                routes = fresh
                rows = self._route_rows(routes, m, carrier)
            candidates = [m.channel_id] if wechat else [r.link_id for r in rows]
            item = Item(
                m.id,
                tid,
                lanes[m.id],
                m.to,
                m.source,
                m.body,
                carrier,
                candidates,
                resubmission=claims[m.id] > 0,
                kind=m.channel_kind,
                channel_id=m.channel_id,
                template_ref=routes.templates.get(m.template_id) if m.template_id else None,
                variables=dict(m.variables or {}),
                rule=routing.describe(rows[0]) if rows else None,
            )
            items.append(item)
            if in_claim and m.queued_id is not None:  # status, counters and event written
                if item.resubmission:
                    self.stats["resubmitted"] += 1
                continue
            live.append(m.id)
            if item.resubmission:
                resub.append(m.id)
                events.append(
                    {
                        "tenant_id": tid,
                        "message_id": m.id,
                        "kind": "resubmitted",
                        "status": "queued",
                        "detail": {"claim": claims[m.id] + 1, "gateway": self.id},
                        "at": now,
                    }
                )
            else:
                events.append(
                    {
                        "tenant_id": tid,
                        "message_id": m.id,
                        "kind": "status",
                        "status": "queued",
                        "detail": {"carrier": carrier},
                        "at": now,
                    }
                )
        # PostgreSQL: the events go in the status update's round trip (a data-modifying CTE)
        ev_in_update = bool(live) and _pg(s)
        if ev_in_update:
            await s.execute(
                _built("queued", _queued_pg_stmt),
                {"q_ids": live, "q_now": now, "q_ev_doc": rows_doc(table_of(MessageEvent), events)},
            )
        elif live:
            await s.execute(
                update(Message)
                .where(one_of(s, Message.id, live))
                .values(status="queued", queued_at=now, updated_at=now, attempts=Message.attempts + 1)
                .execution_options(synchronize_session=False)
            )
        if resub:
            await s.execute(
                update(Message)
                .where(one_of(s, Message.id, resub))
                .values(resubmissions=Message.resubmissions + 1)
                .execution_options(synchronize_session=False)
            )
            self.stats["resubmitted"] += len(resub)
        if expired:
            await s.execute(
                update(Message)
                .where(one_of(s, Message.id, expired))
                .values(status="expired", reason="validity.elapsed", done_at=now)
                .execution_options(synchronize_session=False)
            )
        if not ev_in_update:
            await insert_rows(s, table_of(MessageEvent), events)
        if undo:
            await self._undo_queued(s, undo, now)
        done = expired + gone
        if done:
            await s.execute(delete(DispatchItem).where(one_of(s, DispatchItem.message_id, done)))
        if deferred:  # back in the queue until the table may be reloaded
            await s.execute(
                update(DispatchItem)
                .where(one_of(s, DispatchItem.message_id, deferred))
                .values(
                    state=0,
                    claimed_by=None,
                    available_at=now + dt.timedelta(seconds=self.route_reload_min),
                    claims=DispatchItem.claims - 1,
                )
            )
        return items

    async def _undo_queued(self, s: AsyncSession, rows: list[Any], now: dt.datetime) -> None:
        """Messages :meth:`claim_codes` made 'queued' whose route is not known yet (they go back
        to the queue): their status, times and counters as they were, their event removed,
        as if the claim had not touched them (the transaction is still open)."""
        t = table_of(Message)
        await s.execute(
            update(t)
            .where(t.c.id == bindparam("u_id", type_=t.c.id.type))
            .values(
                status=bindparam("u_status", type_=t.c.status.type),
                queued_at=bindparam("u_queued", type_=t.c.queued_at.type),
                updated_at=bindparam("u_updated", type_=t.c.updated_at.type),
                attempts=bindparam("u_attempts", type_=t.c.attempts.type),
                resubmissions=bindparam("u_resub", type_=t.c.resubmissions.type),
            ),
            [
                {
                    "u_id": m.id,
                    "u_status": m.status,
                    "u_queued": m.queued_at,
                    "u_updated": m.updated_at,
                    "u_attempts": m.attempts,
                    "u_resub": m.resubmissions,
                }
                for m in rows
            ],
        )
        e = table_of(MessageEvent)
        await s.execute(
            delete(e).where(
                one_of(s, e.c.message_id, [m.id for m in rows]), e.c.status == "queued", e.c.at == now
            )
        )

    async def _reload_on_miss(
        self, s: AsyncSession, tid: uuid.UUID, routes: TenantRoutes, created_at: dt.datetime
    ) -> TenantRoutes | None:
        """The tenant's routes to decide a miss with: reloaded (at most once per
        ``route_reload_min`` per tenant), or the cached table when it was loaded after the
        message was accepted (the miss is real); ``None`` = wait for the next reload."""
        if time.monotonic() - routes.loaded_at >= self.route_reload_min:
            self.stats["route_reloads"] += 1
            return await self._routes(s, tid, force=True)
        if routes.loaded_utc > created_at:
            return routes
        return None

    @staticmethod
    def _route_rows(routes: TenantRoutes, m: Any, carrier: str) -> list[routing.RouteRow]:
        """The route rows to try for message ``m`` (recipient, class, source), best first;
        links whose source address rules refuse the message's source are left out."""
        rows = routing.order(
            routing.ranked(routes.routes.get(m.channel_id, []), carrier, m.to or "", m.message_class)
        )
        out = []
        for r in rows:
            info = routes.links.get(r.link_id)
            if info is None or routing.source_allowed(info.source_rules, m.source or ""):
                out.append(r)
        return out

    @property
    def _routes_max_age(self) -> float:
        """The links loop reloads every tenant's table every ``link_refresh`` s: a claim trusts
        the cached one until two rounds were missed (a reload in a claim is five more round
        trips on the path of the messages it claimed)."""
        return max(5.0, 2 * self.link_refresh + 1.0)

    async def _routes(self, s: AsyncSession, tid: uuid.UUID, *, force: bool = False) -> TenantRoutes:
        cached = self.routes.get(tid)
        if not force and cached is not None and time.monotonic() - cached.loaded_at < self._routes_max_age:
            return cached
        started = utcnow()
        links = {
            x.id: LinkInfo(
                x.id,
                tid,
                x.host,
                x.port,
                x.system_id,
                x.password,
                x.system_type,
                x.window,
                x.tps,
                x.status,
                dict(x.source_rules or {}),
            )
            for x in (await s.execute(select(Link))).scalars()
        }
        table: dict[uuid.UUID, list[Any]] = defaultdict(list)
        for r in (await s.execute(select(RouteEntry).order_by(RouteEntry.priority))).scalars():
            if r.link_id in links and links[r.link_id].status == "active":
                table[r.channel_id].append(
                    routing.RouteRow(r.priority, r.carrier, r.link_id, r.weight, r.prefix, r.message_class)
                )
        from tessera.connect.models import Channel, Template

        wechat = {
            c.id: (str(c.settings.get("appid", "")), c.secret or "", str(c.settings.get("api_base", "")))
            for c in (await s.execute(select(Channel).where(Channel.kind == "wechat"))).scalars()
        }
        templates = {
            t.id: t.external_id
            for t in (await s.execute(select(Template).where(Template.external_id.is_not(None)))).scalars()
            if t.external_id
        }
        tr = TenantRoutes(time.monotonic(), links, dict(table), wechat, templates, loaded_utc=started)
        tr.email = {
            c.id: (dict(c.settings or {}), c.secret)
            for c in (await s.execute(select(Channel).where(Channel.kind == "email"))).scalars()
        }
        self.routes[tid] = tr
        return tr

    @staticmethod
    def _candidates(
        routes: TenantRoutes,
        channel_id: uuid.UUID,
        carrier: str,
        number: str = "",
        message_class: str | None = None,
    ) -> list[uuid.UUID]:
        """Links to try, in order (see :mod:`tessera.connect.routing`)."""
        groups = routing.ranked(routes.routes.get(channel_id, []), carrier, number, message_class)
        return [r.link_id for r in routing.order(groups)]

    async def _runner(self, tid: uuid.UUID, link_id: uuid.UUID) -> LinkRunner | WeChatRunner | None:
        runner = self.runners.get(link_id)
        if runner is not None:
            return runner
        if link_id in self.unavailable:
            return None
        email = self.routes[tid].email.get(link_id)
        if email is not None:  # email channels: tessera.connect.email.pipeline
            from tessera.connect.email.pipeline import EmailRunner

            self.runners[link_id] = EmailRunner(self, link_id, *email)  # type: ignore[assignment]
            return self.runners[link_id]
        wechat = self.routes[tid].wechat.get(link_id)
        if wechat is not None:
            wr = WeChatRunner(self, link_id, *wechat)
            self.runners[link_id] = wr  # type: ignore[assignment]
            return wr
        info = self.routes[tid].links.get(link_id)
        if info is None or info.status != "active":
            return None
        runner = LinkRunner(self, info)
        if not await runner.start():
            self.unavailable.add(link_id)
            return None
        self.runners[link_id] = runner
        return runner

    async def _dispatch(self, item: Item) -> None:
        """Give ``item`` to the first bound candidate link not tried yet (else the first untried)."""
        untried = [c for c in item.candidates if c not in item.tried]
        runners = [(c, await self._runner(item.tenant_id, c)) for c in untried]
        usable = [(c, r) for c, r in runners if r is not None]
        if not usable:
            await self.writer.submit_outcome(
                "release" if item.candidates and len(item.tried) > 0 else "no_route", item
            )
            return
        link_id, runner = next(((c, r) for c, r in usable if r.bound), usable[0])
        item.tried.append(link_id)
        await runner.put(item)

    async def on_result(self, runner: LinkRunner, item: Item, result: SubmitResult) -> None:
        outcome = result.outcome
        if outcome in (Outcome.NOT_SENT, Outcome.REJECTED) and any(
            c not in item.tried for c in item.candidates
        ):
            self.stats["failover"] += 1
            await self._dispatch(item)
            return
        if item.taken is not None and not item.taken.done():  # a pushed code: queued first
            await item.taken
        await self.writer.submit_outcome("result", (runner.info.id, item, result))

    async def _release(self, ids: Iterable[uuid.UUID], *, resubmission: bool, delay: float = 0.0) -> None:
        ids = list(ids)
        if not ids:
            return
        with context.tenant_scope(None):
            async with unit_of_work(platform=True) as s:
                await s.execute(
                    update(DispatchItem)
                    .where(one_of(s, DispatchItem.message_id, ids))
                    .values(
                        state=0,
                        claimed_by=None,
                        available_at=utcnow() + dt.timedelta(seconds=delay),
                        claims=DispatchItem.claims if resubmission else DispatchItem.claims - 1,
                    )
                )

    # -- writes on the hot path ------------------------------------------------------------
    async def apply_results(
        self, s: AsyncSession, payloads: list[Any], *, in_tenant: uuid.UUID | None = None
    ) -> list[dict[str, Any]]:
        """Record submit results; returns the carrier-id rows written (see :meth:`remember`).
        ``in_tenant``: the transaction is already that tenant's (every payload is of it)."""
        now = utcnow()
        written_keys: list[dict[str, Any]] = []
        by_tenant: dict[uuid.UUID, list[tuple[uuid.UUID | None, Item, SubmitResult | None, str]]] = (
            defaultdict(list)
        )
        release_unsent: list[uuid.UUID] = []
        release_unknown: list[uuid.UUID] = []
        slices = _pg(s)  # yields inside the transaction: not on SQLite, whose writers queue behind it
        for p in payloads:
            if isinstance(p, Item):  # release / no_route
                if p.candidates:
                    release_unsent.append(p.message_id)
                else:
                    by_tenant[p.tenant_id].append((None, p, None, "no_route"))
                continue
            link_id, item, result = p
            if result.outcome is Outcome.NOT_SENT:
                release_unsent.append(item.message_id)
            elif result.outcome is Outcome.UNKNOWN:
                release_unknown.append(item.message_id)
            else:
                by_tenant[item.tenant_id].append((link_id, item, result, result.outcome.value))
        if release_unsent:
            await s.execute(
                update(DispatchItem)
                .where(one_of(s, DispatchItem.message_id, release_unsent))
                .values(
                    state=0,
                    claimed_by=None,
                    available_at=now + dt.timedelta(seconds=1),
                    claims=DispatchItem.claims - 1,
                )
            )
        if release_unknown:  # the carrier may have it: resubmitted (and counted) at the next claim
            await s.execute(
                update(DispatchItem)
                .where(one_of(s, DispatchItem.message_id, release_unknown))
                .values(state=0, claimed_by=None, available_at=now)
            )
            self.stats["unknown"] += len(release_unknown)
        for tid, entries in by_tenant.items():
            if tid != in_tenant:
                await switch_tenant(s, tid)
            upd: list[dict[str, Any]] = []
            keys: list[dict[str, Any]] = []
            events: list[dict[str, Any]] = []
            finals: list[tuple[uuid.UUID, str, str | None]] = []
            for i, (link_id, item, result, kind) in enumerate(entries):
                if slices and i and not i % (4 * SLICE):
                    await asyncio.sleep(0)  # a turn for a code's claim between slices of a big batch
                route = {
                    "carrier": item.carrier,
                    "link_id": str(link_id) if link_id else None,
                    "tried": [str(x) for x in item.tried],
                    "rule": item.rule,
                }
                if kind == "accepted" and result is not None:
                    cids = [c or "" for c in result.message_ids]
                    upd.append(
                        {
                            "b_id": item.message_id,
                            "b_status": "submitted",
                            "b_reason": None,
                            "b_cids": cids,
                            "b_route": route,
                            "b_link": link_id,
                            "b_sub": now,
                            "b_done": None,
                            "b_upd": now,
                        }
                    )
                    keys += [
                        {
                            "link_id": link_id,
                            "carrier_id": c,
                            "tenant_id": tid,
                            "message_id": item.message_id,
                            "part": i,
                            "parts": len(cids),
                            "outcome": None,
                        }
                        for i, c in enumerate(cids)
                    ]
                    events.append(
                        {
                            "tenant_id": tid,
                            "message_id": item.message_id,
                            "kind": "status",
                            "status": "submitted",
                            "detail": {"link_id": str(link_id), "carrier_ids": cids},
                            "at": now,
                        }
                    )
                    self.stats["submitted"] += 1
                else:
                    reason = (
                        "route.none"
                        if kind == "no_route"
                        else (
                            result.reason
                            if result and result.reason.startswith("wechat.")
                            else f"smpp.status_{(result.status if result else 0) or 0:#06x}"
                        )
                    )
                    upd.append(
                        {
                            "b_id": item.message_id,
                            "b_status": "rejected",
                            "b_reason": reason,
                            "b_cids": [],
                            "b_route": route,
                            "b_link": link_id,
                            "b_sub": None,
                            "b_done": now,
                            "b_upd": now,
                        }
                    )
                    events.append(
                        {
                            "tenant_id": tid,
                            "message_id": item.message_id,
                            "kind": "status",
                            "status": "rejected",
                            "detail": {"reason": reason},
                            "at": now,
                        }
                    )
                    finals.append((item.message_id, "rejected", reason))
                    self.stats["rejected"] += 1
            await record_submits(s, upd, keys, events, [e[1].message_id for e in entries])
            written_keys += keys
            await self._publish(s, finals)
        return written_keys

    def remember(self, keys: list[dict[str, Any]]) -> None:
        """Carrier ids whose submit results are committed (called after the commit), so their
        receipts are matched in memory; the oldest are forgotten past ``RECENT_MAX``."""
        recent = self.recent
        for k in keys:
            recent[(k["link_id"], k["carrier_id"])] = (k["tenant_id"], k["message_id"], k["parts"])
        while len(recent) > RECENT_MAX:
            recent.popitem(last=False)
        self.receipt_writer.kick()

    def receipts_tenant(self, payloads: list[tuple[uuid.UUID, DeliveryReceipt]]) -> uuid.UUID | None:
        """The one tenant of ``payloads`` when every receipt's carrier id is in :attr:`recent`
        (submits this gateway committed), else ``None``."""
        found: uuid.UUID | None = None
        for link_id, r in payloads:
            hit = self.recent.get((link_id, r.message_id))
            if hit is None or (found is not None and hit[0] != found):
                return None
            found = hit[0]
        return found

    async def apply_receipts(
        self,
        s: AsyncSession,
        payloads: list[tuple[uuid.UUID, DeliveryReceipt]],
        *,
        in_tenant: uuid.UUID | None = None,
    ) -> set[int]:
        """Record receipts; return ``id()`` of the payloads whose carrier id is not known (yet).

        Core statements only: carrier ids come from :attr:`recent` (submits committed by this
        gateway) or else from one ``SELECT`` of the carrier ids per link; a single-part message
        (almost all) is final on its one receipt, so only parts of long messages have their
        outcome stored and their siblings read; one guarded ``UPDATE … RETURNING`` per
        (status, reason) skips messages already final (a duplicate or late receipt)."""
        now = utcnow()
        by_link: dict[uuid.UUID, list[tuple[uuid.UUID, DeliveryReceipt]]] = defaultdict(list)
        for p in payloads:
            by_link[p[0]].append(p)
        k = table_of(CarrierReceiptKey)
        unmatched: set[int] = set()
        slices = _pg(s)  # yields inside the transaction: not on SQLite, whose writers queue behind it
        # (tenant, message) → final status and reason
        decided: dict[uuid.UUID, dict[uuid.UUID, tuple[str, str | None]]] = defaultdict(dict)
        multipart: list[dict[str, Any]] = []
        errors: dict[tuple[uuid.UUID, str], str] = {}
        for link_id, ps in by_link.items():
            rows: dict[str, _KeyRow] = {}
            misses: set[str] = set()
            for _, r in ps:
                hit = self.recent.pop((link_id, r.message_id), None)
                if hit is not None:
                    rows[r.message_id] = _KeyRow(r.message_id, *hit)
                elif r.message_id not in rows:
                    misses.add(r.message_id)
            if misses:
                for found in (
                    await s.execute(
                        select(k.c.carrier_id, k.c.tenant_id, k.c.message_id, k.c.parts).where(
                            k.c.link_id == link_id, one_of(s, k.c.carrier_id, list(misses))
                        )
                    )
                ).all():
                    rows[found.carrier_id] = _KeyRow(*found)
            for i, p in enumerate(ps):
                if slices and i and not i % (4 * SLICE):
                    await asyncio.sleep(0)
                row = rows.get(p[1].message_id)
                if row is None:
                    unmatched.add(id(p))
                    continue
                stat = p[1].stat.upper()[:16]
                if row.parts <= 1:
                    decided[row.tenant_id][row.message_id] = _final_of(stat, p[1].error)
                else:
                    multipart.append(
                        {"b_link": link_id, "b_cid": row.carrier_id, "b_out": stat, "tid": row.tenant_id}
                    )
                    errors[(row.message_id, stat)] = p[1].error
        if multipart:
            await s.execute(
                update(k)
                .where(
                    k.c.link_id == bindparam("b_link", type_=k.c.link_id.type),
                    k.c.carrier_id == bindparam("b_cid", type_=k.c.carrier_id.type),
                )
                .values(outcome=bindparam("b_out", type_=k.c.outcome.type)),
                [{kk: v for kk, v in m.items() if kk != "tid"} for m in multipart],
            )
            cids = list({m["b_cid"] for m in multipart})
            mids = list(
                (
                    await s.execute(select(k.c.message_id).where(one_of(s, k.c.carrier_id, cids)).distinct())
                ).scalars()
            )
            parts = (
                await s.execute(
                    select(k.c.tenant_id, k.c.message_id, k.c.outcome).where(one_of(s, k.c.message_id, mids))
                )
            ).all()
            outcomes: dict[tuple[uuid.UUID, uuid.UUID], list[str | None]] = defaultdict(list)
            for tid, mid, oc in parts:
                outcomes[(tid, mid)].append(oc)
            for (tid, mid), ocs in outcomes.items():
                bad = next((o for o in ocs if o and o != "DELIVRD"), None)
                if bad is not None:
                    decided[tid][mid] = _final_of(bad, errors.get((mid, bad), ""))
                elif ocs and all(o == "DELIVRD" for o in ocs):
                    decided[tid][mid] = ("delivered", None)
                # else: more parts to come
        pg = _pg(s)
        for tid, finals_of in decided.items():
            if tid != in_tenant:  # in_tenant: the transaction is that tenant's already
                await switch_tenant(s, tid)
            groups: dict[tuple[str, str | None], list[uuid.UUID]] = defaultdict(list)
            for mid, sr in finals_of.items():
                groups[sr].append(mid)
            events: list[dict[str, Any]] = []
            finals: list[tuple[uuid.UUID, str, str | None]] = []
            for (status, reason), ids in groups.items():
                done = list(
                    (
                        await s.execute(
                            _built("final", _final_stmt, pg),
                            {"f_ids": ids, "f_status": status, "f_reason": reason, "f_now": now},
                        )
                    ).scalars()
                )
                detail = {"reason": reason} if reason else {}
                events += [
                    {
                        "tenant_id": tid,
                        "message_id": m,
                        "kind": "receipt",
                        "status": status,
                        "detail": detail,
                        "at": now,
                    }
                    for m in done
                ]
                finals += [(m, status, reason) for m in done]
                self.stats[status] += len(done)
            await insert_rows(s, table_of(MessageEvent), events)
            await self._publish(s, finals)
        return unmatched

    async def _publish(self, s: AsyncSession, finals: list[tuple[uuid.UUID, str, str | None]]) -> None:
        """``message.status`` for each final status, when anyone listens (a subscriber job or an
        active webhook endpoint of the tenant in scope): publishing to nobody is skipped."""
        if _publish is None or not finals or not await self._has_listeners(s):
            return
        for mid, status, reason in finals:
            await _publish(s, "message.status", {"message_id": str(mid), "status": status, "reason": reason})

    async def _has_listeners(self, s: AsyncSession) -> bool:
        try:
            from tessera.core.events.registry import subscribers_of
            from tessera.core.webhooks.models import WebhookEndpoint
        except ImportError:  # pragma: no cover
            return True
        if subscribers_of("message.status"):
            return True
        stmt = _BUILT.get("listeners")
        if stmt is None:
            stmt = _BUILT["listeners"] = select(WebhookEndpoint.event_types).where(
                WebhookEndpoint.active.is_(True)
            )
        types = (await s.execute(stmt)).scalars()
        return any("message.status" in (t or []) or "*" in (t or []) for t in types)

    async def wechat_event(self, channel_id: uuid.UUID, msgid: str, status: str) -> None:
        """Record a TEMPLATESENDJOBFINISH push (``Status`` success / failed:…) for ``msgid``."""
        from tessera.connect.adapters.wechat import finish_status

        final, _reason = finish_status(status)
        stat = "DELIVRD" if final == "delivered" else ("REJECTD" if "block" in status else "UNDELIV")
        receipt = DeliveryReceipt(
            message_id=msgid,
            stat=stat,
            message_state=None,
            error="",
            delivered=final == "delivered",
            source="",
            destination="",
        )
        await self.receipt_writer.receipt(channel_id, receipt)

    # -- helpers for tests, bench and operators ------------------------------------------------
    async def backlog(self) -> int:
        with context.tenant_scope(None):
            async with unit_of_work(platform=True) as s:
                from sqlalchemy import func

                return int((await s.execute(select(func.count()).select_from(DispatchItem))).scalar_one())
