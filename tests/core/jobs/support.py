"""Handlers and helpers for the job tests; importable by worker subprocesses too."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text

from tessera.core import context
from tessera.core.db.session import unit_of_work
from tessera.core.jobs.registry import JobContext, handler

ROOT = Path(__file__).resolve().parents[3]
RUNS_TABLE = "job_test_runs"

# In-process record of handler calls: (job name, payload, attempt, tenant in scope).
calls: list[tuple[str, dict[str, Any], int, uuid.UUID | None]] = []


@handler("test.record", queue="test")
async def record(payload: dict[str, Any], job: JobContext) -> None:
    calls.append(("test.record", payload, job.attempt, context.current_tenant_id_or_none()))


@handler("test.fail", queue="test", max_attempts=3, backoff=lambda attempt: 0.0)
async def fail(payload: dict[str, Any], job: JobContext) -> None:
    calls.append(("test.fail", payload, job.attempt, job.tenant_id))
    # A write that must be rolled back with the failed attempt.
    from tessera.core.jobs.service import enqueue

    await enqueue(job.session, "test.record", {"from": "failed"})
    raise RuntimeError(f"boom {job.attempt}")


@handler("test.flaky", queue="test", max_attempts=5, backoff=lambda attempt: 0.0)
async def flaky(payload: dict[str, Any], job: JobContext) -> None:
    calls.append(("test.flaky", payload, job.attempt, job.tenant_id))
    if job.attempt < int(payload["succeed_on"]):
        raise ValueError("not yet")


@handler("test.wait_once", queue="test")
async def wait_once(payload: dict[str, Any], job: JobContext) -> None:
    calls.append(("test.wait_once", payload, job.attempt, job.tenant_id))
    from tessera.core.jobs.service import enqueue

    await enqueue(job.session, "test.record", {"from": "rescheduled"})
    if len([c for c in calls if c[0] == "test.wait_once"]) == 1:
        job.reschedule(0.0, count_attempt=False)


@handler("test.count", queue="proc", max_attempts=5)
async def count(payload: dict[str, Any], job: JobContext) -> None:
    """Records each execution in a table, in the job's own transaction."""
    if payload.get("sleep_first") and job.attempt == 1:
        await asyncio.sleep(float(payload["sleep_first"]))
    elif payload.get("sleep"):
        await asyncio.sleep(float(payload["sleep"]))
    await job.session.execute(
        text(f"INSERT INTO {RUNS_TABLE} (job_id, pid, attempt) VALUES (:j, :p, :a)"),
        {"j": str(job.id), "p": os.getpid(), "a": job.attempt},
    )


async def create_runs_table(database_urls: dict[str, str]) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    eng = create_async_engine(database_urls["owner"])
    async with eng.begin() as conn:
        await conn.execute(text(f"DROP TABLE IF EXISTS {RUNS_TABLE}"))
        await conn.execute(
            text(f"CREATE TABLE {RUNS_TABLE} (job_id varchar(36), pid integer, attempt integer)")
        )
        if database_urls["backend"] == "postgres":
            await conn.execute(text(f"GRANT SELECT, INSERT, DELETE ON {RUNS_TABLE} TO tessera_app"))
    await eng.dispose()


async def runs() -> list[tuple[str, int, int]]:
    async with unit_of_work(platform=True) as s:
        rows = await s.execute(text(f"SELECT job_id, pid, attempt FROM {RUNS_TABLE}"))
        return [(r[0], r[1], r[2]) for r in rows]


def spawn_worker(
    queues: list[str], concurrency: int = 4, *, lease: float = 30.0, idle_exit: bool = True
) -> subprocess.Popen[bytes]:
    code = (
        "import tests.core.jobs.support\n"
        "from tessera.core.jobs.worker import run_worker\n"
        f"run_worker({queues!r}, {concurrency}, lease_seconds={lease}, poll_seconds=0.1,"
        f" stop_when_idle={idle_exit})\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def run_worker_until_idle(queues: list[str], concurrency: int = 4, **kw: Any) -> int:
    from tessera.core.jobs.worker import Worker

    w = Worker(queues, concurrency, poll_seconds=0.05, **kw)
    await asyncio.wait_for(w.run(stop_when_idle=True), timeout=60)
    return w.completed
