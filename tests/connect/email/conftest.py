from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio

from tessera.connect.email.dkim import generate_key_pair
from tessera.connect.email.sink import SmtpSink


@pytest.fixture(scope="session")
def dkim_keys() -> tuple[bytes, bytes]:
    return generate_key_pair(2048)


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest_asyncio.fixture
async def gateway(app: Any) -> AsyncIterator[Any]:
    from tessera.connect.dispatcher import Dispatcher

    started: list[Dispatcher] = []

    async def factory(**kw: Any) -> Dispatcher:
        kw.setdefault("submit_timeout", 1.0)
        d = Dispatcher(**kw)
        await d.start()
        started.append(d)
        return d

    yield factory
    for d in started:
        await d.stop()
