"""A verification code handed to a link with an idle worker has its submit_sm written in the
claim's own turn of the event loop (``LinkRunner._send_now``); the worker then awaits the
answer and records it as usual. Other lanes, and a code no worker is free for, wait for a
worker as before."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tessera.connect.dispatcher import Item, LinkInfo, LinkRunner
from tessera.connect.smpp.common import Outcome, SubmitResult
from tessera.connect.smpp.server import SmscAccount, SmscConfig, SmscSimulator

pytestmark = pytest.mark.asyncio


class _Dispatcher:
    """What a LinkRunner's workers use of their dispatcher."""

    def __init__(self) -> None:
        self.client_options: dict[str, Any] = {}
        self.trace: dict[str, dict[str, float]] | None = {}
        self.in_flight: set[uuid.UUID] = set()
        self.stats: dict[str, int] = defaultdict(int)
        self.submit_timeout = 5.0
        self.results: list[tuple[Item, SubmitResult]] = []
        self.recorded = asyncio.Event()
        self.hold = asyncio.Event()  # results are "committed" when set
        self.hold.set()

    async def on_result(self, runner: LinkRunner, item: Item, result: SubmitResult) -> None:
        await self.hold.wait()
        self.results.append((item, result))
        self.recorded.set()


@pytest_asyncio.fixture
async def smsc() -> AsyncIterator[SmscSimulator]:
    sim = SmscSimulator(SmscConfig(accounts=[SmscAccount("acct", "pw")]))
    await sim.start()
    yield sim
    await sim.stop()


async def _runner(sim: SmscSimulator, d: _Dispatcher, window: int) -> LinkRunner:
    info = LinkInfo(
        uuid.uuid4(), uuid.uuid4(), "127.0.0.1", sim.port, "acct", "pw", "", window, None, "active"
    )
    runner = LinkRunner(d, info)  # type: ignore[arg-type]
    await runner.client.start(timeout=5)
    runner.available = True
    runner.workers = [asyncio.create_task(runner._work(i)) for i in range(window)]
    await asyncio.sleep(0)  # the workers are idle
    return runner


def _item(lane: int, to: str) -> Item:
    return Item(uuid.uuid4(), uuid.uuid4(), lane, to, "10690000", f"body {to}", "", [])


async def _stop(runner: LinkRunner) -> None:
    for w in runner.workers:
        w.cancel()
    await asyncio.gather(*runner.workers, return_exceptions=True)
    await runner.client.close()


async def test_code_written_in_the_claims_turn(smsc: SmscSimulator) -> None:
    d = _Dispatcher()
    runner = await _runner(smsc, d, window=3)
    try:
        await runner.put(_item(1, "+8613800000001"))  # a notification: its worker's next turn
        assert runner.client.stats.submit_sm_sent == 0
        code = _item(0, "+8613700000001")
        await runner.put(code)  # no turn of the loop in between: written by put itself
        assert runner.client.stats.submit_sm_sent == 1
        assert "worker" in d.trace["8613700000001"]  # type: ignore[index]
        for _ in range(200):
            if len(d.results) == 2:
                break
            await asyncio.sleep(0.01)
        assert {r.outcome for _, r in d.results} == {Outcome.ACCEPTED}
        assert {i.to for i, _ in d.results} == {"+8613800000001", "+8613700000001"}
        assert smsc.stats_.submits == 2 and not d.in_flight and runner.busy == 0
        assert runner.client._window._value == 3  # every slot given back
    finally:
        await _stop(runner)


async def test_code_waits_for_a_worker_when_none_is_idle(smsc: SmscSimulator) -> None:
    d = _Dispatcher()
    d.hold.clear()  # results not committed: the one worker stays busy with its message
    runner = await _runner(smsc, d, window=1)
    try:
        await runner.put(_item(1, "+8613800000001"))
        for _ in range(200):
            if runner.busy == 1 and runner.client.stats.accepted == 1:
                break
            await asyncio.sleep(0.01)
        await runner.put(_item(0, "+8613700000001"))
        assert runner.client.stats.submit_sm_sent == 1  # not written: no worker to finish it
        assert len(runner.lanes[0]) == 1
        d.hold.set()  # the first result committed: the worker takes the code
        for _ in range(200):
            if len(d.results) == 2:
                break
            await asyncio.sleep(0.01)
        assert [i.to for i, _ in d.results] == ["+8613800000001", "+8613700000001"]
        assert smsc.stats_.submits == 2
    finally:
        await _stop(runner)
