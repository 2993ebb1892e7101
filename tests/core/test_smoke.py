from __future__ import annotations

import httpx

from tests.conftest import TenantWorld


async def test_health(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200
    r = await client.get("/readyz")
    assert r.status_code == 200, r.text


async def test_me_with_api_key(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    r = await client.get("/v1/me", headers=tenant.headers("admin"))
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "api"
    r = await client.get(f"/v1/users/{tenant.users['member']}", headers=tenant.headers("admin"))
    assert r.status_code == 200, r.text
    assert r.json()["phone"] == "+8613800138000"


async def test_the_root_address_opens_the_console(client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    assert r.status_code == 307 and r.headers["location"] == "/console/"
