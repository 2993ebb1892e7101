"""Job queue throughput and latency with two worker processes.

Prints one JSON line:
{"bench":"jobs","db":...,"jobs":N,"seconds":...,"jobs_per_s":...,"latency_p50_ms":...,"latency_p99_ms":...}

Phase 1 enqueues N no-op jobs (default 100,000) and lets two worker processes drain them;
``seconds`` runs from the first job started to the last one finished. Phase 2 enqueues one
job every 10 ms (each in its own transaction) while the workers idle, and reports
enqueue→start latency. Uses ``TESSERA_DATABASE_URL`` (migrated here; on PostgreSQL give
``TESSERA_MIGRATION_DATABASE_URL`` for the owning role if the app role cannot migrate);
without it a temporary SQLite file. Usage: ``python bench/jobs.py [N] [--concurrency C]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
QUEUE = "bench"


def _register() -> None:
    from tessera.core.jobs.registry import JobContext, handler

    @handler("bench.noop", queue=QUEUE, max_attempts=3)
    async def noop(payload: dict[str, Any], job: JobContext) -> None:
        return None


def worker_main(concurrency: int) -> None:
    _register()
    from tessera.core.jobs.worker import run_worker

    run_worker([QUEUE], concurrency, poll_seconds=0.5)


def _spawn(concurrency: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "--worker", "--concurrency", str(concurrency)],
        cwd=ROOT,
        env={**os.environ},
    )


async def _counts() -> dict[str, int]:
    from sqlalchemy import func, select

    from tessera.core.db.session import unit_of_work
    from tessera.core.jobs.models import Job

    async with unit_of_work(platform=True) as s:
        rows = await s.execute(
            select(Job.status, func.count()).where(Job.queue == QUEUE).group_by(Job.status)
        )
        return {k: int(v) for k, v in rows.all()}


async def _clear() -> None:
    from sqlalchemy import delete

    from tessera.core.db.session import unit_of_work
    from tessera.core.jobs.models import Job

    async with unit_of_work(platform=True) as s:
        await s.execute(delete(Job).where(Job.queue == QUEUE))


async def run(n: int, concurrency: int, paced: int) -> dict[str, Any]:
    from sqlalchemy import func, select

    from tessera.core.db.session import get_database, unit_of_work
    from tessera.core.jobs import service
    from tessera.core.jobs.models import Job

    _register()
    await _clear()
    t0 = time.perf_counter()
    batch = 5000
    for i in range(0, n, batch):
        async with unit_of_work(platform=True) as s:
            await service.enqueue_many(s, "bench.noop", [{"i": j} for j in range(i, min(n, i + batch))])
    enqueue_s = time.perf_counter() - t0

    procs = [_spawn(concurrency) for _ in range(2)]
    try:
        while (await _counts()).get("done", 0) < n:
            await asyncio.sleep(0.5)
        async with unit_of_work(platform=True) as s:
            first, last = (
                await s.execute(
                    select(func.min(Job.started_at), func.max(Job.finished_at)).where(Job.queue == QUEUE)
                )
            ).one()
        seconds = (last - first).total_seconds()

        # Paced phase: the workers are idle and listening; one job every 10 ms.
        await _clear()
        for _ in range(paced):
            async with unit_of_work(platform=True) as s:
                await service.enqueue(s, "bench.noop", {})
            await asyncio.sleep(0.01)
        while (await _counts()).get("done", 0) < paced:
            await asyncio.sleep(0.2)
        async with unit_of_work(platform=True) as s:
            rows = (await s.execute(select(Job.created_at, Job.started_at).where(Job.queue == QUEUE))).all()
        lat = sorted((b - a).total_seconds() * 1000 for a, b in rows)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(30)
    await _clear()
    db = get_database()
    return {
        "bench": "jobs",
        "db": "postgresql" if db.is_postgres else "sqlite",
        "jobs": n,
        "seconds": round(seconds, 2),
        "jobs_per_s": round(n / seconds, 1),
        "latency_p50_ms": round(lat[len(lat) // 2], 2),
        "latency_p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2),
        "enqueue_per_s": round(n / enqueue_s, 1),
        "workers": 2,
        "concurrency": concurrency,
        "paced_jobs": paced,
    }


def _prepare() -> None:
    if not os.environ.get("TESSERA_DATABASE_URL"):
        d = tempfile.mkdtemp(prefix="tessera-bench-")
        os.environ["TESSERA_DATABASE_URL"] = f"sqlite+aiosqlite:///{d}/bench.db"
        os.environ.setdefault("TESSERA_DATA_DIR", d)
    os.environ.setdefault("TESSERA_EMBEDDED_WORKERS", "false")
    os.environ.setdefault("TESSERA_LOG_LEVEL", "WARNING")
    subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
        check=True,
        cwd=ROOT,
        env={**os.environ},
        capture_output=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=100_000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--paced", type=int, default=1000)
    ap.add_argument("--worker", action="store_true")
    args = ap.parse_args()
    if args.worker:
        worker_main(args.concurrency)
        return
    _prepare()
    from tessera.app import init_runtime
    from tessera.settings import get_settings

    init_runtime(get_settings())
    print(json.dumps(asyncio.run(run(args.n, args.concurrency, args.paced))))


if __name__ == "__main__":
    main()
