"""A verification code's claim in one round trip (PostgreSQL through psycopg).

Through a unit of work the claim of :func:`tessera.connect.dispatcher._claim_codes_stmt` takes
three round trips (``BEGIN`` with the tenant setting, the claim, ``COMMIT``), and under bulk
load each of them waits for a turn of the gateway's busy event loop (the slowest 1 % of codes
spent ~59 ms there). :class:`CodeClaimer` sends

    EXECUTE tessera_set_tenant('<tenant>')      -- SELECT set_config('app.tenant_id', $1, true)
    EXECUTE tessera_claim_codes(<tenant>, <now>, <limit>, <gateway>)   -- WITH claimed AS (…) …
    SYNC

in libpq's pipeline mode, as one write, on an autocommit connection of its own (same URL, so
the same non-owner role and row-level security), through :func:`tessera.core.db.direct.
run_prepared`. PostgreSQL runs what comes before a ``Sync`` as one implicit transaction: the
tenant setting is transaction-local exactly as a unit of work's ``BEGIN`` sets it, the claim
sees it, and the transaction commits at the ``Sync`` (an error anywhere rolls all of it back).
Both statements are prepared once per connection, so the server does not parse and plan the
claim again for every code (it did when the two went as one simple-protocol query with the
values inlined). The statement is compiled once; its constants (statuses, lanes, increments)
stay inlined as literals, so the planner sees them, and the tenant, the time, the limit and the
gateway id are its four parameters (every placeholder carries its SQL cast). The rows are
decoded by psycopg's loaders as the session's are, then by the columns' own result processors
(the encrypted number with the tenant's data key, which must be loaded: the caller checks
:func:`keys_fresh` first and otherwise claims through a unit of work, which loads them).

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
import re
import time
import uuid
from typing import Any, NamedTuple

import psycopg
from psycopg import abc, sql
from psycopg.adapt import Transformer
from sqlalchemy.engine import Dialect

from tessera.core import context
from tessera.core.db.direct import close_quietly, libpq_conninfo, run_prepared

_DYNAMIC = ("c_tid", "c_now", "c_limit", "c_by")  # the prepared statement's $1 … $4
_NAME = b"tessera_claim_codes"
# the take of codes pushed to this gateway (tessera.connect.push): $1 … $4
_TAKE_DYNAMIC = ("c_tid", "c_now", "c_by", "c_ids")
_TAKE_NAME = b"tessera_take_pushed"
_PLACEHOLDER = re.compile(r"%\((\w+)\)s|%%")


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
    __slots__ = ("columns", "constants", "dynamic", "prepared_query", "row", "template")

    def __init__(self, stmt: Any, dialect: Dialect, dynamic: tuple[str, ...] = _DYNAMIC) -> None:
        compiled = stmt.compile(dialect=dialect)
        sample = {
            "c_tid": uuid.UUID(int=0),
            "c_now": dt.datetime.now(dt.UTC),
            "c_limit": 1,
            "c_by": "",
            "c_ids": [uuid.UUID(int=0)],
        }
        # expanding parameters (the NOT IN list) rendered as one placeholder per value
        state = compiled.construct_expanded_state(sample)
        for name in dynamic:
            if f"%({name})s" not in state.statement:
                raise ValueError(f"the code claim has no parameter {name}")
        self.dynamic = dynamic
        self.template = state.statement
        self.constants = {k: v for k, v in state.parameters.items() if k not in dynamic}
        self.prepared_query: bytes | None = None  # see query
        self.columns = tuple(
            (rc.keyname, rc.type._cached_result_processor(dialect, None)) for rc in compiled._result_columns
        )
        self.row: Any = NamedTuple("ClaimedCode", [(k, Any) for k, _ in self.columns])  # type: ignore[misc]

    def query(self, conn: psycopg.AsyncConnection[Any]) -> bytes:
        """The statement to prepare, rendered on the first claim (the literals need a
        connection) and kept: the constants as literals, the dynamic values ``$1`` … ``$4`` in
        the order of ``dynamic``."""
        if self.prepared_query is None:
            literals = {k: sql.Literal(v).as_string(conn) for k, v in self.constants.items()}
            literals.update({k: f"${n}" for n, k in enumerate(self.dynamic, 1)})

            def sub(m: re.Match[str]) -> str:
                return "%" if m.group(0) == "%%" else literals[m.group(1)]

            self.prepared_query = _PLACEHOLDER.sub(sub, self.template).encode()
        return self.prepared_query

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

    def __init__(
        self, url: str, dialect: Dialect, stmt: Any, *, take_stmt: Any = None, size: int = 2
    ) -> None:
        self._conninfo = libpq_conninfo(url)
        self._plan = _Plan(stmt, dialect)
        # the take of pushed codes (``_claim_codes_stmt(pushed=True)``), when given
        self._take_plan = _Plan(take_stmt, dialect, _TAKE_DYNAMIC) if take_stmt is not None else None
        self._size = size
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        # the statements prepared on each open connection (see run_prepared), and its row
        # decoder (its loaders are built once per column type, not per claim)
        self._prepared: dict[psycopg.AsyncConnection[Any], set[bytes]] = {}
        self._decoders: dict[psycopg.AsyncConnection[Any], abc.Transformer] = {}
        self._slots = asyncio.Semaphore(size)
        self._loop: asyncio.AbstractEventLoop | None = None

    async def claim(self, tid: uuid.UUID, now: dt.datetime, limit: int, by: str) -> list[Any]:
        """Claim (committed) and return the rows of the claim statement, decoded."""
        params = (str(tid).encode(), now.isoformat().encode(), str(limit).encode(), by.encode())
        raw = await self._run(self._plan, _NAME, tid, params)
        assert raw is not None
        with context.tenant_scope(tid):
            return self._plan.decode(raw)

    async def take(self, tid: uuid.UUID, now: dt.datetime, by: str, ids: list[uuid.UUID]) -> int:
        """Record (committed) the claim of codes pushed to gateway ``by`` and being submitted;
        returns how many were still assigned to it (their rows are not decoded)."""
        assert self._take_plan is not None
        params = (
            str(tid).encode(),
            now.isoformat().encode(),
            by.encode(),
            ("{" + ",".join(map(str, ids)) + "}").encode(),
        )
        found = await self._run(self._take_plan, _TAKE_NAME, tid, params, decode=False)
        assert isinstance(found, int)
        return found

    async def _run(
        self, plan: _Plan, name: bytes, tid: uuid.UUID, params: tuple[bytes, ...], *, decode: bool = True
    ) -> Any:
        """The statement of ``plan`` in one round trip on a connection of the pool: its rows as
        read (``decode``), else their number."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._idle, self._loop, self._slots = [], loop, asyncio.Semaphore(self._size)
            self._prepared, self._decoders = {}, {}
        async with self._slots:  # at most ``size`` connections: idle + in use
            conn = (
                self._idle.pop()
                if self._idle
                else await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
            )
            ok = False
            try:
                prepared = self._prepared.setdefault(conn, set())
                found = await run_prepared(conn, prepared, tid, name, plan.query(conn), params)
                if decode:
                    tx = self._decoders.get(conn)
                    if tx is None:
                        tx = self._decoders[conn] = Transformer(conn)
                    tx.set_pgresult(found)
                    raw: Any = [tx.load_row(i, tuple) for i in range(found.ntuples)]
                else:
                    raw = found.ntuples
                ok = True
            finally:
                if ok and not conn.closed:
                    self._idle.append(conn)
                else:
                    self._prepared.pop(conn, None)
                    self._decoders.pop(conn, None)
                    await close_quietly(conn)
        return raw

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        self._prepared, self._decoders = {}, {}
        for conn in idle:
            await close_quietly(conn)
