from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio
from tests.conftest import TenantWorld

from tessera.connect.smpp.server import SmscAccount, SmscConfig, SmscSimulator


async def setup_sms(
    client: httpx.AsyncClient,
    world: TenantWorld,
    smsc: SmscSimulator | None = None,
    *,
    links: int = 1,
    window: int = 10,
    tps: float | None = None,
    signature: str | None = None,
) -> dict[str, Any]:
    """Create an SMS channel with ``links`` SMPP links (one route priority each) and return ids."""
    h = world.headers("admin")
    r = await client.post(
        "/v1/channels", json={"kind": "sms", "name": "SMS", "default_source": "10690001"}, headers=h
    )
    assert r.status_code == 201, r.text
    ch = r.json()["id"]
    link_ids = []
    for i in range(links):
        port = smsc.port if smsc else 2775
        body = {
            "name": f"link{i}",
            "host": "127.0.0.1",
            "port": port,
            "system_id": f"acct{i}",
            "password": "pw",
            "window": window,
            "tps": tps,
        }
        r = await client.post(f"/v1/channels/{ch}/links", json=body, headers=h)
        assert r.status_code == 201, r.text
        link_ids.append(r.json()["id"])
        r = await client.post(
            f"/v1/channels/{ch}/routes",
            json={"carrier": "*", "link_id": r.json()["id"], "priority": i},
            headers=h,
        )
        assert r.status_code == 201, r.text
    if signature:
        r = await client.post("/v1/signatures", json={"text": signature, "is_default": True}, headers=h)
        sid = r.json()["id"]
        await client.post(f"/v1/signatures/{sid}/approve", headers=h)
    return {"channel_id": ch, "link_ids": link_ids}


@pytest_asyncio.fixture
async def smsc() -> AsyncIterator[SmscSimulator]:
    sim = SmscSimulator(SmscConfig(accounts=[SmscAccount("acct0", "pw"), SmscAccount("acct1", "pw")], port=0))
    await sim.start()
    yield sim
    await sim.stop()


async def send_code(client: httpx.AsyncClient, world: TenantWorld, to: str) -> uuid.UUID:
    """A verification-class message (a code), accepted; its id."""
    r = await client.post(
        "/v1/messages",
        json={"to": to, "body": "Your code is 123456", "class": "verification"},
        headers=world.headers("admin"),
    )
    assert r.status_code == 202, r.text
    return uuid.UUID(r.json()["id"])


def phone(i: int) -> str:
    return f"+86138{i:08d}"


def uid() -> str:
    return str(uuid.uuid4())


async def statuses(world: TenantWorld) -> dict[str, int]:
    from sqlalchemy import func, select

    from tessera.connect.models import Message
    from tessera.core import context
    from tessera.core.db.session import unit_of_work

    with context.tenant_scope(world.tenant_id):
        async with unit_of_work() as s:
            rows = (await s.execute(select(Message.status, func.count()).group_by(Message.status))).all()
    return {k: int(v) for k, v in rows}


async def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.1) -> None:
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while True:
        if await predicate():
            return
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(interval)


async def wait_final(world: TenantWorld, n: int, timeout: float = 30.0) -> dict[str, int]:
    final = ("delivered", "failed", "expired", "rejected")

    async def done() -> bool:
        st = await statuses(world)
        return sum(st.get(k, 0) for k in final) >= n

    try:
        await wait_until(done, timeout)
    except AssertionError:
        raise AssertionError(f"not final: {await statuses(world)}") from None
    return await statuses(world)


@pytest_asyncio.fixture
async def gateway(app: Any) -> AsyncIterator[Any]:
    from tessera.connect.dispatcher import Dispatcher

    started: list[Dispatcher] = []

    async def factory(**kw: Any) -> Dispatcher:
        kw.setdefault("submit_timeout", 1.0)
        d = Dispatcher(**kw)
        await d.start()
        started.append(d)
        return d

    yield factory
    for d in started:
        await d.stop()
