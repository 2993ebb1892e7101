"""Duplicate suggestions never name a contact the caller may not see."""

from __future__ import annotations

import uuid

import httpx

from tessera.contacts.service import merge
from tessera.core import context
from tessera.core.access.principal import Principal
from tessera.core.db.session import unit_of_work
from tests.conftest import TenantWorld


async def _contact(client: httpx.AsyncClient, h: dict[str, str], **body: object) -> dict[str, str]:
    r = await client.post("/v1/contacts", json=body, headers=h)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def test_suggestions_respect_record_visibility(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    h = tenant.headers("admin")
    mine = await _contact(client, h, name="Wang Fang", city="Hangzhou", owner_id=str(tenant.users["member"]))
    hidden = await _contact(client, h, name="Wang Fang", city="Hangzhou", owner_id=str(tenant.users["admin"]))
    member = Principal(
        tenant_id=tenant.tenant_id,
        actor=context.Actor("user", tenant.users["member"]),
        role_key="member",
        permissions=frozenset({"contacts:read"}),
        visibility={"default": "own"},
        user_id=tenant.users["member"],
    )
    with context.tenant_scope(tenant.tenant_id, principal=member):
        async with unit_of_work() as s:
            found = await merge.suggest_duplicates(s, uuid.UUID(mine["id"]), principal=member)
    assert [str(c.id) for c, _ in found] == []
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            found = await merge.suggest_duplicates(s, uuid.UUID(mine["id"]))
    assert [str(c.id) for c, _ in found] == [hidden["id"]]
    # The API as the admin (visibility "all") sees the pair.
    r = await client.get(f"/v1/contacts/{mine['id']}/duplicates", headers=h)
    assert r.status_code == 200 and hidden["id"] in r.text
