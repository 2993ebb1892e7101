"""The job worker: claims batches, runs handlers in their tenant's scope, retries, reaps.

One :class:`Worker` per process (``tessera worker --queues a,b:4 --concurrency 8``) or inside
the ``tessera`` process in embedded mode (:func:`start_embedded`). A queue written ``name:N``
runs at most N of its jobs at a time in this worker; ``concurrency`` caps the total.

A claimed job holds a lease (``locked_until``) that a heartbeat extends while it runs; a
worker that dies stops extending it, and any worker's reaper puts the job back once it
expires, so a SIGKILL loses nothing. SIGTERM stops claiming and lets running jobs finish.
The handler's writes and the job's completion commit in one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import signal
import socket
import time
import traceback
import uuid
from typing import Any

import structlog
from sqlalchemy import text

from tessera.core import context
from tessera.core.context import Actor
from tessera.core.db.base import utcnow
from tessera.core.db.session import get_database, unit_of_work
from tessera.core.jobs import metrics, registry, service
from tessera.core.jobs.registry import JobContext

log = structlog.get_logger("tessera.jobs")


class LeaseLost(Exception):
    """Another worker took the job over (this one was too slow to heartbeat)."""


class UnknownHandler(Exception):
    """No handler is registered under the job's name in this process."""


def parse_queues(queues: list[str]) -> tuple[list[str], dict[str, int]]:
    names: list[str] = []
    limits: dict[str, int] = {}
    for q in queues:
        name, _, limit = q.strip().partition(":")
        if not name:
            continue
        names.append(name)
        if limit:
            limits[name] = max(1, int(limit))
    return names, limits


class Worker:
    listen_timeout = 0.5  # the listener's bounded wait for notifications, in seconds

    def __init__(
        self,
        queues: list[str],
        concurrency: int = 4,
        *,
        lease_seconds: float = 60.0,
        poll_seconds: float = 1.0,
        batch: int | None = None,
        worker_id: str | None = None,
        cron: bool = True,
    ) -> None:
        self.queues, self.limits = parse_queues(queues)
        if not self.queues:
            raise ValueError("a worker needs at least one queue")
        self.concurrency = max(1, concurrency)
        self.lease = dt.timedelta(seconds=lease_seconds)
        self.poll = poll_seconds
        self.batch = batch or self.concurrency
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.cron = cron
        self.running: dict[uuid.UUID, tuple[asyncio.Task[None], str]] = {}
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._cron_since = utcnow() - dt.timedelta(seconds=60)
        self._last_reap = 0.0
        self._listener: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self.completed = 0
        self._done_buffer: list[uuid.UUID] = []
        self._flush_now = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; :meth:`run` returns once running jobs finish."""
        self._stopping.set()
        self._wake.set()

    async def run(self, *, stop_when_idle: bool = False) -> None:
        service.register_wakeup(self._wake)
        self._heartbeat = asyncio.create_task(self._heartbeat_loop())
        self._flusher = asyncio.create_task(self._flush_loop())
        if get_database().is_postgres:
            self._listener = asyncio.create_task(self._listen())
        log.info("worker.start", worker=self.id, queues=self.queues, concurrency=self.concurrency)
        try:
            await self._loop(stop_when_idle)
        finally:
            if self.running:
                await asyncio.gather(*(t for t, _ in self.running.values()), return_exceptions=True)
            if self._flusher is not None:
                self._flusher.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._flusher
            await self._flush_done()
            if self._heartbeat is not None:
                self._heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._heartbeat
            if self._listener is not None:
                self._stopping.set()
                await self._wake_listener()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._listener, 5)
            service.unregister_wakeup(self._wake)
            log.info("worker.stop", worker=self.id, completed=self.completed)

    async def _loop(self, stop_when_idle: bool) -> None:
        while not self._stopping.is_set():
            # Cleared before claiming, so a wake-up that arrives meanwhile is not lost.
            self._wake.clear()
            self._slot_free.clear()
            await self._maintenance()
            claimed = await self._claim_and_start()
            if claimed and len(self.running) < self.concurrency:
                continue
            if stop_when_idle and not self.running and not await self._has_due():
                return
            if self._stopping.is_set():
                break
            waits = [asyncio.ensure_future(self._wake.wait())]
            if self.running:
                waits.append(asyncio.ensure_future(self._slot_free.wait()))
            _, pending = await asyncio.wait(waits, timeout=self.poll, return_when=asyncio.FIRST_COMPLETED)
            for p in pending:
                p.cancel()

    async def _has_due(self) -> bool:
        async with unit_of_work(platform=True) as s:
            stats = await service.queue_stats(s)
        return any(st.due for st in stats if st.queue in self.queues)

    # --- claiming ----------------------------------------------------------------------------

    def _free_slots(self) -> dict[str | None, int]:
        free = self.concurrency - len(self.running)
        if free <= 0:
            return {}
        by_queue: dict[str, int] = {}
        for _t, q in self.running.values():
            by_queue[q] = by_queue.get(q, 0) + 1
        slots: dict[str | None, int] = {}
        unlimited = [q for q in self.queues if q not in self.limits]
        if unlimited:
            slots[None] = min(free, self.batch)
        for q, lim in self.limits.items():
            n = min(lim - by_queue.get(q, 0), free, self.batch)
            if n > 0:
                slots[q] = n
        return slots

    async def _claim_and_start(self) -> int:
        slots = self._free_slots()
        if not slots:
            return 0
        unlimited = [q for q in self.queues if q not in self.limits]
        jobs: list[service.ClaimedJob] = []
        async with unit_of_work(platform=True) as s:
            for q, n in slots.items():
                queues = unlimited if q is None else [q]
                room = self.concurrency - len(self.running) - len(jobs)
                if room <= 0:
                    break
                jobs += await service.claim(s, self.id, queues, min(n, room), self.lease)
        now = utcnow()
        for job in jobs:
            metrics.JOB_WAIT.labels(job.queue).observe(max(0.0, (now - job.run_at).total_seconds()))
            task = asyncio.create_task(self._execute(job))
            self.running[job.id] = (task, job.queue)
        return len(jobs)

    async def _maintenance(self) -> None:
        mono = time.monotonic()
        if mono - self._last_reap < min(5.0, self.lease.total_seconds() / 2):
            return
        self._last_reap = mono
        now = utcnow()
        try:
            async with unit_of_work(platform=True) as s:
                reaped = await service.reap_expired(s, now=now)
                if self.cron and registry.PERIODIC:
                    await service.materialise_periodic(s, self._cron_since, now)
            self._cron_since = now
            if reaped:
                log.warning("worker.reaped_expired_leases", count=reaped)
        except Exception:
            log.exception("worker.maintenance_failed")

    # --- running -----------------------------------------------------------------------------

    async def _execute(self, job: service.ClaimedJob) -> None:
        spec = registry.get(job.name)
        started = time.perf_counter()
        outcome = "done"
        try:
            with context.tenant_scope(job.tenant_id, Actor(kind="system", label=f"job:{job.name}")):
                async with unit_of_work(platform=job.tenant_id is None) as session:
                    if spec is None:
                        raise UnknownHandler(f"no handler registered for '{job.name}'")
                    ctx = JobContext(
                        id=job.id,
                        name=job.name,
                        attempt=job.attempts,
                        max_attempts=job.max_attempts,
                        tenant_id=job.tenant_id,
                        session=session,
                        queue=job.queue,
                    )
                    await spec.fn(job.payload, ctx)
                    if ctx._reschedule is None and not session.in_transaction():
                        # The handler wrote nothing here: completion joins a batched UPDATE
                        # instead of a transaction of its own (a crash before the flush
                        # re-runs the job, the same at-least-once promise as every job).
                        self._done_buffer.append(job.id)
                        if len(self._done_buffer) >= 200:
                            self._flush_now.set()
                        ok = True
                    elif ctx._reschedule is not None:
                        seconds, counted = ctx._reschedule
                        ok = await service.reschedule(
                            session, job.id, self.id, seconds, count_attempt=counted
                        )
                        outcome = "rescheduled"
                    else:
                        ok = await service.mark_done(session, job.id, self.id)
                    if not ok:
                        raise LeaseLost(str(job.id))
            self.completed += 1
        except LeaseLost:
            outcome = "lease_lost"
            log.warning("job.lease_lost", job_id=str(job.id), job=job.name)
        except Exception as exc:
            tb = traceback.format_exc()
            err = f"{type(exc).__name__}: {exc}"
            try:
                async with unit_of_work(platform=True) as s:
                    outcome = await service.mark_failed(
                        s, job, self.id, err, tb, backoff=spec.backoff if spec else None
                    )
            except Exception:
                log.exception("job.mark_failed_failed", job_id=str(job.id))
                outcome = "error"
            metrics.JOB_FAILURES.labels(job.queue, job.name, outcome).inc()
            log.warning(
                "job.failed",
                job_id=str(job.id),
                job=job.name,
                attempt=job.attempts,
                outcome=outcome,
                error=err,
            )
        finally:
            metrics.JOB_RUNTIME.labels(job.queue, job.name, outcome).observe(time.perf_counter() - started)
            self.running.pop(job.id, None)
            self._slot_free.set()

    async def _flush_done(self) -> None:
        ids, self._done_buffer = self._done_buffer, []
        if not ids:
            return
        try:
            async with unit_of_work(platform=True) as s:
                await service.mark_done_many(s, ids, self.id)
        except asyncio.CancelledError:
            # Stopping mid-write: keep the ids so the final flush marks them (marking twice is harmless).
            self._done_buffer[:0] = ids
            raise
        except Exception:
            self._done_buffer[:0] = ids
            log.exception("worker.flush_done_failed", count=len(ids))

    async def _flush_loop(self) -> None:
        while True:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._flush_now.wait(), 0.02)
            self._flush_now.clear()
            await self._flush_done()

    async def _heartbeat_loop(self) -> None:
        every = max(0.2, self.lease.total_seconds() / 3)
        while True:
            await asyncio.sleep(every)
            ids = list(self.running)
            if not ids:
                continue
            try:
                async with unit_of_work(platform=True) as s:
                    await service.heartbeat(s, self.id, ids, self.lease)
            except Exception:
                log.exception("worker.heartbeat_failed")

    async def _wake_listener(self) -> None:
        """Stopping: a notification on the jobs channel ends the listener's wait now instead of
        at its timeout (a stopped worker returned up to half a second late). Its payload names
        no queue, so it wakes no other worker's loop."""
        with contextlib.suppress(Exception):
            async with unit_of_work(platform=True) as s:
                await s.execute(
                    text("SELECT pg_notify(:c, :p)"), {"c": service.NOTIFY_CHANNEL, "p": f"stop {self.id}"}
                )

    async def _listen(self) -> None:
        """PostgreSQL LISTEN on a dedicated connection; any notification wakes the loop."""
        import psycopg
        from sqlalchemy.engine import make_url

        url = make_url(get_database().url).set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        while not self._stopping.is_set():
            try:
                conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
                try:
                    await conn.execute(f"LISTEN {service.NOTIFY_CHANNEL}")
                    while not self._stopping.is_set():
                        # A bounded wait, so stopping never depends on cancelling psycopg; a
                        # stopping worker also ends it at once (:meth:`_wake_listener`).
                        async for note in conn.notifies(timeout=self.listen_timeout):
                            if self._stopping.is_set():
                                break
                            if note.payload in self.queues or not note.payload:
                                self._wake.set()
                finally:
                    await conn.close()
            except Exception:
                log.exception("worker.listen_failed")
                await asyncio.sleep(1.0)


# --- entry points ----------------------------------------------------------------------------


def _bootstrap() -> None:
    """Open the database and import every context's handlers (the CLI worker process)."""
    from tessera import modules
    from tessera.app import init_runtime
    from tessera.core.logging import configure_logging
    from tessera.settings import get_settings

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    init_runtime(settings)
    modules.load(modules.REGISTRATIONS)


def run_worker(
    queues: list[str],
    concurrency: int,
    *,
    lease_seconds: float = 60.0,
    poll_seconds: float = 1.0,
    stop_when_idle: bool = False,
) -> int:
    """Run a worker until SIGTERM/SIGINT (``tessera worker``). Returns jobs completed."""
    _bootstrap()

    async def main() -> int:
        worker = Worker(queues, concurrency, lease_seconds=lease_seconds, poll_seconds=poll_seconds)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        try:
            await worker.run(stop_when_idle=stop_when_idle)
        finally:
            await get_database().dispose()
        return worker.completed

    return asyncio.run(main())


ALL_QUEUES_ENV = "TESSERA_WORKER_QUEUES"


def _embedded_queues() -> list[str]:
    raw = os.environ.get(ALL_QUEUES_ENV)
    if raw:
        return [q for q in raw.split(",") if q]
    qs = {spec.queue for spec in registry.HANDLERS.values()} | {p.queue for p in registry.PERIODIC.values()}
    return sorted(qs | {"default"})


async def start_embedded(app: Any) -> None:
    """Start an in-process worker on every registered queue (embedded mode)."""
    from tessera.settings import get_settings

    settings = get_settings()
    if not settings.embedded_workers:
        return
    worker = Worker(_embedded_queues(), settings.worker_concurrency)
    app.state.job_worker = worker
    app.state.job_worker_task = asyncio.create_task(worker.run())


async def stop_embedded(app: Any) -> None:
    worker: Worker | None = getattr(app.state, "job_worker", None)
    task: asyncio.Task[None] | None = getattr(app.state, "job_worker_task", None)
    if worker is None or task is None:
        return
    worker.stop()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    app.state.job_worker = None
