"""Stopping a link ends its workers even when one of them loses a cancel.

On Python 3.11 ``asyncio.wait_for`` can drop a cancel that arrives as the awaited thing
completes; a worker that lost one went on to record its result through a writer that was being
stopped and waited for ever, and so did ``LinkRunner.stop`` (a CI run hung there under load)."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from typing import Any

import pytest

from tessera.connect.dispatcher import LinkInfo, LinkRunner

pytestmark = pytest.mark.asyncio


class _Dispatcher:
    def __init__(self) -> None:
        self.client_options: dict[str, Any] = {}
        self.trace = None
        self.in_flight: set[uuid.UUID] = set()
        self.stats: dict[str, int] = defaultdict(int)
        self.submit_timeout = 5.0


async def _loses_its_first_cancel(started: asyncio.Event) -> None:
    started.set()
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        pass  # the cancel lost, as wait_for can lose one
    await asyncio.get_running_loop().create_future()  # then waits for what never comes


async def test_stop_ends_a_worker_that_lost_its_cancel() -> None:
    info = LinkInfo(uuid.uuid4(), uuid.uuid4(), "127.0.0.1", 9, "acct", "pw", "", 2, None, "active")
    runner = LinkRunner(_Dispatcher(), info)  # type: ignore[arg-type]
    started = asyncio.Event()
    stubborn = asyncio.create_task(_loses_its_first_cancel(started))
    plain = asyncio.create_task(asyncio.sleep(3600))
    runner.workers = [stubborn, plain]
    await started.wait()
    # Waited for without cancelling it on time out (wait_for's cancel would reach the worker
    # stop() awaits, and end it as stop() itself should).
    stopping = asyncio.create_task(runner.stop())
    done, _ = await asyncio.wait({stopping}, timeout=10)
    try:
        assert stopping in done, "stop() still waiting for a worker"
        assert stopping.result() == []
        assert stubborn.cancelled() and plain.cancelled()
    finally:
        stubborn.cancel()
        stopping.cancel()


async def test_stop_still_raises_what_a_worker_died_of() -> None:
    info = LinkInfo(uuid.uuid4(), uuid.uuid4(), "127.0.0.1", 9, "acct", "pw", "", 1, None, "active")
    runner = LinkRunner(_Dispatcher(), info)  # type: ignore[arg-type]

    async def dies() -> None:
        raise RuntimeError("worker died")

    runner.workers = [asyncio.create_task(dies())]
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="worker died"):
        await asyncio.wait_for(runner.stop(), 10)
