from __future__ import annotations

import secrets
import uuid

import pytest

from tessera.core.db.session import unit_of_work
from tessera.core.identity.passwords import sha256_hex
from tessera.core.tenancy.models import OperatorKey


async def make_operator_key() -> str:
    ident, secret = secrets.token_hex(6), secrets.token_hex(16)
    async with unit_of_work(platform=True) as s:
        s.add(
            OperatorKey(
                operator_id=str(uuid.uuid4()),
                name="ops@example.com",
                prefix=f"top_{ident}",
                secret_hash=sha256_hex(secret),
            )
        )
    return f"top_{ident}_{secret}"


@pytest.fixture
async def operator(app: object) -> dict[str, str]:
    return {"Authorization": f"Bearer {await make_operator_key()}"}
