"""The process-wide database handle and the unit of work.

A unit of work is one transaction: it commits once at the end and rolls back on error.
Services receive the session and never commit. Callbacks registered with
:func:`after_commit` run only once the transaction is durable (e.g. waking job workers).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session

from tessera.core.db.direct import DirectReader
from tessera.core.db.engine import Database
from tessera.core.db.guard import PLATFORM

log = logging.getLogger(__name__)

_db: Database | None = None

AfterCommit = Callable[[], Awaitable[None] | None]


def init_database(
    url: str, *, pool_size: int = 20, read_pool_size: int | None = None, echo: bool = False
) -> Database:
    global _db
    _db = Database(url, pool_size=pool_size, read_pool_size=read_pool_size, echo=echo)
    return _db


def get_database() -> Database:
    if _db is None:
        raise RuntimeError("database not initialised; call init_database() first")
    return _db


def set_database(db: Database | None) -> None:
    global _db
    _db = db


class LazySession(AsyncSession):
    """The session of a unit of work, built on first use.

    Many requests never use theirs: a read answered by :meth:`Repository.read
    <tessera.core.db.repository.Repository.read>` or by a cache. Building an ``AsyncSession``
    and its ``Session`` (identity map, transaction state, proxies) and closing them again cost
    about a twentieth of such a request's CPU. This subclass keeps only the factory until an
    attribute that the real constructor sets is first asked for — ``execute``, ``add``,
    ``info``, ``sync_session`` and every other method reach one — and then runs that
    constructor, so the object behaves as the ``AsyncSession`` it is from then on.
    :func:`untouched` tells whether that ever happened.
    """

    def __init__(self, factory: async_sessionmaker[AsyncSession]) -> None:
        # Deliberately not AsyncSession.__init__: that runs in __getattr__ on first use.
        self.__dict__["_lazy_factory"] = factory

    def __getattr__(self, name: str) -> Any:
        # Only called for attributes the instance does not have yet.
        state = self.__dict__
        if name.startswith("__") or "_lazy_factory" not in state:
            raise AttributeError(name)
        factory = state.pop("_lazy_factory")
        AsyncSession.__init__(self, **factory.kw)
        return getattr(self, name)


def untouched(session: AsyncSession) -> bool:
    """True while ``session`` is a :class:`LazySession` that nothing has used: it has no
    transaction, no objects, no ``info`` and no connection."""
    return "_lazy_factory" in session.__dict__


def direct_reader(session: AsyncSession) -> DirectReader | None:
    """The process's one-round-trip reader, when ``session`` works on the process's database
    and that is PostgreSQL through psycopg."""
    db = _db
    if db is None or db.direct is None:
        return None
    factory = session.__dict__.get("_lazy_factory")
    bind = factory.kw.get("bind") if factory is not None else session.bind
    if bind is not db.engine:
        return None
    return db.direct


def after_commit(session: AsyncSession, callback: AfterCommit) -> None:
    session.info.setdefault("after_commit", []).append(callback)


async def _run_after_commit(session: AsyncSession) -> None:
    callbacks: list[AfterCommit] = session.info.pop("after_commit", [])
    for cb in callbacks:
        try:
            result = cb()
            if result is not None:
                await result
        except Exception:  # a failed notification must not turn a committed write into an error
            log.exception("after-commit callback failed")


def _commit_and_close(session: Session) -> None:
    session.commit()
    session.close()


class _UnitOfWork:
    """The transaction of :func:`unit_of_work`, as a plain async context manager.

    On success the commit and the release of the connection run in one hop into SQLAlchemy's
    synchronous core; ``AsyncSession``'s own exit would run ``close()`` in a task of its own,
    which is the right protection on the error path (a cancelled request still returns its
    connection) and kept there, but costs a task and an event-loop turn on every request.
    """

    __slots__ = ("platform", "session")

    def __init__(self, platform: bool) -> None:
        self.platform = platform
        self.session: AsyncSession | None = None

    async def __aenter__(self) -> AsyncSession:
        factory = get_database().sessionmaker
        if self.platform:
            session = self.session = factory()
            session.info[PLATFORM] = True
        else:
            session = self.session = LazySession(factory)
        return session

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, _tb: Any) -> None:
        session = self.session
        assert session is not None
        if untouched(session):
            return  # never used: no transaction, no connection, no after-commit callbacks
        if exc is None:
            sync = session.sync_session
            if not sync.in_transaction() and not (sync.new or sync.deleted or sync.dirty):
                # Nothing ran and nothing waits to be flushed (a read answered by
                # ``Repository.read``, or by caches): no connection to commit or release, so
                # no hop into SQLAlchemy's synchronous core.
                sync.close()
                await _run_after_commit(session)
                return
            try:
                await session.run_sync(_commit_and_close)
            except BaseException:
                await _finish_failed(session, commit=False)
                raise
            await _run_after_commit(session)
            return
        # An error may ask to keep what was written before it was raised (a failed sign-in
        # must still count towards the lockout and leave its audit row).
        await _finish_failed(session, commit=bool(getattr(exc, "commit_transaction", False)))


async def _finish_failed(session: AsyncSession, *, commit: bool) -> None:
    try:
        if commit:
            await session.commit()
        else:
            await session.rollback()
    finally:
        await session.__aexit__(None, None, None)  # close, shielded from cancellation


def unit_of_work(*, platform: bool = False) -> _UnitOfWork:
    """One transaction. ``platform=True`` allows statements with no tenant in scope."""
    return _UnitOfWork(platform)


async def switch_tenant(session: AsyncSession, tenant_id: uuid.UUID | None) -> None:
    """Put ``tenant_id`` in scope inside an open transaction (tenant creation, operator tools).

    Binds the context variable and, on PostgreSQL, updates ``app.tenant_id`` for the rest of
    the transaction so row-level security follows.
    """
    from tessera.core import context
    from tessera.core.db import hooks

    context.bind(tenant_id)
    session.info["tenant_id"] = tenant_id

    def _apply(sync_session: Any) -> None:
        conn = sync_session.connection()
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(
                "SELECT set_config('app.tenant_id', %(t)s, true)",
                {"t": str(tenant_id) if tenant_id else ""},
            )
        if tenant_id is not None:
            for hook in hooks.on_tenant_begin:
                hook(conn, tenant_id)

    await session.run_sync(_apply)
