"""Contact files may be larger than other request bodies: the import upload endpoints use
``max_upload_bytes``; every other body keeps ``max_body_bytes``."""

from __future__ import annotations

import httpx

from tessera.settings import get_settings
from tests.conftest import TenantWorld


async def test_import_upload_may_exceed_the_body_limit(
    client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    s = get_settings()
    assert s.max_upload_bytes > s.max_body_bytes
    rows = ["name,phone"] + [f"Person {i},138{i:08d}" for i in range(s.max_body_bytes // 20 + 10)]
    body = ("\n".join(rows) + "\n").encode()
    assert s.max_body_bytes < len(body) < s.max_upload_bytes
    h = tenant.headers("admin")
    r = await client.post(
        "/v1/imports?filename=big.csv", content=body, headers={**h, "content-type": "text/csv"}
    )
    assert r.status_code == 201, r.text[:300]
    assert r.json()["total_rows"] == len(rows) - 1
    # Anywhere else the ordinary limit holds.
    r = await client.post(
        "/v1/contacts",
        content=b'{"name": "' + b"x" * len(body) + b'"}',
        headers={**h, "content-type": "application/json"},
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "request.too_large"
