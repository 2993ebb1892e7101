from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest_asyncio

from tessera.connect.smpp.client import ClientConfig, SmppClient
from tessera.connect.smpp.server import SmscAccount, SmscConfig, SmscSimulator

SmscFactory = Callable[..., Awaitable[SmscSimulator]]
ClientFactory = Callable[..., SmppClient]


@pytest_asyncio.fixture
async def make_smsc() -> AsyncIterator[SmscFactory]:
    started: list[SmscSimulator] = []

    async def factory(**kwargs: object) -> SmscSimulator:
        kwargs.setdefault("accounts", [SmscAccount("tessera", "secret"), SmscAccount("other", "pw2")])
        smsc = SmscSimulator(SmscConfig(**kwargs))  # type: ignore[arg-type]
        await smsc.start()
        started.append(smsc)
        return smsc

    yield factory
    for smsc in started:
        await smsc.stop()


@pytest_asyncio.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    clients: list[SmppClient] = []

    def factory(smsc: SmscSimulator, **kwargs: object) -> SmppClient:
        on_receipt = kwargs.pop("on_receipt", None)
        on_mo = kwargs.pop("on_mo", None)
        cfg = ClientConfig(
            host="127.0.0.1",
            port=smsc.port,
            system_id=str(kwargs.pop("system_id", "tessera")),
            password=str(kwargs.pop("password", "secret")),
            **kwargs,  # type: ignore[arg-type]
        )
        client = SmppClient(cfg, on_receipt=on_receipt, on_mo=on_mo)  # type: ignore[arg-type]
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.close()
