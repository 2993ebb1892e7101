"""Console test helpers: sign in through the console's own form and keep the cookie."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.conftest import TenantWorld


class Browser:
    """An httpx client with a console session: ``get``/``post`` send the CSRF token for you."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.csrf = ""

    async def login(self, world: TenantWorld, role: str = "admin") -> httpx.Response:
        r = await self.client.post(
            "/console/login",
            data={"workspace": world.slug, "email": world.emails[role], "password": world.password},
        )
        assert r.status_code == 303, r.text
        await self.refresh_csrf()
        return r

    async def refresh_csrf(self) -> None:
        r = await self.client.get("/console/profile")
        m = re.search(r'name="csrf-token" content="([^"]+)"', r.text)
        self.csrf = m.group(1) if m else ""

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        return await self.client.get(url, **kw)

    async def post(
        self, url: str, data: dict[str, Any] | None = None, *, csrf: bool = True, **kw: Any
    ) -> httpx.Response:
        body = dict(data or {})
        if csrf:
            body["csrf_token"] = self.csrf
        return await self.client.post(url, data=body, **kw)


@pytest.fixture
async def browser(app: Any) -> Any:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield Browser(c)


@pytest.fixture
async def browser2(app: Any) -> Any:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield Browser(c)


@pytest.fixture(autouse=True)
async def clean_db(request: pytest.FixtureRequest) -> Any:
    """The root clean-up, tolerant of models whose migration is not written yet (the checkout is
    shared with engineers adding contexts): only tables that exist are emptied."""
    if "app" not in request.fixturenames and "db" not in request.fixturenames:
        yield
        return
    yield
    from sqlalchemy import inspect, text
    from sqlalchemy.ext.asyncio import create_async_engine

    from tessera.core import context
    from tests.conftest import _truncate_sql

    urls = request.getfixturevalue("database_urls")
    eng = create_async_engine(urls["owner"])
    async with eng.begin() as conn:
        existing = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        for stmt in _truncate_sql(urls["backend"]):
            if stmt.startswith("TRUNCATE"):
                names = [
                    t.strip().strip('"') for t in stmt[len("TRUNCATE ") :].split(" RESTART")[0].split(",")
                ]
                keep = ", ".join(f'"{t}"' for t in names if t in existing)
                await conn.execute(text(f"TRUNCATE {keep} RESTART IDENTITY CASCADE"))
            elif stmt.split('"')[1] in existing:
                await conn.execute(text(stmt))
    await eng.dispose()
    from tessera.core.crypto.keyring import get_keyring
    from tessera.core.http.deps import forget_tenant_status
    from tessera.core.identity.auth import clear_principal_cache

    get_keyring().forget()
    forget_tenant_status()
    clear_principal_cache()
    context.bind(None, context.SYSTEM)
