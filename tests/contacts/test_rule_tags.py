"""Rule tags follow a dynamic segment; segments and data quality are refreshed on a schedule."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import select

from tessera.contacts.models import ContactTag, Segment
from tessera.core import context
from tessera.core.db.session import unit_of_work
from tests.conftest import TenantWorld, make_tenant
from tests.contacts.conftest import make_contact


async def _links(tenant: TenantWorld, tag_id: str) -> dict[str, str]:
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            rows = await s.execute(
                select(ContactTag.contact_id, ContactTag.source).where(ContactTag.tag_id == uuid.UUID(tag_id))
            )
            return {str(c): src for c, src in rows.all()}


async def _segment(client: httpx.AsyncClient, h: dict[str, str], city: str) -> str:
    r = await client.post(
        "/v1/segments",
        json={
            "name": f"In {city}",
            "kind": "dynamic",
            "rules": {
                "op": "and",
                "rules": [{"type": "attribute", "field": "city", "op": "eq", "value": city}],
            },
        },
        headers=h,
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_rule_tag_follows_its_segment(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    h = tenant.headers("admin")
    a = await make_contact(client, h, name="A", city="Suzhou")
    b = await make_contact(client, h, name="B", city="Wuxi")
    seg = await _segment(client, h, "Suzhou")
    assert (await client.post(f"/v1/segments/{seg}/refresh", headers=h)).status_code == 200
    r = await client.post("/v1/tags", json={"name": "Suzhou people", "segment_id": seg}, headers=h)
    assert r.status_code == 201 and r.json()["segment_id"] == seg, r.text
    tag = r.json()["id"]
    assert await _links(tenant, tag) == {a["id"]: "rule"}  # applied at creation
    # A manual link to a non-member survives every refresh.
    r = await client.post("/v1/tags/assign", json={"contact_ids": [b["id"]], "tag_ids": [tag]}, headers=h)
    assert r.status_code == 200
    # A moves away and C arrives: A loses the rule tag, C gets it, B keeps its manual one.
    assert (
        await client.patch(f"/v1/contacts/{a['id']}", json={"city": "Hefei"}, headers=h)
    ).status_code == 200
    c = await make_contact(client, h, name="C", city="Suzhou")
    assert (await client.post(f"/v1/segments/{seg}/refresh", headers=h)).status_code == 200
    assert await _links(tenant, tag) == {b["id"]: "manual", c["id"]: "rule"}
    # Back to a manual tag: the links stay, as manual ones.
    r = await client.patch(f"/v1/tags/{tag}", json={"segment_id": None}, headers=h)
    assert r.status_code == 200 and r.json()["segment_id"] is None
    assert await _links(tenant, tag) == {b["id"]: "manual", c["id"]: "manual"}


async def test_rule_tag_validation(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    h = tenant.headers("admin")
    r = await client.post("/v1/tags", json={"name": "X", "segment_id": str(uuid.uuid4())}, headers=h)
    assert r.status_code == 404 and r.json()["error"]["field"] == "segment_id"
    static = await client.post("/v1/segments", json={"name": "List", "kind": "static"}, headers=h)
    assert static.status_code == 201, static.text
    r = await client.post("/v1/tags", json={"name": "X", "segment_id": static.json()["id"]}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["field"] == "segment_id"
    assert (await client.get("/v1/tags", headers=h)).json() == [] or all(
        t["name"] != "X" for t in (await client.get("/v1/tags", headers=h)).json()
    )
    other = await make_tenant()
    theirs = await _segment(client, other.headers("admin"), "Nanjing")
    r = await client.post("/v1/tags", json={"name": "Y", "segment_id": theirs}, headers=h)
    assert r.status_code == 404 and r.json()["error"]["field"] == "segment_id"
    mine = (await client.post("/v1/tags", json={"name": "Z"}, headers=h)).json()["id"]
    r = await client.patch(f"/v1/tags/{mine}", json={"segment_id": theirs}, headers=h)
    assert r.status_code == 404
    r = await client.patch(f"/v1/tags/{mine}", json={"name": "Z2"}, headers=other.headers("admin"))
    assert r.status_code == 404


async def test_scheduled_refresh_fans_out_to_every_active_tenant(
    client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    from tessera.contacts import tasks
    from tessera.core.jobs.registry import PERIODIC
    from tessera.core.jobs.worker import Worker

    assert PERIODIC["contacts.schedule_segment_refresh"].cron == tasks.SEGMENTS_CRON
    assert PERIODIC["contacts.schedule_quality"].cron == tasks.QUALITY_CRON
    h = tenant.headers("admin")
    await make_contact(client, h, name="A", city="Suzhou")
    seg = await _segment(client, h, "Suzhou")
    async with unit_of_work(platform=True) as s:
        from tessera.core.jobs import service as jobs

        await jobs.enqueue(s, "contacts.schedule_segment_refresh", {}, queue="maintenance")
        await jobs.enqueue(s, "contacts.schedule_quality", {}, queue="maintenance")
    await Worker(["maintenance", "default"], cron=False, poll_seconds=0.05).run(stop_when_idle=True)
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            refreshed = (await s.execute(select(Segment).where(Segment.id == uuid.UUID(seg)))).scalar_one()
            assert refreshed.member_count == 1 and refreshed.refreshed_at is not None
            from tessera.contacts.service.console_data import quality_figures

            figures, at = await quality_figures(s)
            assert at is not None


async def test_console_makes_a_tag_follow_a_segment(
    client: httpx.AsyncClient, app: object, tenant: TenantWorld
) -> None:
    from tests.console.conftest import Browser

    h = tenant.headers("admin")
    a = await make_contact(client, h, name="A", city="Suzhou")
    seg = await _segment(client, h, "Suzhou")
    await client.post(f"/v1/segments/{seg}/refresh", headers=h)
    tag = (await client.post("/v1/tags", json={"name": "Locals"}, headers=h)).json()["id"]
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        web = Browser(c)
        await web.login(tenant, "admin")
        page = await web.get("/console/contacts/tags")
        assert page.status_code == 200 and f'value="{seg}"' in page.text
        r = await web.post(f"/console/contacts/tags/{tag}/segment", {"segment_id": seg})
        assert r.status_code == 303
        assert await _links(tenant, tag) == {a["id"]: "rule"}
        page = await web.get("/console/contacts/tags")
        assert "Follows: In Suzhou" in page.text
        bad = await web.post(f"/console/contacts/tags/{tag}/segment", {"segment_id": "nope"})
        assert bad.status_code == 404
        await web.login(tenant, "read-only")
        assert (
            await web.post(f"/console/contacts/tags/{tag}/segment", {"segment_id": ""})
        ).status_code == 403
