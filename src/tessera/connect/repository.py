"""Queries of the messaging context (the guard adds the tenant filter)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    ColumnElement,
    Table,
    Text,
    any_,
    bindparam,
    cast,
    column,
    func,
    insert,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeDecorator

from tessera.connect.models import DispatchItem, GatewayHeartbeat, Message, MessageEvent, PortedNumber
from tessera.core.db.base import table_of
from tessera.core.db.repository import TenantRepository
from tessera.core.http.listing import FilterField, FilterSet

MESSAGE_FILTERS = FilterSet(
    fields={
        "status": FilterField(Message.status, str, ("eq", "in")),
        "channel": FilterField(Message.channel_kind, str, ("eq", "in")),
        "channel_id": FilterField(Message.channel_id, uuid.UUID, ("eq",)),
        "class": FilterField(Message.message_class, str, ("eq", "in")),
        "created_at": FilterField(Message.created_at, dt.datetime, ("gte", "lte")),
        "campaign_id": FilterField(Message.campaign_id, uuid.UUID, ("eq",)),
        "reference": FilterField(Message.reference, str, ("eq",)),
        "template_id": FilterField(Message.template_id, uuid.UUID, ("eq",)),
    },
    sortable={"created_at": Message.created_at},
    default_sort="-created_at",
    id_column=Message.id,
)

DISPATCH_CHANNEL = "connect_dispatch"
"""PostgreSQL NOTIFY channel: payload is the lowest lane committed (0 = verification), and for
lane 0 the tenant (``0:<tenant id>``), whose codes the gateway then claims in that tenant's own
transaction (see ``Dispatcher.claim_codes``); or a verification code pushed to one gateway with
its message (``P<gateway>|…``, see :mod:`tessera.connect.push`)."""

INSERT_CHUNK = 2000
_PG_DIALECT = postgresql.dialect()
ROWS_SOURCE_FROM = 16  # fewer rows: a plain insert (its statement is cached; arrays cost more to bind)


def _is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def one_of(session: AsyncSession, col: Any, values: Sequence[Any]) -> ColumnElement[bool]:
    """``col IN values``: on PostgreSQL ``col = ANY(:array)``, one parameter whatever the number
    of values, so the statement text stays the same (cached and prepared by the driver)
    instead of one placeholder per value."""
    if _is_postgres(session):
        return col == any_(bindparam(None, list(values), type_=ARRAY(col.type)))
    return col.in_(list(values))  # type: ignore[no-any-return]


def _json(typ: Any) -> bool:
    return isinstance(typ, JSON) or isinstance(getattr(typ, "impl", None), JSON)


def rows_doc(table: Table, rows: Sequence[dict[str, Any]]) -> str:
    """``rows`` as the JSON document :func:`rows_source` reads: values go through their column
    type's own conversion first (encrypted columns are encrypted, UTC datetimes checked); JSON
    columns travel as JSON."""
    convert: list[tuple[str, Any]] = []
    for key in rows[0]:
        typ = table.c[key].type
        if isinstance(typ, TypeDecorator) and not _json(typ):
            convert.append((key, typ))
    if convert:
        dialect = _PG_DIALECT
        rows = [{**r, **{key: typ.process_bind_param(r[key], dialect) for key, typ in convert}} for r in rows]
    return orjson.dumps(rows).decode()


def doc_source(table: Table, keys: Sequence[str], name: str, param: Any) -> Any:
    """``json_to_recordset(:param) AS name(key type, …)`` over ``table``'s column types;
    ``param``: a bind parameter (named, for a statement built once) carrying a :func:`rows_doc`."""
    return (
        func.json_to_recordset(cast(param, postgresql.JSON()))
        .table_valued(*(column(key, table.c[key].type) for key in keys))
        .render_derived(name=name, with_types=True)
    )


def rows_source(table: Table, rows: Sequence[dict[str, Any]], name: str = "v") -> Any:
    """PostgreSQL: ``rows`` (dicts with the same keys, named like ``table``'s columns) as a
    derived table ``json_to_recordset(:doc) AS v(col type, …)``: one JSON parameter written by
    orjson and parsed by the server, instead of a placeholder (or an array element dumped in
    Python) per value (see :func:`rows_doc`)."""
    return doc_source(table, list(rows[0]), name, bindparam(None, rows_doc(table, rows), type_=Text()))


def insert_ctes(*parts: tuple[str, Table, Sequence[dict[str, Any]]]) -> list[Any]:
    """PostgreSQL: for each non-empty ``(name, table, rows)``, a data-modifying CTE inserting the
    rows from :func:`rows_source`; attached to another statement with ``add_cte`` they go in its
    round trip."""
    return [
        insert(table)
        .from_select(list(rows[0]), select(*rows_source(table, rows, name=f"{name}_v").c))
        .cte(name)
        for name, table, rows in parts
        if rows
    ]


async def insert_rows(session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys) in one statement.

    PostgreSQL: ``INSERT … SELECT FROM json_to_recordset(:doc)`` (see :func:`rows_source`), so a
    thousand rows cost one short, cached statement with one parameter instead of a multi-row
    ``VALUES`` with one placeholder per value. SQLite, and a few rows: a plain (cached) insert.
    Row-level security checks every inserted row."""
    if not rows:
        return
    if len(rows) < ROWS_SOURCE_FROM or not _is_postgres(session):
        for start in range(0, len(rows), INSERT_CHUNK):
            await session.execute(insert(table), rows[start : start + INSERT_CHUNK])
        return
    names = tuple(rows[0])
    stmt = _INSERT_ROWS.get((table.name, names))
    if stmt is None:
        v = doc_source(table, names, "v", bindparam("rows_doc", type_=Text()))
        stmt = _INSERT_ROWS[(table.name, names)] = insert(table).from_select(list(names), select(*v.c))
    await session.execute(stmt, {"rows_doc": rows_doc(table, rows)})


# insert_rows' statements on PostgreSQL, one per table and shape of the rows, built once with
# the document as a named parameter: a statement tree built per call is cache-keyed again each
# time, and it is garbage in reference cycles (its columns and their collections point at each
# other) that only the cyclic collector frees, the bound document with it; in the gateway,
# which writes events batch after batch, those collections were its longest pauses
_INSERT_ROWS: dict[tuple[str, tuple[str, ...]], Any] = {}


# insert_many's statements, one per shape of its rows (keys of the messages, of the events, of
# the dispatch rows, with or without a NOTIFY): built once, with the documents as named bind
# parameters, so a send neither builds nor cache-keys a statement tree of three inserts
_INSERT_MANY: dict[tuple[Any, ...], Any] = {}


def _insert_many_stmt(
    m_keys: tuple[str, ...], ev_keys: tuple[str, ...], q_keys: tuple[str, ...], notify: str | None
) -> Any:
    ctes = []
    for name, table, keys, param in (
        ("ins_events", table_of(MessageEvent), ev_keys, "ev_doc"),
        ("ins_dispatch", table_of(DispatchItem), q_keys, "q_doc"),
    ):
        if keys:
            v = doc_source(table, keys, f"{name}_v", bindparam(param, type_=Text()))
            ctes.append(insert(table).from_select(list(keys), select(*v.c)).cte(name))
    m = doc_source(table_of(Message), m_keys, "m", bindparam("m_doc", type_=Text()))
    rows = select(*m.c)
    if notify:
        # pg_notify in a one-row CTE the insert's source joins, so it runs (once): an
        # unreferenced SELECT CTE would not
        payload: Any = bindparam("note_payload", type_=Text())
        if notify == "push":  # the carrier the number moved to, if it did, goes with the code
            p = table_of(PortedNumber)
            ported = (
                select(p.c.carrier)
                .where(p.c.number_index == bindparam("note_index", type_=p.c.number_index.type))
                .limit(1)
                .scalar_subquery()
            )
            payload = payload.concat(func.coalesce(ported, ""))
        note = select(func.pg_notify(DISPATCH_CHANNEL, payload)).cte("note")
        rows = rows.select_from(m.join(note, true()))
    stmt = insert(table_of(Message)).from_select(list(m_keys), rows)
    return stmt.add_cte(*ctes) if ctes else stmt


class MessageRepository(TenantRepository[Message]):
    model = Message

    async def events(self, message_id: uuid.UUID) -> list[MessageEvent]:
        stmt = select(MessageEvent).where(MessageEvent.message_id == message_id).order_by(MessageEvent.id)
        return list((await self.session.execute(stmt)).scalars())

    async def insert_many(
        self,
        messages: Sequence[dict[str, Any]],
        events: Sequence[dict[str, Any]],
        queue: Sequence[dict[str, Any]],
        *,
        notify: str | None = None,
        push_index: str | None = None,
    ) -> None:
        """Messages, their first events and their dispatch rows: on PostgreSQL one statement
        (the events and dispatch rows are data-modifying CTEs of the messages' insert; foreign
        keys are checked at the end of the statement), one round trip whatever the number of
        messages; elsewhere one statement each (see :func:`insert_rows`). ``notify``: a
        :data:`DISPATCH_CHANNEL` payload sent at commit (PostgreSQL), in the same statement;
        ``push_index``: it pushes a code (:mod:`tessera.connect.push`) to the number of this
        blind index, whose ported carrier (if any) the statement appends to it."""
        if messages and _is_postgres(self.session):
            shape = (
                tuple(messages[0]),
                tuple(events[0]) if events else (),
                tuple(queue[0]) if queue else (),
                None if notify is None else ("plain" if push_index is None else "push"),
            )
            stmt = _INSERT_MANY.get(shape)
            if stmt is None:
                stmt = _INSERT_MANY[shape] = _insert_many_stmt(*shape)
            params = {"m_doc": rows_doc(table_of(Message), messages)}
            if events:
                params["ev_doc"] = rows_doc(table_of(MessageEvent), events)
            if queue:
                params["q_doc"] = rows_doc(table_of(DispatchItem), queue)
            if notify is not None:
                params["note_payload"] = notify
                if push_index is not None:
                    params["note_index"] = push_index
            await self.session.execute(stmt, params)
            return
        await insert_rows(self.session, table_of(Message), messages)
        await insert_rows(self.session, table_of(MessageEvent), events)
        await insert_rows(self.session, table_of(DispatchItem), queue)
        if notify is not None:
            await notify_payload(self.session, notify)

    async def for_release(self, message_id: uuid.UUID) -> Any:
        """The fields a held message is checked again with before it is released."""
        stmt = select(
            Message.id,
            Message.status,
            Message.channel_kind,
            Message.message_class,
            Message.to,
            Message.to_index,
            Message.body,
            Message.scheduled_at,
            Message.variables,  # email: the subject and HTML part are checked again too
        ).where(Message.id == message_id)
        return (await self.session.execute(stmt)).first()

    async def set_status(
        self, message_id: uuid.UUID, status: str, *, reason: str | None, **values: Any
    ) -> None:
        await self.session.execute(
            update(Message)
            .where(Message.id == message_id)
            .values(status=status, reason=reason, **values)
            .execution_options(synchronize_session=False)
        )


async def code_push_gateways(session: AsyncSession, since: dt.datetime) -> list[str]:
    """The gateways taking pushed codes whose heartbeat is not older than ``since``."""
    g = table_of(GatewayHeartbeat)
    stmt = select(g.c.id).where(g.c.code_push.is_(True), g.c.heartbeat_at >= since).order_by(g.c.id)
    return list((await session.execute(stmt)).scalars())


def dispatch_payload(lane: int, tenant_id: uuid.UUID | None = None) -> str:
    """The :data:`DISPATCH_CHANNEL` payload announcing messages of ``lane`` (and tenant)."""
    return f"0:{tenant_id}" if lane == 0 and tenant_id is not None else str(lane)


async def notify_payload(session: AsyncSession, payload: str) -> None:
    """Wake gateways of other processes once this transaction commits (PostgreSQL only; the
    server drops the notification if the transaction rolls back)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_notify(:c, :p)"), {"c": DISPATCH_CHANNEL, "p": payload})
