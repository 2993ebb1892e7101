"""The verification lane's own claim: a code announced with its tenant is claimed in that
tenant's transaction (``Dispatcher.claim_codes`` on PostgreSQL) with what every claim does —
the queued event, a resubmission counted, an expired or finished message dropped."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from tests.conftest import TenantWorld, make_tenant
from tests.connect.messaging.conftest import send_code, setup_sms, wait_final

from tessera.connect.models import DispatchItem, Message, MessageEvent
from tessera.connect.smpp.server import SmscSimulator
from tessera.core import context
from tessera.core.db.base import utcnow
from tessera.core.db.session import get_database, unit_of_work

ON_PG = os.environ.get("TESSERA_TEST_DB", "sqlite") == "postgres"


def pg_only(reason: str) -> pytest.MarkDecorator:
    """Skip on SQLite: the claim under test is PostgreSQL's."""
    return pytest.mark.skipif(not ON_PG, reason=reason)


async def _make_ready_since(message_id: uuid.UUID, age: dt.timedelta) -> None:
    """Make a queued message look ready for ``age`` already (as if its announcement was missed)."""
    with context.tenant_scope(None):
        async with unit_of_work(platform=True) as s:
            await s.execute(
                update(DispatchItem)
                .where(DispatchItem.message_id == message_id)
                .values(available_at=utcnow() - age)
            )


async def _assert_as_accepted(tenant: TenantWorld, mid: uuid.UUID) -> None:
    """The message is as ``POST /verify`` left it: a claim that was put back left no trace."""
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            m = (await s.execute(select(Message).where(Message.id == mid))).scalar_one()
            assert (m.status, m.attempts, m.resubmissions, m.queued_at) == ("accepted", 0, 0, None)
    assert [e[:2] for e in await _events(tenant, mid)] == [("status", "accepted")]


async def _events(world: TenantWorld, mid: uuid.UUID) -> list[tuple[str, str, dict[str, Any]]]:
    with context.tenant_scope(world.tenant_id):
        async with unit_of_work() as s:
            rows = await s.execute(
                select(MessageEvent.kind, MessageEvent.status, MessageEvent.detail)
                .where(MessageEvent.message_id == mid)
                .order_by(MessageEvent.id)
            )
            return [(k, st, dict(d or {})) for k, st, d in rows.all()]


async def _dispatch_rows(mid: uuid.UUID) -> list[Any]:
    with context.tenant_scope(None):
        async with unit_of_work(platform=True) as s:
            return list(
                (await s.execute(select(DispatchItem).where(DispatchItem.message_id == mid))).scalars()
            )


async def test_code_is_claimed_by_the_urgent_claim_and_traced(
    client: httpx.AsyncClient, tenant: TenantWorld, smsc: SmscSimulator, gateway: Any, tmp_path: Path
) -> None:
    await setup_sms(client, tenant, smsc)
    trace = tmp_path / "trace.json"
    d = await gateway(trace_file=str(trace), poll_interval=5.0)  # no poll claims the code first
    mid = await send_code(client, tenant, "13700137001")
    await wait_final(tenant, 1, timeout=10)
    assert [e[:2] for e in await _events(tenant, mid)] == [
        ("status", "accepted"),
        ("status", "queued"),
        ("status", "submitted"),
        ("receipt", "delivered"),
    ]
    stages = d.trace["8613700137001"]
    assert stages["claim"] <= stages["claimed"] <= stages["worker"] <= stages["answered"]
    assert stages["urgent"] == 1.0
    if get_database().is_postgres:  # announced with its tenant: the tenant's own claim
        assert d.stats["claimed_codes"] == 1
    await d.stop()
    written = json.loads(trace.read_text())
    assert "8613700137001" in written["stages"] and "p99" in written["loop_lag_ms"]


@pg_only("claim_codes is the PostgreSQL claim (data-modifying CTE)")
@pytest.mark.parametrize("direct", [True, False], ids=["one-round-trip", "unit-of-work"])
async def test_claim_codes_counts_resubmissions_and_drops_expired_and_finished(
    client: httpx.AsyncClient, tenant: TenantWorld, smsc: SmscSimulator, gateway: Any, direct: bool
) -> None:
    from tessera.connect.dispatcher import Dispatcher

    await setup_sms(client, tenant, smsc)
    resub = await send_code(client, tenant, "13700137002")
    expired = await send_code(client, tenant, "13700137003")
    finished = await send_code(client, tenant, "13700137004")
    other = await send_code(client, tenant, "13700137005")
    now = utcnow()
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            await s.execute(
                update(Message)
                .where(Message.id == expired)
                .values(valid_until=now - dt.timedelta(seconds=1))
                .execution_options(synchronize_session=False)
            )
            await s.execute(
                update(Message)
                .where(Message.id == finished)
                .values(status="delivered")
                .execution_options(synchronize_session=False)
            )
    with context.tenant_scope(None):
        async with unit_of_work(platform=True) as s:
            await s.execute(update(DispatchItem).where(DispatchItem.message_id == resub).values(claims=1))
            # another lane of the same tenant is not the code claim's business
            await s.execute(update(DispatchItem).where(DispatchItem.message_id == other).values(lane=1))
    d = Dispatcher(submit_timeout=1.0, direct_code_claim=direct)
    claimed = await d.claim_codes(tenant.tenant_id, 100)
    assert claimed == 3
    assert d.stats["claimed_codes"] == 3 and d.stats["resubmitted"] == 1
    # PostgreSQL: the tenant's keys were loaded by the API's transactions in this process
    on_pg = get_database().is_postgres
    assert d.stats["claimed_codes_direct"] == (3 if direct and on_pg else 0)
    # the live one is queued on its link (not bound here: nothing started)
    [runner] = [r for r in d.runners.values()]
    assert [it.message_id for q in runner.lanes for it in q] == [resub]
    assert [it.resubmission for q in runner.lanes for it in q] == [True]
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            got = {
                m.id: (m.status, m.attempts, m.resubmissions)
                for m in (
                    await s.execute(select(Message).where(Message.id.in_([resub, expired, finished])))
                ).scalars()
            }
    assert got[resub] == ("queued", 1, 1)
    assert got[expired][0] == "expired" and got[finished][0] == "delivered"
    assert [e[0] for e in await _events(tenant, resub)] == ["status", "resubmitted"]
    assert (await _events(tenant, expired))[-1][:2] == ("status", "expired")
    assert await _dispatch_rows(expired) == [] and await _dispatch_rows(finished) == []
    [row] = await _dispatch_rows(resub)
    assert row.state == 1 and row.claimed_by == d.id and row.claims == 2
    [row] = await _dispatch_rows(other)
    assert row.state == 0
    # another tenant's codes are not claimed in this tenant's transaction
    assert await d.claim_codes(uuid.uuid4(), 100) == 0
    await d.stop()


@pg_only("NOTIFY is PostgreSQL's")
async def test_a_code_is_announced_with_its_tenant_and_a_batch_with_its_lane(
    client: httpx.AsyncClient, tenant: TenantWorld, smsc: SmscSimulator
) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    from tessera.connect.repository import DISPATCH_CHANNEL

    await setup_sms(client, tenant, smsc)
    url = make_url(get_database().url).set(drivername="postgresql")
    conn = await psycopg.AsyncConnection.connect(url.render_as_string(hide_password=False), autocommit=True)
    try:
        await conn.execute(f"LISTEN {DISPATCH_CHANNEL}")
        await send_code(client, tenant, "13700137009")
        r = await client.post(
            "/v1/messages/batch",
            json={"class": "marketing", "body": "sale", "recipients": [{"to": "13700137010"}]},
            headers=tenant.headers("admin"),
        )
        assert r.status_code == 202, r.text
        got = [n.payload async for n in conn.notifies(timeout=2.0, stop_after=2)]
    finally:
        await conn.close()
    assert got == [f"0:{tenant.tenant_id}", "2"]


@pg_only("the grace needs the announcement every gateway gets (NOTIFY)")
async def test_a_bulk_claim_leaves_a_fresh_code_to_the_urgent_claim(
    client: httpx.AsyncClient, tenant: TenantWorld, smsc: SmscSimulator
) -> None:
    from tessera.connect.dispatcher import URGENT_GRACE, Dispatcher

    await setup_sms(client, tenant, smsc)
    code = await send_code(client, tenant, "13700137011")
    d = Dispatcher(submit_timeout=1.0)
    try:
        assert await d.claim(500) == 0  # fresh: the urgent claim's
        await _make_ready_since(code, URGENT_GRACE + dt.timedelta(seconds=0.1))
        assert await d.claim(500) == 1  # its announcement was missed: any claim takes it
    finally:
        await d.stop()


@pg_only("the announcements every gateway hears are PostgreSQL's NOTIFY")
async def test_while_announcements_are_heard_codes_are_the_urgent_claimers_who_sweep_missed_ones(
    client: httpx.AsyncClient,
    tenant: TenantWorld,
    smsc: SmscSimulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A code committed long after it was stamped (a slow transaction) looks as old as one
    whose announcement was missed: with the announcements heard and bulk work flowing, no bulk
    claim takes it (it would hold it for its whole length); the urgent claimers sweep every
    URGENT_GRACE the tenants with codes older than that, claiming each tenant's ready codes as
    an announcement does (claim_codes, one round trip: its fresh code goes with it), and leave
    a tenant with fresh codes only to its announcements."""
    import asyncio

    from tessera.connect import dispatcher as dispatcher_module
    from tessera.connect.dispatcher import Dispatcher

    URGENT_GRACE = dt.timedelta(seconds=3)  # "fresh" whatever the machine's load
    monkeypatch.setattr(dispatcher_module, "URGENT_GRACE", URGENT_GRACE)
    await setup_sms(client, tenant, smsc)
    other = await make_tenant(roles=("admin",))
    await setup_sms(client, other, smsc)
    fresh = await send_code(client, tenant, "13700137042")  # goes with its tenant's missed one
    alone = await send_code(client, other, "13700137043")  # fresh, its tenant's only: left alone
    code = await send_code(client, tenant, "13700137041")
    await _make_ready_since(code, URGENT_GRACE + dt.timedelta(seconds=1))
    d = Dispatcher(submit_timeout=1.0, trace_file=str(tmp_path / "trace.json"))
    d._listening = True  # as with the NOTIFY listener up
    assert await d.claim(500) == 0  # not a bulk claim's
    sweeper = asyncio.create_task(d._urgent_loop())
    try:
        for _ in range(100):
            if d.stats["code_sweeps"] and d.stats["claimed_codes"]:
                break
            await asyncio.sleep(0.05)
        assert d.stats["code_sweeps"] >= 1 and d.stats["claimed_codes"] == 2  # by claim_codes
        assert d.trace is not None and d.trace["8613700137041"]["urgent"] == 1.0
        assert d.trace["8613700137042"]["urgent"] == 1.0
        [row] = await _dispatch_rows(fresh)
        assert row.state == 1
        [row] = await _dispatch_rows(alone)
        assert row.state == 0
    finally:
        sweeper.cancel()
        with __import__("contextlib").suppress(asyncio.CancelledError):
            await sweeper
        await d.stop()


async def test_codes_reuse_the_gateways_statements_and_share_receipt_transactions(
    client: httpx.AsyncClient, tenant: TenantWorld, smsc: SmscSimulator, gateway: Any
) -> None:
    """The claim, the queued update, the submit results and the receipts' final update are
    statements built once (PostgreSQL: the same objects serve every code), and receipts
    arriving together share a transaction (gathered for ``RECEIPT_LINGER``)."""
    from tessera.connect import dispatcher

    await setup_sms(client, tenant, smsc)
    d = await gateway()
    mids = [await send_code(client, tenant, f"1370013710{i}") for i in range(3)]
    await wait_final(tenant, 3, timeout=10)
    built = dict(dispatcher._BUILT)
    more = [await send_code(client, tenant, f"1370013711{i}") for i in range(5)]
    await wait_final(tenant, 8, timeout=10)
    for key, stmt in built.items():
        assert dispatcher._BUILT[key] is stmt, key  # not rebuilt
    if get_database().is_postgres:
        assert {"claim_codes", "queued", ("record_submits", True), "final"} <= set(dispatcher._BUILT)
    for mid in mids + more:
        assert [e[:2] for e in await _events(tenant, mid)][-1] == ("receipt", "delivered")
    # items: the receipts, and a wake-up when one waited for its submit result to commit
    assert d.stats["connect-receipts_items"] >= 8
    assert d.stats["connect-receipts_batches"] < 8


@pg_only("the NOTIFY listener is PostgreSQL's")
async def test_an_idle_gateway_polls_slowly_and_a_notify_wakes_it(
    client: httpx.AsyncClient, tenant: TenantWorld, smsc: SmscSimulator, gateway: Any
) -> None:
    """With the listener up, an empty queue is polled every ``idle_poll`` s, not every
    ``poll_interval`` (a claim transaction 20 times a second for nothing); a committed message
    still wakes the claim at once through its NOTIFY."""
    import asyncio
    import time

    await setup_sms(client, tenant, smsc)
    d = await gateway()
    for _ in range(100):
        if d._listening:
            break
        await asyncio.sleep(0.05)
    assert d._listening
    await asyncio.sleep(0.3)
    calls: list[float] = []
    claim = d.claim

    async def counted(*args: Any, **kw: Any) -> int:
        calls.append(time.monotonic())
        return await claim(*args, **kw)

    d.claim = counted
    await asyncio.sleep(1.2)
    assert len(calls) <= 4, len(calls)  # ~2 (idle_poll 0.5 s); 24 at poll_interval 0.05 s
    r = await client.post(
        "/v1/messages",
        json={"to": "13700137200", "body": "Your parcel is on its way", "class": "notification"},
        headers=tenant.headers("admin"),
    )
    assert r.status_code == 202, r.text
    t0 = time.monotonic()
    await wait_final(tenant, 1, timeout=10)
    assert time.monotonic() - t0 < 0.45  # woken by the NOTIFY, not found by the next poll


@pg_only("claim_codes is the PostgreSQL claim (data-modifying CTE)")
@pytest.mark.parametrize("direct", [True, False], ids=["one-round-trip", "unit-of-work"])
async def test_claim_codes_puts_back_a_code_whose_route_is_not_known_yet(
    client: httpx.AsyncClient, tenant: TenantWorld, smsc: SmscSimulator, direct: bool
) -> None:
    """The claim statement makes a code 'queued' with its event; when its route is not in the
    gateway's table yet (and the table may not be reloaded yet) the code goes back to the
    queue exactly as it was: status, counters and events untouched (after the one-round-trip
    claim committed, in a transaction of its own)."""
    from tessera.connect.dispatcher import Dispatcher

    await setup_sms(client, tenant, smsc)
    d = Dispatcher(submit_timeout=1.0, route_reload_min=60.0, direct_code_claim=direct)
    try:
        with context.tenant_scope(tenant.tenant_id):
            async with unit_of_work() as s:
                await d._routes(s, tenant.tenant_id, force=True)
        d.routes[tenant.tenant_id].routes.clear()  # as if the route came after the table's load
        mid = await send_code(client, tenant, "13700137012")
        before = utcnow()
        assert await d.claim_codes(tenant.tenant_id, 100) == 1
        assert d.runners == {} and d.stats["resubmitted"] == 0
        assert d.stats["claimed_codes_direct"] == (1 if direct else 0)
        await _assert_as_accepted(tenant, mid)
        [row] = await _dispatch_rows(mid)
        assert row.state == 0 and row.claims == 0 and row.available_at > before
    finally:
        await d.stop()


async def test_full_lanes_are_refilled_every_poll_interval_even_with_the_listener_up() -> None:
    """The idle poll is for an empty queue only: lanes too full to claim into are looked at
    again every ``poll_interval`` (refilled as their workers free up), not every ``idle_poll``."""
    import asyncio

    from tessera.connect.dispatcher import Dispatcher

    d = Dispatcher(poll_interval=0.05, idle_poll=30.0)
    d._listening = True
    full = [True]
    calls: list[int] = []

    async def claim(limit: int, **kw: Any) -> int:
        calls.append(limit)
        return 0

    d.pending = lambda: 10**6 if full[0] else 0  # type: ignore[method-assign]
    d.claim = claim  # type: ignore[method-assign]
    task = asyncio.create_task(d._claim_loop())
    try:
        await asyncio.sleep(0.2)
        assert calls == []  # no room: nothing claimed
        full[0] = False
        await asyncio.sleep(0.3)
        assert len(calls) == 1  # claimed within a poll_interval; then the empty queue's idle poll
    finally:
        task.cancel()
        with __import__("contextlib").suppress(asyncio.CancelledError):
            await task


def test_receipts_of_one_tenant_known_in_memory_get_its_transaction() -> None:
    """A receipts batch whose carrier ids are all among this gateway's committed submits, of one
    tenant, is written in that tenant's transaction (no tenant switch); anything else in a
    platform one, as before."""
    from tessera.connect.dispatcher import Dispatcher
    from tessera.connect.smpp.common import DeliveryReceipt

    d = Dispatcher()
    link, t1, t2 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()

    def receipt(cid: str) -> tuple[uuid.UUID, DeliveryReceipt]:
        return link, DeliveryReceipt(
            message_id=cid,
            stat="DELIVRD",
            message_state=None,
            error="",
            delivered=True,
            source="",
            destination="",
        )

    d.recent[(link, "a")] = (t1, uuid.uuid4(), 1)
    d.recent[(link, "b")] = (t1, uuid.uuid4(), 1)
    d.recent[(link, "c")] = (t2, uuid.uuid4(), 1)
    assert d.receipts_tenant([receipt("a"), receipt("b")]) == t1
    assert d.receipts_tenant([receipt("a"), receipt("c")]) is None  # two tenants
    assert d.receipts_tenant([receipt("a"), receipt("zz")]) is None  # one not known here
    assert len(d.recent) == 3  # looked at, not taken


@pg_only("the one-round-trip claim is PostgreSQL's")
async def test_a_direct_claim_that_cannot_be_decoded_is_put_back_and_stale_keys_use_a_unit_of_work(
    client: httpx.AsyncClient, tenant: TenantWorld, smsc: SmscSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-round-trip claim commits before its rows are decoded: a row that cannot be
    (the number's data key not available) puts the claim back as it was, as a failed claim
    through a unit of work leaves it; the next claim succeeds. Without the tenant's keys
    loaded and fresh the claim goes through a unit of work (whose BEGIN loads them)."""
    from tessera.connect import code_claim
    from tessera.connect.dispatcher import Dispatcher
    from tessera.core.crypto.keyring import get_keyring

    await setup_sms(client, tenant, smsc)
    d = Dispatcher(submit_timeout=1.0)
    try:
        mid = await send_code(client, tenant, "13700137021")
        real = code_claim._Plan.decode

        def broken(self: Any, raw: list[tuple[Any, ...]]) -> list[Any]:
            with context.tenant_scope(uuid.uuid4()):  # no keys for this one
                return real(self, raw)

        monkeypatch.setattr(code_claim._Plan, "decode", broken)
        with pytest.raises(code_claim.DecodeError):
            await d.claim_codes(tenant.tenant_id, 100)
        await _assert_as_accepted(tenant, mid)
        [row] = await _dispatch_rows(mid)
        assert row.state == 0 and row.claims == 0 and row.claimed_by is None
        monkeypatch.setattr(code_claim._Plan, "decode", real)
        get_keyring().forget(tenant.tenant_id)
        assert await d.claim_codes(tenant.tenant_id, 100) == 1
        assert d.stats["claimed_codes_direct"] == 0  # keys not loaded: a unit of work
        mid2 = await send_code(client, tenant, "13700137022")
        assert await d.claim_codes(tenant.tenant_id, 100) == 1
        assert d.stats["claimed_codes_direct"] == 1  # loaded by that transaction: one round trip
        # the number decoded with the keys: in a lane, or already written to the SMSC when its
        # link had a worker idle (LinkRunner._send_now)
        for _ in range(300):
            waiting = [
                it.to for r in d.runners.values() for q in r.lanes for it in q if it.message_id == mid2
            ]
            if waiting or any(m.destination == "8613700137022" for m in smsc.messages):
                break
            await asyncio.sleep(0.01)
        assert waiting == ["+8613700137022"] or any(m.destination == "8613700137022" for m in smsc.messages)
        assert [e[:2] for e in await _events(tenant, mid2)] == [("status", "accepted"), ("status", "queued")]
    finally:
        await d.stop()


@pg_only("the one-round-trip claim is PostgreSQL's")
async def test_a_tenants_keys_are_reloaded_when_they_expire_not_by_a_codes_claim(
    client: httpx.AsyncClient, tenant: TenantWorld, smsc: SmscSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once a tenant's codes are claimed in one round trip, its keys are reloaded as their
    time to live ends, by a transaction of the gateway's own: the next code does not find them
    stale and take the unit of work."""
    import asyncio

    from tessera.connect import code_claim
    from tessera.connect.dispatcher import Dispatcher
    from tessera.core.crypto import keyring

    monkeypatch.setattr(keyring, "KEY_TTL_SECONDS", 3.0)
    await setup_sms(client, tenant, smsc)
    d = Dispatcher(submit_timeout=1.0)
    try:
        await send_code(client, tenant, "13700137031")  # its transaction loaded the keys
        assert await d.claim_codes(tenant.tenant_id, 100) == 1
        assert d.stats["claimed_codes_direct"] == 1
        for n in (1, 2):  # two lifetimes: each reload schedules the next one
            for _ in range(200):
                if d.stats["key_reloads"] >= n:
                    break
                await asyncio.sleep(0.05)
            assert code_claim.keys_fresh(tenant.tenant_id)
            await send_code(client, tenant, "13700137032")
            assert await d.claim_codes(tenant.tenant_id, 100) == 1
        assert d.stats["claimed_codes_direct"] == 3
        assert d.stats["key_reloads"] == 2
    finally:
        await d.stop()
    assert not d._key_reloads  # stopped with the dispatcher


@pg_only("the one-round-trip claim is PostgreSQL's")
async def test_the_code_claimer_keeps_at_most_its_size_of_connections(
    tenant: TenantWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    import psycopg

    from tessera.connect.code_claim import CodeClaimer
    from tessera.connect.dispatcher import _built, _claim_codes_stmt

    db = get_database()
    claimer = CodeClaimer(db.url, db.engine.dialect, _built("claim_codes", _claim_codes_stmt), size=2)
    opened: list[Any] = []
    real = psycopg.AsyncConnection.connect

    async def counting(*args: Any, **kwargs: Any) -> Any:
        conn = await real(*args, **kwargs)
        opened.append(conn)
        return conn

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", counting)
    try:
        claims = [claimer.claim(tenant.tenant_id, utcnow(), 10, "gw") for _ in range(6)]
        assert await asyncio.gather(*claims) == [[]] * 6  # nothing to claim
        assert len(opened) == 2  # six at once: two connections, the others waited for them
        assert await claimer.claim(tenant.tenant_id, utcnow(), 10, "gw") == []
        assert len(opened) == 2  # kept and reused
    finally:
        await claimer.close()
    assert all(c.closed for c in opened)


@pg_only("the one-round-trip claim is PostgreSQL's")
async def test_the_code_claimer_prepares_its_statements_once_per_connection(tenant: TenantWorld) -> None:
    """The tenant setting and the claim are prepared on a connection's first claim and only
    executed afterwards; a claim that fails closes its connection, whose statements are then
    forgotten (the next claim opens and prepares again)."""
    import psycopg

    from tessera.connect.code_claim import CodeClaimer
    from tessera.connect.dispatcher import _built, _claim_codes_stmt

    db = get_database()
    claimer = CodeClaimer(db.url, db.engine.dialect, _built("claim_codes", _claim_codes_stmt), size=1)
    try:
        for _ in range(3):
            assert await claimer.claim(tenant.tenant_id, utcnow(), 10, "gw") == []
        (conn,) = claimer._idle
        assert claimer._prepared[conn] == {b"tessera_set_tenant", b"tessera_claim_codes"}
        names = await (await conn.execute("SELECT name FROM pg_prepared_statements ORDER BY name")).fetchall()
        assert [n for (n,) in names] == ["tessera_claim_codes", "tessera_set_tenant"]  # once each
        with pytest.raises(psycopg.errors.InvalidRowCountInLimitClause):
            await claimer.claim(tenant.tenant_id, utcnow(), -1, "gw")  # LIMIT -1: refused
        assert conn.closed and not claimer._idle and not claimer._prepared
        assert await claimer.claim(tenant.tenant_id, utcnow(), 10, "gw") == []  # a new connection
        assert len(claimer._prepared) == 1
    finally:
        await claimer.close()


@pg_only("the urgent claimers' sweep timer is PostgreSQL's")
async def test_urgent_claimers_with_nothing_to_sweep_wait_instead_of_spinning(tenant: TenantWorld) -> None:
    import asyncio
    import contextlib
    import time

    from tessera.connect.dispatcher import Dispatcher

    for listening, idle in ((False, False), (True, True)):  # listener down; an idle gateway
        d = Dispatcher()
        d._listening, d._bulk_idle = listening, idle
        loops = [asyncio.create_task(d._urgent_loop()) for _ in range(2)]
        cpu = time.process_time()
        await asyncio.sleep(1.0)
        used = time.process_time() - cpu
        for t in loops:
            t.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await t
        assert used < 0.1, used  # a spinning loop takes a CPU (or its share of a busy machine)
        assert not d.stats["code_sweeps"]
