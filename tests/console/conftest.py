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
