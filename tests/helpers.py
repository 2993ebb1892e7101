"""Reusable assertions for every context's tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tests.conftest import TenantWorld

Snapshot = Callable[[], Awaitable[Any]]


async def assert_cross_tenant_refused(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    attacker: TenantWorld,
    *,
    json: Any = None,
    snapshot: Snapshot | None = None,
    role: str = "owner",
) -> None:
    """``attacker`` (a user of another tenant, with every permission) asks for ``path``,
    which names a record of the victim tenant: the answer must be 404, exactly like a missing
    record, and ``snapshot()`` (the victim's data) must be unchanged."""
    before = await snapshot() if snapshot else None
    r = await client.request(method, path, json=json, headers=attacker.headers(role))
    assert r.status_code == 404, f"{method} {path} answered {r.status_code}: {r.text}"
    assert r.json()["error"]["code"].endswith("not_found"), r.text
    if snapshot:
        assert await snapshot() == before, f"{method} {path} changed the victim's data"


async def api_snapshot(client: httpx.AsyncClient, path: str, owner: TenantWorld) -> Snapshot:
    """A snapshot function reading ``path`` as the owner of the record."""

    async def read() -> Any:
        r = await client.get(path, headers=owner.headers("owner"))
        return r.status_code, r.json()

    return read
