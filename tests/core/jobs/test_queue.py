from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from tessera.core import context
from tessera.core.db.base import utcnow
from tessera.core.db.session import unit_of_work
from tessera.core.jobs import registry, service
from tessera.core.jobs.models import Job
from tests.conftest import BACKEND, TenantWorld
from tests.core.jobs import support
from tests.core.jobs.support import calls, run_worker_until_idle


@pytest.fixture(autouse=True)
def _reset_calls() -> None:
    calls.clear()


async def _job(job_id: uuid.UUID) -> Job:
    async with unit_of_work(platform=True) as s:
        job = await s.get(Job, job_id)
        assert job is not None
        return job


async def _all_jobs(name: str | None = None) -> list[Job]:
    async with unit_of_work(platform=True) as s:
        stmt = select(Job).order_by(Job.created_at)
        if name:
            stmt = stmt.where(Job.name == name)
        return list((await s.execute(stmt)).scalars())


async def test_job_enqueued_in_rolled_back_transaction_never_runs(db: Any) -> None:
    with pytest.raises(RuntimeError):
        async with unit_of_work(platform=True) as s:
            await service.enqueue(s, "test.record", {"n": 1})
            raise RuntimeError("the write failed")
    assert await _all_jobs() == []
    await run_worker_until_idle(["test"])
    assert calls == []


async def test_job_runs_in_its_tenant_scope(tenant: TenantWorld) -> None:
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            job_id = await service.enqueue(s, "test.record", {"id": uuid.UUID(int=7), "n": 1})
    assert context.current_tenant_id_or_none() is None
    assert await run_worker_until_idle(["test"]) == 1
    assert calls == [("test.record", {"id": str(uuid.UUID(int=7)), "n": 1}, 1, tenant.tenant_id)]
    job = await _job(job_id)
    assert (job.status, job.attempts, job.tenant_id, job.queue) == ("done", 1, tenant.tenant_id, "test")
    assert job.finished_at is not None and job.locked_by is None


async def test_idempotency_key_enqueues_once(db: Any) -> None:
    async with unit_of_work(platform=True) as s:
        a = await service.enqueue(s, "test.record", {"n": 1}, idempotency_key="k-1")
        b = await service.enqueue(s, "test.record", {"n": 2}, idempotency_key="k-1")
    async with unit_of_work(platform=True) as s:
        c = await service.enqueue(s, "test.record", {"n": 3}, idempotency_key="k-1")
    assert a == b == c
    assert len(await _all_jobs()) == 1


async def test_failures_retry_then_dead_with_error_and_traceback(db: Any) -> None:
    async with unit_of_work(platform=True) as s:
        job_id = await service.enqueue(s, "test.fail", {"x": 1})
    await run_worker_until_idle(["test"])
    job = await _job(job_id)
    assert job.status == "dead"
    assert job.attempts == 3 == job.max_attempts
    assert job.last_error == "RuntimeError: boom 3"
    assert job.last_traceback and "in fail" in job.last_traceback
    assert [c[2] for c in calls] == [1, 2, 3]
    # Each failed attempt's writes were rolled back with it.
    assert await _all_jobs("test.record") == []


async def test_retry_succeeds_on_a_later_attempt(db: Any) -> None:
    async with unit_of_work(platform=True) as s:
        job_id = await service.enqueue(s, "test.flaky", {"succeed_on": 3})
    await run_worker_until_idle(["test"])
    job = await _job(job_id)
    assert (job.status, job.attempts) == ("done", 3)
    assert job.last_error == "ValueError: not yet"


def test_default_backoff_grows_exponentially_with_jitter() -> None:
    for attempt, base in [(1, 2.0), (2, 4.0), (5, 32.0), (20, 3600.0)]:
        values = [service.default_backoff(attempt) for _ in range(200)]
        assert all(0.75 * base <= v <= 1.25 * base for v in values)
        assert len(set(values)) > 100  # jittered, not a constant


async def test_failed_attempt_is_rescheduled_with_backoff(db: Any) -> None:
    async with unit_of_work(platform=True) as s:
        job_id = await service.enqueue(s, "test.record", {}, max_attempts=4)
    async with unit_of_work(platform=True) as s:
        [claimed] = await service.claim(s, "w1", ["test"], 5, dt.timedelta(seconds=30))
    now = utcnow()
    async with unit_of_work(platform=True) as s:
        assert await service.mark_failed(s, claimed, "w1", "E", "TB", now=now) == "queued"
    job = await _job(job_id)
    assert job.status == "queued" and job.locked_by is None
    delay = (job.run_at - now).total_seconds()
    assert 1.5 <= delay <= 2.5
    async with unit_of_work(platform=True) as s:  # not due yet: not claimable
        assert await service.claim(s, "w1", ["test"], 5, dt.timedelta(seconds=30)) == []


async def test_priority_lower_runs_first_and_future_jobs_wait(db: Any) -> None:
    async with unit_of_work(platform=True) as s:
        for p in (5, 0, 3):
            await service.enqueue(s, "test.record", {"p": p}, priority=p)
        await service.enqueue(s, "test.record", {"p": "later"}, run_at=utcnow() + dt.timedelta(hours=1))
    await run_worker_until_idle(["test"], concurrency=1)
    assert [c[1]["p"] for c in calls] == [0, 3, 5]


async def test_reschedule_commits_the_writes_and_gives_the_attempt_back(db: Any) -> None:
    async with unit_of_work(platform=True) as s:
        job_id = await service.enqueue(s, "test.wait_once", {})
    await run_worker_until_idle(["test"])
    job = await _job(job_id)
    assert (job.status, job.attempts) == ("done", 1)
    assert len(await _all_jobs("test.record")) == 2  # both runs' writes committed


async def test_expired_lease_returns_the_job_and_lost_lease_cannot_finish(db: Any) -> None:
    async with unit_of_work(platform=True) as s:
        job_id = await service.enqueue(s, "test.record", {"n": 1})
    async with unit_of_work(platform=True) as s:
        [claimed] = await service.claim(s, "dead-worker", ["test"], 5, dt.timedelta(milliseconds=1))
    later = utcnow() + dt.timedelta(seconds=2)
    async with unit_of_work(platform=True) as s:
        assert await service.reap_expired(s, now=later) == 1
    job = await _job(job_id)
    assert (job.status, job.attempts, job.locked_by) == ("queued", 1, None)
    assert "lease expired" in (job.last_error or "")
    async with unit_of_work(platform=True) as s:
        assert await service.mark_done(s, claimed.id, "dead-worker") is False
    await run_worker_until_idle(["test"])
    job = await _job(job_id)
    assert (job.status, job.attempts) == ("done", 2)


async def test_expired_lease_on_last_attempt_is_dead(db: Any) -> None:
    async with unit_of_work(platform=True) as s:
        job_id = await service.enqueue(s, "test.record", {}, max_attempts=1)
    async with unit_of_work(platform=True) as s:
        await service.claim(s, "w", ["test"], 1, dt.timedelta(seconds=1))
    async with unit_of_work(platform=True) as s:
        await service.reap_expired(s, now=utcnow() + dt.timedelta(seconds=5))
    assert (await _job(job_id)).status == "dead"


async def test_unknown_handler_fails_the_job(db: Any) -> None:
    async with unit_of_work(platform=True) as s:
        job_id = await service.enqueue(s, "test.nobody_handles_this", {}, queue="test", max_attempts=1)
    await run_worker_until_idle(["test"])
    job = await _job(job_id)
    assert job.status == "dead" and "UnknownHandler" in (job.last_error or "")


async def test_per_queue_limit_caps_concurrency(db: Any) -> None:
    from tessera.core.jobs.worker import Worker

    running = 0
    peak = 0

    @registry.handler("test.capped", queue="capped")
    async def capped(payload: dict[str, Any], job: registry.JobContext) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1

    async with unit_of_work(platform=True) as s:
        await service.enqueue_many(s, "test.capped", [{"i": i} for i in range(8)])
    w = Worker(["capped:2"], 8, poll_seconds=0.05)
    await asyncio.wait_for(w.run(stop_when_idle=True), 30)
    assert w.completed == 8
    assert peak == 2


async def test_cron_materialises_each_due_time_once_across_workers(db: Any) -> None:
    saved = dict(registry.PERIODIC)
    registry.PERIODIC.clear()
    registry.periodic("test.record", "*/5 * * * *", queue="test", payload={"cron": True})
    try:
        since = dt.datetime(2026, 1, 1, 10, 0, 30, tzinfo=dt.UTC)
        now = dt.datetime(2026, 1, 1, 10, 16, 0, tzinfo=dt.UTC)

        async def tick() -> int:
            async with unit_of_work(platform=True) as s:
                return await service.materialise_periodic(s, since, now)

        results = await asyncio.gather(tick(), tick(), return_exceptions=True)
        created = [r for r in results if isinstance(r, int)]
        assert sum(created) == 3, results
        assert await tick() == 0
        keys = sorted(j.idempotency_key or "" for j in await _all_jobs("test.record"))
        assert keys == [
            "test.record@2026-01-01T10:05:00+00:00",
            "test.record@2026-01-01T10:10:00+00:00",
            "test.record@2026-01-01T10:15:00+00:00",
        ]
        from tessera.core.jobs.worker import Worker

        workers = [Worker(["test"], 2, poll_seconds=0.05, cron=False) for _ in range(2)]
        await asyncio.wait_for(asyncio.gather(*(w.run(stop_when_idle=True) for w in workers)), 30)
        assert sum(w.completed for w in workers) == 3
        assert len(calls) == 3 and all(c[1] == {"cron": True} for c in calls)
    finally:
        registry.PERIODIC.clear()
        registry.PERIODIC.update(saved)


def test_due_times_and_cron_validation() -> None:
    since = dt.datetime(2026, 1, 1, 0, 0, tzinfo=dt.UTC)
    assert service.due_times("0 * * * *", since, since + dt.timedelta(hours=2)) == [
        since + dt.timedelta(hours=1),
        since + dt.timedelta(hours=2),
    ]
    assert len(service.due_times("* * * * *", since, since + dt.timedelta(days=1))) == 10
    with pytest.raises(ValueError):
        registry.periodic("x", "not a cron")


async def test_enqueue_notifies_local_workers_after_commit(db: Any) -> None:
    ev = asyncio.Event()
    service.register_wakeup(ev)
    try:
        async with unit_of_work(platform=True) as s:
            await service.enqueue(s, "test.record", {})
            assert not ev.is_set()
        assert ev.is_set()
    finally:
        service.unregister_wakeup(ev)


async def test_worker_wakes_on_enqueue_without_polling(db: Any) -> None:
    from tessera.core.jobs.worker import Worker

    w = Worker(["test"], 2, poll_seconds=30)
    task = asyncio.create_task(w.run())
    await asyncio.sleep(0.2)
    t0 = asyncio.get_running_loop().time()
    async with unit_of_work(platform=True) as s:
        await service.enqueue(s, "test.record", {"fast": True})
    for _ in range(200):
        if calls:
            break
        await asyncio.sleep(0.01)
    assert calls, "the worker did not wake up"
    assert asyncio.get_running_loop().time() - t0 < 2
    w.stop()
    await asyncio.wait_for(task, 10)
    assert support.calls[0][1] == {"fast": True}


@pytest.mark.skipif(BACKEND != "postgres", reason="the LISTEN connection is PostgreSQL's")
async def test_stopping_worker_ends_its_listener_wait_at_once(db: Any) -> None:
    """The listener waits for notifications in bounded steps; a stopping worker ends the step
    it is in (here one of a minute) instead of waiting it out."""
    from tessera.core.jobs.worker import Worker

    w = Worker(["test"], 1, poll_seconds=0.05, cron=False)
    w.listen_timeout = 60
    task = asyncio.create_task(w.run())
    await asyncio.sleep(0.5)  # the listener is in its wait
    assert w._listener is not None and not w._listener.done()
    w.stop()
    await asyncio.wait_for(task, 10)
    # it ended by itself: run() cancels a listener still waiting after 5 s
    assert w._listener.done() and not w._listener.cancelled()
