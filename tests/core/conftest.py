"""Fixtures shared by the kernel tests: operators, console sign-in, raw database access."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import TenantWorld

BACKEND_IS_PG = __import__("os").environ.get("TESSERA_TEST_DB", "sqlite") == "postgres"
pg_only = pytest.mark.skipif(not BACKEND_IS_PG, reason="PostgreSQL row-level security")


async def make_operator_key() -> str:
    """An Operator with one OperatorKey; returns the raw ``top_<id>_<secret>`` key."""
    from tessera.core.db.session import unit_of_work
    from tessera.core.identity.passwords import sha256_hex
    from tessera.core.tenancy.models import Operator, OperatorKey

    key_id = secrets.token_hex(6)
    secret = secrets.token_hex(16)
    async with unit_of_work(platform=True) as s:
        op = Operator(email=f"op-{key_id}@platform.example.com", name="Operator", password_hash="x")
        s.add(op)
        await s.flush()
        s.add(
            OperatorKey(
                operator_id=str(op.id), name=op.email, prefix=f"top_{key_id}", secret_hash=sha256_hex(secret)
            )
        )
    return f"top_{key_id}_{secret}"


@pytest.fixture
async def operator_headers(app: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {await make_operator_key()}"}


@pytest.fixture
async def browser(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A second client with its own cookie jar (a console user)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        yield c


async def sign_in(
    c: httpx.AsyncClient, world: TenantWorld, role: str = "admin", password: str | None = None
) -> httpx.Response:
    return await c.post(
        "/v1/sessions",
        json={"workspace": world.slug, "email": world.emails[role], "password": password or world.password},
    )


def owner_engine(database_urls: dict[str, str]) -> Any:
    from sqlalchemy.ext.asyncio import create_async_engine

    return create_async_engine(database_urls["owner"])


def new_id() -> uuid.UUID:
    return uuid.uuid4()
