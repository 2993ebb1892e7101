"""Verification-code latency: POST /v1/verify returning → submit_sm arriving at the SMSC.

Starts a migrated database (``--db postgres``: a fresh database like ``bench/sms_throughput.py``,
the app connecting as ``tessera_app``; ``BENCH_DB_URL`` owner URL; or a temporary SQLite file),
the app in process (httpx ASGI transport), one gateway dispatcher and the bundled SMSC simulator
on loopback in a process of its own (``bench/_smsc_process.py``: a remote SMSC in production,
so a busy API process does not delay its answers); the simulator stamps each submit_sm's
arrival with ``time.time()`` and reports it back, and the latency is that minus the
``time.time()`` at which ``POST /v1/verify`` returned. Sends ``RATE`` verifications per second for ``SECONDS`` seconds (default 50/s for
60 s; ``python bench/otp_latency.py [rate] [seconds] [--db sqlite|postgres] [--bulk N]``), one
number per verification, and prints one JSON line:
{"bench":"otp_latency","rate":50,"seconds":60,"sent":N,"submitted":N,"p50_ms":...,"p99_ms":...,
 "max_ms":...,"post_p50_ms":...,"post_p99_ms":...,"bulk":...,"cpu_s":...}

Codes start once the gateway has bound every link (``gateway_start_s``).
``--gateway-process`` runs the dispatcher as its own ``tessera gateway`` process, as in
production (it is woken across processes by PostgreSQL ``NOTIFY``); by default it runs in this
process beside the API, as in the embedded mode.

``--bulk N`` runs the sms_throughput load at the same time: N notification messages posted in
batches of 10,000 through ``POST /v1/messages/batch`` on two more links of window 50, so the
verification lane competes with a bulk backlog for the same gateway and database.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def setup_env(db: str) -> str | None:
    """Environment of a fresh database; returns the PostgreSQL database name to drop."""
    pg_name = None
    if db == "postgres":
        from bench.sms_throughput import _prepare_db

        url, owner, pg_name = _prepare_db("postgres", tempfile.mkdtemp())
        os.environ["TESSERA_DB_APP_ROLE"] = "tessera_app"
    else:
        url = owner = os.environ.get("BENCH_DB_URL") or f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db"
    os.environ.setdefault("TESSERA_DATA_DIR", tempfile.mkdtemp())
    os.environ["TESSERA_DATABASE_URL"] = url
    os.environ["TESSERA_MIGRATION_DATABASE_URL"] = owner
    os.environ.setdefault("TESSERA_SUBSCRIPTION_DEFAULT_PLAN", "enterprise")
    os.environ.setdefault("TESSERA_LOG_LEVEL", "WARNING")
    os.environ["TESSERA_EMBEDDED_WORKERS"] = "false"
    subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
        check=True,
        cwd=ROOT,
        capture_output=True,
        env=os.environ.copy(),
    )
    return pg_name


def _cpu_of(pid: int) -> float:
    from bench.sms_throughput import _cpu_of as cpu_of

    return cpu_of(pid)


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))] * 1000, 2) if s else float("nan")


async def _bulk(client: object, world: object, sim: object, n: int, done: list[float]) -> None:
    """The sms_throughput load: ``n`` notifications in batches of 10,000 on two links of window 50."""
    from tests.connect.messaging.conftest import setup_sms

    h = world.headers("admin")  # type: ignore[attr-defined]
    await setup_sms(client, world, sim, links=2, window=50)  # type: ignore[arg-type]
    for b in range(0, n, 10_000):
        rec = [{"to": f"+86138{(b + i):08d}"} for i in range(min(10_000, n - b))]
        r = await client.post(  # type: ignore[attr-defined]
            "/v1/messages/batch",
            json={"class": "notification", "body": "Your parcel is on its way", "recipients": rec},
            headers=h,
        )
        assert r.status_code == 202, r.text
    done.append(time.monotonic())


async def main(
    rate: float, seconds: float, bulk: int = 0, gateway_process: bool = False
) -> dict[str, object]:
    import httpx
    from bench._smsc_process import RemoteSmsc
    from tests.conftest import make_tenant
    from tests.connect.messaging.conftest import setup_sms

    from tessera.app import create_app, init_runtime
    from tessera.connect.dispatcher import Dispatcher
    from tessera.settings import Settings

    settings = Settings()
    init_runtime(settings)
    app = create_app(settings)
    sim = RemoteSmsc([("acct0", "pw"), ("acct1", "pw")], track=("86137",))
    await sim.start()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        world = await make_tenant(roles=("admin",))
        await setup_sms(client, world, sim, window=50)  # type: ignore[arg-type]
        cpu0 = time.process_time()
        bulk_done: list[float] = []
        bulk_task = None
        if bulk:
            bulk_world = await make_tenant(roles=("admin",))
            bulk_task = asyncio.create_task(_bulk(client, bulk_world, sim, bulk, bulk_done))
            await asyncio.sleep(2.0)  # the backlog is building when the codes start
        dispatcher = None
        gw = None
        if gateway_process:  # the production layout: `tessera gateway` beside `tessera serve`
            code = (
                "import asyncio; from tessera.connect.gateway import run_gateway; asyncio.run(run_gateway())"
            )
            gw = subprocess.Popen([sys.executable, "-c", code], env={**os.environ}, cwd=ROOT)
        else:
            dispatcher = Dispatcher()
            await dispatcher.start()
        # the first code once the gateway has bound every link (the code's and the bulk's), as
        # in production where the gateway runs before traffic: its start-up is not code latency
        started = time.monotonic()
        while sim.bound < 1 + (2 if bulk else 0):
            if (gw is not None and gw.poll() is not None) or time.monotonic() - started > 180:
                raise SystemExit("the gateway did not bind its links")
            await asyncio.sleep(0.1)
        gateway_start_s = time.monotonic() - started
        returned: dict[str, float] = {}
        post_times: list[float] = []
        post_at: list[tuple[float, float]] = []  # (seconds into the run, POST duration)
        wall0 = time.time()
        errors = 0

        async def one(i: int) -> None:
            nonlocal errors
            to = f"+86137{i:08d}"
            t0 = time.time()
            r = await client.post(
                "/v1/verify", json={"to": to, "fallback_after_seconds": None}, headers=world.headers("admin")
            )
            t1 = time.time()
            if r.status_code != 201:
                errors += 1
                return
            post_times.append(t1 - t0)
            post_at.append((t0 - wall0, t1 - t0))
            returned[to.lstrip("+")] = t1

        tasks = []
        start = time.monotonic()
        n = int(rate * seconds)
        for i in range(n):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if sum(1 for d in sim.arrivals if d in returned) >= len(returned):
                break
            await asyncio.sleep(0.1)
        backlog = await dispatcher.backlog() if dispatcher is not None else None
        if bulk_task is not None:
            bulk_task.cancel()
        if dispatcher is not None:
            await dispatcher.stop()
        if gw is not None:
            gw.terminate()
            gw.wait(timeout=30)
    smsc_cpu = _cpu_of(sim.pid)
    await sim.stop()
    cpu = time.process_time() - cpu0
    lat = [t - returned[d] for d, t in sim.arrivals.items() if d in returned]
    return {
        "bench": "otp_latency",
        "rate": rate,
        "seconds": seconds,
        "sent": n,
        "accepted": len(returned),
        "errors": errors,
        "submitted": len(lat),
        "p50_ms": pct(lat, 0.5),
        "p99_ms": pct(lat, 0.99),
        "max_ms": round(max(lat) * 1000, 2) if lat else None,
        "mean_ms": round(statistics.fmean(lat) * 1000, 2) if lat else None,
        # a starved API process answers after the gateway has already submitted the code
        "arrived_before_post_returned": sum(1 for x in lat if x < 0),
        "post_p50_ms": pct(post_times, 0.5),
        "post_p99_ms": pct(post_times, 0.99),
        # p99 of the POST per 10 s of the run: a backlog that builds up shows where it started
        "post_p99_ms_by_10s": [
            pct([d for t, d in post_at if k * 10 <= t < (k + 1) * 10], 0.99)
            for k in range(int(seconds // 10) + 1)
            if any(k * 10 <= t < (k + 1) * 10 for t, _ in post_at)
        ],
        "db": "postgres" if os.environ["TESSERA_DATABASE_URL"].startswith("postgresql") else "sqlite",
        "bulk": bulk,
        "bulk_backlog_at_end": backlog,
        "bulk_submitted": sim.submits - len(sim.arrivals),
        "gateway": "process" if gateway_process else "in-process",
        "gateway_start_s": round(gateway_start_s, 2),
        "cpu_s": round(cpu, 1),
        "cpu_ms_per_verification": round(1000 * cpu / max(1, sim.submits), 2),
        "smsc_cpu_s": round(smsc_cpu, 1),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser()
    p.add_argument("rate", nargs="?", type=float, default=50.0)
    p.add_argument("seconds", nargs="?", type=float, default=60.0)
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--bulk", type=int, default=0, help="messages of bulk load at the same time")
    p.add_argument(
        "--gateway-process",
        action="store_true",
        help="run the dispatcher as its own `tessera gateway` process (production layout) instead "
        "of in this process beside the API",
    )
    args = p.parse_args()
    name = setup_env(args.db)
    try:
        print(json.dumps(asyncio.run(main(args.rate, args.seconds, args.bulk, args.gateway_process))))
    finally:
        if name:
            from bench.sms_throughput import _drop_db

            _drop_db(name)
