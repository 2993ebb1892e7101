"""ESME ↔ simulator over real loopback sockets."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from tessera.connect import encoding
from tessera.connect.smpp import pdu as P
from tessera.connect.smpp.client import (
    BindError,
    BindState,
    DeliveryReceipt,
    MoMessage,
    Outcome,
    SmppClient,
)
from tessera.connect.smpp.server import SmscSimulator

SmscFactory = Callable[..., Awaitable[SmscSimulator]]
ClientFactory = Callable[..., SmppClient]

pytestmark = pytest.mark.asyncio


async def test_bind_auth_failure(make_smsc: SmscFactory, make_client: ClientFactory) -> None:
    smsc = await make_smsc()
    bad_pw = make_client(smsc, password="wrong")
    with pytest.raises(BindError) as err:
        await bad_pw.start(timeout=5)
    assert err.value.status == P.ESME_RINVPASWD
    assert bad_pw.state is BindState.BIND_FAILED
    unknown = make_client(smsc, system_id="nobody")
    with pytest.raises(BindError) as err2:
        await unknown.start(timeout=5)
    assert err2.value.status == P.ESME_RINVSYSID
    assert smsc.stats_.bind_failures == 2 and smsc.stats_.binds == 0
    ok = make_client(smsc, system_id="other", password="pw2")
    await ok.start(timeout=5)
    assert ok.state is BindState.BOUND
    assert smsc.bound_sessions()[0]["system_id"] == "other"


async def test_submit_and_receipt_matched_by_id(make_smsc: SmscFactory, make_client: ClientFactory) -> None:
    smsc = await make_smsc(receipt_delay=0.05)
    client = make_client(smsc)
    await client.start(timeout=5)
    result = await client.submit("TESSERA", "+8613800138000", "Your code is 1234 {ok}")
    assert result.ok and result.data_coding == 0 and result.status == 0
    assert result.message_id is not None
    receipt = await asyncio.wait_for(anext(client.receipts()), 5)
    assert receipt.message_id == result.message_id
    assert receipt.stat == "DELIVRD" and receipt.message_state == P.STATE_DELIVERED
    assert receipt.delivered and receipt.error == "000"
    assert receipt.text == "Your code is 1234 {o"  # first 20 characters
    assert receipt.source == "8613800138000" and receipt.destination == "TESSERA"
    stored = smsc.by_id[result.message_id]
    assert stored.short_message == encoding.encode_gsm7("Your code is 1234 {ok}")
    assert smsc.stats_.receipts_sent == 1


async def test_outcome_mix_is_seeded_and_parsed(make_smsc: SmscFactory, make_client: ClientFactory) -> None:
    weights = {"delivered": 2.0, "undeliverable": 1.0, "expired": 1.0, "none": 1.0}
    runs = []
    for _ in range(2):
        smsc = await make_smsc(outcomes=weights, seed=42)
        got: list[DeliveryReceipt] = []
        client = make_client(smsc, on_receipt=got.append, window=1)
        await client.start(timeout=5)
        results = [await client.submit("TESSERA", f"86139{i:08d}", f"m{i}") for i in range(40)]
        await asyncio.sleep(0.2)
        by_id = {r.message_id: r.stat for r in got}
        runs.append([by_id.get(r.message_id or "", "none") for r in results])
        await client.close()
    assert runs[0] == runs[1]
    assert {"DELIVRD", "UNDELIV", "EXPIRED", "none"} == set(runs[0])
    assert all(r.message_state == P.STATE_BY_STAT[r.stat] for r in got)


async def test_permanent_error_returns_status(make_smsc: SmscFactory, make_client: ClientFactory) -> None:
    smsc = await make_smsc(reject_destinations={"999": 0x0B})
    client = make_client(smsc)
    await client.start(timeout=5)
    result = await client.submit("TESSERA", "9990001", "hi")
    assert result.outcome is Outcome.REJECTED and result.status == 0x0B
    assert result.message_id is None
    assert client.stats.rejected == 1


async def test_long_chinese_message_in_parts(make_smsc: SmscFactory, make_client: ClientFactory) -> None:
    smsc = await make_smsc()
    client = make_client(smsc)
    await client.start(timeout=5)
    text = ("长短信测试，" * 40)[:200]
    result = await client.submit("95588", "8613800138000", text)
    assert result.ok and result.data_coding == 8 and len(result.message_ids) == 3
    assert len(set(result.message_ids)) == 3
    parts = [smsc.by_id[mid] for mid in result.message_ids if mid]
    headers = [encoding.parse_udh(m.short_message)[0] for m in parts]
    assert {h[0] for h in headers if h} == {headers[0][0] if headers[0] else -1}
    assert sorted(h[1:] for h in headers if h) == [(3, 1), (3, 2), (3, 3)]
    assert all(m.esm_class & 0x40 and m.data_coding == 8 for m in parts)
    ordered = sorted(parts, key=lambda m: encoding.parse_udh(m.short_message)[0] or (0, 0, 0))
    assert "".join(m.text() for m in ordered) == text
    receipts = [await asyncio.wait_for(anext(client.receipts()), 5) for _ in range(3)]
    assert {r.message_id for r in receipts} == set(result.message_ids)


async def test_throttling_handled_without_loss(make_smsc: SmscFactory, make_client: ClientFactory) -> None:
    from tessera.connect.smpp.server import SmscAccount

    smsc = await make_smsc(accounts=[SmscAccount("tessera", "secret", tps=50)])
    client = make_client(smsc, window=10)
    await client.start(timeout=5)
    results = await asyncio.gather(
        *(
            client.submit("TESSERA", f"8613{i:09d}", f"throttle {i}", registered_delivery=False)
            for i in range(300)
        )
    )
    assert all(r.ok for r in results)
    assert smsc.stats_.throttled > 0 and client.stats.throttled > 0
    assert smsc.stats_.submits == 300
    for i in range(300):
        key = (f"8613{i:09d}".encode(), f"throttle {i}")
        assert smsc.count("TESSERA", key[0].decode(), encoding.encode_gsm7(key[1])) == 1
    assert smsc.duplicates() == {}
    assert client.current_tps is not None and client.current_tps <= 100


async def test_disconnect_mid_window(make_smsc: SmscFactory, make_client: ClientFactory) -> None:
    smsc = await make_smsc(outcomes={"none": 1.0})
    client = make_client(smsc, window=10, reconnect_initial=0.05)
    await client.start(timeout=5)
    smsc.arm_disconnect(after_submits=5)
    results = await asyncio.wait_for(
        asyncio.gather(*(client.submit("TESSERA", f"86150{i:08d}", f"w{i}") for i in range(20))),
        10,
    )
    lost = [r for r in results if r.outcome is Outcome.UNKNOWN]
    accepted = [r for r in results if r.ok]
    assert lost, "in-flight submits must be reported"
    assert all(r.reason == "connection lost" for r in lost)
    assert len(lost) + len(accepted) == 20
    assert client.stats.binds == 2 and client.stats.disconnects == 1
    assert client.state is BindState.BOUND
    for r in accepted:
        msg = smsc.by_id[r.message_id or ""]
        assert smsc.count(msg.source, msg.destination, msg.short_message) == 1
    # after reconnecting the link works normally
    assert (await client.submit("TESSERA", "8615000000000", "after")).ok


async def test_not_sent_when_unbound(make_smsc: SmscFactory, make_client: ClientFactory) -> None:
    smsc = await make_smsc()
    client = make_client(smsc, reconnect_initial=5.0)
    await client.start(timeout=5)
    await smsc.stop()
    await asyncio.sleep(0.05)
    result = await client.submit("TESSERA", "8613800000000", "nobody home", timeout=0.2)
    assert result.outcome is Outcome.NOT_SENT


async def test_mo_delivery_method_and_http(make_smsc: SmscFactory, make_client: ClientFactory) -> None:
    import httpx

    smsc = await make_smsc(http_port=0)
    got: list[MoMessage] = []
    arrived = asyncio.Event()

    async def on_mo(mo: MoMessage) -> None:
        got.append(mo)
        arrived.set()

    client = make_client(smsc, on_mo=on_mo)
    await client.start(timeout=5)
    assert smsc.inject_mo("tessera", "8613900000001", "1069", "STOP") == 1
    await asyncio.wait_for(arrived.wait(), 5)
    assert got[0].text == "STOP" and got[0].source == "8613900000001" and got[0].parts == 1
    long_text = "退订" * 60 + "谢谢"
    arrived.clear()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{smsc.http_port}") as http:
        resp = await http.post("/mo", json={"source": "8613900000002", "dest": "1069", "text": long_text})
        assert resp.status_code == 200 and resp.json() == {"ok": True, "delivered": 2}
        await asyncio.wait_for(arrived.wait(), 5)
        assert got[1].text == long_text and got[1].parts == 2 and got[1].data_coding == 8
        stats = (await http.get("/stats")).json()
        assert stats["mo_sent"] == 3 and stats["binds"] == 1
        assert (await http.post("/mo", json={"source": "1"})).status_code == 400
    assert client.stats.mo_messages == 2 and client.stats.mo_parts == 3


async def test_failed_receipt_handler_is_nacked(make_smsc: SmscFactory, make_client: ClientFactory) -> None:
    smsc = await make_smsc()

    async def broken(_: DeliveryReceipt) -> None:
        raise RuntimeError("db down")

    client = make_client(smsc, on_receipt=broken)
    await client.start(timeout=5)
    assert (await client.submit("TESSERA", "8613800000000", "x")).ok
    await asyncio.sleep(0.1)
    assert "db down" in client.last_error
    assert smsc.stats_.receipts_acked == 1


async def test_enquire_link_keepalive(make_smsc: SmscFactory, make_client: ClientFactory) -> None:
    smsc = await make_smsc()
    client = make_client(smsc, enquire_link_interval=0.2)
    await client.start(timeout=5)
    await asyncio.sleep(0.8)
    assert client.stats.enquire_links_sent >= 1
    assert smsc.stats_.enquire_links == client.stats.enquire_links_sent
    assert client.stats.response_timeouts == 0 and client.state is BindState.BOUND
