"""Verification-code latency: POST /v1/verify returning → submit_sm arriving at the SMSC.

Starts a migrated database (``BENCH_DB_URL`` owner URL, or a temporary SQLite file), the app
in process (httpx ASGI transport), one gateway dispatcher and the bundled SMSC simulator on
loopback. Sends ``RATE`` verifications per second for ``SECONDS`` seconds (default 50/s for
60 s; ``python bench/otp_latency.py [rate] [seconds]``), one number per verification, and
prints one JSON line:
{"bench":"otp_latency","rate":50,"seconds":60,"sent":N,"submitted":N,"p50_ms":...,"p99_ms":...,
 "max_ms":...,"post_p50_ms":...,"post_p99_ms":...}
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


def setup_env() -> None:
    url = os.environ.get("BENCH_DB_URL") or f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db"
    os.environ.setdefault("TESSERA_DATA_DIR", tempfile.mkdtemp())
    os.environ["TESSERA_DATABASE_URL"] = url
    os.environ["TESSERA_MIGRATION_DATABASE_URL"] = url
    os.environ.setdefault("TESSERA_LOG_LEVEL", "WARNING")
    os.environ["TESSERA_EMBEDDED_WORKERS"] = "false"
    subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
        check=True,
        cwd=ROOT,
        capture_output=True,
        env=os.environ.copy(),
    )


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))] * 1000, 2) if s else float("nan")


async def main(rate: float, seconds: float) -> dict[str, object]:
    import httpx
    from tests.conftest import make_tenant
    from tests.connect.messaging.conftest import setup_sms

    from tessera.app import create_app, init_runtime
    from tessera.connect.dispatcher import Dispatcher
    from tessera.connect.smpp.server import SmscAccount, SmscConfig, SmscSimulator
    from tessera.settings import Settings

    settings = Settings()
    init_runtime(settings)
    app = create_app(settings)
    sim = SmscSimulator(SmscConfig(accounts=[SmscAccount("acct0", "pw")], port=0))
    await sim.start()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        world = await make_tenant(roles=("admin",))
        await setup_sms(client, world, sim, window=50)
        dispatcher = Dispatcher()
        await dispatcher.start()
        returned: dict[str, float] = {}
        post_times: list[float] = []
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
            if sum(1 for m in sim.by_id.values() if m.destination in returned) >= len(returned):
                break
            await asyncio.sleep(0.1)
        await dispatcher.stop()
    await sim.stop()
    lat = [m.submitted_at - returned[m.destination] for m in sim.by_id.values() if m.destination in returned]
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
        "post_p50_ms": pct(post_times, 0.5),
        "post_p99_ms": pct(post_times, 0.99),
    }


if __name__ == "__main__":
    setup_env()
    rate = float(sys.argv[1]) if len(sys.argv) > 1 else 50.0
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else 60.0
    print(json.dumps(asyncio.run(main(rate, secs))))
