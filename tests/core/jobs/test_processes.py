"""Worker processes: no job runs twice, SIGKILL loses nothing, SIGTERM finishes running jobs."""

from __future__ import annotations

import asyncio
import collections
import signal
import subprocess
from typing import Any

import pytest
from sqlalchemy import select

from tessera.core.db.session import unit_of_work
from tessera.core.jobs import service
from tessera.core.jobs.models import Job
from tests.core.jobs import support

pytestmark = pytest.mark.slow


@pytest.fixture
async def runs_table(db: Any, database_urls: dict[str, str]) -> None:
    await support.create_runs_table(database_urls)


async def _wait_proc(p: subprocess.Popen[bytes], timeout: float) -> int:
    for _ in range(int(timeout / 0.1)):
        if p.poll() is not None:
            return p.returncode
        await asyncio.sleep(0.1)
    p.kill()
    out, err = p.communicate()
    raise AssertionError(f"worker did not exit: {err.decode()[-2000:]}")


async def _statuses() -> collections.Counter[str]:
    async with unit_of_work(platform=True) as s:
        return collections.Counter(
            (await s.execute(select(Job.status).where(Job.name == "test.count"))).scalars()
        )


async def test_two_worker_processes_never_run_the_same_job(runs_table: None) -> None:
    n = 400
    async with unit_of_work(platform=True) as s:
        await service.enqueue_many(s, "test.count", [{"i": i} for i in range(n)])
    procs = [support.spawn_worker(["proc"], 8) for _ in range(2)]
    for p in procs:
        rc = await _wait_proc(p, 120)
        assert rc == 0, p.stderr.read().decode()[-2000:] if p.stderr else ""
    rows = await support.runs()
    per_job = collections.Counter(r[0] for r in rows)
    assert len(per_job) == n
    assert max(per_job.values()) == 1
    assert {r[2] for r in rows} == {1}
    assert len({r[1] for r in rows}) == 2, "both processes should have taken jobs"
    assert await _statuses() == {"done": n}


async def test_sigkill_mid_job_reruns_after_lease_expiry_and_completes_once(runs_table: None) -> None:
    async with unit_of_work(platform=True) as s:
        job_id = await service.enqueue(s, "test.count", {"sleep_first": 60})
    victim = support.spawn_worker(["proc"], 2, lease=1.0, idle_exit=False)
    try:
        for _ in range(300):
            async with unit_of_work(platform=True) as s:
                job = await s.get(Job, job_id)
            if job is not None and job.status == "running":
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the job never started")
    finally:
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    assert await support.runs() == []
    rescuer = support.spawn_worker(["proc"], 2, lease=1.0, idle_exit=False)
    try:
        for _ in range(200):
            if (await _statuses()).get("done"):
                break
            await asyncio.sleep(0.1)
    finally:
        rescuer.send_signal(signal.SIGTERM)
        assert await _wait_proc(rescuer, 30) == 0
    rows = await support.runs()
    assert [(r[0], r[2]) for r in rows] == [(str(job_id), 2)]
    async with unit_of_work(platform=True) as s:
        job = await s.get(Job, job_id)
    assert job is not None and (job.status, job.attempts) == ("done", 2)


async def test_sigterm_lets_the_running_job_finish(runs_table: None) -> None:
    async with unit_of_work(platform=True) as s:
        job_id = await service.enqueue(s, "test.count", {"sleep": 1.5})
        await service.enqueue(s, "test.count", {"sleep": 0}, run_at=None, priority=10)
    p = support.spawn_worker(["proc"], 1, lease=5.0, idle_exit=False)
    for _ in range(300):
        async with unit_of_work(platform=True) as s:
            job = await s.get(Job, job_id)
        if job is not None and job.status == "running":
            break
        await asyncio.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    assert await _wait_proc(p, 30) == 0
    rows = await support.runs()
    assert [r[0] for r in rows] == [str(job_id)]  # finished; the next one was not claimed
    assert await _statuses() == {"done": 1, "queued": 1}
