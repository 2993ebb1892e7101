"""Benchmark: contact import end to end through the real import path.

A generated CSV (default 1,000,000 rows: name, mobile, email, city, birthday, gender; 2% of the
rows repeat an earlier row's phone, 1% are bad: wrong phone, impossible date, unknown gender or
empty name) is uploaded with ``imports.upload`` (scan, automatic mapping, file stored), started
with ``imports.start_import`` and run by a job worker (``contacts.import`` → ``run_import``:
streamed chunks, validation, E.164 phones, AES-GCM personal fields, blind indexes, dedupe in the
file and against existing contacts, upsert, error file, progress) — the code the API and the
console use. Prints ONE JSON line:

    {"bench":"contacts_import","n":...,"seconds":...,"rows_per_s":...,"cpu_seconds":...,
     "db_cpu_seconds":...,"upload_seconds":...,"created":...,"failed":...,"database":...}

``seconds``/``rows_per_s`` cover start → done (the import job); ``end_to_end_rows_per_s``
includes the upload scan. ``cpu_seconds`` is this process's CPU time during the import and
``db_cpu_seconds`` the database backends' (PostgreSQL on this host, polled from /proc) — useful on a
shared machine. Modules a running worker has loaded already (the event and webhook services the
import's finish uses) are imported before the measured window. Usage: ``python bench/contacts_import.py --db postgres [--rows N]``.
``--db postgres`` creates a fresh database with ``TESSERA_BENCH_PG_ADMIN_URL`` (default
postgresql://postgres@127.0.0.1:55432/postgres); the app connects as ``tessera_app`` (RLS on).
Goal on PostgreSQL: >= 50,000 rows/s.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _contacts_db import STATE, backend_cpu_seconds, bench_database, make_tenant


class BackendCpu:
    """CPU seconds of the bench database's server processes over a run, polled every quarter
    second per process (a pooled connection closed during the run keeps what it used; reading
    only the start and the end would lose it)."""

    def __init__(self) -> None:
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.ok = bool(STATE.get("name"))

    async def poll(self) -> None:
        import psycopg

        ticks = os.sysconf("SC_CLK_TCK")
        async with await psycopg.AsyncConnection.connect(_admin_url(), autocommit=True) as c:
            while True:
                cur = await c.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (STATE["name"],))
                for (pid,) in await cur.fetchall():
                    try:
                        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                    except OSError:
                        continue
                    used = (int(fields[11]) + int(fields[12])) / ticks
                    self.first.setdefault(pid, used)
                    self.last[pid] = used
                await asyncio.sleep(0.25)

    @property
    def seconds(self) -> float:
        return sum(self.last[p] - self.first[p] for p in self.last)


def _admin_url() -> str:
    return os.environ.get("TESSERA_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:55432/postgres")


def make_csv(n: int, seed: int = 7) -> bytes:
    rnd = random.Random(seed)
    cities = ["上海", "北京", "广州", "深圳", "杭州", "成都"]
    genders = ["男", "女", "", "female"]
    lines = ["姓名,手机,邮箱,城市,生日,性别"]
    for i in range(n):
        r = rnd.random()
        if r < 0.02 and i > 10:  # repeats an earlier row's phone (different email, city)
            j = rnd.randrange(i)
            lines.append(f"客户{j},13{j % 10}{j:08d},dup{i}@example.com,{rnd.choice(cities)},,")
            continue
        phone = f"13{i % 10}{i:08d}"
        birthday = f"19{rnd.randint(50, 99)}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}"
        name, gender = f"客户{i}", rnd.choice(genders)
        if r > 0.99:  # a bad row, one of four kinds
            kind = i % 4
            if kind == 0:
                phone = f"12{i:05d}"
            elif kind == 1:
                birthday = "1990-13-45"
            elif kind == 2:
                gender = "unknown"
            else:
                name = ""
        lines.append(f"{name},{phone},user{i}@example.com,{rnd.choice(cities)},{birthday},{gender}")
    return ("\n".join(lines) + "\n").encode("utf-8")


async def run(n: int, db: str) -> dict[str, Any]:
    from tessera.contacts.service import imports
    from tessera.core import context
    from tessera.core.db.session import get_database, unit_of_work
    from tessera.core.jobs.worker import Worker

    # What a running worker process has loaded already: the import's finish publishes an event,
    # which loads the webhook service (httpx…) on first use; without bytecode caching that alone
    # was ~0.4 s of CPU inside the measured window.
    importlib.import_module("tessera.core.events.service")
    importlib.import_module("tessera.core.webhooks.service")
    raw = make_csv(n)
    tid = await make_tenant()
    t0 = time.perf_counter()
    with context.tenant_scope(tid):
        async with unit_of_work() as s:
            job = await imports.upload(s, "bench.csv", raw)
            job_id = job.id
    upload_s = time.perf_counter() - t0
    del raw
    with context.tenant_scope(tid):
        async with unit_of_work() as s:
            await imports.start_import(s, job_id)
    backends = BackendCpu()
    poller = asyncio.ensure_future(backends.poll()) if backends.ok else None
    db0 = await backend_cpu_seconds()
    await asyncio.sleep(0.3)  # the poller's first reading
    cpu0, t1 = time.process_time(), time.perf_counter()
    await Worker(["imports"], concurrency=1, cron=False, poll_seconds=0.05).run(stop_when_idle=True)
    seconds = time.perf_counter() - t1
    cpu = time.process_time() - cpu0
    db_cpu = None
    if poller is not None and db0 is not None:
        await asyncio.sleep(0.3)  # its last reading
        poller.cancel()
        await asyncio.gather(poller, return_exceptions=True)
        db_cpu = backends.seconds
    with context.tenant_scope(tid):
        async with unit_of_work() as s:
            job = await imports.get_job(s, job_id)
            out = imports.job_out(job)
    if job.status != "done":
        raise SystemExit(f"import ended {job.status}: {job.error}")
    await get_database().dispose()
    return {
        "bench": "contacts_import",
        "n": n,
        "seconds": round(seconds, 2),
        "rows_per_s": round(n / seconds),
        "end_to_end_rows_per_s": round(n / (seconds + upload_s)),
        "upload_seconds": round(upload_s, 2),
        "cpu_seconds": round(cpu, 2),
        "db_cpu_seconds": None if db_cpu is None else round(db_cpu, 2),
        "created": job.rows_created,
        "updated": job.rows_updated,
        "failed": job.rows_failed,
        "job_rows_per_s": out.rows_per_second,
        "database": db,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument(
        "--db", choices=["sqlite", "postgres"], default=os.environ.get("TESSERA_BENCH_DB", "sqlite")
    )
    p.add_argument("--rows", type=int, default=1_000_000)
    args = p.parse_args()
    with bench_database(args.db):
        result = asyncio.run(run(args.rows, args.db))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
