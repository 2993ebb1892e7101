"""Benchmark: SMS end to end — POST /v1/messages/batch → gateway → SMSC simulator → receipts.

100,000 messages by default (10 batches of 10,000) through the real API (in-process ASGI), a
gateway in its own process (``run_gateway``) with 2 SMPP links of window 50, and the SMSC
simulator in a process of its own (``bench/_smsc_process.py``, loopback, receipts on), as a
remote SMSC is in production. Prints ONE JSON line:

    {"bench":"sms_throughput","db":...,"messages":...,"accepted_per_s":...,"submitted_per_s":...,
     "delivered_per_s":...,"sustained_delivered_per_s":...,"queue_depth_samples":[...],
     "timeline":[[t, queue depth, submitted or later, final, gateway CPU s], ...],"cpu_s":{...}}

``accepted_per_s``: messages / time spent inside the batch requests; ``submitted_per_s`` and
``delivered_per_s``: messages / time from the first request to the last submit (final status);
``sustained_delivered_per_s``: final statuses per second between 10 % and 90 % of the run.
``cpu_s``: CPU seconds of the gateway process, of this process (the API), of the simulator and of the
PostgreSQL server processes (when local), so a loaded machine can still be compared.

The feed starts once the gateway process has bound both links (``gateway_start_s``: how long
that took). ``--rate R --batch B``: offer the messages at R per second (a batch of B every B/R seconds)
instead of as fast as the API accepts them; ``max_queue_depth_while_fed`` then shows whether
the queue grows at that rate.

``--db sqlite`` (a fresh file) or ``--db postgres`` (a fresh database created with
``TESSERA_BENCH_PG_ADMIN_URL``, default postgresql://postgres@127.0.0.1:55432/postgres; the app
connects as ``tessera_app`` like production). Goal on PostgreSQL: ≥ 1,000 messages/s end to end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_of(pid: int) -> float:
    """CPU seconds (user + system) of a live process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICK


def _postgres_cpu() -> float:
    """CPU seconds of every local postgres process (the server is shared with nobody in a bench)."""
    total = 0.0
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "comm").read_text().strip() in ("postgres", "postmaster"):
                    total += _cpu_of(int(d.name))
            except OSError:
                continue
    return total


def _prepare_db(kind: str, data_dir: str) -> tuple[str, str, str | None]:
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{data_dir}/bench.db"
        return url, url, None
    from sqlalchemy import create_engine, text

    admin = os.environ.get("TESSERA_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:55432/postgres")
    name = f"tessera_bench_{uuid.uuid4().hex[:8]}"
    eng = create_engine(admin.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    eng.dispose()
    base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    host = base.split("@", 1)[1]
    return f"postgresql+psycopg://tessera_app:tessera_app@{host}/{name}", f"{base}/{name}", name


def prepare_environment(kind: str, data_dir: str) -> str | None:
    """A fresh migrated database and the environment of a benchmark run (settings read by the
    app, the gateway process and alembic); returns the PostgreSQL database name to drop."""
    app_url, owner_url, pg_name = _prepare_db(kind, data_dir)
    os.environ.update(
        TESSERA_DATA_DIR=data_dir,
        TESSERA_DATABASE_URL=app_url,
        TESSERA_MIGRATION_DATABASE_URL=owner_url,
        TESSERA_EMBEDDED_WORKERS="false",
        TESSERA_LOG_LEVEL="WARNING",
        TESSERA_SUBSCRIPTION_DEFAULT_PLAN="enterprise",
        TESSERA_ARGON2_TIME_COST="1",
        TESSERA_ARGON2_MEMORY_COST="1024",
        TESSERA_ARGON2_PARALLELISM="1",
    )
    env = {**os.environ}
    if pg_name:
        env["TESSERA_DB_APP_ROLE"] = "tessera_app"
    subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
        check=True,
        cwd=ROOT,
        env=env,
        capture_output=True,
    )
    return pg_name


def _drop_db(name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = os.environ.get("TESSERA_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:55432/postgres")
    eng = create_engine(admin.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    eng.dispose()


async def _counts(tenant_id: uuid.UUID) -> tuple[dict[str, int], int]:
    from sqlalchemy import func, select

    from tessera.connect.models import DispatchItem, Message
    from tessera.core import context
    from tessera.core.db.session import unit_of_work

    with context.tenant_scope(tenant_id):
        async with unit_of_work() as s:
            rows = (await s.execute(select(Message.status, func.count()).group_by(Message.status))).all()
    with context.tenant_scope(None):
        async with unit_of_work(platform=True) as s:
            depth = int((await s.execute(select(func.count()).select_from(DispatchItem))).scalar_one())
    return {k: int(v) for k, v in rows}, depth


async def _run(args: argparse.Namespace, db: str) -> dict[str, Any]:
    import httpx
    from tests.conftest import make_tenant

    from tessera.app import create_app
    from tessera.settings import Settings, reset_settings_cache

    sys.path.insert(0, str(ROOT))
    from bench._smsc_process import RemoteSmsc

    reset_settings_cache()
    app = create_app(Settings())
    sim = RemoteSmsc([("bench0", "pw"), ("bench1", "pw")])
    await sim.start()
    world = await make_tenant("bench", roles=("admin",))
    h = world.headers("admin")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench", timeout=300) as client:
        ch = (
            await client.post(
                "/v1/channels", json={"kind": "sms", "name": "bench", "default_source": "10690000"}, headers=h
            )
        ).json()["id"]
        for i in range(2):
            link = (
                await client.post(
                    f"/v1/channels/{ch}/links",
                    json={
                        "name": f"l{i}",
                        "host": "127.0.0.1",
                        "port": sim.port,
                        "system_id": f"bench{i}",
                        "password": "pw",
                        "window": 50,
                    },
                    headers=h,
                )
            ).json()["id"]
            await client.post(
                f"/v1/channels/{ch}/routes", json={"link_id": link, "priority": 0, "weight": 100}, headers=h
            )
        code = "from tessera.cli import run_service; from tessera.connect.gateway import run_gateway; run_service(run_gateway())"
        if os.environ.get("BENCH_PROFILE"):
            code = f"import cProfile; cProfile.run({code!r}, {os.environ['BENCH_PROFILE']!r})"
        gw = subprocess.Popen([sys.executable, "-c", code], env={**os.environ}, cwd=ROOT)
        # the feed starts once the gateway has bound both links, as in production where the
        # gateway runs before traffic arrives (its start-up is not queue growth)
        started = time.monotonic()
        while sim.bound < 2:
            if gw.poll() is not None or time.monotonic() - started > 180:
                raise SystemExit("the gateway did not bind its links")
            await asyncio.sleep(0.1)
        gateway_start_s = time.monotonic() - started
        samples: list[int] = []
        timeline: list[list[float]] = []
        pg0 = _postgres_cpu()
        me0 = time.process_time()
        gw_cpu = 0.0
        t0 = time.monotonic()
        try:
            accepted_s = 0.0
            batch = args.batch
            for b in range(0, args.messages, batch):
                rec = [{"to": f"+86138{(b + i):08d}"} for i in range(min(batch, args.messages - b))]
                ts = time.monotonic()
                r = await client.post(
                    "/v1/messages/batch",
                    json={"class": "notification", "body": "Your parcel is on its way", "recipients": rec},
                    headers=h,
                )
                accepted_s += time.monotonic() - ts
                assert r.status_code == 202, r.text
                assert r.json()["accepted"] == len(rec), r.text[:300]
                st, depth = await _counts(world.tenant_id)
                samples.append(depth)
                timeline.append(_point(t0, depth, st, _cpu_of(gw.pid)))
                if args.rate:  # paced feed: the next batch when the offered rate says so
                    await asyncio.sleep(max(0.0, t0 + (b + len(rec)) / args.rate - time.monotonic()))
            accepted_at = time.monotonic()
            feed_samples = len(samples)
            submitted_at = delivered_at = None
            while True:
                st, depth = await _counts(world.tenant_id)
                samples.append(depth)
                timeline.append(_point(t0, depth, st, _cpu_of(gw.pid)))
                done = sum(st.get(k, 0) for k in ("delivered", "failed", "expired", "rejected"))
                sub = done + st.get("submitted", 0)
                if submitted_at is None and sub >= args.messages:
                    submitted_at = time.monotonic()
                if done >= args.messages:
                    delivered_at = time.monotonic()
                    break
                if time.monotonic() - t0 > args.timeout:
                    raise SystemExit(f"timeout: {st}")
                await asyncio.sleep(1.0)
            gw_cpu = _cpu_of(gw.pid)
        finally:
            gw.terminate()
            gw.wait(timeout=30)
        me_cpu = time.process_time() - me0
        pg_cpu = _postgres_cpu() - pg0 if db == "postgres" else None
        if pg_cpu is not None and pg_cpu < 0:  # backends of other clients exited: not measurable
            pg_cpu = None
    smsc_cpu = _cpu_of(sim.pid)
    await sim.stop()
    total = delivered_at - t0
    return {
        "bench": "sms_throughput",
        "db": db,
        "messages": args.messages,
        "links": 2,
        "window": 50,
        "accepted_per_s": round(args.messages / accepted_s, 1),
        "accept_phase_s": round(accepted_at - t0, 2),
        "submitted_per_s": round(args.messages / ((submitted_at or delivered_at) - t0), 1),
        "delivered_per_s": round(args.messages / total, 1),
        "sustained_delivered_per_s": _sustained(timeline, args.messages),
        "total_s": round(total, 2),
        "offered_per_s": args.rate or None,
        "gateway_start_s": round(gateway_start_s, 2),
        "max_queue_depth_while_fed": max(samples[:feed_samples]),
        "queue_depth_samples": samples,
        "timeline": timeline,
        "cpu_s": {
            "gateway": round(gw_cpu, 1),
            "api": round(me_cpu, 1),
            "smsc": round(smsc_cpu, 1),
            "postgres": round(pg_cpu, 1) if pg_cpu is not None else None,
        },
        "gateway_cpu_ms_per_message_steady": _steady_gateway_cpu(timeline, args.messages),
        "cpu_ms_per_message": round(1000 * (gw_cpu + me_cpu + (pg_cpu or 0.0)) / args.messages, 3),
        "smsc_nice": sim.nice,
        "duplicates": sim.duplicates,
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def _point(t0: float, depth: int, st: dict[str, int], gw_cpu: float) -> list[float]:
    done = sum(st.get(k, 0) for k in ("delivered", "failed", "expired", "rejected"))
    return [round(time.monotonic() - t0, 2), depth, done + st.get("submitted", 0), done, round(gw_cpu, 2)]


def _steady_gateway_cpu(timeline: list[list[float]], n: int) -> float | None:
    """Gateway CPU milliseconds per final status between 10 % and 90 % (start-up excluded)."""
    lo = next((p for p in timeline if p[3] >= 0.1 * n), None)
    hi = next((p for p in timeline if p[3] >= 0.9 * n), None)
    if lo is None or hi is None or hi[3] <= lo[3]:
        return None
    return round(1000 * (hi[4] - lo[4]) / (hi[3] - lo[3]), 3)


def _sustained(timeline: list[list[float]], n: int) -> float | None:
    """Final statuses per second between 10 % and 90 % of the messages (warm-up and tail cut)."""
    lo = next((p for p in timeline if p[3] >= 0.1 * n), None)
    hi = next((p for p in timeline if p[3] >= 0.9 * n), None)
    if lo is None or hi is None or hi[0] <= lo[0]:
        return None
    return round((hi[3] - lo[3]) / (hi[0] - lo[0]), 1)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--batch", type=int, default=10_000)
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="offer the messages at this rate (batches spaced in time) instead of all at once: "
        "with a rate the gateway sustains, the queue stays flat",
    )
    p.add_argument("--timeout", type=float, default=900)
    args = p.parse_args()
    data_dir = tempfile.mkdtemp(prefix="tessera-bench-")
    pg_name = prepare_environment(args.db, data_dir)
    sys.path.insert(0, str(ROOT))
    from tessera.cli import run_service  # the event loop `tessera serve` and `tessera gateway` use

    try:
        result = run_service(_run(args, args.db))
    finally:
        if pg_name:
            _drop_db(pg_name)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
