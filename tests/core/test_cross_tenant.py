"""Every identity/tenancy/audit endpoint naming a record refuses another tenant's user with 404."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from tests.conftest import TenantWorld
from tests.helpers import assert_cross_tenant_refused

KERNEL_MODULES = ("tessera.core.identity.api", "tessera.core.tenancy.api", "tessera.core.audit.api")

# Request bodies that would succeed on the attacker's own records, so only tenant isolation
# stands between the request and the victim's data.
BODIES: dict[tuple[str, str], Any] = {
    ("PATCH", "/v1/users/{user_id}"): {"name": "Hijacked"},
    ("POST", "/v1/users/{user_id}/unmask"): {"fields": ["email", "phone"]},
    ("PATCH", "/v1/roles/{role_id}"): {"name": "Hijacked"},
    ("PATCH", "/v1/departments/{department_id}"): {"name": "Hijacked"},
    ("PATCH", "/v1/teams/{team_id}"): {"name": "Hijacked"},
}


def kernel_routes() -> list[tuple[str, str]]:
    from tessera import modules

    found = []
    for mod in modules.load(modules.ROUTERS):
        if mod.__name__ not in KERNEL_MODULES:
            continue
        for route in mod.router.routes:
            if not isinstance(route, APIRoute) or "{" not in route.path:
                continue
            if route.path.startswith("/v1/operator/"):
                continue  # platform operators are not tenant users; covered in test_auth
            for method in sorted(route.methods):
                found.append((method, route.path))
    return sorted(found)


ROUTES = kernel_routes()


def test_every_route_with_an_id_is_covered() -> None:
    assert ROUTES, "no kernel routes found"
    params = {p for _m, path in ROUTES for p in re.findall(r"{(\w+)}", path)}
    assert params <= {"user_id", "role_id", "department_id", "team_id", "key_id", "event_id"}, params


async def _victim_records(client: httpx.AsyncClient, victim: TenantWorld) -> dict[str, str]:
    h = victim.headers("owner")
    role = await client.post(
        "/v1/roles",
        headers=h,
        json={"key": "victim-role", "name": "Victim role", "permissions": ["users:read"]},
    )
    assert role.status_code == 201, role.text
    dep = await client.post("/v1/departments", headers=h, json={"name": "Victim dept"})
    assert dep.status_code == 201, dep.text
    team = await client.post(
        "/v1/teams", headers=h, json={"name": "Victim team", "member_ids": [str(victim.users["member"])]}
    )
    assert team.status_code == 201, team.text
    key = await client.post("/v1/api-keys", headers=h, json={"name": "victim key"})
    assert key.status_code == 201, key.text
    events = await client.get("/v1/audit-events", headers=h, params={"limit": 1})
    assert events.status_code == 200, events.text
    return {
        "user_id": str(victim.users["member"]),
        "role_id": role.json()["id"],
        "department_id": dep.json()["id"],
        "team_id": team.json()["id"],
        "key_id": key.json()["id"],
        "event_id": events.json()["items"][0]["id"],
    }


READ_BACK = {
    "user_id": "/v1/users/{}",
    "role_id": "/v1/roles/{}",
    "department_id": "/v1/departments/{}",
    "team_id": "/v1/teams/{}",
    "key_id": "/v1/api-keys?limit=200",
    "event_id": "/v1/audit-events/{}",
}


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
async def test_cross_tenant_refused(
    client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld, method: str, path: str
) -> None:
    ids = await _victim_records(client, tenant)
    param = re.findall(r"{(\w+)}", path)[0]
    url = path.replace("{" + param + "}", ids[param])

    async def snapshot() -> Any:
        r = await client.get(READ_BACK[param].format(ids[param]), headers=tenant.headers("owner"))
        chain = await client.get("/v1/audit-events/verify", headers=tenant.headers("owner"))
        return r.status_code, r.json(), chain.json()["checked"]

    await assert_cross_tenant_refused(
        client, method, url, other_tenant, json=BODIES.get((method, path)), snapshot=snapshot
    )
    # The same request on the attacker's own data is not refused: the 404 comes from isolation.
    if method == "GET":
        own = await client.get(url, headers=tenant.headers("owner"))
        assert own.status_code == 200, own.text


async def test_own_tenant_endpoint_only_shows_own_tenant(
    client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    r = await client.get("/v1/tenant", headers=other_tenant.headers("owner"))
    assert r.status_code == 200
    assert r.json()["id"] == str(other_tenant.tenant_id)
    r = await client.patch("/v1/tenant", headers=other_tenant.headers("owner"), json={"name": "Renamed"})
    assert r.status_code == 200
    mine = await client.get("/v1/tenant", headers=tenant.headers("owner"))
    assert mine.json()["name"] != "Renamed"


async def test_lists_never_show_another_tenant(
    client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    for path in ("/v1/users", "/v1/api-keys", "/v1/audit-events"):
        r = await client.get(path, headers=other_tenant.headers("owner"), params={"limit": 200})
        assert r.status_code == 200, r.text
        ids = {item["id"] for item in r.json()["items"]}
        assert str(tenant.users["member"]) not in ids
        assert ids, path
    roles = await client.get("/v1/roles", headers=other_tenant.headers("owner"))
    theirs = await client.get("/v1/roles", headers=tenant.headers("owner"))
    assert {r["id"] for r in roles.json()}.isdisjoint({r["id"] for r in theirs.json()})
