"""Webhook delivery throughput to a local asyncio HTTP receiver.

Prints one JSON line:
{"bench":"webhooks","db":...,"deliveries":N,"endpoints":E,"seconds":...,"deliveries_per_s":...}

Publishes N events (default 10,000) for one tenant with E endpoints (default 10; deliveries of
one endpoint are sequential by design), then runs one in-process worker (concurrency 32) until
every delivery succeeded. ``seconds`` runs from the worker start to the last delivery.
Database as in bench/jobs.py. Usage: ``python bench/webhooks.py [N] [--endpoints E]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


async def run(n: int, n_endpoints: int, concurrency: int) -> dict[str, Any]:
    from sqlalchemy import func, select
    from tests.core.webhooks.receiver import Receiver

    from tessera.core import context
    from tessera.core.db.session import get_database, unit_of_work
    from tessera.core.events import service as events
    from tessera.core.jobs.worker import Worker
    from tessera.core.tenancy import service as tenancy
    from tessera.core.tenancy.schemas import TenantCreate
    from tessera.core.webhooks import service as webhooks
    from tessera.core.webhooks.models import WebhookDelivery
    from tessera.core.webhooks.schemas import EndpointCreate

    receiver = await Receiver(keep=False).start()
    slug = f"bench-{os.getpid()}-{int(time.time())}"
    with context.tenant_scope(None):
        async with unit_of_work(platform=True) as s:
            tenant, _ = await tenancy.create_tenant(s, TenantCreate(name="Bench", slug=slug))
    with context.tenant_scope(tenant.id):
        async with unit_of_work() as s:
            for _ in range(n_endpoints):
                await webhooks.create_endpoint(
                    s, EndpointCreate(url=receiver.url, event_types=["bench.event"])
                )
        per_tx = max(1, 1000 // n_endpoints)
        for i in range(0, n // n_endpoints, per_tx):
            async with unit_of_work() as s:
                for j in range(i, min(n // n_endpoints, i + per_tx)):
                    await events.publish(s, "bench.event", {"i": j})
    total = (n // n_endpoints) * n_endpoints
    worker = Worker(["webhooks"], concurrency, poll_seconds=0.2)
    t0 = time.perf_counter()
    task = asyncio.create_task(worker.run())
    with context.tenant_scope(tenant.id):
        while True:
            async with unit_of_work() as s:
                done = (
                    await s.execute(
                        select(func.count())
                        .select_from(WebhookDelivery)
                        .where(WebhookDelivery.status == "succeeded")
                    )
                ).scalar_one()
            if done >= total:
                break
            await asyncio.sleep(0.25)
    seconds = time.perf_counter() - t0
    worker.stop()
    await task
    await receiver.stop()
    return {
        "bench": "webhooks",
        "db": "postgresql" if get_database().is_postgres else "sqlite",
        "deliveries": total,
        "endpoints": n_endpoints,
        "seconds": round(seconds, 2),
        "deliveries_per_s": round(total / seconds, 1),
        "concurrency": concurrency,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", nargs="?", type=int, default=10_000)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    os.environ.setdefault("TESSERA_WEBHOOK_ALLOW_PRIVATE", "true")
    from jobs import _prepare  # bench/jobs.py: database and migrations

    _prepare()
    from tessera import modules
    from tessera.app import init_runtime
    from tessera.settings import get_settings

    init_runtime(get_settings())
    modules.load(["tessera.core.webhooks.tasks"])
    print(json.dumps(asyncio.run(run(args.n, args.endpoints, args.concurrency))))


if __name__ == "__main__":
    main()
