"""One-round-trip primary-key reads on PostgreSQL, for answering reads.

A unit of work through SQLAlchemy's session reads one row in three round trips (``BEGIN`` with
the tenant setting, the ``SELECT``, ``COMMIT``) and spends most of an authenticated read's CPU
time in the session, the ORM loading and the asyncio bridge. A :class:`DirectReader` sends, on a
connection of its own (same URL, so the same non-owner role), in libpq's pipeline mode and as
one write,

    EXECUTE tessera_set_tenant('<tenant>')          -- SELECT set_config('app.tenant_id', $1, true)
    EXECUTE tessera_read_<n>('<id>', '<tenant>')    -- SELECT … WHERE id = $1 AND tenant_id = $2
    SYNC

PostgreSQL runs what comes before a ``Sync`` as one implicit transaction: the tenant setting is
transaction-local exactly as in a unit of work, row-level security sees it, and it ends with
the read. Both statements are prepared once per connection (the ``Parse`` messages go in front
of the first read that needs them, in the same write), so the server neither parses nor plans
them again: 90–104 us of server CPU per read as a two-statement simple query, 32–38 us
prepared (this machine, 5,000 reads, backend CPU from ``/proc``). The ``WHERE`` clause is the
tenant guard's own (:func:`guard.guarded`), compiled once per model; the UUIDs travel as
parameters.

The rows come back as detached ORM instances. :meth:`Repository.read
<tessera.core.db.repository.Repository.read>` decides when this path answers the same as the
session would (no transaction open, nothing pending); see there.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import uuid
from collections import deque
from typing import Any

import orjson
import psycopg
from psycopg import abc, generators
from psycopg import errors as pg_errors
from psycopg.abc import PQGen
from psycopg.adapt import Transformer
from psycopg.pq import ExecStatus, TransactionStatus
from psycopg.pq.abc import PGresult
from psycopg.types.json import set_json_loads
from psycopg.waiting import Ready, Wait
from sqlalchemy import bindparam, select
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.orm import Mapper, make_transient_to_detached

from tessera.core.db import guard

# As ints: libpq's status getters return ints, and ``conn.info.transaction_status`` builds a
# ``ConnectionInfo`` and an enum member from one on every call.
_IDLE = int(TransactionStatus.IDLE)
_TUPLES_OK = int(ExecStatus.TUPLES_OK)
_COMMAND_OK = int(ExecStatus.COMMAND_OK)
_PIPELINE_SYNC = int(ExecStatus.PIPELINE_SYNC)


class DecodeError(Exception):
    """A row was read but a column could not be decoded here (e.g. the tenant's data keys are
    not loaded in this process yet: a session's transaction loads them)."""


# The tenant setting, prepared on each connection of a reader (and of the code claimer).
_SET_TENANT_NAME = b"tessera_set_tenant"
_SET_TENANT_SQL = b"SELECT set_config('app.tenant_id', $1, true)"


def libpq_conninfo(url: str) -> str:
    """The libpq connection string of a SQLAlchemy URL (same host, database and role)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


_plan_numbers = itertools.count(1)


class _Plan:
    """A model's primary-key read: the statement (parameters ``$1`` the id, ``$2`` the tenant),
    its prepared name and how to build instances."""

    __slots__ = ("columns", "mapper", "name", "query")

    def __init__(self, model: type[Any], dialect: Dialect) -> None:
        mapper: Mapper[Any] = model.__mapper__
        stmt = guard.guarded(select(model).where(model.id == bindparam("id_")))
        compiled = stmt.compile(dialect=dialect)
        binds = {"id_": "$1", guard.TENANT_PARAM: "$2"}
        if set(compiled.binds) != set(binds):
            raise ValueError(f"unexpected parameters in {model.__name__}'s read: {list(compiled.binds)}")
        # pyformat placeholders -> $n; the compiled text doubles its literal percent signs.
        self.query = (compiled.string % binds).encode()
        table = mapper.local_table
        # One name per plan: two models of one table read different columns.
        self.name = f"tessera_read_{next(_plan_numbers)}".encode()
        self.mapper = mapper
        columns: list[tuple[str, Any]] = []
        for rc in compiled._result_columns:
            column = table.c[rc.name]
            prop = mapper.get_property_by_column(column)
            columns.append((prop.key, column.type._cached_result_processor(dialect, None)))
        self.columns = tuple(columns)

    def build(self, row: tuple[Any, ...]) -> Any:
        instance = self.mapper.class_manager.new_instance()
        values = instance.__dict__
        try:
            for (key, process), value in zip(self.columns, row, strict=True):
                values[key] = process(value) if process is not None and value is not None else value
        except Exception as exc:
            raise DecodeError(f"{self.mapper.class_.__name__}: {exc}") from exc
        make_transient_to_detached(instance)
        return instance


# A read on a dead connection is tried again on another (see DirectReader.get); three covers a
# read that takes one dead idle connection, then a second one, then opens a new one.
READ_ATTEMPTS = 3


class DirectReader:
    """A small pool of autocommit psycopg connections and the per-model read plans.

    The pool is a list rather than ``psycopg_pool.AsyncConnectionPool`` for two reasons: it
    follows the running event loop (a connection waits on the loop that opened them, and
    tests run one loop per test: the list is dropped when the loop changes, where a library
    pool would have to be closed and rebuilt around every caller), and an acquire is a list
    pop — ``AsyncConnectionPool.getconn`` + ``putconn`` measured 4.3 us of CPU per read on
    this machine, about 0.7 % of the request this path serves."""

    def __init__(self, url: str, dialect: Dialect, *, size: int = 10) -> None:
        self._conninfo = libpq_conninfo(url)
        self._dialect = dialect
        self._size = size
        self._plans: dict[type[Any], _Plan] = {}
        self._idle: list[psycopg.AsyncConnection[Any]] = []
        self._waiters: deque[asyncio.Future[psycopg.AsyncConnection[Any] | None]] = deque()
        self._opened = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._watches: dict[psycopg.AsyncConnection[Any], _Watch] = {}
        # The names of the statements prepared on each connection (:meth:`get`).
        self._prepared: dict[psycopg.AsyncConnection[Any], set[bytes]] = {}

    def plan(self, model: type[Any]) -> _Plan:
        found = self._plans.get(model)
        if found is None:
            found = self._plans[model] = _Plan(model, self._dialect)
        return found

    async def get(self, model: type[Any], id: uuid.UUID, tenant_id: uuid.UUID) -> Any | None:
        """The row of ``model`` with primary key ``id`` in ``tenant_id``, as a detached instance
        (None when missing or another tenant's).

        A connection the server closed while it sat idle is discarded when its watch saw the
        socket close; one closed just before the read (its watch not told yet) fails the read
        with an ``OperationalError``, and the read is tried again on another connection, up to
        :data:`READ_ATTEMPTS` times in all (a read changes nothing, so trying again is safe).
        Errors of the statement itself (bad data, a missing column) are raised at once."""
        for _ in range(READ_ATTEMPTS - 1):
            try:
                return await self._get(model, id, tenant_id)
            except psycopg.OperationalError:
                pass  # that connection is gone (released as failed): the next read takes another
        return await self._get(model, id, tenant_id)

    async def _get(self, model: type[Any], id: uuid.UUID, tenant_id: uuid.UUID) -> Any | None:
        plan = self.plan(model)
        tenant = str(tenant_id).encode()
        conn = await self._acquire()
        ok = False
        try:
            # Straight to libpq: the tenant setting and the read as one pipeline ending in a
            # Sync (one implicit transaction), waiting on the socket through the connection's
            # standing watch (:class:`_Watch`).
            pgconn = conn.pgconn
            watch = self._watch(conn)
            prepared = self._prepared.get(conn)
            if prepared is None:
                prepared = self._prepared[conn] = set()
            _send_with_tenant(pgconn, prepared, tenant, plan.name, plan.query, (str(id).encode(), tenant))
            found = _last_result(conn, prepared, plan.name, await watch.run(_pipeline_results(pgconn)))
            ok = True
        finally:
            self._release(conn, ok)
        if found.ntuples == 0:
            return None
        # The connection's own transformer (its loaders are built once per column type, not
        # per read); used before the next await, so never by two reads at once.
        tx = watch.transformer
        if tx is None:
            tx = watch.transformer = Transformer(conn)
        tx.set_pgresult(found)
        return plan.build(tx.load_row(0, tuple))

    async def _acquire(self) -> psycopg.AsyncConnection[Any]:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # Connections wait on the loop that opened them (tests run one loop per test).
            self._idle.clear()
            self._waiters.clear()
            self._watches.clear()
            self._prepared.clear()
            self._opened = 0
            self._loop = loop
        while True:
            if self._idle:
                idle = self._idle.pop()
                watch = self._watches.get(idle)
                if watch is not None and watch.stirred:
                    # Its socket turned readable while it sat idle: the server closed it
                    # (restart, idle timeout, terminated backend) or said something no query
                    # asked for. Either way a fresh connection is the safe answer.
                    self._discard(idle)
                    continue
                return idle
            if self._opened < self._size:
                self._opened += 1
                try:
                    opened = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
                    set_json_loads(_json_loads, opened)
                    return opened
                except BaseException:
                    self._opened -= 1
                    self._wake(None)
                    raise
            waiter: asyncio.Future[psycopg.AsyncConnection[Any] | None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                conn = await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    given = waiter.result()
                    if given is not None:
                        self._release(given, True)
                    else:
                        self._wake(None)
                else:
                    self._remove(waiter)
                raise
            if conn is not None:
                return conn

    def _remove(self, waiter: asyncio.Future[Any]) -> None:
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass

    def _wake(self, conn: psycopg.AsyncConnection[Any] | None) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return True
        return False

    def _watch(self, conn: psycopg.AsyncConnection[Any]) -> _Watch:
        watch = self._watches.get(conn)
        if watch is None:
            watch = self._watches[conn] = _Watch(conn.pgconn.socket, asyncio.get_running_loop())
        return watch

    def _unwatch(self, conn: psycopg.AsyncConnection[Any]) -> None:
        watch = self._watches.pop(conn, None)
        if watch is not None:
            watch.stop()

    def _release(self, conn: psycopg.AsyncConnection[Any], ok: bool) -> None:
        if asyncio.get_running_loop() is not self._loop:
            return  # opened under a loop that is gone
        if ok and not conn.closed and conn.pgconn.transaction_status == _IDLE:
            if not self._wake(conn):
                self._idle.append(conn)
            return
        # A failed or interrupted query may leave the connection mid-protocol: never reuse it.
        self._discard(conn)
        self._wake(None)

    def _discard(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._unwatch(conn)
        self._prepared.pop(conn, None)
        self._opened -= 1
        task = asyncio.get_running_loop().create_task(close_quietly(conn))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        self._opened -= len(idle)
        for conn in idle:
            self._unwatch(conn)
            self._prepared.pop(conn, None)
            await close_quietly(conn)


class _Watch:
    """A standing read watch on one pooled connection's socket.

    psycopg's asyncio wait registers the socket with the event loop for every wait and removes
    it afterwards: with uvloop that is a poll handle built and torn down and three ``epoll_ctl``
    calls per query. A pooled connection here is only ever used by one query at a time, so its
    socket stays registered while it is in use and idle: a readable socket wakes the query
    waiting on it. The protocol itself stays psycopg's (its ``execute`` generator says what to
    wait for). A socket that turns readable while nobody waits (the server closing an idle
    connection, or sending a notice) is unregistered, since the level-triggered readiness would
    otherwise fire on every loop turn, and marked ``stirred``: the pool then closes that
    connection instead of handing it out, so a server restart costs no failed read.

    The connection must not be driven by psycopg's own methods while watched (its waits
    register the socket themselves and unregister it afterwards): :meth:`DirectReader._unwatch`
    first.
    """

    __slots__ = ("fd", "loop", "stirred", "transformer", "waiter", "watching")

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop) -> None:
        self.fd = fd
        self.loop = loop
        # The connection's row decoder, kept with the watch as the other per-connection state.
        self.transformer: abc.Transformer | None = None
        self.waiter: asyncio.Future[Ready] | None = None
        self.watching = False
        self.stirred = False

    async def run(self, gen: PQGen[list[PGresult]]) -> list[PGresult]:
        """Drive one of psycopg's non-blocking protocol generators to its result."""
        try:
            wait = next(gen)
            while True:
                ready = await (self._readable() if wait == Wait.R else self._ready_any(wait))
                wait = gen.send(ready)
        except StopIteration as done:
            result: list[PGresult] = done.value
            return result

    def _on_readable(self) -> None:
        waiter = self.waiter
        if waiter is None:
            self.stop()  # readable while idle: see the class docstring
            self.stirred = True
        elif not waiter.done():
            waiter.set_result(Ready.R)

    def _start(self) -> None:
        if not self.watching:
            self.loop.add_reader(self.fd, self._on_readable)
            self.watching = True

    def stop(self) -> None:
        if self.watching:
            self.watching = False
            self.loop.remove_reader(self.fd)

    async def _readable(self) -> Ready:
        self._start()
        waiter: asyncio.Future[Ready] = self.loop.create_future()
        self.waiter = waiter
        try:
            return await waiter
        finally:
            self.waiter = None

    async def _ready_any(self, wait: Wait) -> Ready:
        """Wait for writability too (a query that did not fit in the socket's send buffer)."""
        self._start()
        waiter: asyncio.Future[Ready] = self.loop.create_future()
        self.waiter = waiter

        def writable() -> None:
            if not waiter.done():
                waiter.set_result(Ready.W)

        self.loop.add_writer(self.fd, writable)
        try:
            return await waiter
        finally:
            self.waiter = None
            self.loop.remove_writer(self.fd)


_OK = frozenset((_TUPLES_OK, _COMMAND_OK))


async def run_prepared(
    conn: psycopg.AsyncConnection[Any],
    prepared: set[bytes],
    tenant_id: uuid.UUID,
    name: bytes,
    query: bytes,
    params: tuple[bytes | None, ...],
) -> PGresult:
    """Run the prepared statement ``name`` (``query``, ``$n`` parameters in text form) with
    ``app.tenant_id`` set to ``tenant_id``, in one round trip on ``conn`` (an idle autocommit
    connection the caller has to itself): the tenant setting and the statement as one pipeline
    ending in a Sync, so one implicit transaction, as :class:`DirectReader` reads. Statements
    not in ``prepared`` (the names prepared on this connection) are prepared in the same write
    and added to it once the round trip succeeded. Raises the statement's error; the caller
    then closes the connection (which statements got prepared is not worked out)."""
    _send_with_tenant(conn.pgconn, prepared, str(tenant_id).encode(), name, query, params)
    return _last_result(conn, prepared, name, await conn.wait(_pipeline_results(conn.pgconn)))


def _send_with_tenant(
    pgconn: Any,
    prepared: set[bytes],
    tenant: bytes,
    name: bytes,
    query: bytes,
    params: tuple[bytes | None, ...],
) -> None:
    """Queue, in pipeline mode, the tenant setting and the prepared statement ``name`` ending in
    a Sync, with the ``Parse`` messages of whichever of them ``prepared`` lacks in front."""
    pgconn.enter_pipeline_mode()
    if name not in prepared:
        if _SET_TENANT_NAME not in prepared:
            pgconn.send_prepare(_SET_TENANT_NAME, _SET_TENANT_SQL)
        pgconn.send_prepare(name, query)
    pgconn.send_query_prepared(_SET_TENANT_NAME, (tenant,))
    pgconn.send_query_prepared(name, params)
    pgconn.pipeline_sync()


def _last_result(
    conn: psycopg.AsyncConnection[Any], prepared: set[bytes], name: bytes, results: list[PGresult]
) -> PGresult:
    """The statement's result, once the pipeline of :func:`_send_with_tenant` came back: out of
    pipeline mode, the first error raised (the rest of the pipeline was skipped; which
    statements got prepared is not worth working out: the caller drops the connection), else
    both statements recorded as prepared on the connection."""
    conn.pgconn.exit_pipeline_mode()
    for result in results:
        if result.status not in _OK:
            raise pg_errors.error_from_result(result, encoding=conn.info.encoding)
    prepared.update((_SET_TENANT_NAME, name))
    return results[-1]


def _pipeline_results(pgconn: Any) -> PQGen[list[PGresult]]:
    """Flush a pipeline ending in one Sync and gather its results up to the Sync."""
    yield from generators.send(pgconn)
    results: list[PGresult] = []
    while True:
        pgconn.consume_input()
        while not pgconn.is_busy():
            result = pgconn.get_result()
            if result is None:
                continue  # the end of one statement's results
            if result.status == _PIPELINE_SYNC:
                return results
            results.append(result)
        yield Wait.R


# Nineteen digits in a row: a number orjson might read as a float (it reads integers beyond
# 64 bits as floats, where the json module keeps them exact).
_LONG_NUMBER = re.compile(rb"[0-9]{19}")


def _json_loads(data: bytes | bytearray | memoryview | str) -> Any:
    """json/jsonb columns (e.g. a user's recovery codes) through orjson, at a fraction of the
    json module's cost, with the json module's values: through the json module itself when the
    text holds a number orjson would not give back exactly."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if _LONG_NUMBER.search(raw):
        return json.loads(raw)
    return orjson.loads(raw)


async def close_quietly(conn: psycopg.AsyncConnection[Any]) -> None:
    """Close ``conn``; a broken connection is dropped either way."""
    try:
        await conn.close()
    except Exception:  # closing a broken connection: nothing left to release
        pass
