"""Engine and session factory for SQLite (embedded) and PostgreSQL (production).

SQLite runs in WAL mode with a busy timeout and foreign keys on. On PostgreSQL every
transaction starts with ``set_config('app.tenant_id', …, true)`` so row-level security
sees the tenant in scope; with no tenant in scope the setting is empty and tenant-owned
tables return no rows.

One round trip opens a PostgreSQL transaction: the driver connection runs in autocommit mode
(psycopg then sends no ``BEGIN`` of its own) and the engine's ``begin`` event sends
``BEGIN; SELECT set_config('app.tenant_id', '<tenant>', true)`` as one simple-protocol
query. The setting stays transaction-local (``true``), so it ends with the transaction's
``COMMIT``/``ROLLBACK`` and a pooled connection never carries a tenant into the next one.
``commit()``/``rollback()`` still reach the server: psycopg sends them whenever the server
reports an open transaction. A connection asked for another isolation level falls back to
psycopg's own ``BEGIN`` plus a separate ``set_config``; one in ``AUTOCOMMIT`` gets neither.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import AdaptedConnection, Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from tessera.core import context
from tessera.core.db import guard, hooks
from tessera.core.db.direct import DirectReader


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def make_engine(url: str, *, pool_size: int = 20, echo: bool = False) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(
            url, echo=echo, connect_args={"timeout": 30}, pool_size=pool_size, max_overflow=0
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        # aiosqlite opens SQLite's implicit transactions lazily; emit BEGIN ourselves so a
        # unit of work is one transaction and write locks are taken at the first statement.
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    if url.startswith("postgresql"):
        # Up to twice ``pool_size`` connections, all kept once opened: with overflow
        # connections a busy API opened and closed PostgreSQL connections (a backend process
        # each) over and over, whenever the pool briefly had its ``pool_size`` idle ones.
        engine = create_async_engine(
            url,
            echo=echo,
            pool_size=pool_size * 2,
            max_overflow=0,
            pool_pre_ping=False,
            pool_recycle=1800,
        )
        if engine.dialect.driver == "psycopg":
            event.listen(engine.sync_engine, "connect", _pg_autocommit)
            event.listen(engine.sync_engine, "begin", _pg_begin)
        return engine
    return create_async_engine(url, echo=echo, poolclass=NullPool)


TENANT_SETTING_SQL = "SELECT set_config('app.tenant_id', %(t)s, true)"


def tenant_setting(tenant_id: uuid.UUID | None) -> str:
    """The value of ``app.tenant_id`` for a tenant (empty: no tenant, no rows)."""
    return str(tenant_id) if tenant_id is not None else ""


def _pg_autocommit(dbapi_conn: Any, _record: Any) -> None:
    # The begin event below opens every transaction itself, in the same round trip as the
    # tenant setting (see the module docstring).
    dbapi_conn.autocommit = True


def _pg_begin(conn: Connection) -> None:
    isolation = conn.get_execution_options().get("isolation_level")
    if isolation == "AUTOCOMMIT":
        return
    dbapi_conn: Any = conn.connection.dbapi_connection
    if isolation is None and not dbapi_conn.autocommit:
        # The pool reset a connection that was lent out with another isolation level.
        dbapi_conn.autocommit = True
    tenant = tenant_setting(context.current_tenant_id_or_none())
    if dbapi_conn.autocommit:
        # The value is a canonical UUID string (hex digits and dashes) or empty, so it can be
        # inlined: a query without parameters goes over the simple protocol, which runs both
        # statements in one round trip.
        sql = f"BEGIN; SELECT set_config('app.tenant_id', '{tenant}', true)"
        if not isinstance(dbapi_conn, AdaptedConnection):
            conn.exec_driver_sql(sql)
            return
        # Straight to the asyncio driver (SQLAlchemy's documented ``run_async``): nobody reads
        # what the statement returns, and SQLAlchemy's execution machinery (execution context,
        # cursor adapter, result) cost more CPU than the round trip. Listeners still see it.
        if conn._has_events or conn.engine._has_events:
            conn.dispatch.before_cursor_execute(conn, None, sql, {}, None, False)
        try:
            dbapi_conn.run_async(lambda driver: driver.execute(sql))
        except Exception as exc:
            conn._handle_dbapi_exception(exc, sql, {}, None, None)
    else:
        conn.exec_driver_sql(TENANT_SETTING_SQL, {"t": tenant})


def _sqlite_begin(conn: Connection) -> None:
    # IMMEDIATE takes the write lock up front: a deferred transaction that reads and then
    # writes after another writer committed fails at once with SQLITE_BUSY_SNAPSHOT.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """Holds the engine and the session factory of one process."""

    def __init__(
        self, url: str, *, pool_size: int = 20, read_pool_size: int | None = None, echo: bool = False
    ) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size=pool_size, echo=echo)
        self.is_postgres = url.startswith("postgresql")
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine.sync_engine.dialect._json_serializer = _json_dumps  # type: ignore[attr-defined]
        # A Session class of our own: listening on the shared ``Session`` class would make every
        # Database ever created (tests, benches, CLI) run its hook on every later session.
        session_class = type("TesseraSession", (Session,), {})
        self.sessionmaker = async_sessionmaker(
            self.engine,
            expire_on_commit=False,
            autoflush=True,
            class_=AsyncSession,
            sync_session_class=session_class,
        )
        event.listen(session_class, "after_begin", self._after_begin)
        self.direct: DirectReader | None = None
        if self.is_postgres and self.engine.dialect.driver == "psycopg":
            # Its own size: a read waiting for a connection costs more than the read
            # (measured: 20 connections for 64 concurrent reads, 0.46-0.48 ms CPU per request;
            # 64, 0.41-0.42 ms).
            self.direct = DirectReader(url, self.engine.dialect, size=read_pool_size or pool_size)

    def _after_begin(self, session: Session, _tx: Any, connection: Connection) -> None:
        tid = context.current_tenant_id_or_none()
        session.info["tenant_id"] = tid
        # On PostgreSQL the connection's ``begin`` event (``_pg_begin``) has already set
        # ``app.tenant_id`` for this transaction, from the same context variable.
        if self.is_postgres and connection.dialect.driver != "psycopg":
            connection.exec_driver_sql(TENANT_SETTING_SQL, {"t": tenant_setting(tid)})
        if tid is not None:
            for hook in hooks.on_tenant_begin:
                hook(connection, tid)

    async def dispose(self) -> None:
        if self.direct is not None:
            await self.direct.close()
        await self.engine.dispose()


def _json_dumps(value: Any) -> str:
    import orjson

    return orjson.dumps(value, default=_json_default).decode()


def _json_default(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


guard.install()
