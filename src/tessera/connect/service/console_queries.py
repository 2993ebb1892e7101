"""Read paths of the Connect console pages: message search by recipient, link live state and
throughput, route lookup, today's counts, and the portability CSV import (validate every line
first, then write: a bad file writes nothing).

Link throughput is counted from the message rows themselves (``link_id``, ``submitted_at``,
``done_at``), so it covers every gateway process. Counting is bounded to messages accepted in
the last day so that it reads the ``(tenant_id, created_at)`` index instead of the tenant's
whole history; a scheduled message submitted more than a day after it was accepted is the only
one it does not count. The live bind state is what the gateway process holds in memory: the
in-process (embedded) gateway is asked directly; on PostgreSQL a bind held by another gateway
process is seen through its advisory lock.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select, case, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.connect import encoding, routing
from tessera.connect.errors import MessageInvalid
from tessera.connect.models import (
    Channel,
    GatewayHeartbeat,
    Link,
    Message,
    PortedNumber,
    RouteEntry,
    Signature,
    Template,
)
from tessera.connect.repository import MESSAGE_FILTERS
from tessera.connect.service import channels as channel_service
from tessera.connect.service.templates import render
from tessera.core.audit import service as audit
from tessera.core.crypto.types import blind_index
from tessera.core.db.base import utcnow
from tessera.core.db.session import get_database
from tessera.core.http.errors import TesseraError
from tessera.core.http.listing import FilterField, FilterSet, ListQuery, apply_listing, page_of
from tessera.core.phone import InvalidPhone, carrier_name, normalize_phone

# The console's message filters: the API's, plus the recipient's blind index (the page posts the
# phone number and carries only this opaque token in its links, never the number itself).
CONSOLE_MESSAGE_FILTERS = FilterSet(
    fields={**MESSAGE_FILTERS.fields, "rcpt": FilterField(Message.to_index, str, ("eq",))},
    sortable=MESSAGE_FILTERS.sortable,
    default_sort=MESSAGE_FILTERS.default_sort,
    id_column=MESSAGE_FILTERS.id_column,
)
EXPORT_MAX_ROWS = 50_000
PORTING_MAX_ROWS = 20_000
THROUGHPUT_MINUTES = 15
ERROR_STATUSES = ("rejected", "failed", "expired")
RECEIPT_STATUSES = ("delivered", "failed", "expired")


def recipient_index(raw: str, field: str = "to") -> str:
    """The blind index a message's recipient is found by: an email address, a phone number (any
    format the tenant's region accepts) or, failing both, a WeChat openid."""
    raw = raw.strip()
    if not raw:
        raise MessageInvalid("enter a phone number or openid", field=field, rule="required")
    if "@" in raw:
        from tessera.connect.compliance.service import normalize_address

        try:
            return blind_index("email", normalize_address(raw, field=field).value)
        except TesseraError as exc:
            raise MessageInvalid(exc.message, field=field, rule="invalid_email") from None
    try:
        return blind_index("phone", normalize_phone(raw, "CN", field=field))
    except InvalidPhone:
        if len(raw) > 64 or any(c.isspace() for c in raw):
            raise MessageInvalid("not a phone number or openid", field=field, rule="invalid_phone") from None
        return blind_index("openid", raw)


def message_query(params: Mapping[str, str]) -> ListQuery:
    return ListQuery.from_params(params, CONSOLE_MESSAGE_FILTERS)


async def search_messages(session: AsyncSession, query: ListQuery) -> tuple[list[Message], str | None]:
    rows = (
        (await session.execute(apply_listing(select(Message), query, CONSOLE_MESSAGE_FILTERS)))
        .scalars()
        .all()
    )
    return page_of(rows, query, CONSOLE_MESSAGE_FILTERS)


async def export_messages(session: AsyncSession, query: ListQuery) -> list[Message]:
    """Every message matching ``query`` (keyset pages of 200), at most ``EXPORT_MAX_ROWS``."""
    q = dataclasses.replace(query, limit=200, cursor=None)
    out: list[Message] = []
    while len(out) < EXPORT_MAX_ROWS:
        items, cursor = await search_messages(session, q)
        out.extend(items)
        if cursor is None:
            break
        q.cursor = cursor
    return out[:EXPORT_MAX_ROWS]


async def counts_since(session: AsyncSession, since: dt.datetime) -> dict[str, int]:
    stmt = select(Message.status, func.count()).where(Message.created_at >= since).group_by(Message.status)
    return {str(k): int(v) for k, v in (await session.execute(stmt)).all()}


async def names(session: AsyncSession) -> dict[str, dict[uuid.UUID, str]]:
    """Display names of the tenant's channels, links and templates (for lists and details)."""
    ch = {r.id: r.name for r in (await session.execute(select(Channel.id, Channel.name))).all()}
    ln = {r.id: r.name for r in (await session.execute(select(Link.id, Link.name))).all()}
    tp = {r.id: r.name for r in (await session.execute(select(Template.id, Template.name))).all()}
    return {"channels": ch, "links": ln, "templates": tp}


async def approved_signatures(session: AsyncSession) -> list[Signature]:
    stmt = select(Signature).where(Signature.status == "approved").order_by(Signature.text)
    return list((await session.execute(stmt)).scalars())


async def all_links(session: AsyncSession) -> list[Link]:
    return list((await session.execute(select(Link).order_by(Link.created_at, Link.id))).scalars())


async def all_routes(session: AsyncSession) -> list[RouteEntry]:
    stmt = select(RouteEntry).order_by(
        RouteEntry.channel_id, RouteEntry.carrier, RouteEntry.priority, RouteEntry.id
    )
    return list((await session.execute(stmt)).scalars())


async def get_route(session: AsyncSession, route_id: uuid.UUID) -> RouteEntry | None:
    return (await session.execute(select(RouteEntry).where(RouteEntry.id == route_id))).scalar_one_or_none()


async def ported_count(session: AsyncSession) -> int:
    return int((await session.execute(select(func.count()).select_from(PortedNumber))).scalar_one())


# --- previews and routing -------------------------------------------------------------------


def preview(body: str, variables: dict[str, str], signature: str | None, channel: str) -> dict[str, Any]:
    """What the preview endpoint answers: rendered text, encoding, segments, characters, parts."""
    if not body.strip():
        raise MessageInvalid("the message body is empty", field="body", rule="required")
    text_ = render(body, variables)
    if signature and channel == "sms":
        text_ = f"【{signature.strip('【】')}】" + text_
    if channel != "sms":
        return {"text": text_, "encoding": "utf8", "segments": 1, "characters": len(text_), "parts": [text_]}
    pv = encoding.preview(text_)
    return {"text": text_, **pv}


@dataclasses.dataclass
class RouteChoice:
    link_id: uuid.UUID
    link_name: str
    priority: int
    weight: int
    share: float  # of its priority group, 0..1
    active: bool
    fallback: bool  # a catch-all route kept as the last failover


@dataclasses.dataclass
class Lookup:
    e164: str
    prefix_carrier: str
    ported_carrier: str | None
    carrier: str
    matched: str  # the routes used: "*" (the catch-all) or "class · carrier · prefix"
    choices: list[RouteChoice]


async def lookup(
    session: AsyncSession, number: str, channel_id: uuid.UUID, message_class: str | None = None
) -> Lookup:
    """The carrier a number is routed as (prefix, then the portability override) and the links
    the dispatcher would try, in order (:mod:`tessera.connect.routing`), with the weight shares
    within each priority; rows below the best matching rank are marked as failover."""
    e164 = normalize_phone(number, "CN", field="number")
    await channel_service.get_channel(session, channel_id)
    by_prefix = carrier_name(e164)
    ported = (
        await session.execute(
            select(PortedNumber.carrier).where(PortedNumber.number_index == blind_index("phone", e164))
        )
    ).scalar_one_or_none()
    carrier = ported or by_prefix
    entries = await channel_service.list_routes(session, channel_id)
    links = {x.id: x for x in await all_links(session)}
    rows = [
        routing.RouteRow(e.priority, e.carrier, e.link_id, e.weight, e.prefix, e.message_class)
        for e in entries
        if e.link_id in links
    ]
    groups = routing.ranked(rows, carrier, e164, message_class)
    out: list[RouteChoice] = []
    for rank, group in enumerate(groups):
        for r in routing.order([group], shuffle=False):
            if any(c.link_id == r.link_id for c in out):
                continue
            link = links[r.link_id]
            live = [g for g in group if g.priority == r.priority and links[g.link_id].status == "active"]
            total = sum(g.weight for g in live) or 1
            active = link.status == "active"
            share = r.weight / total if active else 0.0
            out.append(RouteChoice(r.link_id, link.name, r.priority, r.weight, share, active, rank > 0))
    matched = "*"
    if groups:
        top = groups[0][0]
        parts = [top.message_class or "", "" if top.carrier == routing.ANY else top.carrier, top.prefix or ""]
        matched = " · ".join(p for p in parts if p) or "*"
    return Lookup(e164, by_prefix, ported, carrier, matched, out)


# --- portability import ---------------------------------------------------------------------


def parse_porting_csv(raw: bytes) -> list[tuple[str, str]]:
    """``number,carrier`` lines (a header line is allowed) → [(E.164, carrier)].

    Every line is checked before anything is written; the first bad one is reported with its
    line number."""
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise MessageInvalid("the file is not UTF-8 text", field="file", rule="encoding") from None
    rows: list[tuple[str, str]] = []
    for i, rec in enumerate(csv.reader(io.StringIO(content)), start=1):
        if not rec or all(not c.strip() for c in rec):
            continue
        if i == 1 and rec[0].strip().lower() in ("number", "phone", "msisdn", "号码"):
            continue
        if len(rec) < 2 or not rec[1].strip():
            raise MessageInvalid(f"line {i}: expected number,carrier", field="file", rule="columns")
        carrier = rec[1].strip()
        if len(carrier) > 64:
            raise MessageInvalid(f"line {i}: the carrier name is too long", field="file", rule="max_length")
        try:
            e164 = normalize_phone(rec[0].strip(), "CN", field="file")
        except InvalidPhone:
            raise MessageInvalid(
                f"line {i}: '{rec[0].strip()[:32]}' is not a valid phone number",
                field="file",
                rule="invalid_phone",
            ) from None
        rows.append((e164, carrier))
        if len(rows) > PORTING_MAX_ROWS:
            raise MessageInvalid(
                f"at most {PORTING_MAX_ROWS} numbers per file", field="file", rule="max_rows"
            )
    if not rows:
        raise MessageInvalid("the file has no numbers", field="file", rule="required")
    return rows


async def import_ported(session: AsyncSession, rows: list[tuple[str, str]]) -> dict[str, int]:
    """Write the parsed rows (insert, or update the carrier of a number already listed) in the
    caller's transaction, 500 numbers per query, and audit the import."""
    wanted: dict[str, str] = {}
    for e164, carrier in rows:  # the last line of a number wins
        wanted[blind_index("phone", e164)] = carrier
    keys = list(wanted)
    added = updated = 0
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        existing = {
            p.number_index: p
            for p in (
                await session.execute(select(PortedNumber).where(PortedNumber.number_index.in_(chunk)))
            ).scalars()
        }
        for idx in chunk:
            row = existing.get(idx)
            if row is None:
                session.add(PortedNumber(number_index=idx, carrier=wanted[idx]))
                added += 1
            elif row.carrier != wanted[idx]:
                row.carrier = wanted[idx]
                updated += 1
        await session.flush()
    result = {"lines": len(rows), "added": added, "updated": updated}
    await audit.record(session, "ported_numbers.import", "ported_numbers", after=result)
    return result


# --- live link state ------------------------------------------------------------------------


@dataclasses.dataclass
class LinkLive:
    link: Link
    state: str  # bound | connecting | down | elsewhere | idle | disabled
    detail: str  # the SMPP client's own state name, when this process holds the bind
    gateway: str | None
    last_error: str
    in_flight: int | None
    submits_per_s: float  # over the last full minute
    receipts_per_s: float
    submits: list[int]  # per minute, oldest first
    receipts: list[int]
    errors: list[Message] = dataclasses.field(default_factory=list)


_STATE = {
    "bound": "bound",
    "connecting": "connecting",
    "binding": "connecting",
    "disconnected": "down",
    "bind_failed": "down",
    "unbinding": "down",
    "closed": "down",
}


def _advisory_key(link_id: uuid.UUID) -> int:
    from tessera.connect.dispatcher import _advisory_key as key

    return key(link_id)


async def _held_elsewhere(session: AsyncSession, link_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Links whose bind lock (PostgreSQL advisory lock) some gateway process holds."""
    if not link_ids or not get_database().is_postgres:
        return set()
    keys = {_advisory_key(x): x for x in link_ids}
    rows = (
        await session.execute(
            text(
                "SELECT classid::bigint, objid::bigint FROM pg_locks "
                "WHERE locktype = 'advisory' AND granted AND objsubid = 1"
            )
        )
    ).all()
    held = set()
    for hi, lo in rows:
        k = (int(hi) << 32) | int(lo)
        if k in keys:
            held.add(keys[k])
    return held


async def live_gateways(session: AsyncSession, stale_after: float = 5.0) -> list[str]:
    since = utcnow() - dt.timedelta(seconds=stale_after)
    stmt = (
        select(GatewayHeartbeat.id)
        .where(GatewayHeartbeat.heartbeat_at >= since)
        .order_by(GatewayHeartbeat.id)
    )
    return list((await session.execute(stmt)).scalars())


def _per_minute(column: Any, start: dt.datetime, minutes: int) -> list[Any]:
    return [
        func.sum(
            case(
                (
                    (column >= start + dt.timedelta(minutes=i))
                    & (column < start + dt.timedelta(minutes=i + 1)),
                    1,
                ),
                else_=0,
            )
        )
        for i in range(minutes)
    ]


async def _throughput(
    session: AsyncSession, now: dt.datetime, minutes: int
) -> tuple[dict[uuid.UUID, list[int]], dict[uuid.UUID, list[int]]]:
    start = now.replace(second=0, microsecond=0) - dt.timedelta(minutes=minutes - 1)
    floor = start - dt.timedelta(days=1)
    base: Select[Any]
    out: list[dict[uuid.UUID, list[int]]] = []
    for col, extra in (
        (Message.submitted_at, Message.submitted_at >= start),
        (Message.done_at, (Message.done_at >= start) & Message.status.in_(RECEIPT_STATUSES)),
    ):
        base = (
            select(Message.link_id, *_per_minute(col, start, minutes))
            .where(Message.created_at >= floor, Message.link_id.is_not(None), extra)
            .group_by(Message.link_id)
        )
        out.append({r[0]: [int(v or 0) for v in r[1:]] for r in (await session.execute(base)).all()})
    return out[0], out[1]


async def recent_errors(
    session: AsyncSession, link_ids: list[uuid.UUID], since: dt.datetime, limit: int = 10
) -> list[Message]:
    if not link_ids:
        return []
    stmt = (
        select(Message)
        .where(
            Message.created_at >= since - dt.timedelta(days=1),
            Message.link_id.in_(link_ids),
            Message.status.in_(ERROR_STATUSES),
            Message.done_at >= since,
        )
        .order_by(Message.done_at.desc(), Message.id.desc())
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def link_live(
    session: AsyncSession, links: list[Link], gateway: Any, *, minutes: int = THROUGHPUT_MINUTES
) -> list[LinkLive]:
    """Live state, throughput per minute and the latest errors of ``links``.

    ``gateway`` is the in-process dispatcher (``app.state.connect_gateway``) or None."""
    now = utcnow()
    submits, receipts = await _throughput(session, now, minutes)
    runners: dict[uuid.UUID, Any] = dict(getattr(gateway, "runners", {}) or {}) if gateway else {}
    refused: set[uuid.UUID] = set(getattr(gateway, "unavailable", set()) or set()) if gateway else set()
    elsewhere = await _held_elsewhere(session, [x.id for x in links if x.id not in runners])
    errors = await recent_errors(session, [x.id for x in links], now - dt.timedelta(hours=1), limit=50)
    out: list[LinkLive] = []
    for link in links:
        runner = runners.get(link.id)
        detail, gw, last_error, in_flight = "", None, "", None
        if link.status != "active":
            state = "disabled"
        elif runner is not None and getattr(runner, "client", None) is not None:
            snap = runner.client.snapshot()
            detail = str(snap.get("state", ""))
            state = _STATE.get(detail, "down")
            gw = str(getattr(gateway, "id", "")) or None
            last_error = str(snap.get("last_error") or "")
            in_flight = int(snap.get("in_flight") or 0)
        elif link.id in elsewhere or link.id in refused:
            state = "elsewhere"
        else:
            state = "idle"
        sub = submits.get(link.id, [0] * minutes)
        rec = receipts.get(link.id, [0] * minutes)
        last_full = -2 if minutes > 1 else -1
        out.append(
            LinkLive(
                link=link,
                state=state,
                detail=detail,
                gateway=gw,
                last_error=last_error,
                in_flight=in_flight,
                submits_per_s=round(sub[last_full] / 60, 2),
                receipts_per_s=round(rec[last_full] / 60, 2),
                submits=sub,
                receipts=rec,
                errors=[m for m in errors if m.link_id == link.id][:5],
            )
        )
    return out


def minute_labels(now: dt.datetime, minutes: int, tz: Any) -> list[str]:
    start = now.replace(second=0, microsecond=0) - dt.timedelta(minutes=minutes - 1)
    return [(start + dt.timedelta(minutes=i)).astimezone(tz).strftime("%H:%M") for i in range(minutes)]
