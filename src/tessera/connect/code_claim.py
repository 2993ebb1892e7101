"""A verification code's claim in one round trip (PostgreSQL through psycopg).

Through a unit of work the claim of :func:`tessera.connect.dispatcher._claim_codes_stmt` takes
three round trips (``BEGIN`` with the tenant setting, the claim, ``COMMIT``), and under bulk
load each of them waits for a turn of the gateway's busy event loop (the slowest 1 % of codes
spent ~59 ms there). :class:`CodeClaimer` sends

    SELECT set_config('app.tenant_id', '<tenant>', true); WITH claimed AS (UPDATE …) … SELECT …

as one simple-protocol query on an autocommit connection of its own (same URL, so the same
non-owner role and row-level security). PostgreSQL runs a multi-statement query as one
implicit transaction: the tenant setting is transaction-local exactly as a unit of work's
``BEGIN`` sets it, the claim sees it, and the transaction commits when the query ends (an
error anywhere rolls all of it back). The statement is compiled once; its values are inlined
as psycopg literals (the tenant and gateway id, the time, the limit and the statement's
constants; every placeholder carries its SQL cast), so the text changes only in those. The
rows are decoded by psycopg's loaders as the session's are, then by the columns' own result
processors (the encrypted number with the tenant's data key, which must be loaded: the caller
checks :func:`keys_fresh` first and otherwise claims through a unit of work, which loads them).

Keys are reloaded when their time to live is over, by the next transaction of the tenant to
begin: while a tenant sends codes, :func:`keys_left` tells the dispatcher when, and it begins
one then, off the codes' path (``Dispatcher._keep_keys``). Before that, the codes claimed in
the second before the keys expired and until a code's claim reloaded them went through the
unit of work — about 1 % of codes, and under bulk load the slowest 1 % (a pooled connection,
four round trips).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from typing import Any, NamedTuple

import psycopg
from psycopg import sql
from sqlalchemy.engine import Dialect

from tessera.core import context
from tessera.core.db.direct import close_quietly, libpq_conninfo, with_tenant

_DYNAMIC = ("c_tid", "c_now", "c_limit", "c_by")


class DecodeError(Exception):
    """A claimed row was read (the claim is committed) but a column could not be decoded."""


def keys_left(tenant_id: uuid.UUID) -> float | None:
    """Seconds until the tenant's keys, loaded in this process, reach their time to live (a
    unit of work's ``BEGIN`` reloads them from then on); ``None``: not loaded."""
    from tessera.core.crypto.keyring import KEY_TTL_SECONDS, get_keyring

    try:
        keys = get_keyring().keys_for(tenant_id)
    except Exception:
        return None
    return KEY_TTL_SECONDS - (time.monotonic() - keys.loaded_at)


def keys_fresh(tenant_id: uuid.UUID) -> bool:
    """The tenant's data keys are loaded in this process and within their time to live (a
    unit of work's ``BEGIN`` would not reload them): a claim that starts now decodes with them,
    as a transaction that began now would."""
    left = keys_left(tenant_id)
    return left is not None and left > 0.0


class _Plan:
    __slots__ = ("columns", "constants", "literals", "row", "template")

    def __init__(self, stmt: Any, dialect: Dialect) -> None:
        compiled = stmt.compile(dialect=dialect)
        sample = {"c_tid": uuid.UUID(int=0), "c_now": dt.datetime.now(dt.UTC), "c_limit": 1, "c_by": ""}
        # expanding parameters (the NOT IN list) rendered as one placeholder per value
        state = compiled.construct_expanded_state(sample)
        for name in _DYNAMIC:
            if f"%({name})s" not in state.statement:
                raise ValueError(f"the code claim has no parameter {name}")
        self.template = state.statement
        self.constants = {k: v for k, v in state.parameters.items() if k not in _DYNAMIC}
        self.literals: dict[str, str] | None = None  # the constants' literals, rendered once
        self.columns = tuple(
            (rc.keyname, rc.type._cached_result_processor(dialect, None)) for rc in compiled._result_columns
        )
        self.row: Any = NamedTuple("ClaimedCode", [(k, Any) for k, _ in self.columns])  # type: ignore[misc]

    def sql_for(self, conn: psycopg.AsyncConnection[Any], values: dict[str, Any]) -> str:
        if self.literals is None:
            self.literals = {k: sql.Literal(v).as_string(conn) for k, v in self.constants.items()}
        literals = {**self.literals, **{k: sql.Literal(v).as_string(conn) for k, v in values.items()}}
        return with_tenant(uuid.UUID(str(values["c_tid"])), self.template % literals)

    def decode(self, raw: list[tuple[Any, ...]]) -> list[Any]:
        rows = []
        try:
            for r in raw:
                rows.append(
                    self.row(
                        *(
                            process(v) if process is not None and v is not None else v
                            for (_, process), v in zip(self.columns, r, strict=True)
                        )
                    )
                )
        except Exception as exc:  # the rows as read, for putting the claim back
            raise DecodeError(str(exc), [self.row(*r) for r in raw]) from exc
        return rows


class CodeClaimer:
    """The one-round-trip claim and a small pool of connections for it: at most ``size`` open
    (the gateway's urgent claimers; a claim beyond waits for one), opened as claims need them
    and kept; dropped when the event loop changes, as tests run one per test."""

    def __init__(self, url: str, dialect: Dialect, stmt: Any, *, size: int = 2) -> None:
        self._conninfo = libpq_conninfo(url)
        self._plan = _Plan(stmt, dialect)
        self._size = size
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._slots = asyncio.Semaphore(size)
        self._loop: asyncio.AbstractEventLoop | None = None

    async def claim(self, tid: uuid.UUID, now: dt.datetime, limit: int, by: str) -> list[Any]:
        """Claim (committed) and return the rows of the claim statement, decoded."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._idle, self._loop, self._slots = [], loop, asyncio.Semaphore(self._size)
        async with self._slots:  # at most ``size`` connections: idle + in use
            conn = (
                self._idle.pop()
                if self._idle
                else await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            )
            ok = False
            try:
                query = self._plan.sql_for(conn, {"c_tid": tid, "c_now": now, "c_limit": limit, "c_by": by})
                cur = conn.cursor()
                await cur.execute(query.encode())
                cur.nextset()  # past set_config's row
                raw = await cur.fetchall()
                ok = True
            finally:
                if ok and not conn.closed:
                    self._idle.append(conn)
                else:
                    await close_quietly(conn)
        with context.tenant_scope(tid):
            return self._plan.decode(raw)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            await close_quietly(conn)
