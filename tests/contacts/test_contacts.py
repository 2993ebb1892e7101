from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.conftest import TenantWorld
from tests.contacts.conftest import make_contact
from tests.helpers import api_snapshot, assert_cross_tenant_refused


async def test_create_normalises_and_masks_by_role(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    c = await make_contact(
        client,
        tenant.headers("admin"),
        phones=["138 0013 8001", "+8613900139000"],
        emails=[" Zhang@Example.COM "],
        address="上海市浦东新区世纪大道100号",
        consent={"sms": {"status": "opted_in", "source": "web form"}},
    )
    assert c["phones"] == [
        {"value": "+8613800138001", "primary": True},
        {"value": "+8613900139000", "primary": False},
    ]
    assert c["emails"] == [{"value": "zhang@example.com", "primary": True}]
    assert c["consent"]["sms"]["status"] == "opted_in"
    # member: no pii:view -> masked; admin -> clear
    m = await make_contact(
        client, tenant.headers("member"), name="Li Si", phones=["13700137000"], emails=["lisi@example.com"]
    )
    r = await client.get(f"/v1/contacts/{m['id']}", headers=tenant.headers("member"))
    assert r.status_code == 200
    assert r.json()["phones"][0]["value"] == "137****7000"
    assert r.json()["emails"][0]["value"] == "l***@example.com"
    r = await client.get(f"/v1/contacts/{m['id']}", headers=tenant.headers("admin"))
    assert r.json()["phones"][0]["value"] == "+8613700137000"


async def test_visibility_by_owner(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    import uuid

    from tessera.contacts.errors import ContactNotFound
    from tessera.contacts.service import contacts as svc
    from tessera.core import context
    from tessera.core.access.principal import Principal
    from tessera.core.db.session import unit_of_work

    h = tenant.headers("admin")
    theirs = await make_contact(client, h, name="Owned by admin", owner_id=str(tenant.users["admin"]))
    mine = await make_contact(client, h, name="Owned by member", owner_id=str(tenant.users["member"]))
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
            assert (await svc.get_contact(s, uuid.UUID(mine["id"]), member)).name == "Owned by member"
            with pytest.raises(ContactNotFound):
                await svc.get_contact(s, uuid.UUID(theirs["id"]), member)


async def test_validation_errors_name_field(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    h = tenant.headers("admin")
    r = await client.post("/v1/contacts", json={"name": "X", "phones": ["12345"]}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["field"] == "phones[0]", r.text
    r = await client.post("/v1/contacts", json={"name": "X", "emails": ["nope"]}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["code"] == "email.invalid"
    r = await client.post("/v1/contacts", json={"name": "X", "attributes": {"salary": 1}}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["field"] == "attributes.salary"
    r = await client.post(
        "/v1/contact-fields",
        json={"key": "level", "label": "Level", "type": "choice", "choices": ["A", "B"]},
        headers=h,
    )
    assert r.status_code == 201, r.text
    r = await client.post("/v1/contacts", json={"name": "X", "attributes": {"level": "C"}}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["field"] == "attributes.level"
    r = await client.post("/v1/contacts", json={"name": "X", "attributes": {"level": "B"}}, headers=h)
    assert r.status_code == 201 and r.json()["attributes"] == {"level": "B"}


async def test_duplicate_identity_conflict_and_merge_mode(
    client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    h = tenant.headers("admin")
    first = await make_contact(client, h, phones=["13800138002"])
    r = await client.post("/v1/contacts", json={"name": "Again", "phones": ["+86 138-0013-8002"]}, headers=h)
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["code"] == "contact.duplicate_identity"
    assert err["details"]["existing_id"] == first["id"]
    r = await client.post(
        "/v1/contacts?on_conflict=merge",
        json={"name": "Again", "phones": ["13800138002"], "emails": ["new@example.com"], "city": "Shanghai"},
        headers=h,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == first["id"] and body["name"] == "Zhang San" and body["city"] == "Shanghai"
    assert body["emails"][0]["value"] == "new@example.com"
    r = await client.get("/v1/contacts/lookup", params={"kind": "phone", "value": "138 0013 8002"}, headers=h)
    assert r.status_code == 200 and r.json()["id"] == first["id"]


@pytest.mark.parametrize("mode", ["error", "merge"])
async def test_the_same_phone_created_twice_at_once_is_one_contact_and_a_clear_answer(
    client: httpx.AsyncClient, tenant: TenantWorld, mode: str
) -> None:
    """Two requests creating the same identity at the same moment: neither saw the other's row
    when it looked, and the unique index refuses the second insert. That one answers 409
    naming the contact the first made (or, in merge mode, merges into it), never a 500."""
    h = tenant.headers("admin")
    query = "?on_conflict=merge" if mode == "merge" else ""
    bodies = [{"name": f"Racer {k}", "phones": ["13800138077"], "city": f"City {k}"} for k in range(4)]
    answers = await asyncio.gather(*(client.post(f"/v1/contacts{query}", json=b, headers=h) for b in bodies))
    codes = sorted(r.status_code for r in answers)
    made = [r.json() for r in answers if r.status_code == 201]
    assert len(made) == 1, [r.text for r in answers]
    others = [r for r in answers if r.status_code != 201]
    if mode == "merge":
        assert codes == [200, 200, 200, 201]
        assert {r.json()["id"] for r in others} == {made[0]["id"]}
    else:
        assert codes == [201, 409, 409, 409]
        for r in others:
            err = r.json()["error"]
            assert (
                err["code"] == "contact.duplicate_identity" and err["details"]["existing_id"] == made[0]["id"]
            )
    r = await client.get("/v1/contacts", params={"limit": 10}, headers=h)
    assert [c["id"] for c in r.json()["items"]] == [made[0]["id"]]


async def test_service_lookups_for_other_contexts(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    from tessera.contacts import service
    from tessera.core import context
    from tessera.core.db.session import unit_of_work

    c = await make_contact(
        client,
        tenant.headers("admin"),
        phones=["13800138003"],
        consent={"sms": {"status": "opted_out", "source": "STOP"}},
    )
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            found = await service.find_contact_by_phone(s, "+8613800138003")
            assert found is not None and str(found.id) == c["id"]
            assert await service.consent_for_identity(s, "phone", "13800138003", "sms") == "opted_out"
            assert await service.consent_for_identity(s, "phone", "13800138003", "email") == "unknown"
            assert await service.find_contact_by_phone(s, "not a phone") is None


async def test_accounts_and_fields(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    h = tenant.headers("admin")
    r = await client.post("/v1/accounts", json={"name": "Acme", "industry": "retail"}, headers=h)
    assert r.status_code == 201
    parent = r.json()["id"]
    r = await client.post("/v1/accounts", json={"name": "Acme East", "parent_id": parent}, headers=h)
    child = r.json()["id"]
    r = await client.patch(f"/v1/accounts/{parent}", json={"parent_id": child}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["field"] == "parent_id"
    c = await make_contact(client, h, account_id=child)
    assert c["account_id"] == child
    r = await client.get("/v1/accounts?industry=retail", headers=h)
    assert [a["id"] for a in r.json()["items"]] == [parent]


async def test_events_timeline_and_sources(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    from tessera.contacts.schemas import TimelineItem
    from tessera.contacts.service import register_timeline_source, unregister_timeline_source

    h = tenant.headers("admin")
    c = await make_contact(client, h, phones=["13800138004"])
    r = await client.post(
        "/v1/events",
        json={
            "contact": {"kind": "phone", "value": "13800138004"},
            "name": "page_view",
            "properties": {"url": "/x"},
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    r = await client.post(
        "/v1/events/batch",
        json={
            "events": [
                {
                    "contact": {"contact_id": c["id"]},
                    "name": "purchase",
                    "properties": {"amount": 120},
                    "occurred_at": "2026-01-02T03:04:05+00:00",
                },
                {"contact": {"kind": "phone", "value": "13900000000"}, "name": "purchase"},
            ]
        },
        headers=h,
    )
    assert r.status_code == 200
    assert r.json()["accepted"] == 1 and r.json()["rejected"][0]["index"] == 1

    async def messages(session, contact_id, limit):  # type: ignore[no-untyped-def]
        import datetime as dt

        return [
            TimelineItem(
                at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC), source="connect", kind="message", title="SMS sent"
            )
        ]

    register_timeline_source("test-connect", messages)
    try:
        r = await client.get(f"/v1/contacts/{c['id']}/timeline", headers=h)
    finally:
        unregister_timeline_source("test-connect")
    titles = [i["title"] for i in r.json()["items"]]
    assert titles == ["page_view", "purchase", "SMS sent"]


async def test_tags_seed_groups_and_bulk(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    h = tenant.headers("admin")
    r = await client.get("/v1/tag-groups", headers=h)
    keys = {g["key"] for g in r.json()}
    assert keys == {"salary_level", "occupation", "hobby", "spending_preference", "spending_habit"}
    gid = next(g["id"] for g in r.json() if g["key"] == "hobby")
    r = await client.post("/v1/tags", json={"name": "Golf", "group_id": gid}, headers=h)
    tag = r.json()["id"]
    a = await make_contact(client, h, name="A")
    b = await make_contact(client, h, name="B")
    r = await client.post(
        "/v1/tags/assign", json={"contact_ids": [a["id"], b["id"]], "tag_ids": [tag]}, headers=h
    )
    assert r.json()["linked"] == 2
    r = await client.post("/v1/tags/assign", json={"contact_ids": [a["id"]], "tag_ids": [tag]}, headers=h)
    assert r.json()["linked"] == 0
    r = await client.delete(f"/v1/contacts/{b['id']}/tags/{tag}", headers=h)
    assert r.status_code == 204
    r = await client.get(f"/v1/contacts/{a['id']}", headers=h)
    assert r.json()["tag_ids"] == [tag]


async def test_bulk_upsert(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    h = tenant.headers("admin")
    await make_contact(client, h, phones=["13800138005"])
    records = [
        {"name": "Existing", "phones": ["13800138005"], "city": "Beijing"},
        {"name": "New", "emails": ["n@example.com"]},
        {"name": "Bad", "phones": ["999"]},
    ]
    r = await client.post(
        "/v1/contacts/bulk", json={"records": records}, headers={**h, "Idempotency-Key": "b1"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["created"], body["updated"], body["failed"]) == (1, 1, 1)
    assert body["results"][2]["error"]["field"] == "phones[0]"
    r2 = await client.post(
        "/v1/contacts/bulk", json={"records": records}, headers={**h, "Idempotency-Key": "b1"}
    )
    assert r2.json() == body


@pytest.mark.parametrize("role", ["read-only"])
async def test_write_needs_permission(client: httpx.AsyncClient, tenant: TenantWorld, role: str) -> None:
    r = await client.post("/v1/contacts", json={"name": "X"}, headers=tenant.headers(role))
    assert r.status_code == 403


async def test_cross_tenant_refused_everywhere(
    client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    h = tenant.headers("owner")
    c = await make_contact(client, h, phones=["13800138006"])
    c2 = await make_contact(client, h, name="Zhang San 2")
    acc = (await client.post("/v1/accounts", json={"name": "Victim Co"}, headers=h)).json()
    tag = (await client.post("/v1/tags", json={"name": "VIP"}, headers=h)).json()
    seg = (
        await client.post(
            "/v1/segments",
            json={"name": "S", "rules": {"op": "and", "rules": [{"type": "lifecycle", "in": ["lead"]}]}},
            headers=h,
        )
    ).json()
    static = (await client.post("/v1/segments", json={"name": "L", "kind": "static"}, headers=h)).json()
    fld = (
        await client.post("/v1/contact-fields", json={"key": "k", "label": "K", "type": "text"}, headers=h)
    ).json()
    imp = (
        await client.post(
            "/v1/imports?filename=a.csv", content="姓名,手机\n王五,13800138007\n".encode(), headers=h
        )
    ).json()
    snap = await api_snapshot(client, f"/v1/contacts/{c['id']}", tenant)
    cid = c["id"]
    cases = [
        ("GET", f"/v1/contacts/{cid}", None),
        ("PATCH", f"/v1/contacts/{cid}", {"name": "Pwned"}),
        ("DELETE", f"/v1/contacts/{cid}", None),
        ("PUT", f"/v1/contacts/{cid}/consent", {"channel": "sms", "status": "opted_out"}),
        ("GET", f"/v1/contacts/{cid}/duplicates", None),
        ("POST", f"/v1/contacts/{cid}/merge", {"loser_id": c2["id"]}),
        ("GET", f"/v1/contacts/{cid}/timeline", None),
        ("DELETE", f"/v1/contacts/{cid}/tags/{tag['id']}", None),
        ("GET", "/v1/contacts/lookup?kind=phone&value=13800138006", None),
        ("DELETE", f"/v1/contact-fields/{fld['id']}", None),
        ("GET", f"/v1/accounts/{acc['id']}", None),
        ("PATCH", f"/v1/accounts/{acc['id']}", {"name": "Pwned"}),
        ("DELETE", f"/v1/accounts/{acc['id']}", None),
        ("POST", "/v1/tags/assign", {"contact_ids": [cid], "tag_ids": [tag["id"]]}),
        ("POST", "/v1/events", {"contact": {"contact_id": cid}, "name": "x"}),
        ("GET", f"/v1/segments/{seg['id']}", None),
        ("PATCH", f"/v1/segments/{seg['id']}", {"name": "Pwned"}),
        ("DELETE", f"/v1/segments/{seg['id']}", None),
        ("GET", f"/v1/segments/{seg['id']}/count", None),
        ("POST", f"/v1/segments/{seg['id']}/refresh", None),
        ("POST", f"/v1/segments/{static['id']}/members", {"contact_ids": [cid]}),
        ("POST", f"/v1/segments/{static['id']}/members/remove", {"contact_ids": [cid]}),
        ("GET", f"/v1/imports/{imp['id']}", None),
        ("PATCH", f"/v1/imports/{imp['id']}/mapping", {"mapping": {}}),
        ("POST", f"/v1/imports/{imp['id']}/dry-run", None),
        ("POST", f"/v1/imports/{imp['id']}/start", None),
        ("POST", f"/v1/imports/{imp['id']}/cancel", None),
        ("GET", f"/v1/imports/{imp['id']}/errors", None),
        ("POST", "/v1/contact-exports", {"segment_id": seg["id"]}),
        ("GET", f"/v1/contact-exports/{imp['id']}", None),
        ("GET", f"/v1/contact-exports/{imp['id']}/file", None),
    ]
    for method, path, body in cases:
        await assert_cross_tenant_refused(client, method, path, other_tenant, json=body, snapshot=snap)
    # the attacker's own lists and counts never include the victim's rows
    r = await client.get("/v1/contacts", headers=other_tenant.headers("owner"))
    assert r.json()["items"] == []
    r = await client.post(
        "/v1/segments/preview",
        json={"rules": {"op": "and", "rules": []}},
        headers=other_tenant.headers("owner"),
    )
    assert r.json()["count"] == 0
    r = await client.get("/v1/contacts/quality", headers=other_tenant.headers("owner"))
    assert r.json()["contacts"] == 0


async def test_unknown_owner_is_refused_naming_the_field(
    client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    h = tenant.headers("admin")
    foreign_user = other_tenant.users["admin"]  # exists, but in another tenant
    for path, body in (
        ("/v1/contacts", {"name": "Zhao Liu", "owner_id": str(foreign_user)}),
        ("/v1/accounts", {"name": "Acme", "owner_id": str(foreign_user)}),
    ):
        r = await client.post(path, json=body, headers=h)
        assert r.status_code == 404, r.text
        assert r.json()["error"]["code"] == "user.not_found" and r.json()["error"]["field"] == "owner_id"
    r = await client.post(
        "/v1/contacts/bulk",
        json={"records": [{"name": "Zhao Liu", "owner_id": str(foreign_user)}]},
        headers=h,
    )
    assert r.status_code == 200, r.text
    [result] = r.json()["results"]
    assert result["status"] == "failed" and result["error"]["field"] == "owner_id", result
    assert (await client.get("/v1/contacts", headers=h)).json()["items"] == []
    assert (await client.get("/v1/accounts", headers=h)).json()["items"] == []
