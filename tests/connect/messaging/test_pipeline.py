from __future__ import annotations

import httpx
from tests.conftest import TenantWorld
from tests.connect.messaging.conftest import phone, setup_sms, wait_final

from tessera.connect import encoding
from tessera.connect.smpp.server import SmscSimulator


async def test_receipt_matched_and_history(
    client: httpx.AsyncClient, tenant: TenantWorld, smsc: SmscSimulator, gateway
) -> None:
    await setup_sms(client, tenant, smsc)
    await gateway()
    r = await client.post(
        "/v1/messages",
        json={"to": "13800138000", "body": "hello", "class": "verification"},
        headers=tenant.headers("admin"),
    )
    mid = r.json()["id"]
    await wait_final(tenant, 1, timeout=10)
    m = (await client.get(f"/v1/messages/{mid}", headers=tenant.headers("admin"))).json()
    assert m["status"] == "delivered", m
    assert m["carrier_ids"] and m["carrier_ids"][0] in smsc.by_id
    assert [e["status"] for e in m["events"]] == ["accepted", "queued", "submitted", "delivered"]
    assert m["submitted_at"] and m["done_at"] and m["attempts"] == 1 and m["resubmissions"] == 0
    assert smsc.count("10690001", "8613800138000", b"hello") == 1


async def test_long_chinese_message_split_and_counted(
    client: httpx.AsyncClient, tenant: TenantWorld, smsc: SmscSimulator, gateway
) -> None:
    await setup_sms(client, tenant, smsc)
    await gateway()
    body = "尊敬的客户您好，" * 20  # 160 UCS-2 characters
    expected = encoding.preview(body)["segments"]
    assert expected == 3
    r = await client.post(
        "/v1/messages", json={"to": "13800138000", "body": body}, headers=tenant.headers("admin")
    )
    assert r.json()["segments"] == 3
    mid = r.json()["id"]
    await wait_final(tenant, 1, timeout=10)
    m = (await client.get(f"/v1/messages/{mid}", headers=tenant.headers("admin"))).json()
    assert m["status"] == "delivered" and m["segments"] == 3 and len(m["carrier_ids"]) == 3
    assert smsc.stats_.submits == 3


async def test_undeliverable_receipt_and_rejection(
    client: httpx.AsyncClient, tenant: TenantWorld, gateway, make_smsc=None
) -> None:
    from tessera.connect.smpp.server import SmscAccount, SmscConfig

    sim = SmscSimulator(
        SmscConfig(
            accounts=[SmscAccount("acct0", "pw")],
            outcomes={"undeliverable": 1.0},
            reject_destinations={"8613900": 0x0B},
        )
    )
    await sim.start()
    try:
        await setup_sms(client, tenant, sim)
        await gateway()
        h = tenant.headers("admin")
        a = (await client.post("/v1/messages", json={"to": "13800138000", "body": "x"}, headers=h)).json()[
            "id"
        ]
        b = (await client.post("/v1/messages", json={"to": "13900139000", "body": "x"}, headers=h)).json()[
            "id"
        ]
        await wait_final(tenant, 2, timeout=10)
        ma = (await client.get(f"/v1/messages/{a}", headers=h)).json()
        mb = (await client.get(f"/v1/messages/{b}", headers=h)).json()
        assert ma["status"] == "failed" and ma["reason"].startswith("carrier.undeliverable"), ma
        assert mb["status"] == "rejected" and mb["reason"] == "smpp.status_0x000b", mb
    finally:
        await sim.stop()


async def test_throttling_without_loss(client: httpx.AsyncClient, tenant: TenantWorld, gateway) -> None:
    from tessera.connect.smpp.server import SmscAccount, SmscConfig

    sim = SmscSimulator(SmscConfig(accounts=[SmscAccount("acct0", "pw", tps=30)]))
    await sim.start()
    try:
        await setup_sms(client, tenant, sim, window=20)
        await gateway()
        rec = [{"to": phone(i)} for i in range(200)]
        r = await client.post(
            "/v1/messages/batch", json={"body": "hi", "recipients": rec}, headers=tenant.headers("admin")
        )
        assert r.status_code == 202
        st = await wait_final(tenant, 200, timeout=30)
        assert st == {"delivered": 200}
        assert sim.stats_.throttled > 0
        assert len(sim.submissions) == 200 and not sim.duplicates()
    finally:
        await sim.stop()


async def test_failover_to_second_link(client: httpx.AsyncClient, tenant: TenantWorld, gateway) -> None:
    from tessera.connect.smpp.server import SmscAccount, SmscConfig

    good = SmscSimulator(SmscConfig(accounts=[SmscAccount("acct1", "pw")]))
    await good.start()
    h = tenant.headers("admin")
    ids = await setup_sms(client, tenant, good, links=2)
    # the first link (priority 0) points to a port where nothing listens
    r = await client.patch(f"/v1/links/{ids['link_ids'][0]}", json={"window": 5}, headers=h)
    assert r.status_code == 200
    from sqlalchemy import update

    from tessera.connect.models import Link
    from tessera.core import context
    from tessera.core.db.session import unit_of_work

    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            await s.execute(update(Link).where(Link.system_id == "acct0").values(port=1))
    try:
        await gateway()
        rec = [{"to": phone(i)} for i in range(20)]
        await client.post("/v1/messages/batch", json={"body": "fo", "recipients": rec}, headers=h)
        st = await wait_final(tenant, 20, timeout=20)
        assert st == {"delivered": 20}
        one = (await client.get("/v1/messages", params={"limit": "1"}, headers=h)).json()["items"][0]
        assert one["link_id"] == ids["link_ids"][1]
    finally:
        await good.stop()


async def test_mo_from_the_smsc_is_stored_and_td_opts_the_number_out(
    client: httpx.AsyncClient, tenant: TenantWorld, smsc: SmscSimulator, gateway
) -> None:
    from tests.connect.messaging.conftest import wait_until

    await setup_sms(client, tenant, smsc)
    await gateway()
    h = tenant.headers("admin")

    # No outbound traffic at all: the gateway binds every enabled link when it starts, so an
    # MO-only link receives too.
    async def bound() -> bool:
        return any(x["system_id"] == "acct0" for x in smsc.bound_sessions())

    await wait_until(bound, timeout=10)
    assert smsc.stats_.submits == 0
    assert smsc.inject_mo("acct0", "8613800138001", "10690001", "TD") == 1

    async def stored() -> bool:
        r = await client.get("/v1/inbound/messages", headers=h)
        return r.status_code == 200 and len(r.json()) >= 1

    try:
        await wait_until(stored, timeout=10)
    except AssertionError:
        r = await client.get("/v1/inbound/messages", headers=h)
        raise AssertionError(
            f"no inbound message: {r.status_code} {r.text[:300]} smsc={smsc.stats()}"
        ) from None
    [mo] = (await client.get("/v1/inbound/messages", headers=h)).json()
    assert mo["body"] == "TD" and mo["opt_out"] is True, mo
    # The number is now opted out for marketing on this tenant.
    r = await client.get("/v1/compliance/opt-outs", headers=h)
    assert r.status_code == 200 and len(r.json()) == 1, r.text
    r = await client.post(
        "/v1/messages", json={"to": "13800138001", "body": "sale", "class": "marketing"}, headers=h
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "message.recipient_opted_out", r.text
