"""The job queue: enqueue in the caller's transaction, claim, finish, retry, reap, cron.

Every function takes the session of a unit of work and never commits. Claiming and the
operator functions run in platform sessions (the ``jobs`` table is not tenant-owned); the
tenant API filters on ``tenant_id`` explicitly in :func:`tenant_jobs_query`, the one place
where a hand-written tenant filter is correct, because RLS and the guard do not cover jobs.

Times are the application's clock (aware UTC), so every worker should run NTP.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from croniter import croniter
from sqlalchemy import Select, case, delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core import context
from tessera.core.db.base import table_of, utcnow, uuid7
from tessera.core.db.session import after_commit
from tessera.core.jobs import registry
from tessera.core.jobs.models import Job

NOTIFY_CHANNEL = "tessera_jobs"
MAX_ERROR = 4000
MAX_TRACEBACK = 16000

# Worker loops of this process wait on these; enqueue sets them after commit.
_local_wakeups: set[asyncio.Event] = set()


def register_wakeup(event: asyncio.Event) -> None:
    _local_wakeups.add(event)


def unregister_wakeup(event: asyncio.Event) -> None:
    _local_wakeups.discard(event)


def _wake_local() -> None:
    for ev in list(_local_wakeups):
        ev.set()


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _jsonable(payload: dict[str, Any] | None) -> dict[str, Any]:
    data = orjson.loads(orjson.dumps(payload or {}, default=str))
    if not isinstance(data, dict):
        raise TypeError("job payload must be a JSON object")
    return data


async def _notify(session: AsyncSession, queue: str) -> None:
    """Wake workers once this transaction commits (never if it rolls back).

    On PostgreSQL ``pg_notify`` inside the transaction is delivered by the server at commit
    and dropped on rollback: the same guarantee as notifying after commit, without a second
    connection. Workers of this process are woken by an after-commit callback."""
    sent: set[str] = session.info.setdefault("jobs_notified", set())
    if queue in sent:
        return
    if not sent:
        after_commit(session, _wake_local)
    sent.add(queue)
    if _dialect(session) == "postgresql":
        await session.execute(text("SELECT pg_notify(:c, :q)"), {"c": NOTIFY_CHANNEL, "q": queue})


def _row(
    name: str,
    payload: dict[str, Any] | None,
    queue: str | None,
    priority: int,
    run_at: dt.datetime | None,
    idempotency_key: str | None,
    max_attempts: int | None,
    tenant_id: uuid.UUID | None,
    now: dt.datetime,
) -> dict[str, Any]:
    spec = registry.get(name)
    if max_attempts is not None and max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    return {
        "id": uuid7(),
        "tenant_id": tenant_id,
        "name": name,
        "queue": queue or (spec.queue if spec else "default"),
        "priority": priority,
        "payload": _jsonable(payload),
        "status": "queued",
        "run_at": run_at or now,
        "attempts": 0,
        "max_attempts": max_attempts or (spec.max_attempts if spec else 10),
        "idempotency_key": idempotency_key,
        "created_at": now,
    }


async def enqueue(
    session: AsyncSession,
    name: str,
    payload: dict[str, Any] | None,
    *,
    queue: str | None = None,
    priority: int = 0,
    run_at: dt.datetime | None = None,
    idempotency_key: str | None = None,
    max_attempts: int | None = None,
) -> uuid.UUID:
    """Insert a job in the caller's transaction; it exists exactly when the transaction commits.

    The tenant in scope (if any) is recorded and put back in scope when the job runs. Queue
    and max attempts default to the handler's registration. Lower ``priority`` runs first.
    With ``idempotency_key`` a second enqueue returns the first job's id and inserts nothing.
    """
    now = utcnow()
    row = _row(
        name,
        payload,
        queue,
        priority,
        run_at,
        idempotency_key,
        max_attempts,
        context.current_tenant_id_or_none(),
        now,
    )
    if idempotency_key is None:
        await session.execute(insert(Job).values(**row))
    else:
        ins = pg_insert(Job) if _dialect(session) == "postgresql" else sqlite_insert(Job)
        stmt = ins.values(**row).on_conflict_do_nothing(index_elements=["idempotency_key"]).returning(Job.id)
        got = (await session.execute(stmt)).scalar_one_or_none()
        if got is None:
            existing = await session.execute(select(Job.id).where(Job.idempotency_key == idempotency_key))
            return uuid.UUID(str(existing.scalar_one()))
    await _notify(session, row["queue"])
    return row["id"]  # type: ignore[no-any-return]


async def enqueue_many(
    session: AsyncSession,
    name: str,
    payloads: Sequence[dict[str, Any]],
    *,
    queue: str | None = None,
    priority: int = 0,
    run_at: dt.datetime | None = None,
    max_attempts: int | None = None,
) -> list[uuid.UUID]:
    """Insert many jobs of one handler in one statement (fan-outs, imports, benchmarks)."""
    if not payloads:
        return []
    now = utcnow()
    tid = context.current_tenant_id_or_none()
    rows = [_row(name, p, queue, priority, run_at, None, max_attempts, tid, now) for p in payloads]
    await session.execute(insert(table_of(Job)), rows)
    await _notify(session, rows[0]["queue"])
    return [r["id"] for r in rows]


# --- worker side -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ClaimedJob:
    id: uuid.UUID
    name: str
    queue: str
    tenant_id: uuid.UUID | None
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    run_at: dt.datetime
    created_at: dt.datetime


async def claim(
    session: AsyncSession,
    worker_id: str,
    queues: Iterable[str],
    limit: int,
    lease: dt.timedelta,
    *,
    now: dt.datetime | None = None,
) -> list[ClaimedJob]:
    """Lease up to ``limit`` due jobs of ``queues``, lowest priority number first.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` lets concurrent workers claim disjoint batches.
    SQLite: the unit of work starts with ``BEGIN IMMEDIATE``, so claims are serialised."""
    if limit <= 0:
        return []
    now = now or utcnow()
    qs = list(queues)
    sub = (
        select(Job.id)
        .where(Job.status == "queued", Job.queue.in_(qs), Job.run_at <= now)
        # Exactly the claim index's order, so the database walks the index and stops at
        # ``limit`` instead of sorting every queued row.
        .order_by(Job.priority, Job.run_at)
        .limit(limit)
    )
    if _dialect(session) == "postgresql":
        sub = sub.with_for_update(skip_locked=True)
    stmt = (
        update(Job)
        .where(Job.id.in_(sub.scalar_subquery()))
        .values(
            status="running",
            locked_by=worker_id,
            locked_until=now + lease,
            attempts=Job.attempts + 1,
            started_at=now,
        )
        .returning(
            Job.id,
            Job.name,
            Job.queue,
            Job.tenant_id,
            Job.payload,
            Job.attempts,
            Job.max_attempts,
            Job.run_at,
            Job.created_at,
        )
        .execution_options(synchronize_session=False)
    )
    rows = (await session.execute(stmt)).all()
    jobs = [ClaimedJob(*r) for r in rows]
    jobs.sort(key=lambda j: j.run_at)
    return jobs


async def mark_done(
    session: AsyncSession, job_id: uuid.UUID, worker_id: str, *, now: dt.datetime | None = None
) -> bool:
    """Finish a job in the handler's transaction; False when the lease was lost."""
    now = now or utcnow()
    res = await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.locked_by == worker_id, Job.status == "running")
        .values(status="done", finished_at=now, locked_by=None, locked_until=None)
        .execution_options(synchronize_session=False)
    )
    return bool(res.rowcount)  # type: ignore[attr-defined]


async def mark_done_many(session: AsyncSession, job_ids: Sequence[uuid.UUID], worker_id: str) -> int:
    """Finish many jobs whose handlers wrote nothing, in one statement."""
    res = await session.execute(
        update(Job)
        .where(Job.id.in_(list(job_ids)), Job.locked_by == worker_id, Job.status == "running")
        .values(status="done", finished_at=utcnow(), locked_by=None, locked_until=None)
        .execution_options(synchronize_session=False)
    )
    return int(res.rowcount)  # type: ignore[attr-defined]


async def reschedule(
    session: AsyncSession,
    job_id: uuid.UUID,
    worker_id: str,
    seconds: float,
    *,
    count_attempt: bool = True,
    error: str | None = None,
    now: dt.datetime | None = None,
) -> bool:
    now = now or utcnow()
    values: dict[str, Any] = {
        "status": "queued",
        "run_at": now + dt.timedelta(seconds=seconds),
        "locked_by": None,
        "locked_until": None,
    }
    if not count_attempt:
        values["attempts"] = Job.attempts - 1
    if error is not None:
        values["last_error"] = error[:MAX_ERROR]
    res = await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.locked_by == worker_id, Job.status == "running")
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(res.rowcount)  # type: ignore[attr-defined]


def default_backoff(attempt: int) -> float:
    """Exponential backoff with ±25 % jitter: ~2 s, 4 s, 8 s … capped at one hour."""
    base: float = min(3600.0, 2.0 ** min(attempt, 12))
    return base * random.uniform(0.75, 1.25)


async def mark_failed(
    session: AsyncSession,
    job: ClaimedJob,
    worker_id: str,
    error: str,
    tb: str,
    *,
    backoff: registry.Backoff | None = None,
    now: dt.datetime | None = None,
) -> str:
    """Retry with backoff, or move to ``dead`` once attempts are used up. Returns the status."""
    now = now or utcnow()
    dead = job.attempts >= job.max_attempts
    values: dict[str, Any] = {
        "locked_by": None,
        "locked_until": None,
        "last_error": error[:MAX_ERROR],
        "last_traceback": tb[-MAX_TRACEBACK:],
    }
    if dead:
        values.update(status="dead", finished_at=now)
    else:
        delay = (backoff or default_backoff)(job.attempts)
        values.update(status="queued", run_at=now + dt.timedelta(seconds=delay))
    res = await session.execute(
        update(Job)
        .where(Job.id == job.id, Job.locked_by == worker_id, Job.status == "running")
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if not res.rowcount:  # type: ignore[attr-defined]
        return "lost"
    return "dead" if dead else "queued"


async def heartbeat(
    session: AsyncSession, worker_id: str, job_ids: Sequence[uuid.UUID], lease: dt.timedelta
) -> int:
    """Extend the lease of jobs this worker is still running."""
    if not job_ids:
        return 0
    res = await session.execute(
        update(Job)
        .where(Job.id.in_(list(job_ids)), Job.locked_by == worker_id, Job.status == "running")
        .values(locked_until=utcnow() + lease)
        .execution_options(synchronize_session=False)
    )
    return int(res.rowcount)  # type: ignore[attr-defined]


async def reap_expired(session: AsyncSession, *, now: dt.datetime | None = None) -> int:
    """Return jobs whose lease expired (their worker died) to the queue, or to dead."""
    now = now or utcnow()
    exhausted = Job.attempts >= Job.max_attempts
    res = await session.execute(
        update(Job)
        .where(Job.status == "running", Job.locked_until < now)
        .values(
            status=case((exhausted, "dead"), else_="queued"),
            finished_at=case((exhausted, now), else_=None),
            run_at=Job.locked_until,
            locked_by=None,
            locked_until=None,
            last_error="lease expired: the worker stopped before finishing",
        )
        .execution_options(synchronize_session=False)
    )
    return int(res.rowcount)  # type: ignore[attr-defined]


def due_times(cron: str, since: dt.datetime, now: dt.datetime, *, cap: int = 10) -> list[dt.datetime]:
    """Due times of ``cron`` in ``(since, now]``, at most the last ``cap``."""
    it = croniter(cron, since.astimezone(dt.UTC))
    out: list[dt.datetime] = []
    while True:
        nxt: dt.datetime = it.get_next(dt.datetime)
        if nxt > now:
            break
        out.append(nxt.astimezone(dt.UTC))
        if len(out) > cap:
            out.pop(0)
    return out


def cron_key(name: str, due: dt.datetime) -> str:
    return f"{name}@{due.astimezone(dt.UTC).isoformat()}"


async def materialise_periodic(session: AsyncSession, since: dt.datetime, now: dt.datetime) -> int:
    """Insert one job per periodic spec and due time in ``(since, now]``.

    The idempotency key ``<name>@<due iso>`` makes concurrent workers insert each due time
    once; the job's ``run_at`` is its due time."""
    created = 0
    ins = pg_insert if _dialect(session) == "postgresql" else sqlite_insert
    for spec in list(registry.PERIODIC.values()):
        for due in due_times(spec.cron, since, now):
            row = _row(spec.name, spec.payload, spec.queue, 0, due, cron_key(spec.name, due), None, None, now)
            stmt = (
                ins(Job)
                .values(**row)
                .on_conflict_do_nothing(index_elements=["idempotency_key"])
                .returning(Job.id)
            )
            if (await session.execute(stmt)).scalar_one_or_none() is not None:
                created += 1
                await _notify(session, spec.queue)
    return created


async def purge_finished(session: AsyncSession, *, older_than: dt.timedelta) -> int:
    cutoff = utcnow() - older_than
    res = await session.execute(
        delete(Job)
        .where(Job.status.in_(("done", "cancelled")), Job.finished_at < cutoff)
        .execution_options(synchronize_session=False)
    )
    return int(res.rowcount)  # type: ignore[attr-defined]


# --- operator and tenant views ---------------------------------------------------------------


class JobStateError(Exception):
    """The job is not in a state that allows this action."""


async def get(session: AsyncSession, job_id: uuid.UUID) -> Job | None:
    return await session.get(Job, job_id)


async def retry(session: AsyncSession, job_id: uuid.UUID) -> Job | None:
    """Put a dead, cancelled or waiting job back in the queue now, with fresh attempts."""
    job = await session.get(Job, job_id, with_for_update=True)
    if job is None:
        return None
    if job.status == "running":
        raise JobStateError("the job is running")
    if job.status == "done":
        raise JobStateError("the job is done; enqueue a new one instead")
    now = utcnow()
    job.status = "queued"
    job.run_at = now
    job.attempts = 0
    job.finished_at = None
    await session.flush()
    await _notify(session, job.queue)
    return job


async def cancel(session: AsyncSession, job_id: uuid.UUID) -> Job | None:
    """Cancel a queued job. A running job finishes its current attempt."""
    job = await session.get(Job, job_id, with_for_update=True)
    if job is None:
        return None
    if job.status != "queued":
        raise JobStateError(f"only queued jobs can be cancelled; this one is {job.status}")
    job.status = "cancelled"
    job.finished_at = utcnow()
    await session.flush()
    return job


def jobs_query() -> Select[tuple[Job]]:
    return select(Job)


def tenant_jobs_query(tenant_id: uuid.UUID) -> Select[Any]:
    """Jobs of one tenant. ``jobs`` is not tenant-owned, so the filter is explicit here."""
    return select(Job).where(Job.tenant_id == tenant_id)


@dataclass(frozen=True)
class QueueStats:
    queue: str
    queued: int
    due: int
    running: int
    dead: int
    oldest_due_age_s: float


async def queue_stats(session: AsyncSession, *, now: dt.datetime | None = None) -> list[QueueStats]:
    """Depth per queue and the age of its oldest due job (how far behind the workers are)."""
    now = now or utcnow()
    rows = (
        await session.execute(
            select(Job.queue, Job.status, func.count(), func.min(Job.run_at))
            .where(Job.status.in_(("queued", "running", "dead")))
            .group_by(Job.queue, Job.status)
        )
    ).all()
    due_rows = (
        await session.execute(
            select(Job.queue, func.count(), func.min(Job.run_at))
            .where(Job.status == "queued", Job.run_at <= now)
            .group_by(Job.queue)
        )
    ).all()
    acc: dict[str, dict[str, Any]] = {}
    for q, status, n, _oldest in rows:
        acc.setdefault(q, {"queued": 0, "running": 0, "dead": 0, "due": 0, "age": 0.0})[status] = n
    for q, n, oldest in due_rows:
        entry = acc.setdefault(q, {"queued": 0, "running": 0, "dead": 0, "due": 0, "age": 0.0})
        entry["due"] = n
        if oldest is not None:
            if oldest.tzinfo is None:
                oldest = oldest.replace(tzinfo=dt.UTC)
            entry["age"] = max(0.0, (now - oldest).total_seconds())
    return [
        QueueStats(q, v["queued"], v["due"], v["running"], v["dead"], v["age"])
        for q, v in sorted(acc.items())
    ]


async def run_now(session: AsyncSession, job_id: uuid.UUID, *, now: dt.datetime | None = None) -> bool:
    """Bring a queued job waiting for a later ``run_at`` forward to now."""
    now = now or utcnow()
    res = await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == "queued", Job.run_at > now)
        .values(run_at=now)
        .returning(Job.queue)
        .execution_options(synchronize_session=False)
    )
    queue = res.scalar_one_or_none()
    if queue is None:
        return False
    await _notify(session, queue)
    return True


async def job_states(
    session: AsyncSession, job_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[str, dt.datetime]]:
    """Status and run_at of some jobs (tenant-blind: callers pass ids they own)."""
    if not job_ids:
        return {}
    rows = await session.execute(select(Job.id, Job.status, Job.run_at).where(Job.id.in_(list(job_ids))))
    return {r[0]: (r[1], r[2]) for r in rows}
