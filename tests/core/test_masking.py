"""Personal data is masked per role; unmasking needs pii:unmask and is audited."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import TenantWorld


@pytest.mark.parametrize("role", ["read-only", "member", "manager"])
async def test_masked_for_roles_without_pii_view(
    client: httpx.AsyncClient, tenant: TenantWorld, role: str
) -> None:
    uid = tenant.users["owner"]
    r = await client.get(f"/v1/users/{uid}", headers=tenant.headers(role))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["phone"] == "138****8000"
    assert body["email"] == f"o***@{tenant.slug}.example.com"
    listed = await client.get("/v1/users", headers=tenant.headers(role), params={"limit": 200})
    for item in listed.json()["items"]:
        assert "***" in item["email"]
        assert item["phone"] == "138****8000"


@pytest.mark.parametrize("role", ["admin", "owner"])
async def test_clear_for_pii_view(client: httpx.AsyncClient, tenant: TenantWorld, role: str) -> None:
    uid = tenant.users["owner"]
    r = await client.get(f"/v1/users/{uid}", headers=tenant.headers(role))
    assert r.status_code == 200, r.text
    assert r.json()["phone"] == "+8613800138000"
    assert r.json()["email"] == f"owner@{tenant.slug}.example.com"


async def test_unmask_needs_permission_and_is_audited(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    uid = tenant.users["owner"]
    path = f"/v1/users/{uid}/unmask"
    for role in ("member", "read-only"):
        r = await client.post(path, headers=tenant.headers(role), json={"fields": ["phone"]})
        assert r.status_code == 403, r.text
        assert r.json()["error"]["code"] == "auth.forbidden"
    audit = await client.get(
        "/v1/audit-events", headers=tenant.headers("admin"), params={"action": "pii.unmask"}
    )
    assert audit.json()["items"] == []
    r = await client.post(path, headers=tenant.headers("manager"), json={"fields": ["phone", "email"]})
    assert r.status_code == 200, r.text
    assert r.json() == {"phone": "+8613800138000", "email": f"owner@{tenant.slug}.example.com"}
    audit = await client.get(
        "/v1/audit-events", headers=tenant.headers("admin"), params={"action": "pii.unmask"}
    )
    items = audit.json()["items"]
    assert len(items) == 1
    assert items[0]["object_id"] == str(uid)
    assert items[0]["changes"] == {"fields": ["email", "phone"]}
    assert items[0]["actor_type"] == "api_key"
    bad = await client.post(path, headers=tenant.headers("manager"), json={"fields": ["password_hash"]})
    assert bad.status_code == 422
    assert bad.json()["error"]["field"] == "fields.0"
