"""A stopping gateway lets its loops and writers finish the database call they are in rather
than cancelling them inside it: a task cancelled inside a call could lose its connection with
its transaction still open, and on SQLite that connection's write lock then made every later
writer wait its busy timeout (a CI run's ``Dispatcher.stop`` took 30 s, then the next tests
found the database locked)."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from tests.conftest import TenantWorld
from tests.connect.messaging.conftest import setup_sms

from tessera.connect.dispatcher import Writer
from tessera.connect.models import GatewayHeartbeat
from tessera.connect.smpp.server import SmscSimulator
from tessera.core import context
from tessera.core.db.session import unit_of_work

pytestmark = pytest.mark.asyncio


class _Stats:
    def __init__(self) -> None:
        self.stats: dict[str, int] = defaultdict(int)


async def test_a_stopping_writer_lets_its_batch_commit_and_writes_what_is_queued() -> None:
    w = Writer(_Stats(), "w", linger=0)  # type: ignore[arg-type]
    batches: list[list[Any]] = []
    cancelled: list[bool] = []
    gate = asyncio.Event()

    async def flush(batch: list[tuple[str, Any, asyncio.Future[None]]]) -> None:
        batches.append([p for _, p, _ in batch])
        try:
            await gate.wait()  # the batch's transaction, in flight
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        for _, _, f in batch:
            f.set_result(None)

    w._flush = flush  # type: ignore[method-assign]
    w.start()
    first = w.enqueue("result", 1)
    await asyncio.sleep(0.01)
    queued = [w.enqueue("result", 2), w.enqueue("result", 3)]
    stopping = asyncio.create_task(w.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done() and not cancelled  # waits for the batch in flight
    gate.set()
    await asyncio.wait_for(stopping, 5)
    assert batches == [[1], [2, 3]] and not cancelled
    assert first.done() and all(f.done() for f in queued)
    assert w.task is not None and w.task.done() and not w.task.cancelled()


async def test_a_stopping_gateway_lets_a_claim_in_its_transaction_finish(
    client: httpx.AsyncClient, tenant: TenantWorld, smsc: SmscSimulator, gateway: Any
) -> None:
    await setup_sms(client, tenant, smsc)
    d = await gateway(poll_interval=0.05)
    inside = asyncio.Event()
    outcome: list[str] = []

    async def slow_claim(limit: int, *, lanes: int = 3, asked: float = 0.0) -> int:
        try:
            with context.tenant_scope(None):
                async with unit_of_work(platform=True) as s:  # holds the write lock on SQLite
                    await s.execute(
                        update(GatewayHeartbeat).where(GatewayHeartbeat.id == d.id).values(code_push=False)
                    )
                    inside.set()
                    await asyncio.sleep(0.5)
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        outcome.append("committed")
        return 0

    d.claim = slow_claim
    d._wake.set()
    await asyncio.wait_for(inside.wait(), 5)
    t0 = time.monotonic()
    await d.stop()
    assert outcome == ["committed"]
    assert time.monotonic() - t0 < 5
    # nothing holds the database: a write goes through at once
    t1 = time.monotonic()
    with context.tenant_scope(None):
        async with unit_of_work(platform=True) as s:
            await s.execute(update(GatewayHeartbeat).values(code_push=False))
    assert time.monotonic() - t1 < 1
