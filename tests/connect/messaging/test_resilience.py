"""Crash safety, SMSC disconnects and lane priority, against the simulator over real sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from tests.conftest import TenantWorld
from tests.connect.messaging.conftest import phone, setup_sms, statuses, wait_final, wait_until

from tessera.connect.models import Message, MessageEvent
from tessera.connect.smpp.server import SmscAccount, SmscConfig, SmscSimulator
from tessera.core import context
from tessera.core.db.session import unit_of_work


async def send_many(
    client: httpx.AsyncClient,
    world: TenantWorld,
    n: int,
    *,
    cls: str = "notification",
    body: str = "pipeline test",
    offset: int = 0,
) -> None:
    for start in range(0, n, 10_000):
        rec = [{"to": phone(offset + i)} for i in range(start, min(n, start + 10_000))]
        r = await client.post(
            "/v1/messages/batch",
            json={"class": cls, "body": body, "recipients": rec},
            headers=world.headers("admin"),
        )
        assert r.status_code == 202, r.text


async def resubmission_records(world: TenantWorld) -> dict[str, int]:
    """E.164 (without +) → recorded resubmissions, for every message resubmitted at least once."""
    with context.tenant_scope(world.tenant_id):
        async with unit_of_work() as s:
            rows = (
                await s.execute(
                    select(Message.to, Message.resubmissions, Message.id).where(Message.resubmissions > 0)
                )
            ).all()
            ev = {
                mid: n
                for mid, n in (
                    await s.execute(
                        select(MessageEvent.message_id, func.count())
                        .where(MessageEvent.kind == "resubmitted")
                        .group_by(MessageEvent.message_id)
                    )
                ).all()
            }
    out = {}
    for to, n, mid in rows:
        assert ev.get(mid) == n, "every resubmission has its event"
        out[to.lstrip("+")] = n
    return out


def assert_duplicates_recorded(sim: SmscSimulator, world_resubs: dict[str, int], limit: int) -> None:
    dups = sim.duplicates()
    assert len(dups) <= limit, f"{len(dups)} messages reached the SMSC twice (limit {limit})"
    for (_src, dst, _sm), count in dups.items():
        assert world_resubs.get(dst, 0) >= count - 1, (
            f"{dst} sent {count} times but resubmission not recorded"
        )


@pytest.mark.slow
async def test_gateway_sigkill_during_20000_send(
    client: httpx.AsyncClient, tenant: TenantWorld, gateway: Any
) -> None:
    sim = SmscSimulator(
        SmscConfig(accounts=[SmscAccount("acct0", "pw"), SmscAccount("acct1", "pw")], keep_messages=False)
    )
    await sim.start()
    proc = None
    try:
        await setup_sms(client, tenant, sim, links=2, window=50)
        # both links share the traffic
        h = tenant.headers("admin")
        ch = (await client.get("/v1/channels", headers=h)).json()[0]["id"]
        routes = (await client.get(f"/v1/channels/{ch}/routes", headers=h)).json()
        for r in routes:
            await client.delete(f"/v1/routes/{r['id']}", headers=h)
            await client.post(
                f"/v1/channels/{ch}/routes", json={"link_id": r["link_id"], "priority": 0}, headers=h
            )
        await send_many(client, tenant, 20_000)
        code = (
            "import asyncio; from tessera.connect.gateway import run_gateway; "
            "asyncio.run(run_gateway(stale_after=1.0, heartbeat_interval=0.3))"
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            env={**os.environ},
            stderr=open(os.environ.get("TESSERA_DATA_DIR", "/tmp") + "/gateway.log", "w"),
        )
        deadline = time.monotonic() + 40
        while len(sim.submissions) < 3000:
            assert proc.poll() is None, "gateway subprocess died"
            assert time.monotonic() < deadline, f"gateway too slow: {len(sim.submissions)}"
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        killed_at = len(sim.submissions)
        assert killed_at < 20_000
        await gateway(stale_after=1.0, heartbeat_interval=0.3)
        st = await wait_final(tenant, 20_000, timeout=180)
        assert st == {"delivered": 20_000}, st
        assert len(sim.submissions) == 20_000
        assert_duplicates_recorded(sim, await resubmission_records(tenant), limit=2 * 50)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        await sim.stop()


async def test_smsc_drops_connection_mid_window(
    client: httpx.AsyncClient, tenant: TenantWorld, gateway: Any
) -> None:
    sim = SmscSimulator(SmscConfig(accounts=[SmscAccount("acct0", "pw")], disconnect_after_submits=150))
    await sim.start()
    try:
        await setup_sms(client, tenant, sim, window=20)
        await gateway()
        await send_many(client, tenant, 500)
        st = await wait_final(tenant, 500, timeout=30)
        assert st == {"delivered": 500}, st
        assert len(sim.submissions) == 500
        assert sim.stats_.scripted_disconnects == 1
        assert_duplicates_recorded(sim, await resubmission_records(tenant), limit=20)
    finally:
        await sim.stop()


@pytest.mark.slow
async def test_marketing_backlog_does_not_delay_verification(
    client: httpx.AsyncClient, tenant: TenantWorld, gateway: Any
) -> None:
    sim = SmscSimulator(SmscConfig(accounts=[SmscAccount("acct0", "pw", tps=300)]))
    await sim.start()
    try:
        await setup_sms(client, tenant, sim, window=10, tps=300)
        await send_many(client, tenant, 20_000, cls="marketing", body="big sale")
        d = await gateway()
        await wait_until(lambda: _submitted_at_least(tenant, 200), timeout=20)
        t0 = time.monotonic()
        r = await client.post(
            "/v1/messages",
            json={"to": "13700137000", "body": "code 4321", "class": "verification"},
            headers=tenant.headers("admin"),
        )
        mid = r.json()["id"]

        async def verified() -> bool:
            m = (await client.get(f"/v1/messages/{mid}", headers=tenant.headers("admin"))).json()
            return m["status"] == "delivered"

        await wait_until(verified, timeout=10, interval=0.02)
        latency = time.monotonic() - t0
        st = await statuses(tenant)
        backlog = st.get("accepted", 0) + st.get("queued", 0)
        assert backlog > 15_000, st  # the marketing backlog is still there
        assert latency < 5.0, f"verification took {latency:.2f}s behind the marketing backlog"
        assert d.stats["claimed"] < 20_000
        t1 = time.monotonic()
        await d.stop()
        assert time.monotonic() - t1 < 10
    finally:
        await sim.stop()


async def _submitted_at_least(world: TenantWorld, n: int) -> bool:
    st = await statuses(world)
    return st.get("submitted", 0) + st.get("delivered", 0) >= n
