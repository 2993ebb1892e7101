from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
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


async def email_channel(
    client: httpx.AsyncClient, world: Any, sink: SmtpSink, private_pem: bytes | None = None, **settings: Any
) -> str:
    """An email channel of ``world`` sending to ``sink``; ``settings`` override the defaults,
    ``private_pem`` adds a DKIM key (selector ``s1``). The secret is never answered back."""
    body: dict[str, Any] = {
        "kind": "email",
        "name": "News",
        "settings": {
            "host": "127.0.0.1",
            "port": sink.port,
            "from": "Shop <news@shop.example.com>",
            "bounce_address": "bounces@shop.example.com",
            "pool_size": 1,
            "retry_base_seconds": 0.2,
            **settings,
        },
    }
    if private_pem is not None:
        body["settings"]["dkim_selector"] = "s1"
        body["secret"] = json.dumps({"dkim_private_key": private_pem.decode()})
    r = await client.post("/v1/channels", json=body, headers=world.headers("admin"))
    assert r.status_code == 201, r.text
    assert "secret" not in r.json()
    return str(r.json()["id"])
