from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

import httpx
from tests.conftest import TenantWorld
from tests.connect.messaging.conftest import wait_final

from tessera.connect.dispatcher import Dispatcher, TenantRoutes
from tessera.connect.smpp.server import SmscSimulator

A, B, C = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
CH = uuid.uuid4()


def routes(entries: list[tuple[int, str, uuid.UUID, int]]) -> TenantRoutes:
    return TenantRoutes(time.monotonic(), {}, {CH: entries})


def test_carrier_specific_route_first_then_catch_all_failover() -> None:
    r = routes([(0, "China Mobile", A, 100), (0, "*", B, 100), (1, "*", C, 100)])
    assert Dispatcher._candidates(r, CH, "China Mobile") == [A, B, C]
    assert Dispatcher._candidates(r, CH, "China Unicom") == [B, C]
    assert Dispatcher._candidates(r, uuid.uuid4(), "China Unicom") == []


def test_weights_share_traffic_within_a_priority() -> None:
    r = routes([(0, "*", A, 300), (0, "*", B, 100), (5, "*", C, 100)])
    firsts = Counter(Dispatcher._candidates(r, CH, "x")[0] for _ in range(4000))
    assert 0.70 < firsts[A] / 4000 < 0.80 and firsts[C] == 0
    assert all(Dispatcher._candidates(r, CH, "x")[-1] == C for _ in range(50))


async def test_portability_overrides_prefix_carrier(
    client: httpx.AsyncClient, tenant: TenantWorld, smsc: SmscSimulator, gateway: Any
) -> None:
    from tests.connect.messaging.conftest import setup_sms

    from tessera.connect.service import channels
    from tessera.core import context
    from tessera.core.db.session import unit_of_work

    ids = await setup_sms(client, tenant, smsc, links=2)
    h = tenant.headers("admin")
    # China Mobile numbers go over link 1; the catch-all is link 0
    await client.post(
        f"/v1/channels/{ids['channel_id']}/routes",
        json={"carrier": "China Unicom", "link_id": ids["link_ids"][1], "priority": 0},
        headers=h,
    )
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            await channels.set_ported(s, "13800138000", "China Unicom")  # a China Mobile prefix, ported
            await channels.set_rate(s, "sms", "*", 5)
    await gateway()
    ported = (await client.post("/v1/messages", json={"to": "13800138000", "body": "a"}, headers=h)).json()[
        "id"
    ]
    plain = (await client.post("/v1/messages", json={"to": "13800138001", "body": "b"}, headers=h)).json()[
        "id"
    ]
    await wait_final(tenant, 2, timeout=10)
    mp = (await client.get(f"/v1/messages/{ported}", headers=h)).json()
    mo = (await client.get(f"/v1/messages/{plain}", headers=h)).json()
    assert mp["route"]["carrier"] == "China Unicom" and mp["link_id"] == ids["link_ids"][1]
    assert mo["route"]["carrier"] == "China Mobile" and mo["link_id"] == ids["link_ids"][0]
    assert mo["cost_minor"] == 5 and mo["currency"] == "CNY"


async def test_demo_setup_sends_through_simulator(
    app: Any, client: httpx.AsyncClient, smsc: SmscSimulator, gateway: Any, settings: Any
) -> None:
    from tests.conftest import make_tenant

    from tessera.connect import demo
    from tessera.connect.smpp.server import SmscAccount

    smsc._accounts[demo.SIM_SYSTEM_ID] = SmscAccount(demo.SIM_SYSTEM_ID, demo.SIM_PASSWORD)
    world = await make_tenant("demo", roles=("admin",))
    await demo.setup(settings, port=smsc.port)
    await demo.setup(settings, port=smsc.port)  # idempotent
    h = world.headers("admin")
    tpl = (await client.get("/v1/templates", headers=h)).json()
    assert len(tpl) == 1 and tpl[0]["status"] == "approved"
    await gateway()
    r = await client.post(
        "/v1/messages",
        json={
            "to": "13800138000",
            "template_id": tpl[0]["id"],
            "class": "verification",
            "variables": {"code": "9876"},
        },
        headers=h,
    )
    assert r.status_code == 202, r.text
    await wait_final(world, 1, timeout=10)
    m = (await client.get(f"/v1/messages/{r.json()['id']}", headers=h)).json()
    assert m["status"] == "delivered" and m["body"].startswith("【Tessera】Your verification code is 9876")
