from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio

from tessera.connect.smpp.server import SmscAccount, SmscConfig, SmscSimulator
from tests.conftest import TenantWorld


async def setup_sms(client: httpx.AsyncClient, world: TenantWorld, smsc: SmscSimulator | None = None, *,
                    links: int = 1, window: int = 10, tps: float | None = None,
                    signature: str | None = None) -> dict[str, Any]:
    """Create an SMS channel with ``links`` SMPP links (one route priority each) and return ids."""
    h = world.headers("admin")
    r = await client.post("/v1/channels", json={"kind": "sms", "name": "SMS", "default_source": "10690001"}, headers=h)
    assert r.status_code == 201, r.text
    ch = r.json()["id"]
    link_ids = []
    for i in range(links):
        port = smsc.port if smsc else 2775
        body = {"name": f"link{i}", "host": "127.0.0.1", "port": port, "system_id": f"acct{i}",
                "password": "pw", "window": window, "tps": tps}
        r = await client.post(f"/v1/channels/{ch}/links", json=body, headers=h)
        assert r.status_code == 201, r.text
        link_ids.append(r.json()["id"])
        r = await client.post(f"/v1/channels/{ch}/routes", json={"carrier": "*", "link_id": r.json()["id"], "priority": i}, headers=h)
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


def phone(i: int) -> str:
    return f"+86138{i:08d}"


def uid() -> str:
    return str(uuid.uuid4())
